package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/netns"
	"github.com/portsentry-go/portsentry/internal/syncbuf"
)

// runBackground runs `portsentry -D args...` inside ns, as an init script
// would, and returns the foreground process's exit code and output as soon
// as it has exited. The output goes to a file (returned too), not a pipe,
// so that waiting for the process does not also wait for whoever else
// holds the output open.
//
// With a non-nil sl, the daemon sees sl as the machine's syslog instead of
// the real one (see fakeSyslog).
func runBackground(t *testing.T, ns *netns.NS, sl *fakeSyslog, args ...string) (code int, out, outPath string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var argv []string
	if sl != nil {
		argv = sl.wrap()
	}
	argv = ns.Argv(append(append(argv, binPath, "-D"), args...)...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = t.TempDir()
	outPath = filepath.Join(t.TempDir(), "output")
	f, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	err = cmd.Run()
	out = readFile(t, outPath)
	if ctx.Err() != nil {
		t.Fatalf("%v still running after 20s:\n%s", cmd.Args, out)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out, outPath
	case errors.As(err, &ee) && ee.Exited():
		return ee.ExitCode(), out, outPath
	}
	t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
	return 0, "", ""
}

// holds reports the descriptors of pid that refer to path.
func holds(t *testing.T, pid int, path string) []string {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("listing %s: %v", dir, err)
	}
	var fds []string
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && target == path {
			fds = append(fds, e.Name())
		}
	}
	return fds
}

// backgroundPid returns the portsentry process left running in ns after a
// -D start (commands it runs may come and go beside it), and makes Cleanup
// kill it.
func backgroundPid(t *testing.T, ns *netns.NS) int {
	t.Helper()
	var daemons []int
	for _, pid := range nsPids(t, ns) {
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && filepath.Clean(exe) == filepath.Clean(binPath) {
			daemons = append(daemons, pid)
			t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
		}
	}
	if len(daemons) != 1 {
		t.Fatalf("portsentry processes in %s after -D: %v, want exactly one, the daemon", ns, daemons)
	}
	return daemons[0]
}

