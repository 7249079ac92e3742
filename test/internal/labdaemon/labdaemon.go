// Package labdaemon runs the real daemon in a lab benchmark's target
// namespace (floodlab, trustlab) on the shipped configuration, with every
// file it reads or writes moved into the run's work directory: it writes
// those files, resets the daemon's nftables table between scenarios,
// starts the daemon and waits until its kernel trap is set, and reads its
// history file.
package labdaemon

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/portsentry-go/portsentry/internal/netns"
	"github.com/portsentry-go/portsentry/internal/report/logline"
	"github.com/portsentry-go/portsentry/test/internal/labproc"
)

// The shipped files the daemon runs on, relative to the repository.
const (
	ShippedConf   = "packaging/portsentry.conf"
	ShippedStatic = "packaging/portsentry.ignore.static"
)

// Table is the table the nftables blocker makes (nft.DefaultTable).
const Table = "portsentry"

// resetTable deletes the daemon's table, which outlives the daemon (bans
// survive a restart), so that every scenario starts without bans.
// Creating it first makes the deletion succeed when there is none.
const resetTable = "table inet " + Table + "\ndelete table inet " + Table + "\n"

// trapMark starts the daemon's line telling the kernel trap is set.
const trapMark = "kernel trap set on"

// mark ends every configuration line the lab wrote, and is how Conf tells
// them from the shipped ones.
const mark = "# lab: "

// Files are the paths of one scenario's daemon: its configuration and
// ignore files in dir, and everything it writes in dir/state, so that the
// state directory's size is the size of the daemon's files.
type Files struct {
	Conf, Ignore, Static, State string
	History, Blocked, Bans      string
	Events, Socket, Log         string
}

// NewFiles lays the files out in dir.
func NewFiles(dir string) Files {
	state := filepath.Join(dir, "state")
	return Files{
		Conf:    filepath.Join(dir, "portsentry.conf"),
		Ignore:  filepath.Join(dir, "portsentry.ignore"),
		Static:  filepath.Join(dir, "portsentry.ignore.static"),
		State:   state,
		History: filepath.Join(state, "portsentry.history"),
		Blocked: filepath.Join(state, "portsentry.blocked"),
		Bans:    filepath.Join(state, "portsentry.bans"),
		Events:  filepath.Join(state, "portsentry.events"),
		Socket:  filepath.Join(dir, "portsentry.sock"),
		Log:     filepath.Join(dir, "daemon.log"),
	}
}

// pathKeys are the shipped configuration's keys naming a file, in the
// order they are appended when missing, and where the lab puts each.
func (f Files) pathKeys() ([]string, map[string]string) {
	return []string{"IGNORE_FILE", "HISTORY_FILE", "BLOCKED_FILE", "BAN_FILE", "CONTROL_SOCKET", "EVENT_LOG"},
		map[string]string{
			"IGNORE_FILE":    f.Ignore,
			"HISTORY_FILE":   f.History,
			"BLOCKED_FILE":   f.Blocked,
			"BAN_FILE":       f.Bans,
			"CONTROL_SOCKET": f.Socket,
			"EVENT_LOG":      f.Events,
		}
}

var keyLineRE = regexp.MustCompile(`^\s*([A-Z0-9_]+)\s*=`)

