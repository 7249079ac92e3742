package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/test/internal/nftset"
)

// The stealth and advanced modes against real traffic: the real binary in
// the target namespace T, which runs real services (a TCP one on 80 and a
// UDP one on 53, started before the daemon), real nmap scans from S, and
// blocks that are real: KILL_ROUTE adds the scanner to an nftables set in T
// whose members are dropped, and appends to actions.log so that each run of
// the command can be counted.

// The services T runs in every stealth lab.
const (
	stWebPort  = 80
	stDNSPort  = 53
	stWebReply = "HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\npse2e web\n"
	stDNSReply = "pse2e dns answer\n"
)

// Ports 1.2's advanced mode never watches by default (ADVANCED_EXCLUDE_*).
var (
	stExcludedTCP = []int{113, 139}
	stExcludedUDP = []int{67, 137, 138, 520}
)

// Port lists of the advanced-mode scans: the service, excluded ports, and
// free ports below ADVANCED_PORTS_* (1024).
const (
	stTCPScan = "1-12,21-23,25,80,113,139,143,443,700,1000,1023"
	stUDPScan = "53,67,69,111,137,161,500,1000"
)

// stRuleset is T's firewall: members of ban4/ban6 are dropped before any
// socket sees them. One statement per line, as nft -f reads it.
const stRuleset = `table inet lab {
	set ban4 { type ipv4_addr; }
	set ban6 { type ipv6_addr; }
	chain input {
		type filter hook input priority -10;
		ip saddr @ban4 drop
		ip6 saddr @ban6 drop
	}
}
`

// stLab is a lab whose target runs the two services and a stealth or
// advanced-mode daemon whose blocks are real: members of the nftables sets
// ban4 and ban6 in T are dropped. Either KILL_ROUTE adds the scanner to
// the sets of the lab's own table, inet lab (newStLab), or the daemon's
// native blocker and its kernel trap ban it in the daemon's table, inet
// portsentry (newKLab, kernel_test.go).
type stLab struct {
	*lab
	c     *config
	conf  string // the config file the daemon runs on
	flags []string
	d     *daemon
	nft   string
	nmap  string
	start time.Time
	modes map[string]string // "tcp"/"udp" → what $MODE$ expands to
	table string            // the table holding ban4 and ban6: labTable or nativeTable
}

// The tables that hold a lab's ban sets.
const (
	labTable    = "lab"        // the lab's own (stRuleset), filled by KILL_ROUTE
	nativeTable = "portsentry" // the native blocker's
)

// newStLab builds the lab, the firewall and the services, writes the config
// (KILL_ROUTE and KILL_ROUTE6 add to the lab's sets; edit may change it)
// and starts the daemon with flags.
func newStLab(t *testing.T, flags []string, edit func(*config)) *stLab {
	t.Helper()
	s := newStBase(t, flags, labTable)
	s.nftExec(t, stRuleset, "-f", "-")
	s.c.set("KILL_ROUTE", s.nft+" add element inet lab ban4 { $TARGET$ } && /bin/echo route $TARGET$ $PORT$ $MODE$ >> "+s.c.path("actions.log"))
	s.c.set("KILL_ROUTE6", s.nft+" add element inet lab ban6 { $TARGET$ } && /bin/echo route $TARGET$ $PORT$ $MODE$ >> "+s.c.path("actions.log"))
	s.run(t, edit)
	return s
}

// newStBase builds the lab and T's services, and makes the standard
// config; table is where the bans will be.
func newStBase(t *testing.T, flags []string, table string) *stLab {
	t.Helper()
	s := &stLab{
		nft:   requireTool(t, "nft", "nftables"),
		nmap:  requireTool(t, "nmap", "nmap"),
		start: time.Now(),
		flags: flags,
		modes: stModes(flags),
		table: table,
	}
	s.lab = newLab(t)
	startListener(t, s.T, "tcp", fmt.Sprintf(":%d", stWebPort), stWebReply)
	startListener(t, s.T, "udp", fmt.Sprintf(":%d", stDNSPort), stDNSReply)
	s.c = newConfig(t)
	return s
}

// run lets edit change the config, writes it and starts the daemon.
func (s *stLab) run(t *testing.T, edit func(*config)) {
	t.Helper()
	if edit != nil {
		edit(s.c)
	}
	s.conf = s.c.write(t)
	s.d = s.startDaemon(t)
}

// startDaemon starts (or restarts) the daemon on the lab's config; with
// the native blocker it checks that the daemon set the kernel trap.
func (s *stLab) startDaemon(t *testing.T) *daemon {
	t.Helper()
	d := startDaemon(t, s.T.ns, s.conf, s.flags...)
	if s.table == nativeTable {
		if ls := d.lines("adminalert: kernel trap set on "); len(ls) != 1 {
			t.Fatalf("the daemon did not report its kernel trap: %q", ls)
		}
	}
	return d
}

