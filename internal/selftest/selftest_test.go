package selftest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// run runs the self-test on a fake with the test binary standing in for
// portsentry (it only has to be an executable file).
func run(t *testing.T, f *fakeSystem, opts Options) (*Report, string) {
	t.Helper()
	var out bytes.Buffer
	if opts.Binary == "" {
		opts.Binary = os.Args[0]
	}
	if opts.TempRoot == "" {
		opts.TempRoot = t.TempDir()
	}
	opts.Out = &out
	rep := Run(context.Background(), f, opts)
	if left := f.liveNames(); len(left) > 0 && f.removeErr == nil {
		t.Errorf("namespaces left behind: %v", left)
	}
	if f.daemon != nil && !f.daemon.exited() {
		t.Error("the daemon still runs after Run returned")
	}
	if rep.TempDir != "" && !opts.Keep {
		if _, err := os.Stat(rep.TempDir); !os.IsNotExist(err) {
			t.Errorf("temporary directory %s left behind (%v)", rep.TempDir, err)
		}
	}
	return rep, out.String()
}

// want checks one result's status and that its detail and remedy contain
// the given words.
func want(t *testing.T, rep *Report, name string, st Status, detail, remedy string) Result {
	t.Helper()
	res, ok := rep.Find(name)
	if !ok {
		t.Fatalf("no %q on the checklist", name)
	}
	if res.Status != st {
		t.Errorf("%s: %s (%s), want %s", name, res.Status, res.Detail, st)
	}
	if !strings.Contains(res.Detail, detail) {
		t.Errorf("%s: detail %q, want it to contain %q", name, res.Detail, detail)
	}
	if !strings.Contains(res.Remedy, remedy) {
		t.Errorf("%s: remedy %q, want it to contain %q", name, res.Remedy, remedy)
	}
	return res
}

func allFamilyChecks() []string {
	var out []string
	for _, fam := range []string{"IPv4", "IPv6"} {
		c := FamilyChecks(fam)
		out = append(out, c[:]...)
	}
	return out
}

func TestAllWorking(t *testing.T) {
	f := newFake()
	f.status = "Version: 2\nBlocker:         nftables\nBans cover:      input and forward: this host's services; it forwards nothing now\n"
	rep, out := run(t, f, Options{})
	if !rep.Passed() {
		t.Fatalf("failed:\n%s", out)
	}
	for _, res := range rep.Results {
		if res.Status != OK && res.Status != Info {
			t.Errorf("%s: %s %s", res.Name, res.Status, res.Detail)
		}
	}
	want(t, rep, FamilyChecks("IPv4")[1], OK, "attackalert: TCP SYN/Normal scan from host: 10.239.0.2/10.239.0.2 to TCP port: 143", "")
	want(t, rep, FamilyChecks("IPv4")[2], OK, "Host 10.239.0.2 has been blocked", "")
	want(t, rep, FamilyChecks("IPv4")[3], OK, "no answer (timed out)", "")
	want(t, rep, FamilyChecks("IPv6")[2], OK, "Host fd00:239::2 has been blocked", "")
	want(t, rep, CheckConfig, OK, "BLOCKER=auto, else nft (KILL_ROUTE)", "")
	want(t, rep, "clean-up", OK, "daemon", "")
	want(t, rep, CheckForwarding, Info, "off: every way in is the input path", "")
	want(t, rep, CheckCoverage, Info, "with nftables: input and forward: this host's services", "")
	if !f.daemon.stopped {
		t.Error("the daemon was not stopped")
	}
	// Three namespaces: the kernel checks', T and S; all gone (run checks).
	if len(f.created) != 3 {
		t.Errorf("created %v, want 3 namespaces", f.created)
	}
	// The configuration: advanced mode's blocking, files in the temp dir,
	// never the system's control socket.
	for _, l := range []string{`SCAN_TRIGGER="0"`, `BLOCK_TCP="1"`, `BLOCK_UDP="1"`, `BLOCKER="auto"`,
		`KILL_ROUTE="/usr/sbin/nft add rule inet portsentry_selftest input ip saddr $TARGET$ drop"`,
		`KILL_ROUTE6="/usr/sbin/nft add rule inet portsentry_selftest input ip6 saddr $TARGET$ drop"`,
		`CONTROL_SOCKET="` + rep.TempDir} {
		if !strings.Contains(f.conf, l) {
			t.Errorf("configuration lacks %s:\n%s", l, f.conf)
		}
	}
	// Header lines per section, results in checklist order.
	for _, s := range []string{SectionKernel, SectionE2E, SectionEnd} {
		if strings.Count(out, s+"\n") != 1 {
			t.Errorf("section %q not printed once:\n%s", s, out)
		}
	}
	if i, j := strings.Index(out, "probe detected (IPv4)"), strings.Index(out, "probe detected (IPv6)"); i < 0 || j < i {
		t.Errorf("checklist out of order:\n%s", out)
	}
}

