package pkg

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/netns"
	"github.com/portsentry-go/portsentry/internal/netns/netnstest"
	"github.com/portsentry-go/portsentry/internal/syncbuf"
	"github.com/portsentry-go/portsentry/test/internal/nftset"
)

// lab makes the network namespaces of these tests (netnstest).
var lab = netnstest.Lab{Prefix: "pspkg-"}

// Addresses that exist only inside a lab's two namespaces.
const (
	labTarget  = "10.232.0.1"
	labScanner = "10.232.0.2"
)

// The capabilities portsentry.service leaves the daemon (its
// CapabilityBoundingSet), as setpriv names them, and as a bit mask:
// CAP_NET_BIND_SERVICE 10, CAP_NET_ADMIN 12, CAP_NET_RAW 13.
const (
	unitCaps     = "+net_raw,+net_admin,+net_bind_service"
	unitCapsMask = 1<<10 | 1<<12 | 1<<13
)

// ruleset is the target's firewall: members of ban4/ban6 are dropped.
const ruleset = `table inet lab {
	set ban4 { type ipv4_addr; }
	set ban6 { type ipv6_addr; }
	chain input {
		type filter hook input priority -10;
		ip saddr @ban4 drop
		ip6 saddr @ban6 drop
	}
}
`

// TestBoundedCapabilities runs the packaged binary as portsentry.service
// runs it, minus systemd: inside a bounding set of exactly CAP_NET_RAW,
// CAP_NET_ADMIN and CAP_NET_BIND_SERVICE, with no inheritable or ambient
// capabilities, no new privileges, and a file system that is read-only but
// for its state and runtime directories (ProtectSystem=strict). In advanced
// mode, blocking with the native nftables blocker and its kernel trap (no
// subprocess: CAP_NET_ADMIN over netlink), a real nmap SYN scan from a
// second namespace must be detected and blocked, while a port a service
// uses stays a service. Without CAP_NET_RAW the daemon must refuse to start.
func TestBoundedCapabilities(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	setpriv := requireTool(t, "setpriv", "util-linux")
	requireTool(t, "unshare", "util-linux")
	nft := requireTool(t, "nft", "nftables")
	nmap := requireTool(t, "nmap", "nmap")
	_, root := builtDeb(t)
	bin := filepath.Join(root, "usr/sbin/portsentry")

	l := newCapsLab(t)
	inT := func(args ...string) *exec.Cmd { return l.t.Command(args[0], args[1:]...) }
	if out, err := withStdin(inT(nft, "-f", "-"), ruleset).CombinedOutput(); err != nil {
		t.Fatalf("nft -f in %s: %v\n%s", l.t, err, out)
	}
	startService(t, inT, labTarget+":80")

	dir := t.TempDir()
	conf := writeConfig(t, dir, nft)

	t.Run("without CAP_NET_RAW", func(t *testing.T) {
		d := startSandboxed(t, inT, setpriv, bin, conf, dir, "+net_admin,+net_bind_service")
		select {
		case <-d.done:
		case <-time.After(10 * time.Second):
			t.Fatal("the daemon runs without CAP_NET_RAW: the bounding set is not applied")
		}
		if code := d.cmd.ProcessState.ExitCode(); code == 0 {
			t.Errorf("exit code 0 without CAP_NET_RAW, want a failure")
		}
		if !strings.Contains(strings.ToLower(d.out.String()), "operation not permitted") {
			t.Errorf("no \"operation not permitted\" in the output:\n%s", d.out.String())
		}
	})
	if t.Failed() {
		return
	}

	d := startSandboxed(t, inT, setpriv, bin, conf, dir, unitCaps)
	d.waitFor(t, "now active and listening", 15*time.Second)

	// The daemon holds exactly the unit's capabilities and cannot gain more.
	status := procStatus(t, d.cmd.Process.Pid)
	for key, want := range map[string]uint64{"CapBnd": unitCapsMask, "CapEff": unitCapsMask, "CapPrm": unitCapsMask, "CapInh": 0, "CapAmb": 0} {
		got, err := strconv.ParseUint(status[key], 16, 64)
		if err != nil || got != want {
			t.Errorf("%s = %s, want %016x", key, status[key], want)
		}
	}
	if status["NoNewPrivs"] != "1" {
		t.Errorf("NoNewPrivs = %q, want 1", status["NoNewPrivs"])
	}

	scan := func(ports string) string {
		t.Helper()
		out, err := l.s.Command(nmap, "-n", "-Pn", "-sS", "-T4",
			"--max-retries", "1", "--initial-rtt-timeout", "100ms", "--max-rtt-timeout", "200ms", "--min-rate", "2000",
			"--host-timeout", "60s", "-p", ports, labTarget).CombinedOutput()
		if err != nil {
			t.Fatalf("nmap -sS -p %s: %v\n%s", ports, err, out)
		}
		return string(out)
	}
	scanFrom := "Scan from: [" + labScanner + "]"

	// A SYN to the port the service uses is service traffic (the service
	// check works with these capabilities).
	if out := scan("80"); !regexp.MustCompile(`(?m)^80/tcp\s+open`).MatchString(out) {
		t.Fatalf("before any scan, port 80 is not open:\n%s", out)
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(d.lines(scanFrom)); n != 0 {
		t.Fatalf("a SYN to the service port was taken for a scan:\n%s", d.out.String())
	}

	start := time.Now()
	scan("1-1024")
	t.Logf("nmap -sS -p 1-1024 took %v", time.Since(start).Round(time.Millisecond))
	d.waitFor(t, scanFrom, 10*time.Second)
	d.waitFor(t, "attackalert: Host "+labScanner+" has been blocked via nftables", 10*time.Second)
	if ls := d.lines(scanFrom); !strings.Contains(ls[0], "type: [TCP SYN/Normal scan]") {
		t.Errorf("first event %q, want a TCP SYN/Normal scan", ls[0])
	}
	if got := banned(t, inT, nft); !slices.Contains(got, netip.MustParseAddr(labScanner)) {
		t.Errorf("nft set ban4 holds %q, want the scanner %s", got, labScanner)
	}
	hist, err := os.ReadFile(filepath.Join(dir, "state", "portsentry.history"))
	if err != nil || !regexp.MustCompile(`Host: `+regexp.QuoteMeta(labScanner+"/"+labScanner)+` Port: \d+ TCP Blocked`).Match(hist) {
		t.Errorf("history (%v): %q, want a 1.2 block record for %s", err, hist, labScanner)
	}

	// Blocked for real: the service is out of the scanner's reach now.
	if out := scan("80"); !regexp.MustCompile(`(?m)^80/tcp\s+filtered`).MatchString(out) {
		t.Errorf("after the block port 80 is not filtered for the scanner:\n%s", out)
	}

	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
		if code := d.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("exit code %d after SIGTERM, want 0\n%s", code, d.out.String())
		}
	case <-time.After(5 * time.Second):
		t.Error("the daemon did not stop within 5 s of SIGTERM")
	}
	if t.Failed() {
		t.Logf("daemon output:\n%s", d.out.String())
	}
}