// stModes is what $MODE$ expands to per protocol for these flags.
func stModes(flags []string) map[string]string {
	m := map[string]string{}
	for _, f := range flags {
		switch f {
		case "--stealth":
			m["tcp"], m["udp"] = "stealth", "stealth"
		case "-stcp", "-atcp":
			m["tcp"] = f[1:]
		case "-sudp", "-audp":
			m["udp"] = f[1:]
		}
	}
	return m
}

var stAdvanced = []string{"-atcp", "-audp"}

// nftExec runs nft in T with stdin.
func (s *stLab) nftExec(t *testing.T, stdin string, args ...string) []byte {
	t.Helper()
	cmd := s.T.ns.Command(s.nft, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nft %s in %s: %v\n%s", strings.Join(args, " "), s.T.ns, err, out)
	}
	return out
}

// banSet is the set of T's ban table that holds a.
func banSet(a netip.Addr) string {
	if a.Is6() {
		return "ban6"
	}
	return "ban4"
}

// set lists a set (ban4, ban6) of T's ban table.
func (s *stLab) set(t *testing.T, name string) []nftset.Elem {
	t.Helper()
	out := s.nftExec(t, "", "-j", "list", "set", "inet", s.table, name)
	elems, err := nftset.Parse(out)
	if err != nil {
		t.Fatalf("nft -j list set inet %s %s: %v\n%s", s.table, name, err, out)
	}
	return elems
}

// elem returns a's element of its ban set, if there is one.
func (s *stLab) elem(t *testing.T, a netip.Addr) (nftset.Elem, bool) {
	t.Helper()
	for _, e := range s.set(t, banSet(a)) {
		if e.Addr == a {
			return e, true
		}
	}
	return nftset.Elem{}, false
}

// assertBanned checks that T's ban sets hold exactly want (either family).
func (s *stLab) assertBanned(t *testing.T, want ...netip.Addr) {
	t.Helper()
	for _, set := range []string{"ban4", "ban6"} {
		var got, w []string
		for _, e := range s.set(t, set) {
			got = append(got, e.Addr.String())
		}
		for _, a := range want {
			if banSet(a) == set {
				w = append(w, a.String())
			}
		}
		slices.Sort(got)
		slices.Sort(w)
		if !slices.Equal(got, w) {
			t.Errorf("inet %s %s holds %q, want %q", s.table, set, got, w)
		}
	}
}