// TestForwardingHost: on a host that forwards (a router, a container
// host) the checklist says so, and what the daemon's bans cover; a
// binary whose status does not say is reported as such.
func TestForwardingHost(t *testing.T) {
	f := newFake()
	f.forwards4 = true
	f.status = "Blocker: iptables\n"
	rep, _ := run(t, f, Options{})
	want(t, rep, CheckForwarding, Info, "this host forwards IPv4 (net.ipv4.ip_forward=1): a router or a container host", "")
	want(t, rep, CheckCoverage, Info, "not reported by this binary", "")
	f = newFake()
	rep, _ = run(t, f, Options{})
	want(t, rep, CheckCoverage, Info, "the daemon is not running", "")
}

// TestMissingNFTSocket: an optional kernel feature is missing. The report
// names it with the remedy, and the self-test still passes.
func TestMissingNFTSocket(t *testing.T) {
	f := newFake()
	f.missing[NFTSocket] = fmt.Errorf("netlink receive: %w (the kernel lacks the module)", syscall.ENOENT)
	rep, out := run(t, f, Options{})
	want(t, rep, "nft socket expression", Warn, "no such file or directory", "modprobe nft_socket")
	if !strings.Contains(out, "[WARN] nft socket expression: netlink receive: no such file or directory") ||
		!strings.Contains(out, "remedy: modprobe nft_socket") {
		t.Errorf("checklist does not name the missing module:\n%s", out)
	}
	if !rep.Passed() {
		t.Errorf("an optional feature failed the self-test:\n%s", out)
	}
	if !strings.Contains(rep.Summary(), "1 warnings") {
		t.Errorf("summary %q does not count the warning", rep.Summary())
	}
}

// TestMissingRequired: without packet sockets nothing can be detected: the
// self-test fails, says why and what to do, and does not start the daemon.
func TestMissingRequired(t *testing.T) {
	for _, tc := range []struct {
		f      Feature
		name   string
		remedy string
	}{
		{PacketSocket, "packet socket (AF_PACKET)", "modprobe af_packet"},
		{SocketFilter, "classic BPF socket filter (SO_ATTACH_FILTER)", "socket filters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.missing[tc.f] = syscall.EAFNOSUPPORT
			rep, out := run(t, f, Options{})
			want(t, rep, tc.name, Fail, "address family not supported", tc.remedy)
			want(t, rep, "end to end", Skip, "fix the failed checks above first", "")
			if rep.Passed() {
				t.Error("passed")
			}
			if f.daemon != nil {
				t.Error("the daemon was started")
			}
			if !strings.Contains(out, "[FAIL] "+tc.name) {
				t.Errorf("checklist:\n%s", out)
			}
		})
	}
	f := newFake()
	f.missing[PacketSocket] = syscall.EAFNOSUPPORT
	rep, _ := run(t, f, Options{})
	want(t, rep, "classic BPF socket filter (SO_ATTACH_FILTER)", Skip, "needs packet socket (AF_PACKET)", "")
}