// boundPorts reads, from the kernel's socket tables of namespace ns, the
// TCP ports with a listening socket and the bound UDP ports. It starts no
// process, so it sees the state at the moment it is called.
func boundPorts(t *testing.T, ns *netns.NS) (tcp, udp map[int]bool) {
	t.Helper()
	tcp, udp = map[int]bool{}, map[int]bool{}
	err := ns.Do(func() error {
		for _, table := range []string{"tcp", "tcp6", "udp", "udp6"} {
			b, err := os.ReadFile("/proc/thread-self/net/" + table)
			if err != nil {
				return err
			}
			for _, ln := range strings.Split(string(b), "\n")[1:] {
				// "sl local_address rem_address st ...", local as HEXADDR:HEXPORT
				f := strings.Fields(ln)
				if len(f) < 4 {
					continue
				}
				_, hexPort, _ := strings.Cut(f[1], ":")
				port, err := strconv.ParseUint(hexPort, 16, 16)
				if err != nil {
					continue
				}
				switch {
				case strings.HasPrefix(table, "udp"):
					udp[int(port)] = true
				case f[3] == "0A": // TCP_LISTEN
					tcp[int(port)] = true
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading the sockets of %s: %v", ns, err)
	}
	return tcp, udp
}

// stopBackground sends SIGTERM to a backgrounded daemon and waits until it
// has ended.
func stopBackground(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM to %d: %v", pid, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for running(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("background daemon %d still running 5s after SIGTERM", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fakeSyslog stands in for the machine's syslog, for a daemon started in
// a mount namespace of its own: /run (Go's log/syslog tries /dev/log, then
// /var/run/syslog) is replaced there by a directory of the test's, which
// holds a datagram socket named syslog that the test reads, or nothing
// when the test wants no syslog at all; an existing /dev/log is covered
// the same way. The host's own /run and /dev/log are not touched.
type fakeSyslog struct {
	dir  string
	msgs syncbuf.Buffer // one datagram a line
}

func newFakeSyslog(t *testing.T, listening bool) *fakeSyslog {
	t.Helper()
	requireTool(t, "unshare", "util-linux")
	requireTool(t, "mount", "mount")
	sl := &fakeSyslog{dir: t.TempDir()}
	writeFile(t, filepath.Join(sl.dir, "empty"), "")
	if !listening {
		return sl
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(sl.dir, "syslog"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			sl.msgs.Write([]byte(strings.TrimRight(string(buf[:n]), "\n") + "\n"))
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
		if t.Failed() {
			t.Logf("syslog received:\n%s", sl.msgs.String())
		}
	})
	return sl
}

// wrap is the command prefix that starts a program with this syslog.
func (sl *fakeSyslog) wrap() []string {
	const script = `set -e
d=$1; shift
mount --bind "$d" /run
if [ -e /dev/log ]; then
	src="$d/syslog"; [ -S "$src" ] || src="$d/empty"
	mount --bind "$src" /dev/log
fi
exec "$@"`
	return []string{"unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", sl.dir}
}

// waitFor waits for a syslog message matching re.
func (sl *fakeSyslog) waitFor(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(logWait)
	for {
		for _, m := range strings.Split(sl.msgs.String(), "\n") {
			if re.MatchString(m) {
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no syslog message matching %s after %v; have:\n%s", re, logWait, sl.msgs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syslogLine matches what portsentry[pid] sends for msg with facility
// daemon and priority notice (<29>), as log/syslog frames it locally.
func syslogLine(pid int, msg string) *regexp.Regexp {
	return regexp.MustCompile(fmt.Sprintf(`^<29>.* portsentry\[%d\]: %s$`, pid, regexp.QuoteMeta(msg)))
}

// TestBackground: `portsentry -D` returns 0 only once the daemon listens
// (every trap port is bound the moment it returns), leaves the daemon
// running in a session of its own, holding nothing of the caller's output,
// trapping as in the foreground, and SIGTERM stops it; a bad configuration makes the
// foreground process fail with 2 and the file:line of the mistake. Under -D
// the log goes to syslog by default, as portsentry[PID], facility daemon;
// with no syslog to reach the start fails and says so.
func TestBackground(t *testing.T) {
	t.Parallel()
	t.Run("ready", func(t *testing.T) {
		t.Parallel()
		l := newLab(t)
		c := newConfig(t)
		code, out, outPath := runBackground(t, l.T.ns, newFakeSyslog(t, true), "-c", c.write(t))
		if code != 0 {
			t.Fatalf("portsentry -D exited %d, want 0:\n%s", code, out)
		}
		// Exit 0 must mean the traps are set, at that very moment.
		tcp, udp := boundPorts(t, l.T.ns)
		for _, p := range tcpPorts {
			if !tcp[p] {
				t.Errorf("TCP trap port %d not listening when portsentry -D returned", p)
			}
		}
		for _, p := range udpPorts {
			if !udp[p] {
				t.Errorf("UDP trap port %d not bound when portsentry -D returned", p)
			}
		}
		// Found before any probe: a block command, while Go forks it, is
		// briefly a second process running the portsentry binary.
		pid := backgroundPid(t, l.T.ns)
		hit(t, l.S, "tcp", l.T.v4, 143)
		st, ok := readProcStat(pid)
		if !ok {
			t.Fatalf("background daemon %d gone", pid)
		}
		// A daemon lets go of the terminal or file it was started from.
		if fds := holds(t, pid, outPath); len(fds) != 0 {
			t.Errorf("background daemon still holds the caller's output %s as descriptors %v", outPath, fds)
		}
		if st.sid != pid {
			t.Errorf("background daemon %d is in session %d, want a session of its own (setsid)", pid, st.sid)
		}
		if own := syscall.Getpgrp(); st.pgrp == own {
			t.Errorf("background daemon is in the test's process group %d", own)
		}
		waitFileLines(t, c.path("actions.log"), 1, logWait)
		hist := waitFileLines(t, c.path("portsentry.history"), 1, logWait)
		assertHistory12(t, hist[0], l.S.v4, 143, "tcp", time.Now().Add(-time.Minute))
		if got, want := fileLines(t, c.path("actions.log")), routeRecord(l.S.v4, 143, modeToken(nil, "tcp")); len(got) != 1 || got[0] != want {
			t.Errorf("KILL_ROUTE ran as %q, want once as %q", got, want)
		}

		stopBackground(t, pid)
		if r := probe(t, l.S, "tcp", l.T.v4, 540, time.Second); r.Connected {
			t.Errorf("trap port still answers after the background daemon was stopped: %+v", r)
		}
	})
	t.Run("bad-config", func(t *testing.T) {
		t.Parallel()
		l := newLab(t)
		dir := t.TempDir()
		conf := filepath.Join(dir, "bad.conf")
		writeFile(t, conf, "# line 1\nTCP_PORTS=\"143\"\nTCP_PROTS=\"1\"\n")
		code, out, _ := runBackground(t, l.T.ns, newFakeSyslog(t, true), "-c", conf)
		if code != 2 {
			t.Errorf("portsentry -D with a bad config exited %d, want 2:\n%s", code, out)
		}
		for _, want := range []string{conf + ":3:", "TCP_PROTS"} {
			if !strings.Contains(out, want) {
				t.Errorf("output of the failed -D start lacks %q:\n%s", want, out)
			}
		}
		if pids := nsPids(t, l.T.ns); len(pids) != 0 {
			t.Errorf("processes left running after a failed -D start: %v", pids)
		}
	})
	// -D cannot write to the standard output it detaches from: refused,
	// rather than every log line silently lost.
	t.Run("stdout-refused", func(t *testing.T) {
		t.Parallel()
		l := newLab(t)
		c := newConfig(t)
		code, out, _ := runBackground(t, l.T.ns, nil, "-l", "stdout", "-c", c.write(t))
		if code != 2 || !strings.Contains(out, "-l syslog") {
			t.Errorf("portsentry -D -l stdout exited %d, want 2 and advice to use -l syslog:\n%s", code, out)
		}
		if pids := nsPids(t, l.T.ns); len(pids) != 0 {
			t.Errorf("processes left running after a refused -D start: %v", pids)
		}
	})
	t.Run("syslog", func(t *testing.T) {
		t.Parallel()
		l := newLab(t)
		c := newConfig(t)
		sl := newFakeSyslog(t, true)
		// -D logs to syslog by default.
		code, out, _ := runBackground(t, l.T.ns, sl, "-c", c.write(t))
		if code != 0 {
			t.Fatalf("portsentry -D exited %d, want 0:\n%s", code, out)
		}
		pid := backgroundPid(t, l.T.ns)
		sl.waitFor(t, syslogLine(pid, "adminalert: PortSentry is now active and listening."))
		hit(t, l.S, "tcp", l.T.v4, 143)
		sl.waitFor(t, syslogLine(pid, alertLine(l.S.v4, "tcp", 143)))
		sl.waitFor(t, syslogLine(pid, scanBlocked(l.S.v4, "tcp", 143)))
		stopBackground(t, pid)
		sl.waitFor(t, syslogLine(pid, "adminalert: PortSentry is shutting down."))
	})
	t.Run("no-syslog", func(t *testing.T) {
		t.Parallel()
		l := newLab(t)
		c := newConfig(t)
		code, out, _ := runBackground(t, l.T.ns, newFakeSyslog(t, false), "-c", c.write(t))
		// Nothing to log to: the start fails, says why, leaves nothing.
		if code == 0 {
			t.Errorf("portsentry -D exited 0 with no syslog to log to:\n%s", out)
		}
		if !strings.Contains(strings.ToLower(out), "syslog") {
			t.Errorf("failed -D start does not say syslog is the problem:\n%s", out)
		}
		if pids := nsPids(t, l.T.ns); len(pids) != 0 {
			t.Errorf("processes left running after a failed -D start: %v", pids)
		}
		if r := probe(t, l.S, "tcp", l.T.v4, 143, time.Second); r.Connected {
			t.Errorf("trap port answers although -D failed: %+v", r)
		}
	})
}