// waitGone waits until a is in neither ban set.
func (s *stLab) waitGone(t *testing.T, a netip.Addr, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if _, ok := s.elem(t, a); !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still in %s after %v", a, banSet(a), timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runNmap runs nmap in from's namespace, always with -n (no reverse DNS)
// and -Pn, fast timing and one retry; args add the scan type, ports and
// the target. It returns nmap's standard output.
func (s *stLab) runNmap(t *testing.T, from host, args ...string) []byte {
	t.Helper()
	cmd := from.ns.Command(s.nmap, append([]string{"-n", "-Pn", "-T4", "--max-retries", "1", "--host-timeout", "30s"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("nmap %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out
}

// scan runs nmap in S (runNmap) and returns its report.
func (s *stLab) scan(t *testing.T, args ...string) string {
	t.Helper()
	return string(s.runNmap(t, s.S, args...))
}

// messages returns the daemon's stdout lines containing sub, without their
// timestamp.
func (s *stLab) messages(sub string) []string {
	var out []string
	for _, l := range s.d.lines(sub) {
		if _, msg, ok := strings.Cut(l, " "); ok {
			out = append(out, msg)
		}
	}
	return out
}

// stScanLine is the "Scan from" line of a captured probe that blocked.
func stScanLine(src netip.Addr, proto string, port int, kind string) string {
	opts := "not set"
	if src.Is6() {
		opts = "unknown"
	}
	return fmt.Sprintf("Scan from: [%s] (%s) protocol: [%s] port: [%d] type: [%s] IP opts: [%s] ignored: [false] triggered: [true] noblock: [false] blocked: [true]",
		src, src, protoName(proto), port, kind, opts)
}

// stAlertLine is 1.2's attackalert line for a captured probe.
func stAlertLine(src netip.Addr, proto string, port int, kind string) string {
	if proto == "udp" {
		kind = "UDP scan"
	}
	return fmt.Sprintf("attackalert: %s from host: %s/%s to %s port: %d", kind, src, src, protoName(proto), port)
}

// stRouteCmd is KILL_ROUTE (KILL_ROUTE6) with the tokens replaced.
func (s *stLab) routeCmd(src netip.Addr, port int, mode string) string {
	set := "ban4"
	if src.Is6() {
		set = "ban6"
	}
	return fmt.Sprintf("%s add element inet lab %s { %s } && /bin/echo route %s %d %s >> %s", s.nft, set, src, src, port, mode, s.c.path("actions.log"))
}

// waitBlocked waits until the daemon reports a block of src and returns
// the port of the probe that triggered it.
func (s *stLab) waitBlocked(t *testing.T, src netip.Addr) int {
	t.Helper()
	ln := s.d.waitFor(t, "Scan from: ["+src.String()+"]", logWait)
	deadline := time.Now().Add(logWait)
	re := regexp.MustCompile(`Scan from: \[` + regexp.QuoteMeta(src.String()) + `\] .* port: \[(\d+)\] .*triggered: \[true\] noblock: \[false\] blocked: \[true\]$`)
	for {
		for _, l := range s.d.lines("Scan from: [" + src.String() + "]") {
			if m := re.FindStringSubmatch(l); m != nil {
				p, _ := strconv.Atoi(m[1])
				return p
			}
		}
		if time.Now().After(deadline) || s.d.exited() {
			t.Fatalf("no Scan from line reporting a block of %s after %v; first line about it: %q", src, logWait, ln)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// assertBlockedOnce checks everything one blocked source leaves behind:
// exactly one triggering Scan from line (type, IP opts and flags exact),
// one attackalert line, the block itself (assertBlockAction), one 1.2
// history line; ports lists the ports the trigger may be on. It returns
// the port. Checking the ban set is left to the caller, who knows every
// source blocked in the lab.
func (s *stLab) assertBlockedOnce(t *testing.T, src netip.Addr, proto, kind string, ports []int) int {
	t.Helper()
	port := s.waitBlocked(t, src)
	if s.table == nativeTable {
		s.d.waitFor(t, nativeLine(src, "permanently"), logWait)
	}
	time.Sleep(settle)
	if len(ports) > 0 && !slices.Contains(ports, port) {
		t.Errorf("%s blocked on port %d, which is not a port it probed (%v)", src, port, ports)
	}
	want := stScanLine(src, proto, port, kind)
	trig := s.messages("Scan from: [" + src.String() + "]")
	trig = slices.DeleteFunc(trig, func(m string) bool { return !strings.Contains(m, "triggered: [true]") })
	if len(trig) != 1 || trig[0] != want {
		t.Errorf("triggering Scan from lines for %s:\n  %q\nwant exactly\n  %q", src, trig, want)
	}
	alerts := s.messages(fmt.Sprintf(" from host: %s/%s to ", src, src))
	if wantA := stAlertLine(src, proto, port, kind); len(alerts) != 1 || alerts[0] != wantA {
		t.Errorf("attackalert lines for %s: %q, want exactly %q", src, alerts, wantA)
	}
	s.assertBlockAction(t, src, proto, port)
	var hist []string
	for _, h := range fileLines(t, s.c.path("portsentry.history")) {
		if strings.Contains(h, " Host: "+src.String()+"/") {
			hist = append(hist, h)
		}
	}
	if len(hist) != 1 {
		t.Errorf("history lines for %s: %q, want one", src, hist)
	} else {
		assertHistory12(t, hist[0], src, port, proto, s.start)
	}
	return port
}

// assertBlockAction checks how src was blocked: by the native blocker,
// exactly one "blocked via nftables permanently" line (BAN_TIME 0, the
// default); by KILL_ROUTE, its route line and exactly one run of it.
func (s *stLab) assertBlockAction(t *testing.T, src netip.Addr, proto string, port int) {
	t.Helper()
	if s.table == nativeTable {
		if got := s.messages(fmt.Sprintf("attackalert: Host %s has been blocked via nftables", src)); len(got) != 1 || !strings.HasPrefix(got[0], nativeLine(src, "permanently")) {
			t.Errorf("nftables block lines for %s: %q, want exactly one starting %q", src, got, nativeLine(src, "permanently"))
		}
		return
	}
	mode := s.modes[proto]
	if got := s.messages(routeLine(src, s.routeCmd(src, port, mode))); len(got) != 1 {
		t.Errorf("want one line %q, have %q", routeLine(src, s.routeCmd(src, port, mode)), s.messages("dropped route"))
	}
	var runs []string
	for _, r := range fileLines(t, s.c.path("actions.log")) {
		if strings.HasPrefix(r, "route "+src.String()+" ") {
			runs = append(runs, r)
		}
	}
	if w := routeRecord(src, port, mode); len(runs) != 1 || runs[0] != w {
		t.Errorf("KILL_ROUTE ran for %s as %q, want exactly once as %q", src, runs, w)
	}
}

// assertServicesQuiet checks that no probe of a running service port (80
// TCP, 53 UDP) nor of an ADVANCED_EXCLUDE_* port was reported, whoever sent
// it: no Scan from line and no attackalert line names one.
func (s *stLab) assertServicesQuiet(t *testing.T) {
	t.Helper()
	quiet := map[string][]int{"TCP": append([]int{stWebPort}, stExcludedTCP...), "UDP": append([]int{stDNSPort}, stExcludedUDP...)}
	for proto, ports := range quiet {
		for _, p := range ports {
			for _, m := range s.messages(fmt.Sprintf("protocol: [%s] port: [%d] ", proto, p)) {
				t.Errorf("a probe of %s port %d (a running service or an excluded port) was reported: %q", proto, p, m)
			}
			for _, m := range s.messages(fmt.Sprintf(" to %s port: %d", proto, p)) {
				if strings.HasSuffix(m, fmt.Sprintf(" to %s port: %d", proto, p)) {
					t.Errorf("a probe of %s port %d (a running service or an excluded port) raised an alert: %q", proto, p, m)
				}
			}
		}
	}
}

// assertNoErrors checks that the daemon logged no ERROR line.
func (s *stLab) assertNoErrors(t *testing.T) {
	t.Helper()
	if ls := s.messages("ERROR"); len(ls) > 0 {
		t.Errorf("the daemon logged errors: %q", ls)
	}
}

// stProbe runs the netclient in from's namespace and returns its report or
// an error; it may be called from any goroutine. extra adds flags (-sport,
// -dial, -send).
func stProbe(from host, proto string, to netip.Addr, port int, wait time.Duration, extra ...string) (reply, error) {
	ap := netip.AddrPortFrom(to, uint16(port)).String()
	cmd := from.ns.Command(clientPath, append([]string{"-proto", proto, "-addr", ap, "-wait", wait.String()}, extra...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return reply{}, fmt.Errorf("netclient %s %s from %s: %v: %s", proto, ap, from.ns, err, stderr.Bytes())
	}
	var r reply
	if err := json.Unmarshal(out, &r); err != nil {
		return reply{}, fmt.Errorf("netclient %s %s: bad output %q: %v", proto, ap, out, err)
	}
	return r, nil
}

func mustStProbe(t *testing.T, from host, proto string, to netip.Addr, port int, wait time.Duration, extra ...string) reply {
	t.Helper()
	r, err := stProbe(from, proto, to, port, wait, extra...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// stUseServices makes one TCP request to T's web service and one UDP query
// to its DNS service from h and says what went wrong, if anything.
func stUseServices(h host, to netip.Addr) error {
	r, err := stProbe(h, "tcp", to, stWebPort, 2*time.Second)
	if err != nil {
		return err
	}
	if !r.Connected || r.Error != "" || r.Data != stWebReply {
		return fmt.Errorf("TCP [%s]:%d: %+v, want the reply %q", to, stWebPort, r, stWebReply)
	}
	r, err = stProbe(h, "udp", to, stDNSPort, 2*time.Second)
	if err != nil {
		return err
	}
	if !r.Connected || r.Error != "" || r.Data != stDNSReply {
		return fmt.Errorf("UDP [%s]:%d: %+v, want the reply %q", to, stDNSPort, r, stDNSReply)
	}
	return nil
}

// TestStealthAdvancedScans: advanced mode (-atcp -audp) with real services
// on 80/TCP and 53/UDP. Each nmap scan type, from a lab of its own, is
// reported with its exact type and blocked once, for real (nftables), and
// neither the services' ports nor ADVANCED_EXCLUDE_* ports are reported.
func TestStealthAdvancedScans(t *testing.T) {
	t.Parallel()
	tcpPorts := stExpandPorts(stTCPScan)
	udpPorts := stExpandPorts(stUDPScan)
	watchedTCP := slices.DeleteFunc(slices.Clone(tcpPorts), func(p int) bool { return p == stWebPort || slices.Contains(stExcludedTCP, p) })
	watchedUDP := slices.DeleteFunc(slices.Clone(udpPorts), func(p int) bool { return p == stDNSPort || slices.Contains(stExcludedUDP, p) })
	for _, tc := range []struct {
		name  string
		args  []string
		v6    bool
		proto string
		kind  string
	}{
		{"SYN", []string{"-sS"}, false, "tcp", "TCP SYN/Normal scan"},
		{"connect", []string{"-sT"}, false, "tcp", "TCP SYN/Normal scan"},
		{"FIN", []string{"-sF"}, false, "tcp", "TCP FIN scan"},
		{"NULL", []string{"-sN"}, false, "tcp", "TCP NULL scan"},
		{"XMAS", []string{"-sX"}, false, "tcp", "TCP XMAS scan"},
		{"UDP", []string{"-sU"}, false, "udp", "UDP"},
		{"SYN6", []string{"-6", "-sS"}, true, "tcp", "TCP SYN/Normal scan"},
		{"UDP6", []string{"-6", "-sU"}, true, "udp", "UDP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStLab(t, stAdvanced, nil)
			ports, watched := stTCPScan, watchedTCP
			if tc.proto == "udp" {
				ports, watched = stUDPScan, watchedUDP
			}
			src := s.S.addr(tc.v6)
			out := s.scan(t, append(tc.args, "-p", ports, s.T.addr(tc.v6).String())...)
			s.assertBlockedOnce(t, src, tc.proto, tc.kind, watched)
			s.assertBanned(t, src)
			s.assertServicesQuiet(t)
			s.assertNoErrors(t)
			assertDeny(t, s.c, src)
			if t.Failed() {
				t.Logf("nmap output:\n%s", out)
			}
		})
	}
}

// stExpandPorts reads "1-3,80" as 1, 2, 3, 80.
func stExpandPorts(list string) []int {
	var out []int
	for _, f := range strings.Split(list, ",") {
		lo, hi, ok := strings.Cut(f, "-")
		a, _ := strconv.Atoi(lo)
		b := a
		if ok {
			b, _ = strconv.Atoi(hi)
		}
		for p := a; p <= b; p++ {
			out = append(out, p)
		}
	}
	return out
}

// TestStealthACKScans: nmap's ACK, Window and Maimon scans (every packet has
// ACK set) are never probes: no event, no block. A SYN afterwards proves the
// sensor was watching all along.
func TestStealthACKScans(t *testing.T) {
	t.Parallel()
	s := newStLab(t, stAdvanced, nil)
	out := s.scan(t, "-sA", "-p", stTCPScan, s.T.v4.String())
	if !strings.Contains(out, "unfiltered") {
		t.Errorf("nmap -sA saw no unfiltered port (did its packets reach T?):\n%s", out)
	}
	s.scan(t, "-sW", "-p", stTCPScan, s.T.v4.String())
	s.scan(t, "-sM", "-p", stTCPScan, s.T.v4.String())
	s.scan(t, "-6", "-sA", "-p", stTCPScan, s.T.v6.String())
	time.Sleep(settle)
	if ls := s.messages("Scan from:"); len(ls) != 0 {
		t.Errorf("ACK/Window/Maimon scans were reported: %q", ls)
	}
	if ls := s.messages("attackalert"); len(ls) != 0 {
		t.Errorf("ACK/Window/Maimon scans raised alerts: %q", ls)
	}
	if runs := fileLines(t, s.c.path("actions.log")); len(runs) != 0 {
		t.Errorf("KILL_ROUTE ran: %q", runs)
	}
	s.assertBanned(t)

	// Control: the same scanner's SYN scan of one free port is caught.
	s.scan(t, "-sS", "-p", "1000", s.T.v4.String())
	s.assertBlockedOnce(t, s.S.v4, "tcp", "TCP SYN/Normal scan", []int{1000})
	s.assertBanned(t, s.S.v4)
	s.assertNoErrors(t)
}

// TestStealthMode: stealth mode (-stcp -sudp, and 2.x's --stealth) watches
// TCP_PORTS=143,540 and UDP_PORTS=69 only: scans of other ports, the
// services' included, raise nothing; a scan of a watched port is reported
// and blocked, over IPv4 (TCP) and IPv6 (UDP), with $MODE$ as the flags
// spell it.
func TestStealthMode(t *testing.T) {
	t.Parallel()
	for _, flags := range [][]string{{"-stcp", "-sudp"}, {"--stealth"}} {
		t.Run(strings.Join(flags, ""), func(t *testing.T) {
			t.Parallel()
			s := newStLab(t, flags, func(c *config) {
				c.set("TCP_PORTS", "143,540")
				c.set("UDP_PORTS", "69")
			})
			// Stealth mode binds nothing: T's only sockets are its services.
			if got, want := s.boundPorts(t), []string{"tcp:80", "udp:53"}; !slices.Equal(got, want) {
				t.Errorf("bound in T: %q, want only the services %q", got, want)
			}
			s.scan(t, "-sS", "-p", "80,1000,141-142,144", s.T.v4.String())
			s.scan(t, "-6", "-sU", "-p", "53,68,70,1000", s.T.v6.String())
			time.Sleep(settle)
			if ls := s.messages("Scan from:"); len(ls) != 0 {
				t.Fatalf("scans of unwatched ports were reported: %q", ls)
			}
			s.assertBanned(t)

			s.scan(t, "-sS", "-p", "143", s.T.v4.String())
			s.assertBlockedOnce(t, s.S.v4, "tcp", "TCP SYN/Normal scan", []int{143})
			s.scan(t, "-6", "-sU", "-p", "69", s.T.v6.String())
			s.assertBlockedOnce(t, s.S.v6, "udp", "UDP", []int{69})
			s.assertBanned(t, s.S.v4, s.S.v6)
			if runs := fileLines(t, s.c.path("actions.log")); len(runs) != 2 {
				t.Errorf("KILL_ROUTE runs %q, want two (one per scanner address)", runs)
			}
			s.assertServicesQuiet(t)
			s.assertNoErrors(t)
			// The block is real: the scanner no longer reaches T.
			if r := mustStProbe(t, s.S, "tcp", s.T.v4, stWebPort, 200*time.Millisecond, "-dial", "500ms"); r.Connected {
				t.Errorf("blocked scanner %s still connects to T's web service: %+v", s.S.v4, r)
			}
		})
	}
}

// stFriendLoop is F using T's services over and over, IPv4 and IPv6.
type stFriendLoop struct {
	stop chan struct{}
	done chan struct{}

	mu       sync.Mutex
	rounds   int
	failures []string
}

func stStartFriend(l *lab) *stFriendLoop {
	f := &stFriendLoop{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		for i := 0; ; i++ {
			select {
			case <-f.stop:
				return
			default:
			}
			err := stUseServices(l.F, l.T.addr(i%2 == 1))
			f.mu.Lock()
			f.rounds++
			if err != nil {
				f.failures = append(f.failures, err.Error())
			}
			f.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return f
}

func (f *stFriendLoop) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rounds
}

// waitRounds waits until n more rounds than now have completed.
func (f *stFriendLoop) waitRounds(t *testing.T, n int) {
	t.Helper()
	want := f.count() + n
	deadline := time.Now().Add(30 * time.Second)
	for f.count() < want {
		if time.Now().After(deadline) {
			t.Fatalf("the friend completed %d rounds, want %d", f.count(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (f *stFriendLoop) finish() (rounds int, failures []string) {
	close(f.stop)
	<-f.done
	return f.rounds, f.failures
}

// assertFriendUntouched checks that F appears in no event and no ban set.
func (s *stLab) assertFriendUntouched(t *testing.T) {
	t.Helper()
	for _, a := range []netip.Addr{s.F.v4, s.F.v6} {
		if ls := s.messages("[" + a.String() + "]"); len(ls) != 0 {
			t.Errorf("the friend %s was reported: %q", a, ls)
		}
		if ls := s.messages(" " + a.String() + "/"); len(ls) != 0 {
			t.Errorf("the friend %s was named in an alert: %q", a, ls)
		}
		if ls := s.messages("Host " + a.String() + " "); len(ls) != 0 {
			t.Errorf("the friend %s was acted on: %q", a, ls)
		}
		if _, ok := s.elem(t, a); ok {
			t.Errorf("the friend %s is in T's %s", a, banSet(a))
		}
	}
}

// TestStealthFriendUsesServices: while S scans T in advanced mode, F keeps
// using T's real services (TCP request on 80, UDP query to 53, IPv4 and
// IPv6), before, during and after the scan: every request succeeds and F is
// never reported nor blocked; S is.
func TestStealthFriendUsesServices(t *testing.T) {
	t.Parallel()
	s := newStLab(t, stAdvanced, nil)
	f := stStartFriend(s.lab)
	f.waitRounds(t, 4) // before
	s.scan(t, "-sS", "-p", stTCPScan, s.T.v4.String())
	s.scan(t, "-sU", "-p", stUDPScan, s.T.v4.String())
	s.waitBlocked(t, s.S.v4)
	f.waitRounds(t, 4) // after
	rounds, failures := f.finish()
	if len(failures) > 0 {
		t.Errorf("%d of the friend's %d rounds failed: %q", len(failures), rounds, failures)
	}
	s.assertBlockedOnce(t, s.S.v4, "tcp", "TCP SYN/Normal scan", nil)
	s.assertBanned(t, s.S.v4)
	s.assertFriendUntouched(t)
	s.assertServicesQuiet(t)
	s.assertNoErrors(t)
}

// TestStealthLateService: services started after the daemon (TCP on 700,
// UDP on 650, and a passive-FTP-style data port 50123 with
// ADVANCED_PORTS_TCP=65535) are used by F without an event or a block,
// because the service check asks the kernel when each packet arrives. Probes
// of the free neighbours 701 and 50124 from S are caught.
func TestStealthLateService(t *testing.T) {
	t.Parallel()
	s := newStLab(t, stAdvanced, func(c *config) { c.set("ADVANCED_PORTS_TCP", "65535") })
	const lateReply = "late service reply\n"
	startListener(t, s.T, "tcp", ":700", lateReply)
	startListener(t, s.T, "tcp", ":50123", lateReply)
	startListener(t, s.T, "udp", ":650", lateReply)
	for round := 0; round < 3; round++ {
		for _, v6 := range []bool{false, true} {
			for _, p := range []struct {
				proto string
				port  int
			}{{"tcp", 700}, {"tcp", 50123}, {"udp", 650}} {
				r := mustStProbe(t, s.F, p.proto, s.T.addr(v6), p.port, 2*time.Second)
				if !r.Connected || r.Error != "" || r.Data != lateReply {
					t.Errorf("F → %s [%s]:%d: %+v, want the reply %q", p.proto, s.T.addr(v6), p.port, r, lateReply)
				}
			}
		}
	}
	time.Sleep(settle)
	if ls := s.messages("Scan from:"); len(ls) != 0 {
		t.Errorf("clients of services started after the daemon were reported: %q", ls)
	}
	s.assertFriendUntouched(t)

	// Control: the ports next to them are watched.
	mustStProbe(t, s.S, "tcp", s.T.v4, 701, 100*time.Millisecond, "-dial", "1s")
	s.assertBlockedOnce(t, s.S.v4, "tcp", "TCP SYN/Normal scan", []int{701})
	mustStProbe(t, s.S, "tcp", s.T.v6, 50124, 100*time.Millisecond, "-dial", "1s")
	s.assertBlockedOnce(t, s.S.v6, "tcp", "TCP SYN/Normal scan", []int{50124})
	s.assertBanned(t, s.S.v4, s.S.v6)
	s.assertFriendUntouched(t)
	s.assertNoErrors(t)
}

// TestStealthOwnTraffic: T's own outgoing traffic from watched low ports
// never trips advanced mode: TCP connections to F's service (its SYN/ACK,
// ACK and FIN/ACK come back to a watched port) and UDP queries whose answer
// arrives after T's socket has closed (the sensor remembers the flow); nor
// does T's traffic to itself (loopback is not captured). F is never
// reported nor blocked. Control: an unsolicited datagram from F to the same
// port is a probe.
func TestStealthOwnTraffic(t *testing.T) {
	t.Parallel()
	s := newStLab(t, stAdvanced, nil)
	const pong = "pong from F\n"
	const lateAnswer = "late answer from F\n"
	startListener(t, s.F, "tcp", ":8080", pong)
	stStartDelayedListener(t, s.F, "udp", fmt.Sprintf(":%d", stDNSPort), lateAnswer, time.Second)
	s.nftExec(t, "", "add", "counter", "inet", "lab", "late")
	s.nftExec(t, "", "insert", "rule", "inet", "lab", "input", "udp", "sport", strconv.Itoa(stDNSPort), "counter", "name", "late")

	for i, v6 := range []bool{false, true} {
		sport := strconv.Itoa(601 + i)
		r := mustStProbe(t, s.T, "tcp", s.F.addr(v6), 8080, 2*time.Second, "-sport", sport)
		if !r.Connected || r.Error != "" || r.Data != pong {
			t.Errorf("T:%s → F [%s]:8080: %+v, want %q", sport, s.F.addr(v6), r, pong)
		}
	}
	for i, v6 := range []bool{false, true} {
		sport := strconv.Itoa(600 + 10*i)
		r := mustStProbe(t, s.T, "udp", s.F.addr(v6), stDNSPort, 200*time.Millisecond, "-sport", sport)
		if !r.Connected || r.Error != "" || r.Data != "" {
			t.Errorf("T:%s → F [%s]:%d: %+v, want the query sent and no answer yet", sport, s.F.addr(v6), stDNSPort, r)
		}
	}
	// T's traffic to itself, over loopback.
	for _, a := range []string{"127.0.0.1", "::1", s.T.v4.String()} {
		mustStProbe(t, s.T, "tcp", netip.MustParseAddr(a), 999, 100*time.Millisecond, "-dial", "500ms")
		mustStProbe(t, s.T, "udp", netip.MustParseAddr(a), 998, 100*time.Millisecond)
	}
	// The late answers reach T after its sockets closed.
	deadline := time.Now().Add(5 * time.Second)
	for s.counter(t, "late") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("F's late answers did not reach T (counter %d, want 2)", s.counter(t, "late"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(settle)
	if ls := s.messages("Scan from:"); len(ls) != 0 {
		t.Errorf("T's own traffic was reported: %q", ls)
	}
	s.assertFriendUntouched(t)
	s.assertBanned(t)

	// Control: the same port, but no query of T's asked for this datagram.
	mustStProbe(t, s.F, "udp", s.T.v4, 600, 100*time.Millisecond, "-sport", "5300")
	s.assertBlockedOnce(t, s.F.v4, "udp", "UDP", []int{600})
	s.assertBanned(t, s.F.v4)
	s.assertNoErrors(t)
}

// boundPorts lists the TCP listeners and bound UDP sockets in T as
// "tcp:80", sorted, without duplicates (one socket serves IPv4 and IPv6).
func (s *stLab) boundPorts(t *testing.T) []string {
	t.Helper()
	out, err := s.T.ns.Command("ss", "-Htuln").CombinedOutput()
	if err != nil {
		t.Fatalf("ss in %s: %v\n%s", s.T.ns, err, out)
	}
	var ports []string
	for _, ln := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(ln)
		if len(f) < 5 {
			continue
		}
		i := strings.LastIndexByte(f[4], ':')
		ports = append(ports, f[0]+":"+f[4][i+1:])
	}
	slices.Sort(ports)
	return slices.Compact(ports)
}

// counter reads a named nftables counter in T.
func (s *stLab) counter(t *testing.T, name string) int {
	t.Helper()
	out := s.nftExec(t, "", "-j", "list", "counter", "inet", "lab", name)
	var doc struct {
		Nftables []struct {
			Counter *struct {
				Packets int `json:"packets"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("nft -j list counter %s: %v\n%s", name, err, out)
	}
	for _, o := range doc.Nftables {
		if o.Counter != nil {
			return o.Counter.Packets
		}
	}
	t.Fatalf("no counter %s in %s", name, out)
	return 0
}

// stStartDelayedListener is startListener with a UDP service that answers
// delay after each datagram (after the client may have closed its socket).
func stStartDelayedListener(t *testing.T, h host, proto, addr, reply string, delay time.Duration) {
	t.Helper()
	startListener(t, h, proto, addr, reply, "-delay", delay.String())
}

// TestStealthNoServiceCheck: with -S the service check is off, so a SYN to
// the running web service and a datagram to the running DNS service are
// reported as probes and blocked: the check is what protects services.
func TestStealthNoServiceCheck(t *testing.T) {
	t.Parallel()
	s := newStLab(t, append([]string{"-S"}, stAdvanced...), nil)
	mustStProbe(t, s.S, "tcp", s.T.v4, stWebPort, 100*time.Millisecond, "-dial", "1s")
	s.assertBlockedOnce(t, s.S.v4, "tcp", "TCP SYN/Normal scan", []int{stWebPort})
	mustStProbe(t, s.S, "udp", s.T.v6, stDNSPort, 100*time.Millisecond)
	s.assertBlockedOnce(t, s.S.v6, "udp", "UDP", []int{stDNSPort})
	s.assertBanned(t, s.S.v4, s.S.v6)
	s.assertNoErrors(t)
}

// TestStealthScanTrigger: SCAN_TRIGGER="3" in advanced mode: a SYN scan of
// ten free ports is counted twice, then blocked exactly once, on a port
// other than the two counted.
func TestStealthScanTrigger(t *testing.T) {
	t.Parallel()
	s := newStLab(t, stAdvanced, func(c *config) { c.set("SCAN_TRIGGER", "3") })
	ports := stExpandPorts("1001-1010")
	s.scan(t, "-sS", "--max-retries", "0", "-p", "1001-1010", s.T.v4.String())
	port := s.assertBlockedOnce(t, s.S.v4, "tcp", "TCP SYN/Normal scan", ports)
	s.assertBanned(t, s.S.v4)
	counted := s.messages("triggered: [false]")
	if len(counted) != 2 {
		t.Fatalf("below-trigger lines %q, want two (hits 1 and 2 of 3)", counted)
	}
	for _, m := range counted {
		want := regexp.MustCompile(`^Scan from: \[` + regexp.QuoteMeta(s.S.v4.String()) + `\] \(` + regexp.QuoteMeta(s.S.v4.String()) +
			`\) protocol: \[TCP\] port: \[(\d+)\] type: \[TCP SYN/Normal scan\] IP opts: \[not set\] ignored: \[false\] triggered: \[false\] noblock: \[unset\] blocked: \[unset\]$`)
		sm := want.FindStringSubmatch(m)
		if sm == nil {
			t.Errorf("below-trigger line %q does not match %s", m, want)
			continue
		}
		if sm[1] == strconv.Itoa(port) {
			t.Errorf("port %d was counted and then triggered: the third hit must be a third probe", port)
		}
	}
	s.assertServicesQuiet(t)
	s.assertNoErrors(t)
}

// TestStealthBlockedHostUsesService: a probe from a host already blocked
// to a port a running service owns is not a probe either: it is not
// reported (as PortSentry 1.2 checks the port before the block list).
func TestStealthBlockedHostUsesService(t *testing.T) {
	t.Parallel()
	s := newStLab(t, stAdvanced, nil)
	mustStProbe(t, s.S, "tcp", s.T.v4, 1000, 100*time.Millisecond, "-dial", "1s")
	s.assertBlockedOnce(t, s.S.v4, "tcp", "TCP SYN/Normal scan", []int{1000})
	mustStProbe(t, s.S, "udp", s.T.v6, 1000, 100*time.Millisecond)
	s.assertBlockedOnce(t, s.S.v6, "udp", "UDP", []int{1000})
	s.assertBanned(t, s.S.v4, s.S.v6)
	// Now blocked (dropped by nftables, still seen by the sensor).
	mustStProbe(t, s.S, "tcp", s.T.v4, stWebPort, 100*time.Millisecond, "-dial", "500ms")
	mustStProbe(t, s.S, "udp", s.T.v6, stDNSPort, 100*time.Millisecond)
	time.Sleep(settle)
	s.assertServicesQuiet(t)
	s.assertNoErrors(t)
}