func TestNoNFTables(t *testing.T) {
	f := newFake()
	f.missing[NFTables] = fmt.Errorf("%w (no nf_tables in this kernel)", syscall.EPROTONOSUPPORT)
	rep, _ := run(t, f, Options{})
	want(t, rep, "nftables over netlink", Warn, "no nf_tables", "modprobe nf_tables")
	for _, n := range []string{"nft socket expression", "nft ct expression", "nft fib expression", "nft sets with timeouts"} {
		want(t, rep, n, Skip, "needs nftables over netlink", "")
	}
	if !rep.Passed() {
		t.Error("nftables is optional (iptables, route, KILL_ROUTE)")
	}
}

func TestSockDiagMissing(t *testing.T) {
	f := newFake()
	f.missing[SockDiag] = errors.New("a TCP socket bound to port 4242 was not seen: sock_diag did not answer, /proc/net did")
	rep, _ := run(t, f, Options{})
	want(t, rep, "service check (sock_diag)", Warn, "was not seen", "modprobe inet_diag tcp_diag udp_diag")
}

func TestNotRoot(t *testing.T) {
	f := newFake()
	f.privErr = errors.New("uid 1000 missing CAP_SYS_ADMIN (to create network namespaces)")
	rep, out := run(t, f, Options{})
	want(t, rep, "privileges", Fail, "CAP_SYS_ADMIN", "sudo portsentry selftest")
	want(t, rep, "packet socket (AF_PACKET)", Skip, "needs the privileges above", "")
	want(t, rep, "end to end", Skip, "", "")
	if len(f.created) != 0 {
		t.Errorf("created namespaces %v without privileges", f.created)
	}
	if rep.Passed() {
		t.Errorf("passed:\n%s", out)
	}
}

func TestNoNamespaces(t *testing.T) {
	f := newFake()
	f.netnsErr = syscall.EPERM
	rep, _ := run(t, f, Options{})
	want(t, rep, "network namespaces", Fail, "operation not permitted", "CONFIG_NET_NS")
	want(t, rep, "nftables over netlink", Skip, "needs a network namespace", "")
}

// TestUnknownKeysLeftOut: an older binary does not know the newer keys;
// they are left out and said so.
func TestUnknownKeysLeftOut(t *testing.T) {
	f := newFake()
	f.unknownKeys["BAN_FILE"] = true
	f.unknownKeys["CONTROL_SOCKET"] = true
	rep, _ := run(t, f, Options{})
	want(t, rep, CheckConfig, OK, "left out BAN_FILE, CONTROL_SOCKET (unknown to this binary)", "")
	if strings.Contains(f.conf, "BAN_FILE") || strings.Contains(f.conf, "CONTROL_SOCKET") {
		t.Errorf("unknown keys still in the configuration:\n%s", f.conf)
	}
	if !rep.Passed() {
		t.Error("failed")
	}
}

