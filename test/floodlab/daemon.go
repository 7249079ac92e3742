package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/portsentry-go/portsentry/internal/report/logline"
	"github.com/portsentry-go/portsentry/test/internal/labproc"
)

// The shipped files the daemon runs on, relative to the repository.
const (
	shippedConf   = "packaging/portsentry.conf"
	shippedStatic = "packaging/portsentry.ignore.static"
)

// daemonTable is the table the nftables blocker makes (nft.DefaultTable).
const daemonTable = "portsentry"

// resetDaemonTable deletes the daemon's table, which outlives the daemon
// (bans survive a restart), so that every scenario starts without bans.
// Creating it first makes the deletion succeed when there is none.
const resetDaemonTable = "table inet " + daemonTable + "\ndelete table inet " + daemonTable + "\n"

// trapMark starts the daemon's line telling the kernel trap is set.
const trapMark = "kernel trap set on"

// daemonFiles are the paths of one scenario's daemon: its configuration
// and ignore files in dir, and everything it writes in dir/state, so that
// the state directory's size is the size of the daemon's files.
type daemonFiles struct {
	conf, ignore, static, state string
	history, blocked, bans      string
	events, socket, log         string
}

func newDaemonFiles(dir string) daemonFiles {
	state := filepath.Join(dir, "state")
	return daemonFiles{
		conf:    filepath.Join(dir, "portsentry.conf"),
		ignore:  filepath.Join(dir, "portsentry.ignore"),
		static:  filepath.Join(dir, "portsentry.ignore.static"),
		state:   state,
		history: filepath.Join(state, "portsentry.history"),
		blocked: filepath.Join(state, "portsentry.blocked"),
		bans:    filepath.Join(state, "portsentry.bans"),
		events:  filepath.Join(state, "portsentry.events"),
		socket:  filepath.Join(dir, "portsentry.sock"),
		log:     filepath.Join(dir, "daemon.log"),
	}
}

// pathKeys are the shipped configuration's keys naming a file, and where
// the lab puts each.
func (f daemonFiles) pathKeys() map[string]string {
	return map[string]string{
		"IGNORE_FILE":    f.ignore,
		"HISTORY_FILE":   f.history,
		"BLOCKED_FILE":   f.blocked,
		"BAN_FILE":       f.bans,
		"CONTROL_SOCKET": f.socket,
		"EVENT_LOG":      f.events,
	}
}

var keyLineRE = regexp.MustCompile(`^\s*([A-Z0-9_]+)\s*=`)

// labConf is the shipped configuration with every path key pointed into
// the work directory and EVENT_LOG added; every other line is kept as
// shipped. A path key the shipped file lacks is appended.
func labConf(shipped string, f daemonFiles) (string, error) {
	keys := f.pathKeys()
	done := map[string]bool{}
	var out []string
	sc := bufio.NewScanner(strings.NewReader(shipped))
	for sc.Scan() {
		line := sc.Text()
		if m := keyLineRE.FindStringSubmatch(line); m != nil {
			if p, ok := keys[m[1]]; ok {
				line = fmt.Sprintf("%s=%q # floodlab: in the work directory", m[1], p)
				done[m[1]] = true
			}
		}
		out = append(out, line)
	}
	for _, k := range []string{"IGNORE_FILE", "HISTORY_FILE", "BLOCKED_FILE", "BAN_FILE", "CONTROL_SOCKET", "EVENT_LOG"} {
		if !done[k] {
			out = append(out, fmt.Sprintf("%s=%q # floodlab: added", k, keys[k]))
		}
	}
	conf := strings.Join(out, "\n") + "\n"
	for _, line := range strings.Split(conf, "\n") {
		if l := strings.TrimSpace(line); !strings.HasPrefix(l, "#") && strings.ContainsAny(l, "/") && !strings.Contains(l, "floodlab:") {
			return "", fmt.Errorf("%s: a line names a path floodlab does not move: %q", shippedConf, l)
		}
	}
	return conf, sc.Err()
}

// writeDaemonFiles writes the configuration and ignore files, and makes
// the state directory.
func writeDaemonFiles(root string, f daemonFiles) error {
	shipped, err := os.ReadFile(filepath.Join(root, shippedConf))
	if err != nil {
		return err
	}
	conf, err := labConf(string(shipped), f)
	if err != nil {
		return err
	}
	static, err := os.ReadFile(filepath.Join(root, shippedStatic))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(f.state, 0o700); err != nil {
		return err
	}
	for path, content := range map[string]string{
		f.conf:   conf,
		f.ignore: "# floodlab: empty (the shipped .static file is beside it)\n",
		f.static: string(static),
	} {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// daemon is the running daemon of one scenario.
type daemon struct {
	proc     *labproc.Proc
	log      *os.File
	logged   *countWriter // bytes of output so far
	trapLine string
}

// countWriter counts what it passes on. Only the goroutine copying the
// daemon's output writes; read n once the daemon has exited.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// startDaemon starts the daemon in T, its output going to f.log, and waits
// until it listens with the kernel trap set.
func startDaemon(ctx context.Context, l *lab, bin string, f daemonFiles) (*daemon, error) {
	log, err := os.Create(f.log)
	if err != nil {
		return nil, err
	}
	d := &daemon{log: log, logged: &countWriter{w: log}}
	d.proc, err = labproc.StartLogged("portsentry", d.logged, 1<<20, l.T.ns.Argv(bin, "-c", f.conf)...)
	if err != nil {
		log.Close()
		return nil, err
	}
	if err := d.proc.WaitOutput(ctx, logline.Active, 20*time.Second); err != nil {
		d.stop()
		return nil, fmt.Errorf("starting the daemon: %w", err)
	}
	for _, line := range strings.Split(d.proc.Output(), "\n") {
		if strings.Contains(line, trapMark) {
			d.trapLine = strings.TrimSpace(line)
			break
		}
	}
	if d.trapLine == "" {
		d.stop()
		return nil, fmt.Errorf("the daemon did not set the kernel trap (no %q line):\n%s", trapMark, d.proc.Tail())
	}
	return d, nil
}

// pid is the daemon's process ID (ip netns exec execs the program).
func (d *daemon) pid() int { return d.proc.Pid() }

// stop ends the daemon with SIGTERM and closes its log.
func (d *daemon) stop() error {
	err := d.proc.Stop(syscall.SIGTERM, 10*time.Second)
	d.log.Close()
	if labproc.IsSignalExit(err) {
		err = nil
	}
	return err
}

// inHistory reports whether the history file names addr.
func inHistory(path string, addr netip.Addr) (bool, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if namesAddr(sc.Text(), addr) {
			return true, nil
		}
	}
	return false, sc.Err()
}

// namesAddr reports whether line holds addr as a whole token.
func namesAddr(line string, addr netip.Addr) bool {
	tokens := strings.FieldsFunc(line, func(r rune) bool {
		return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F' || r == '.' || r == ':')
	})
	for _, t := range tokens {
		for _, c := range []string{t, strings.Trim(t, ":")} { // "Host:" leaves a colon
			if a, err := netip.ParseAddr(c); err == nil && a.Unmap() == addr {
				return true
			}
		}
	}
	return false
}