// capsLab is two network namespaces joined by a veth pair: t (the
// daemon's target) and s (the scanner). Nothing else is connected to them.
type capsLab struct{ t, s *netns.NS }

func newCapsLab(t *testing.T) *capsLab {
	t.Helper()
	l := &capsLab{t: lab.New(t, "t"), s: lab.New(t, "s")}
	netnstest.Pair(t,
		netns.Iface{NS: l.t, Name: "eth0", Addrs: netns.OnLink(netip.MustParseAddr(labTarget))},
		netns.Iface{NS: l.s, Name: "eth0", Addrs: netns.OnLink(netip.MustParseAddr(labScanner))})
	return l
}

func withStdin(cmd *exec.Cmd, s string) *exec.Cmd {
	cmd.Stdin = strings.NewReader(s)
	return cmd
}

// startService runs this test binary in helper mode as a TCP service on
// addr inside the target namespace, and waits until it listens.
func startService(t *testing.T, inT func(...string) *exec.Cmd, addr string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := inT(exe)
	cmd.Env = append(os.Environ(), helperEnv+"=listen", helperAddr+"="+addr)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "listening\n" {
		t.Fatalf("service on %s did not start: %q %v", addr, line, err)
	}
}

// writeConfig writes the test's portsentry.conf into dir/etc: advanced mode
// on both protocols, blocking through nft, files in dir/state, the control
// socket in dir/run (the unit's StateDirectory and RuntimeDirectory).
func writeConfig(t *testing.T, dir, nft string) string {
	t.Helper()
	for _, sub := range []string{"etc", "state", "run"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "etc", "portsentry.conf")
	body := fmt.Sprintf(`# test/pkg: the daemon under the unit's restrictions
TCP_MODE="atcp"
UDP_MODE="audp"
ADVANCED_PORTS_TCP="1024"
ADVANCED_PORTS_UDP="1024"
IGNORE_FILE="%[1]s/etc/portsentry.ignore"
HISTORY_FILE="%[1]s/state/portsentry.history"
BLOCKED_FILE="%[1]s/state/portsentry.blocked"
CONTROL_SOCKET="%[1]s/run/portsentry.sock"
BLOCK_TCP="1"
BLOCK_UDP="1"
BLOCKER="nftables"
BAN_FILE="%[1]s/state/portsentry.bans"
SCAN_TRIGGER="0"
`, dir)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "portsentry.ignore"), []byte("127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return conf
}