// TestBlockCommandFallbacks: without nft, iptables; without either, ip
// route; without any and without BLOCKER, no way to block.
func TestBlockCommandFallbacks(t *testing.T) {
	for _, tc := range []struct {
		missing []string
		noBlk   bool
		route   string
		detail  string
	}{
		{[]string{"nft"}, false, `KILL_ROUTE="/usr/sbin/iptables -I INPUT -s $TARGET$ -j DROP"`, "BLOCKER=auto, else iptables (KILL_ROUTE)"},
		{[]string{"nft", "iptables"}, false, `KILL_ROUTE="/usr/sbin/ip route add blackhole $TARGET$"`, "else ip route blackhole"},
		{[]string{"nft", "iptables", "ip"}, false, "", "blocking with BLOCKER=auto"},
		{[]string{"iptables"}, true, `KILL_ROUTE="/usr/sbin/nft add rule`, "blocking with nft (KILL_ROUTE)"},
	} {
		t.Run(strings.Join(tc.missing, ","), func(t *testing.T) {
			f := newFake()
			for _, m := range tc.missing {
				f.noTools[m] = true
			}
			if tc.noBlk {
				f.unknownKeys["BLOCKER"] = true
			}
			rep, _ := run(t, f, Options{})
			want(t, rep, CheckConfig, OK, tc.detail, "")
			if tc.route != "" && !strings.Contains(f.conf, tc.route) {
				t.Errorf("configuration lacks %s:\n%s", tc.route, f.conf)
			}
			if tc.route == "" && strings.Contains(f.conf, "KILL_ROUTE") {
				t.Errorf("KILL_ROUTE without a tool:\n%s", f.conf)
			}
		})
	}
	f := newFake()
	for _, m := range []string{"nft", "iptables", "ip"} {
		f.noTools[m] = true
	}
	f.unknownKeys["BLOCKER"] = true
	rep, _ := run(t, f, Options{})
	want(t, rep, CheckConfig, Fail, "no way to block", "apt-get install nftables")
	want(t, rep, CheckDaemon, Skip, "needs a configuration", "")
	if f.daemon != nil {
		t.Error("the daemon was started")
	}
}

func TestConfigRefused(t *testing.T) {
	f := newFake()
	f.unknownKeys["SCAN_TRIGGER"] = true
	rep, _ := run(t, f, Options{})
	want(t, rep, CheckConfig, Fail, `unknown key "SCAN_TRIGGER"`, "portsentry check must accept")
}

func TestDaemonExits(t *testing.T) {
	f := newFake()
	f.daemonExits = true
	rep, _ := run(t, f, Options{})
	want(t, rep, CheckDaemon, Fail, "the daemon exited (exit status 1)", "daemon log")
	for _, n := range allFamilyChecks() {
		want(t, rep, n, Skip, "needs the daemon", "")
	}
	if !strings.Contains(rep.DaemonLog, "cannot open packet socket") {
		t.Errorf("daemon log %q", rep.DaemonLog)
	}
}

// shortWaits makes the waits for lines that will never come short.
func shortWaits(t *testing.T) {
	old := detectWait
	detectWait = 300 * time.Millisecond
	t.Cleanup(func() { detectWait = old })
}