// Conf is the shipped configuration with every path key pointed into the
// work directory, EVENT_LOG added, and the keys of set given those values
// (a scenario's own settings); every other line is kept as shipped. A key
// the shipped file lacks is appended. A shipped line naming a path the lab
// does not move is an error: the daemon would write outside the lab.
func Conf(shipped string, f Files, set map[string]string) (string, error) {
	order, keys := f.pathKeys()
	done := map[string]bool{}
	var out []string
	sc := bufio.NewScanner(strings.NewReader(shipped))
	for sc.Scan() {
		line := sc.Text()
		if m := keyLineRE.FindStringSubmatch(line); m != nil {
			if p, ok := keys[m[1]]; ok {
				line = fmt.Sprintf("%s=%q %sin the work directory", m[1], p, mark)
				done[m[1]] = true
			} else if v, ok := set[m[1]]; ok {
				line = fmt.Sprintf("%s=%q %sset", m[1], v, mark)
				done[m[1]] = true
			}
		}
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	for _, k := range order {
		if !done[k] {
			out = append(out, fmt.Sprintf("%s=%q %sadded", k, keys[k], mark))
		}
	}
	var extra []string
	for k := range set {
		if !done[k] {
			extra = append(extra, k)
		}
	}
	slices.Sort(extra) // the appended lines' order must not depend on the map's
	for _, k := range extra {
		out = append(out, fmt.Sprintf("%s=%q %sadded", k, set[k], mark))
	}
	conf := strings.Join(out, "\n") + "\n"
	for _, line := range out {
		if l := strings.TrimSpace(line); !strings.HasPrefix(l, "#") && strings.Contains(l, "/") && !strings.Contains(l, mark) {
			return "", fmt.Errorf("%s: a line names a path the lab does not move: %q", ShippedConf, l)
		}
	}
	return conf, nil
}

// Write writes the configuration (Conf, from the repository at root) and
// ignore files, and makes the state directory.
func Write(root string, f Files, set map[string]string) error {
	shipped, err := os.ReadFile(filepath.Join(root, ShippedConf))
	if err != nil {
		return err
	}
	conf, err := Conf(string(shipped), f, set)
	if err != nil {
		return err
	}
	static, err := os.ReadFile(filepath.Join(root, ShippedStatic))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(f.State, 0o700); err != nil {
		return err
	}
	for path, content := range map[string]string{
		f.Conf:   conf,
		f.Ignore: mark + "empty (the shipped .static file is beside it)\n",
		f.Static: string(static),
	} {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// ResetTable deletes the daemon's table in ns, left by a previous
// scenario, with nft (the file it feeds nft is written in dir).
func ResetTable(ctx context.Context, ns *netns.NS, nft, dir string) error {
	reset := filepath.Join(dir, "reset.nft")
	if err := os.WriteFile(reset, []byte(resetTable), 0o644); err != nil {
		return err
	}
	if _, err := labproc.Run(ctx, 30*time.Second, ns.Argv(nft, "-f", reset)...); err != nil {
		return fmt.Errorf("deleting the previous table inet %s in %s: %w", Table, ns, err)
	}
	return nil
}

// Daemon is a running daemon.
type Daemon struct {
	Proc *labproc.Proc
	// TrapLine is the daemon's line telling the kernel trap is set ("":
	// none).
	TrapLine string
	log      *os.File
	logged   *countWriter
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

// Start starts bin on f.Conf in ns, its output going to f.Log through a
// pipe (as a service manager's journal takes it), and waits until it
// listens, with the kernel trap set when trap is true (the shipped
// configuration sets it; SCAN_TRIGGER above 1 does not).
func Start(ctx context.Context, ns *netns.NS, bin string, f Files, trap bool) (*Daemon, error) {
	log, err := os.Create(f.Log)
	if err != nil {
		return nil, err
	}
	d := &Daemon{log: log, logged: &countWriter{w: log}}
	d.Proc, err = labproc.StartLogged("portsentry", d.logged, 1<<20, ns.Argv(bin, "-c", f.Conf)...)
	if err != nil {
		log.Close()
		return nil, err
	}
	if err := d.Proc.WaitOutput(ctx, logline.Active, 20*time.Second); err != nil {
		d.Stop()
		return nil, fmt.Errorf("starting the daemon: %w", err)
	}
	for _, line := range strings.Split(d.Proc.Output(), "\n") {
		if strings.Contains(line, trapMark) {
			d.TrapLine = strings.TrimSpace(line)
			break
		}
	}
	if trap && d.TrapLine == "" {
		d.Stop()
		return nil, fmt.Errorf("the daemon did not set the kernel trap (no %q line):\n%s", trapMark, d.Proc.Tail())
	}
	return d, nil
}

// Pid is the daemon's process ID (ip netns exec execs the program).
func (d *Daemon) Pid() int { return d.Proc.Pid() }

// Stop ends the daemon with SIGTERM and closes its log.
func (d *Daemon) Stop() error {
	err := d.Proc.Stop(syscall.SIGTERM, 10*time.Second)
	d.log.Close()
	if labproc.IsSignalExit(err) {
		err = nil
	}
	return err
}

// LoggedBytes is how much the daemon printed; read it once it has exited.
func (d *Daemon) LoggedBytes() int64 { return d.logged.n }

// InHistory reports whether the history file names addr.
func InHistory(path string, addr netip.Addr) (bool, error) {
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
		if NamesAddr(sc.Text(), addr) {
			return true, nil
		}
	}
	return false, sc.Err()
}

// NamesAddr reports whether line holds addr as a whole token.
func NamesAddr(line string, addr netip.Addr) bool {
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