// sandboxScript builds the unit's file-system view in a private mount
// namespace, then execs setpriv with the bounding set. $1 is the writable
// state directory, $2 the runtime directory, $3 setpriv's capability list,
// then the command.
const sandboxScript = `set -e
state=$1 run=$2 caps=$3
shift 3
# StateDirectory, RuntimeDirectory: these stay writable...
mount --bind "$state" "$state"
mount --bind "$run" "$run"
# ...and so do /tmp and /var/tmp (PrivateTmp=yes gives the service private,
# writable ones; KILL_ROUTE commands are run through a script file there)...
for d in /tmp /var/tmp; do
	if [ -d "$d" ]; then mount --bind "$d" "$d"; fi
done
# ...ProtectSystem=strict: every other mount read-only, but the API file
# systems.
awk '{print $2}' /proc/self/mounts | sort -u | while read -r mp; do
	case $mp in
	/proc|/proc/*|/sys|/sys/*|/dev|/dev/*|/tmp|/var/tmp|"$state"|"$run") ;;
	*) mount -o remount,bind,ro "$mp" 2>/dev/null || true ;;
	esac
done
if touch /.pspkg-rw-probe 2>/dev/null; then
	rm -f /.pspkg-rw-probe
	echo "sandbox: / is still writable" >&2
	exit 99
fi
exec setpriv --bounding-set "-all,$caps" --inh-caps=-all --ambient-caps=-all --no-new-privs -- "$@"
`

// sandboxed is a daemon started by startSandboxed.
type sandboxed struct {
	cmd  *exec.Cmd
	out  syncbuf.Buffer
	done chan struct{}
}

func startSandboxed(t *testing.T, inT func(...string) *exec.Cmd, setpriv, bin, conf, dir, caps string) *sandboxed {
	t.Helper()
	_ = setpriv // found by requireTool; the script runs it by name
	d := &sandboxed{done: make(chan struct{})}
	d.cmd = inT("unshare", "--mount", "--propagation", "private", "--",
		"/bin/sh", "-c", sandboxScript, "sandbox",
		filepath.Join(dir, "state"), filepath.Join(dir, "run"), caps,
		bin, "-c", conf)
	d.cmd.Stdout, d.cmd.Stderr = &d.out, &d.out
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	d.cmd.WaitDelay = 2 * time.Second
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
			<-d.done
		}
	})
	return d
}