func TestNotDetected(t *testing.T) {
	shortWaits(t)
	f := newFake()
	f.noDetect = true
	start := time.Now()
	rep, _ := run(t, f, Options{})
	c := FamilyChecks("IPv4")
	want(t, rep, c[0], OK, "read the service's greeting", "")
	want(t, rep, c[1], Fail, "TCP SYN 10.239.0.2 → 10.239.0.1:143 (refused); no attackalert: no such line within 300ms", "see the daemon log")
	want(t, rep, c[2], Skip, "needs the probe detected", "")
	want(t, rep, c[3], Skip, "needs the probe detected", "")
	want(t, rep, FamilyChecks("IPv6")[1], Fail, "fd00:239::2", "")
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestNotBlocked(t *testing.T) {
	shortWaits(t)
	f := newFake()
	f.noBlock = true
	rep, _ := run(t, f, Options{})
	c := FamilyChecks("IPv4")
	want(t, rep, c[1], OK, "attackalert:", "")
	res := want(t, rep, c[2], Fail, "attackalert: ERROR: Host 10.239.0.2 was NOT blocked", "attackalert: ERROR")
	if !strings.Contains(res.Detail, "dropped route for host 10.239.0.2 failed") {
		t.Errorf("detail %q does not quote the failing command's line", res.Detail)
	}
	want(t, rep, c[3], Skip, "needs the scanner blocked", "")
}

func TestBlockDoesNotHold(t *testing.T) {
	f := newFake()
	f.blockLeaks = true
	rep, _ := run(t, f, Options{})
	want(t, rep, FamilyChecks("IPv4")[2], OK, "has been blocked", "")
	want(t, rep, FamilyChecks("IPv4")[3], Fail, "connected after the block", "KILL_ROUTE")
	want(t, rep, FamilyChecks("IPv6")[3], Fail, "connected after the block", "")
}

// TestNoIPv6: a kernel with IPv6 off runs the IPv4 checks and skips the
// IPv6 ones, with a warning; that is not a failure.
func TestNoIPv6(t *testing.T) {
	f := newFake()
	f.noIPv6 = true
	rep, out := run(t, f, Options{})
	want(t, rep, CheckNetwork, Warn, "IPv6 is turned off", "ipv6.disable=1")
	for _, n := range FamilyChecks("IPv4") {
		want(t, rep, n, OK, "", "")
	}
	for _, n := range FamilyChecks("IPv6") {
		want(t, rep, n, Skip, "IPv6 is turned off", "")
	}
	if !rep.Passed() {
		t.Errorf("failed:\n%s", out)
	}
}

func TestServiceReported(t *testing.T) {
	f := newFake()
	f.serviceAlert = true
	rep, _ := run(t, f, Options{})
	want(t, rep, CheckServiceQuiet, Fail, "to TCP port: 80", "sock_diag")
}

// TestTimeout: a daemon that never gets ready runs into -timeout; the
// checklist is complete and everything is removed.
func TestTimeout(t *testing.T) {
	f := newFake()
	f.neverReady = true
	start := time.Now()
	rep, _ := run(t, f, Options{Timeout: 300 * time.Millisecond})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v with a 300ms timeout", d)
	}
	want(t, rep, CheckDaemon, Fail, "time ran out (-timeout)", "")
	want(t, rep, "clean-up", OK, "", "")
}

// TestCancel: the context is cancelled (SIGINT) during the run.
func TestCancel(t *testing.T) {
	f := newFake()
	f.neverReady = true
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	rep := Run(ctx, f, Options{Binary: os.Args[0], TempRoot: t.TempDir()})
	want(t, rep, CheckDaemon, Fail, "interrupted", "")
	if left := f.liveNames(); len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
	}
	if !f.daemon.stopped {
		t.Error("daemon not stopped")
	}
}

func TestCleanupFailure(t *testing.T) {
	f := newFake()
	f.removeErr = errors.New("device or resource busy")
	rep, _ := run(t, f, Options{})
	want(t, rep, "clean-up", Fail, "device or resource busy", "ip netns delete")
	if rep.Passed() {
		t.Error("a failed clean-up passed")
	}
}

func TestKeep(t *testing.T) {
	f := newFake()
	rep, _ := run(t, f, Options{Keep: true})
	if _, err := os.Stat(filepath.Join(rep.TempDir, "portsentry.conf")); err != nil {
		t.Errorf("-keep: %v", err)
	}
	if _, err := os.Stat(filepath.Join(rep.TempDir, "daemon.log")); err != nil {
		t.Errorf("-keep: %v", err)
	}
	want(t, rep, "clean-up", OK, "kept "+rep.TempDir, "")
}

func TestBadBinary(t *testing.T) {
	f := newFake()
	rep, _ := run(t, f, Options{Binary: filepath.Join(t.TempDir(), "nope")})
	want(t, rep, CheckBinary, Fail, "no such file", "-bin")
	want(t, rep, CheckNetwork, Skip, "needs the binary", "")
}

