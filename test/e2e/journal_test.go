package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portsentry-go/portsentry/internal/netns/netnstest"
)

// TestJournal: under systemd, with standard output connected to the
// journal (JOURNAL_STREAM), the daemon logs to the journal natively: each
// line with its priority, so that `journalctl -p warning` shows the
// warnings and errors and nothing else; no second time stamp in the text;
// the lines about a probe with PORTSENTRY_* fields; systemd's status line
// (STATUS=) tells the modes, bans and last detection. The 2.x fail2ban
// filter still matches the journal's lines. When the native socket cannot
// be reached, the lines go to the stream with their priority prefix, and a
// configuration the daemon cannot start with is an error there too.
//
// The journal is a real systemd-journald, run by the test in a journal
// namespace of its own and a private mount namespace (its files are on a
// tmpfs that disappears with it: the host's journal is not touched). The
// daemon runs as systemd runs a unit with LogNamespace=: its standard
// output is a stream connection to that journald, and the namespace's
// socket directory is mounted on /run/systemd/journal, in a mount namespace
// of the daemon's own.
func TestJournal(t *testing.T) {
	t.Parallel()
	requireTool(t, "unshare", "util-linux")
	jd := startJournald(t)
	l := newLab(t)
	c := newConfig(t)
	c.set("IGNORE_FILE", c.path("no-such.ignore")) // a warning at start
	// The block works for IPv4 and fails for IPv6 (an ERROR).
	c.set("KILL_ROUTE", "echo route $TARGET$ >> "+c.path("actions.log")+"; case $TARGET$ in *:*) exit 3;; esac")
	c.set("KILL_HOSTS_DENY", "")
	c.set("METRICS_ADDRESS", "127.0.0.1:0") // a debug line under -d
	conf := c.write(t)

	notify := listenNotify(t)
	d := jd.startDaemon(t, l, true, notify.path, conf, "-d")
	if msg := notify.wait(t, "READY=1", func(m string) bool { return slices.Contains(strings.Split(m, "\n"), "READY=1") }); msg == "" {
		return
	}
	pid := fmt.Sprint(d.Process.Pid)
	mine := func(e entry) bool { return e["_PID"] == pid }
	jd.wait(t, "the ready line", func(e entry) bool {
		return mine(e) && e["MESSAGE"] == "adminalert: PortSentry is now active and listening."
	})

	hit(t, l.S, "tcp", l.T.v4, 143)
	v4 := jd.wait(t, "the IPv4 scanner's block", func(e entry) bool { return mine(e) && e["MESSAGE"] == scanBlocked(l.S.v4, "tcp", 143) })
	hit(t, l.S, "tcp", l.T.v6, 540)
	notBlocked := fmt.Sprintf("attackalert: ERROR: Host %s was NOT blocked; its next probe will try again", l.S.v6)
	jd.wait(t, "the IPv6 scanner's failed block", func(e entry) bool { return mine(e) && e["MESSAGE"] == notBlocked })

	// The lines about a probe: notice, with their fields, natively.
	for k, want := range map[string]string{
		"PRIORITY": "5", "_TRANSPORT": "journal", "SYSLOG_IDENTIFIER": "portsentry",
		"PORTSENTRY_SRC": l.S.v4.String(), "PORTSENTRY_DST": l.T.v4.String(), "PORTSENTRY_PORT": "143",
		"PORTSENTRY_PROTO": "tcp", "PORTSENTRY_KIND": "connect", "PORTSENTRY_TYPE": "Connect",
		"PORTSENTRY_MODE": "tcp", "PORTSENTRY_ACTION": "blocked",
	} {
		if v4[k] != want {
			t.Errorf("%s=%q in the journal entry of %q, want %q", k, v4[k], v4["MESSAGE"], want)
		}
	}
	// A field is what journalctl selects by.
	var v6 []string
	for _, e := range jd.entries(t, "PORTSENTRY_SRC="+l.S.v6.String()) {
		v6 = append(v6, e["MESSAGE"])
	}
	if !slices.Contains(v6, notBlocked) || !slices.Contains(v6, fmt.Sprintf("attackalert: Connect from host: %[1]s/%[1]s to TCP port: 540", l.S.v6)) {
		t.Errorf("journalctl PORTSENTRY_SRC=%s: %q, want the scanner's lines", l.S.v6, v6)
	}

	// The priorities, as journalctl -p selects them.
	warning := fmt.Sprintf("adminalert: WARNING: ignore file %s does not exist: only this host's own addresses are ignored", c.path("no-such.ignore"))
	routeFailed := regexp.MustCompile(`^attackalert: ERROR: .*` + regexp.QuoteMeta(l.S.v6.String()) + `.*exit status 3`)
	messages := func(args ...string) []string {
		var ms []string
		for _, e := range jd.entries(t, args...) {
			if mine(e) {
				ms = append(ms, e["MESSAGE"])
			}
		}
		return ms
	}
	has := func(ms []string, match func(string) bool) bool { return slices.ContainsFunc(ms, match) }
	is := func(s string) func(string) bool { return func(m string) bool { return m == s } }
	warnings := messages("-p", "warning")
	if !has(warnings, is(warning)) {
		t.Errorf("journalctl -p warning does not show the warning %q; it shows %q", warning, warnings)
	}
	if !has(warnings, is(notBlocked)) || !has(warnings, routeFailed.MatchString) {
		t.Errorf("journalctl -p warning does not show the errors of the failed block; it shows %q", warnings)
	}
	for _, m := range warnings {
		if m != warning && !strings.HasPrefix(m, "attackalert: ERROR: ") {
			t.Errorf("journalctl -p warning shows %q, which is no warning", m)
		}
	}
	errs := messages("-p", "err")
	if has(errs, is(warning)) || !has(errs, is(notBlocked)) {
		t.Errorf("journalctl -p err shows %q: want the errors, not the warning", errs)
	}
	info := messages("-p", "info")
	if !has(info, is(scanBlocked(l.S.v4, "tcp", 143))) || has(info, func(m string) bool { return strings.HasPrefix(m, "metrics: serving on") }) {
		t.Errorf("journalctl -p info: want the notices and no debug line, have %q", info)
	}
	all := messages()
	if !has(all, func(m string) bool { return strings.HasPrefix(m, "metrics: serving on") }) {
		t.Errorf("no debug line under -d in the journal: %q", all)
	}
	// No line has a time stamp of its own: the journal has one.
	stamp := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d`)
	for _, e := range jd.entries(t) {
		if mine(e) && (stamp.MatchString(e["MESSAGE"]) || e["_TRANSPORT"] != "journal") {
			t.Errorf("journal entry %q, transport %s: want the line alone, sent natively", e["MESSAGE"], e["_TRANSPORT"])
		}
	}

	// systemctl status's line: the ports, the ban, the last detection.
	wantStatus := fmt.Sprintf("tcp on %d TCP ports, udp on %d UDP ports; 1 ban active; last detection ", len(tcpPorts), len(udpPorts))
	last := fmt.Sprintf(": Connect from %s to TCP port 540", l.S.v6)
	notify.wait(t, "a status with the last detection", func(m string) bool {
		s, ok := strings.CutPrefix(m, "STATUS=")
		return ok && strings.HasPrefix(s, wantStatus) && strings.HasSuffix(s, last)
	})

	// fail2ban's 2.x filter (the systemd backend reads MESSAGE) matches
	// the journal's lines of both scanners.
	msgs := filepath.Join(t.TempDir(), "messages")
	writeFile(t, msgs, strings.Join(all, "\n")+"\n")
	_, matched, _, ips := fail2banRegex(t, msgs, filepath.Join(repoDir, "packaging/fail2ban/portsentry-2x.conf"))
	if matched != 2 || !containsIP(ips, l.S.v4) || !containsIP(ips, l.S.v6) {
		t.Errorf("fail2ban-regex on the journal's messages: %d matched, %q; want the two scanners", matched, ips)
	}
	stopProcess(t, d)

	// Without the native socket: the stream, with each line's priority.
	d = jd.startDaemon(t, l, false, "", conf)
	pid = fmt.Sprint(d.Process.Pid)
	w := jd.wait(t, "the warning on the stream", func(e entry) bool { return mine(e) && e["MESSAGE"] == warning })
	if w["PRIORITY"] != "4" || w["_TRANSPORT"] != "stdout" {
		t.Errorf("warning without the socket: PRIORITY=%s, transport %s; want 4 on stdout", w["PRIORITY"], w["_TRANSPORT"])
	}
	r := jd.wait(t, "the ready line on the stream", func(e entry) bool {
		return mine(e) && e["MESSAGE"] == "adminalert: PortSentry is now active and listening."
	})
	if r["PRIORITY"] != "5" {
		t.Errorf("ready line without the socket: PRIORITY=%s, want 5", r["PRIORITY"])
	}
	stopProcess(t, d)

	// A configuration it cannot start with: its last words are an error.
	c.set("BLOCK_TCP", "9")
	d = jd.startDaemon(t, l, false, "", c.write(t))
	pid = fmt.Sprint(d.Process.Pid)
	e := jd.wait(t, "the configuration error", func(e entry) bool {
		return mine(e) && strings.HasPrefix(e["MESSAGE"], "portsentry: ") && strings.Contains(e["MESSAGE"], "BLOCK_TCP")
	})
	if e["PRIORITY"] != "3" {
		t.Errorf("%q at PRIORITY=%s, want 3 (err)", e["MESSAGE"], e["PRIORITY"])
	}
}

// journald is a systemd-journald of the test's own.
type journald struct {
	cmd  *exec.Cmd
	name string // its journal namespace
	root string // its file system, as seen through /proc
}

// startJournald runs systemd-journald for a journal namespace of its own,
// in a private mount namespace whose /run and /var/log are empty tmpfs:
// its sockets and files exist only there, and go with it.
func startJournald(t *testing.T) *journald {
	t.Helper()
	requireTool(t, "journalctl", "systemd")
	bin := ""
	for _, p := range []string{"/usr/lib/systemd/systemd-journald", "/lib/systemd/systemd-journald"} {
		if _, err := os.Stat(p); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		netnstest.SkipOrFail(t, "needs systemd-journald: apt-get install systemd")
		return nil
	}
	if _, err := os.Stat("/etc/machine-id"); err != nil {
		netnstest.SkipOrFail(t, "needs /etc/machine-id for systemd-journald: systemd-machine-id-setup")
		return nil
	}
	name := fmt.Sprintf("psjrnl%d", os.Getpid())
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
		`mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /var/log && exec "$0" "$1"`, bin, name)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	jd := &journald{cmd: cmd, name: name, root: fmt.Sprintf("/proc/%d/root", cmd.Process.Pid)}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("systemd-journald:\n%s", out.String())
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(jd.socketDir() + "/stdout"); err == nil {
			break
		}
		select {
		case <-done:
			t.Fatalf("systemd-journald exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("systemd-journald made no sockets in 10 s: %s", out.String())
		}
	}
	t.Cleanup(func() { // before journald stops
		if t.Failed() {
			var ms []string
			for _, e := range jd.entries(t) {
				ms = append(ms, e["_PID"]+" "+e["PRIORITY"]+" "+e["_TRANSPORT"]+" "+e["MESSAGE"])
			}
			t.Logf("the journal:\n%s", strings.Join(ms, "\n"))
		}
	})
	return jd
}

// socketDir holds the namespace's sockets: socket (native), stdout.
func (j *journald) socketDir() string { return j.root + "/run/systemd/journal." + j.name }

// stream opens a stream connection as systemd makes one for a unit's
// standard output (identifier portsentry, default priority info, level
// prefixes read) and returns it with its JOURNAL_STREAM value.
func (j *journald) stream(t *testing.T) (*os.File, string) {
	t.Helper()
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: j.socketDir() + "/stdout", Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// identifier, unit, priority, level prefix, to syslog, kmsg, console.
	if _, err := conn.Write([]byte("portsentry\n\n6\n1\n0\n0\n0\n")); err != nil {
		t.Fatal(err)
	}
	if err := conn.CloseRead(); err != nil {
		t.Fatal(err)
	}
	f, err := conn.File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return f, fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

// startDaemon runs the daemon in l's target namespace as a unit with
// LogNamespace= is run: standard output and error on a stream to the
// journal, JOURNAL_STREAM set; with native, the namespace's socket
// directory mounted on /run/systemd/journal, without, an empty directory
// there. That mount is made in a copy of journald's mount namespace (where
// the socket directory is), so the host's /run is not touched. notify, if
// not "", is NOTIFY_SOCKET.
func (j *journald) startDaemon(t *testing.T, l *lab, native bool, notify string, conf string, args ...string) *exec.Cmd {
	t.Helper()
	requireTool(t, "nsenter", "util-linux")
	script := `mkdir -p /run/systemd/journal && mount -t tmpfs tmpfs /run/systemd/journal && exec "$@"`
	if native {
		script = `mkdir -p /run/systemd/journal && mount --bind /run/systemd/journal.` + j.name + ` /run/systemd/journal && exec "$@"`
	}
	stream, id := j.stream(t)
	argv := append([]string{"nsenter", fmt.Sprintf("--mount=/proc/%d/ns/mnt", j.cmd.Process.Pid), "--",
		"unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", binPath, "-c", conf}, args...)
	cmd := l.T.ns.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = stream, stream
	cmd.Env = append(os.Environ(), "JOURNAL_STREAM="+id)
	if notify != "" {
		cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+notify)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %v: %v", cmd.Args, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
	return cmd
}

// stopProcess stops the daemon with SIGTERM (its cleanup reaps it).
func stopProcess(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); syscall.Kill(cmd.Process.Pid, 0) == nil; time.Sleep(20 * time.Millisecond) {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid)); bytes.Contains(b, []byte(") Z ")) {
			return // exited, not yet reaped
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon pid %d still runs 5 s after SIGTERM", cmd.Process.Pid)
		}
	}
}

// entry is one journal entry: its fields as strings.
type entry map[string]string

// entries runs journalctl -o json on the namespace's journal, with args
// (matches, -p …).
func (j *journald) entries(t *testing.T, args ...string) []entry {
	t.Helper()
	// Persistent, the default for a namespace (on the tmpfs), or
	// volatile; made at the first entry.
	dirs, _ := filepath.Glob(j.root + "/var/log/journal/*." + j.name)
	runtime, _ := filepath.Glob(j.root + "/run/log/journal/*." + j.name)
	if dirs = append(dirs, runtime...); len(dirs) != 1 {
		t.Fatalf("journal directories %q, want one", dirs)
	}
	cmd := exec.Command("journalctl", append([]string{"-D", dirs[0], "-o", "json", "--all", "--no-pager"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("journalctl %q: %v\n%s", args, err, stderr.String())
	}
	var es []entry
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &raw); err != nil {
			t.Fatalf("journalctl -o json: %q: %v", sc.Text(), err)
		}
		e := entry{}
		for k, v := range raw {
			var s string
			if json.Unmarshal(v, &s) == nil {
				e[k] = s
			} else {
				e[k] = string(v) // binary, or a field given twice
			}
		}
		es = append(es, e)
	}
	return es
}

// wait waits until an entry matches and returns it.
func (j *journald) wait(t *testing.T, what string, match func(entry) bool) entry {
	t.Helper()
	deadline := time.Now().Add(logWait)
	for {
		es := j.entries(t)
		if i := slices.IndexFunc(es, match); i >= 0 {
			return es[i]
		}
		if time.Now().After(deadline) {
			var ms []string
			for _, e := range es {
				ms = append(ms, e["PRIORITY"]+" "+e["_TRANSPORT"]+" "+e["MESSAGE"])
			}
			t.Fatalf("no journal entry for %s after %v; the journal has:\n%s", what, logWait, strings.Join(ms, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// notifySocket stands in for systemd's notification socket.
type notifySocket struct {
	path string
	mu   sync.Mutex
	msgs []string
	more chan struct{} // a message has arrived
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	n := &notifySocket{path: filepath.Join(t.TempDir(), "notify"), more: make(chan struct{}, 1)}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, string(buf[:k]))
			n.mu.Unlock()
			select {
			case n.more <- struct{}{}:
			default:
			}
		}
	}()
	return n
}

// wait waits until a message matches and returns it.
func (n *notifySocket) wait(t *testing.T, what string, match func(string) bool) string {
	t.Helper()
	deadline := time.After(logWait)
	for {
		n.mu.Lock()
		msgs := slices.Clone(n.msgs)
		n.mu.Unlock()
		if i := slices.IndexFunc(msgs, match); i >= 0 {
			return msgs[i]
		}
		select {
		case <-n.more:
		case <-deadline:
			t.Fatalf("no notification with %s after %v; got %q", what, logWait, msgs)
			return ""
		}
	}
}