// lines returns the output lines that contain sub.
func (d *sandboxed) lines(sub string) []string {
	var out []string
	for _, l := range strings.Split(d.out.String(), "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}

func (d *sandboxed) waitFor(t *testing.T, sub string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for len(d.lines(sub)) == 0 {
		select {
		case <-d.done:
			if len(d.lines(sub)) > 0 {
				return
			}
			t.Fatalf("the daemon exited (%v) before logging %q:\n%s", d.cmd.ProcessState, sub, d.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v the daemon had not logged %q:\n%s", timeout, sub, d.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// procStatus returns the fields of /proc/PID/status.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	if !strings.HasSuffix(m["Name"], "portsentry") {
		t.Fatalf("PID %d is %q, not the daemon", pid, m["Name"])
	}
	return m
}

// banned lists the members of the target's ban4 set.
func banned(t *testing.T, inT func(...string) *exec.Cmd, nft string) []netip.Addr {
	t.Helper()
	out, err := inT(nft, "-j", "list", "set", "inet", "portsentry", "ban4").Output()
	if err != nil {
		t.Fatalf("nft list set: %v", err)
	}
	elems, err := nftset.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	return nftset.Addrs(elems)
}

// TestRefusesUnwritableFiles: under the unit's read-only file system, a
// daemon whose EVENT_LOG lies where it cannot write refuses to start, with
// exit code 2 (which the unit does not restart) and the line, key and
// cause, instead of starting and failing later; `portsentry check` against
// the packaged unit says so beforehand, from outside the sandbox.
func TestRefusesUnwritableFiles(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	setpriv := requireTool(t, "setpriv", "util-linux")
	requireTool(t, "unshare", "util-linux")
	_, root := builtDeb(t)
	bin := filepath.Join(root, "usr/sbin/portsentry")
	unit := filepath.Join(root, "usr/lib/systemd/system/portsentry.service")

	dir := t.TempDir()
	conf := writeConfig(t, dir, "nft")
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// /var/log is read-only under the unit (and in the sandbox below);
	// the directory is never created, the daemon stops before.
	const eventLog = "/var/log/pspkg-unwritable/events.jsonl"
	fmt.Fprintf(f, "EVENT_LOG=%q\n", eventLog)
	f.Close()
	lines := len(strings.Split(strings.TrimSpace(readFile(t, conf)), "\n"))
	where := fmt.Sprintf("%s:%d: EVENT_LOG: %s: ", conf, lines, eventLog)

	out, err := commandErr(nil, bin, "check", "-c", conf, "-unit", unit)
	if code := exitCode(err); code != 2 || !strings.Contains(out, where+"/var/log/pspkg-unwritable is read-only under portsentry.service (ProtectSystem=strict)") {
		t.Errorf("portsentry check -unit: exit %d, want 2 and the read-only directory named:\n%s", code, out)
	}

	plain := func(args ...string) *exec.Cmd { return exec.Command(args[0], args[1:]...) }
	d := startSandboxed(t, plain, setpriv, bin, conf, dir, unitCaps)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("the daemon runs with an unwritable EVENT_LOG:\n%s", d.out.String())
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 2 {
		t.Errorf("exit code %d, want 2 (a configuration error: not restarted)", code)
	}
	if !strings.Contains(d.out.String(), where+"/var/log is not writable: read-only file system") {
		t.Errorf("the daemon's output does not name the line, the key and the cause:\n%s", d.out.String())
	}
	if strings.Contains(d.out.String(), "now active and listening") {
		t.Errorf("the daemon started:\n%s", d.out.String())
	}
	if _, err := os.Stat(filepath.Dir(eventLog)); err == nil {
		t.Errorf("%s was created outside the sandbox", filepath.Dir(eventLog))
		os.RemoveAll(filepath.Dir(eventLog))
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// exitCode is the exit code of a command's error (0 for nil).
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
