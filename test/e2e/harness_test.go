package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/netns"
	"github.com/portsentry-go/portsentry/internal/netns/netnstest"
	"github.com/portsentry-go/portsentry/internal/syncbuf"
)

// Fixed test addresses. They exist only inside a lab's namespaces.
var (
	targetV4  = netip.MustParseAddr("10.231.0.1")
	targetV6  = netip.MustParseAddr("fd00:231::1")
	scannerV4 = netip.MustParseAddr("10.231.0.2")
	scannerV6 = netip.MustParseAddr("fd00:231::2")
	friendV4  = netip.MustParseAddr("10.231.0.130")
	friendV6  = netip.MustParseAddr("fd00:231::1:3")
)

// host is one namespace of a lab.
type host struct {
	ns     *netns.NS
	v4, v6 netip.Addr
}

// addr returns the host's address of the family of like.
func (h host) addr(v6 bool) netip.Addr {
	if v6 {
		return h.v6
	}
	return h.v4
}

// lab is a private network: T (target, runs the daemon), S (scanner) and F
// (friend) on one bridge that lives in a fourth namespace, the hub.
type lab struct {
	T, S, F host
	hub     *netns.NS
}

// newLab builds a lab; t.Cleanup deletes it, also when the test fails.
func newLab(t *testing.T) *lab {
	t.Helper()
	l := &lab{
		hub: namespaces.New(t, "h"),
		T:   host{ns: namespaces.New(t, "t"), v4: targetV4, v6: targetV6},
		S:   host{ns: namespaces.New(t, "s"), v4: scannerV4, v6: scannerV6},
		F:   host{ns: namespaces.New(t, "f"), v4: friendV4, v6: friendV6},
	}
	var ifaces []netns.Iface
	for _, h := range []host{l.T, l.S, l.F} {
		ifaces = append(ifaces, netns.Iface{NS: h.ns, Name: "eth0", Addrs: netns.OnLink(h.v4, h.v6)})
	}
	netnstest.Star(t, l.hub, "br0", ifaces...)
	return l
}

// reply is the netclient's report.
type reply struct {
	Connected bool   `json:"connected"`
	Data      string `json:"data"`
	Error     string `json:"error"`
}

// probe runs the netclient inside from's namespace against to:port.
// wait bounds how long it waits for a banner or UDP reply.
func probe(t *testing.T, from host, proto string, to netip.Addr, port int, wait time.Duration) reply {
	t.Helper()
	ap := netip.AddrPortFrom(to, uint16(port)).String()
	cmd := from.ns.Command(clientPath, "-proto", proto, "-addr", ap, "-wait", wait.String())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("netclient %s %s from %s: %v\n%s", proto, ap, from.ns, err, stderr.Bytes())
	}
	var r reply
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("netclient %s %s: bad output %q: %v", proto, ap, out, err)
	}
	return r
}

// daemon is a running portsentry.
type daemon struct {
	cmd    *exec.Cmd
	stdout syncbuf.Buffer
	stderr syncbuf.Buffer
	done   chan struct{} // closed when the process has been waited for
	err    error         // Wait's result, valid after done
}

// readyLine is what the daemon prints once its traps are set.
const readyLine = "now active and listening"

// startDaemon runs `portsentry -c conf args...` inside ns and waits until it
// says it is listening. Cleanup kills its process group if it still runs.
func startDaemon(t *testing.T, ns *netns.NS, conf string, args ...string) *daemon {
	t.Helper()
	d := startDaemonNoWait(t, ns, conf, args...)
	d.waitFor(t, readyLine, 10*time.Second)
	return d
}