func TestMainCommand(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  []string // in stdout
		err  string   // in stderr
		fake func(*fakeSystem)
	}{
		{args: []string{"-bin", os.Args[0]}, code: ExitPass, out: []string{"PASS: detection and blocking work on this host", "[ OK ] block holds (IPv6)"}},
		{args: []string{"-bin", os.Args[0], "-v"}, code: ExitPass, out: []string{"Daemon log:\n    ", "has been blocked"}},
		{args: []string{"-bin", os.Args[0]}, code: ExitFail, out: []string{"FAIL: ", "Daemon log (last 40 lines; -v prints all):", "now active and listening"},
			fake: func(f *fakeSystem) { f.noDetect = true }},
		{args: []string{"-bin", os.Args[0]}, code: ExitFail, out: []string{"remedy: modprobe af_packet"},
			fake: func(f *fakeSystem) { f.missing[PacketSocket] = syscall.EAFNOSUPPORT }},
		// Usage errors: one line on stderr with a pointer to the help.
		{args: []string{"-nope"}, code: ExitUsage, err: "portsentry selftest: flag provided but not defined: -nope (see 'portsentry help selftest')\n"},
		{args: []string{"extra"}, code: ExitUsage, err: "portsentry selftest: unexpected argument \"extra\" (see 'portsentry help selftest')\n"},
		{args: []string{"-timeout", "0s"}, code: ExitUsage, err: "portsentry selftest: -timeout must be positive (see 'portsentry help selftest')\n"},
		// The help goes to stdout.
		{args: []string{"-h"}, code: ExitPass, out: []string{"Usage: portsentry selftest", "-keep"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			shortWaits(t)
			f := newFake()
			if tc.fake != nil {
				tc.fake(f)
			}
			t.Setenv("TMPDIR", t.TempDir())
			var stdout, stderr bytes.Buffer
			code := mainWith(context.Background(), f, tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s%s", code, tc.code, stdout.String(), stderr.String())
			}
			for _, s := range tc.out {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout.String())
				}
			}
			if tc.code == ExitUsage && stderr.String() != tc.err {
				t.Errorf("stderr %q, want %q", stderr.String(), tc.err)
			}
		})
	}
}

func TestWriteResult(t *testing.T) {
	var b bytes.Buffer
	WriteResult(&b, Result{Name: "nft socket expression", Status: Warn, Detail: "no such file or directory", Remedy: "modprobe nft_socket"})
	WriteResult(&b, Result{Name: "privileges", Status: OK, Detail: "root"})
	WriteResult(&b, Result{Name: "end to end", Status: Skip})
	want := "  [WARN] nft socket expression: no such file or directory\n" +
		"         remedy: modprobe nft_socket\n" +
		"  [ OK ] privileges: root\n" +
		"  [SKIP] end to end\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestRefusedLine(t *testing.T) {
	lines := []confLine{{key: "A", val: "1"}, {key: "EMPTY"}, {key: "B", val: "2", optional: true}, {key: "C", val: "3"}}
	conf := "/tmp/x/portsentry.conf"
	for _, tc := range []struct {
		out  string
		want int
	}{
		{"portsentry: /tmp/x/portsentry.conf:2: unknown key \"A\"", 0},
		{"portsentry: /tmp/x/portsentry.conf:3: unknown key \"B\" (did you mean C?)", 2},
		{"portsentry: /tmp/x/portsentry.conf:4: C: invalid value", 3},
		{"portsentry: B is not known", 2},
		{"portsentry: something else", -1},
	} {
		if got := refusedLine(tc.out, conf, lines); got != tc.want {
			t.Errorf("refusedLine(%q) = %d, want %d", tc.out, got, tc.want)
		}
	}
}

func TestTrimStamp(t *testing.T) {
	for in, want := range map[string]string{
		"2026-03-01T10:11:12.345+0100 attackalert: x": "attackalert: x",
		"attackalert: x":      "attackalert: x",
		"portsentry: bad: it": "portsentry: bad: it",
	} {
		if got := trimStamp(in); got != want {
			t.Errorf("trimStamp(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTail(t *testing.T) {
	if got := Tail("a\nb\nc\n", 2); got != "b\nc" {
		t.Errorf("Tail = %q", got)
	}
	if got := Tail("a\n", 5); got != "a" {
		t.Errorf("Tail = %q", got)
	}
}