func startDaemonNoWait(t *testing.T, ns *netns.NS, conf string, args ...string) *daemon {
	t.Helper()
	d := &daemon{done: make(chan struct{})}
	d.cmd = ns.Command(binPath, append([]string{"-c", conf}, args...)...)
	// A directory of its own, so that a relative path resolved against the
	// working directory instead of the config's shows up as a failure.
	d.cmd.Dir = t.TempDir()
	d.cmd.Stdout = &d.stdout
	d.cmd.Stderr = &d.stderr
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	d.cmd.WaitDelay = 2 * time.Second
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting %v: %v", d.cmd.Args, err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		if !d.exited() {
			// ip netns exec execs the daemon, so the group is the daemon
			// and whatever commands it started.
			_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
			select {
			case <-d.done:
			case <-time.After(5 * time.Second):
				t.Errorf("daemon pid %d did not die after SIGKILL", d.cmd.Process.Pid)
			}
		}
		if t.Failed() || os.Getenv("PSE2E_DUMP") != "" {
			t.Logf("daemon %v\n--- stdout ---\n%s--- stderr ---\n%s", d.cmd.Args, d.stdout.String(), d.stderr.String())
		}
	})
	return d
}

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// lines returns the stdout lines that contain sub.
func (d *daemon) lines(sub string) []string {
	var out []string
	for _, l := range strings.Split(d.stdout.String(), "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}

// waitFor waits until a stdout line contains sub and returns the first such
// line. It fails at once if the daemon exits.
func (d *daemon) waitFor(t *testing.T, sub string, timeout time.Duration) string {
	t.Helper()
	return d.waitForN(t, sub, 1, timeout)[0]
}

// waitForN waits until n stdout lines contain sub.
func (d *daemon) waitForN(t *testing.T, sub string, n int, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if ls := d.lines(sub); len(ls) >= n {
			return ls
		}
		if d.exited() {
			if ls := d.lines(sub); len(ls) >= n {
				return ls
			}
			t.Fatalf("daemon exited (%v) before logging %d× %q", d.err, n, sub)
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v the daemon had logged %d× %q, want %d", timeout, len(d.lines(sub)), sub, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for the exit; it returns how long it took.
func (d *daemon) stop(t *testing.T, timeout time.Duration) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-d.done:
		return time.Since(start), d.err
	case <-time.After(timeout):
		return time.Since(start), context.DeadlineExceeded
	}
}

// Trap ports of the standard config. Nothing else listens in T.
var (
	tcpPorts = []int{1, 11, 143, 540, 31337}
	udpPorts = []int{1, 7, 69, 31337}
)

const banner = "** UNAUTHORIZED ACCESS PROHIBITED *** YOUR CONNECTION ATTEMPT HAS BEEN LOGGED. GO AWAY."

// config is a portsentry.conf under construction, written to dir.
type config struct {
	dir  string
	keys []string
	vals map[string]string
}

// newConfig returns the standard test config: connect-mode traps, blocking
// on for both protocols, every file inside dir, and the block command
// (KILL_ROUTE) recording its arguments to dir/actions.log.
func newConfig(t *testing.T) *config {
	t.Helper()
	dir := t.TempDir()
	c := &config{dir: dir, vals: map[string]string{}}
	c.set("TCP_PORTS", joinInts(tcpPorts))
	c.set("UDP_PORTS", joinInts(udpPorts))
	c.set("IGNORE_FILE", c.path("portsentry.ignore"))
	c.set("HISTORY_FILE", c.path("portsentry.history"))
	c.set("BLOCKED_FILE", c.path("portsentry.blocked"))
	c.set("HOSTS_DENY_FILE", c.path("hosts.deny"))
	// Each daemon its own operator socket: tests run side by side.
	c.set("CONTROL_SOCKET", c.path("portsentry.sock"))
	c.set("RESOLVE_HOST", "0")
	c.set("BLOCK_TCP", "1")
	c.set("BLOCK_UDP", "1")
	c.set("KILL_ROUTE", "/bin/echo route $TARGET$ $PORT$ $MODE$ >> "+c.path("actions.log"))
	c.set("KILL_HOSTS_DENY", "ALL: $TARGET$ : DENY")
	c.set("SCAN_TRIGGER", "0")
	c.set("PORT_BANNER", banner)
	writeFile(t, c.path("portsentry.ignore"), "# e2e\n127.0.0.1\n::1\n")
	// A real hosts.deny exists and has comments; the daemon must append.
	writeFile(t, c.path("hosts.deny"), "# /etc/hosts.deny: e2e copy\n")
	return c
}

func (c *config) path(name string) string { return filepath.Join(c.dir, name) }

func (c *config) set(key, val string) {
	if _, ok := c.vals[key]; !ok {
		c.keys = append(c.keys, key)
	}
	c.vals[key] = val
}

// write writes dir/portsentry.conf and returns its path.
func (c *config) write(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("# portsentry e2e test config\n")
	for _, k := range c.keys {
		fmt.Fprintf(&b, "%s=\"%s\"\n", k, c.vals[k])
	}
	p := c.path("portsentry.conf")
	writeFile(t, p, b.String())
	return p
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fileLines returns the non-empty lines of a file that do not start with
// '#'; a missing file has none.
func fileLines(t *testing.T, p string) []string {
	t.Helper()
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimRight(l, "\r"); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// waitFileLines waits until p has at least n lines (as fileLines counts).
func waitFileLines(t *testing.T, p string, n int, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ls := fileLines(t, p)
		if len(ls) >= n {
			return ls
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v %s has %d lines %q, want %d", timeout, p, len(ls), ls, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// settle is how long a test waits before asserting that something did NOT
// happen (a second block command, a block below the trigger). The daemon
// logs an event before or while acting on it, so a short pause is enough.
const settle = 300 * time.Millisecond

// logWait bounds every wait for an expected log line.
const logWait = 10 * time.Second

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
