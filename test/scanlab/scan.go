package main

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/portsentry-go/portsentry/internal/report/logline"
	"github.com/portsentry-go/portsentry/test/internal/labproc"
	"github.com/portsentry-go/portsentry/test/internal/labsvc"
	"github.com/portsentry-go/portsentry/test/internal/nftset"
)

// scanDef is one scan of the benchmark.
type scanDef struct {
	name    string
	title   string
	tool    string // nmap or masscan
	v6      bool   // against T's IPv6 address
	timeout time.Duration
	argv    func(l *lab) []string // the scanner's command, run in S
}

var scanDefs = []scanDef{
	{name: "syn", title: "nmap SYN scan, IPv4", tool: "nmap", timeout: 300 * time.Second,
		argv: func(l *lab) []string {
			return []string{"nmap", "-n", "-Pn", "-sS", "-T4", "-p1-1024", "--host-timeout", "240s", "-oX", "-", l.T.v4.String()}
		}},
	{name: "fin", title: "nmap FIN scan, IPv4", tool: "nmap", timeout: 300 * time.Second,
		argv: func(l *lab) []string {
			return []string{"nmap", "-n", "-Pn", "-sF", "-T4", "-p1-1024", "--host-timeout", "240s", "-oX", "-", l.T.v4.String()}
		}},
	{name: "udp", title: "nmap UDP scan of the top 200 ports, IPv4", tool: "nmap", timeout: 180 * time.Second,
		argv: func(l *lab) []string {
			return []string{"nmap", "-n", "-Pn", "-sU", "-T4", "--top-ports", "200", "--max-retries", "1", "--host-timeout", "120s", "-oX", "-", l.T.v4.String()}
		}},
	{name: "syn6", title: "nmap SYN scan, IPv6", tool: "nmap", v6: true, timeout: 300 * time.Second,
		argv: func(l *lab) []string {
			return []string{"nmap", "-6", "-n", "-Pn", "-sS", "-T4", "-p1-1024", "--host-timeout", "240s", "-oX", "-", l.T.v6.String()}
		}},
	{name: "masscan", title: "masscan of all 65 536 TCP ports at 100 000 packets/s, IPv4", tool: "masscan", timeout: 90 * time.Second,
		argv: func(l *lab) []string {
			return []string{"masscan", "-p0-65535", "--rate", "100000", "--wait", "2",
				"--adapter", labIf, "--adapter-ip", l.S.v4.String(), "--router-mac", l.T.mac, l.T.v4.String()}
		}},
}

func scanByName(name string) (scanDef, bool) {
	for _, d := range scanDefs {
		if d.name == name {
			return d, true
		}
	}
	return scanDef{}, false
}

// scanResult is the outcome of one scan.
type scanResult struct {
	def     scanDef
	daemon  string // daemonOurs or daemon12
	run     int    // 1, 2, … (-runs)
	blocker string // blockerNFT, blockerCommand or blockerKillRoute
	command string // the scanner's command line, as run in S
	err     error  // the scan could not be measured (or only in part)
	stats   scanStats
	// blockAt is, with the command blocker, when the block script had
	// added S (of the scan's family) to the ban set; with nftables, the
	// timestamp (milliseconds, truncated) of the daemon's "has been blocked
	// via nftables" line for S; with killroute, the last reply T sent S
	// (retransmissions aside) when S's rule is in T's INPUT chain after the
	// scan. Zero: never.
	blockAt  time.Time
	blocks   []blockRecord
	inSet    bool          // S was in T's ban set after the scan
	trapLine string        // nftables: the daemon's "kernel trap set" line
	scanned  string        // the scanner's own summary of the ports
	duration time.Duration // the scanner's run time
	drops    int           // packets tcpdump's kernel buffer dropped

	innocent       labsvc.InnocentResult
	innocentBanned []string // where I showed up as blocked
	innocentSeen   int      // daemon log lines naming I
	innocentSample string   // the first of them
	notes          []string
}

func (r *scanResult) innocentAffected() bool {
	return r.innocent.Failures > 0 || len(r.innocentBanned) > 0
}

func (r *scanResult) blockDelay() (time.Duration, bool) {
	b := r.blockTime()
	if b.IsZero() || r.stats.firstProbe.IsZero() {
		return 0, false
	}
	return b.Sub(r.stats.firstProbe), true
}

// blockTime is the moment the capture is split at: the block script's time
// or, for the daemon's log line, the end of its millisecond (its timestamp
// is truncated, so the line was surely written by then). Zero: never.
func (r *scanResult) blockTime() time.Time {
	if r.blockAt.IsZero() || r.blocker != blockerNFT {
		return r.blockAt
	}
	return r.blockAt.Add(time.Millisecond)
}

// summary is the one-line progress report.
func (r *scanResult) summary() string {
	if r.err != nil && r.stats.probes == 0 {
		return "ERROR: " + firstLine(r.err.Error())
	}
	s := fmt.Sprintf("%d probes, %d replies, %d ports answered, %s, innocent affected: %s, %.1fs",
		r.stats.probes, r.stats.replies, r.stats.answered, r.blockCell(), yesNo(r.innocentAffected()), r.duration.Seconds())
	if r.err != nil {
		s += " (ERROR: " + firstLine(r.err.Error()) + ")"
	}
	return s
}

func (r *scanResult) blockCell() string {
	if r.blocker == blockerNFT {
		return r.nftBlockCell()
	}
	if r.blocker == blockerKillRoute && !r.inSet {
		return "not blocked"
	}
	d, ok := r.blockDelay()
	if !ok {
		if r.blocker == blockerKillRoute && !r.stats.firstProbe.IsZero() {
			return "blocked (T never replied)"
		}
		if !r.blockAt.IsZero() {
			return "blocked (no probe captured)"
		}
		return "not blocked"
	}
	return fmt.Sprintf("%.1f ms (%d probes)", float64(d)/float64(time.Millisecond), r.stats.probesBefore)
}

// nftBlockCell tells, for the kernel trap, when T last answered S (the
// kernel ban landed before the next probe) and when user space had logged
// the ban, both after the first probe.
func (r *scanResult) nftBlockCell() string {
	if r.stats.firstProbe.IsZero() {
		if r.inSet {
			return "banned (no probe captured)"
		}
		return "not banned"
	}
	s := "no reply"
	if !r.stats.lastReply.IsZero() {
		s = fmt.Sprintf("last reply +%.1f ms", ms(r.stats.lastReply.Sub(r.stats.firstProbe)))
	}
	if d, ok := r.blockDelay(); ok {
		s += fmt.Sprintf("; ban logged ≤ +%.1f ms (%d probes)", ms(d), r.stats.probesBefore)
	} else {
		s += "; ban not logged"
	}
	if !r.inSet {
		s += "; **not in the ban set**"
	}
	return s
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// errModeUnsupported: the daemon refused the requested mode.
var errModeUnsupported = errors.New("this portsentry build does not support")

// nftRules is T's ban table. Creating and deleting it first makes loading
// it replace any previous one in one transaction.
const nftRules = `table inet lab
delete table inet lab
table inet lab {
	set ban4 { type ipv4_addr; }
	set ban6 { type ipv6_addr; }
	chain input {
		type filter hook input priority -10; policy accept;
		ip saddr @ban4 drop
		ip6 saddr @ban6 drop
	}
}
`

// blockScript adds an address to a ban set of T's table, then records when
// the ban had landed. Arguments: the set (ban4 or ban6) and the address.
const blockScript = `#!/bin/sh
# scanlab's KILL_ROUTE / KILL_ROUTE6: ban "$2" in set "$1", then record when.
case "$1" in ban4|ban6) ;; *) echo "scanlab block: bad set $1" >&2; exit 2 ;; esac
%s add element inet lab "$1" "{ $2 }" || exit 1
echo "$1 $2 $(%s +%%s.%%N)" >> %s
`

// daemonTable is the table the nftables blocker makes (nft.DefaultTable).
const daemonTable = "portsentry"

// resetDaemonTable deletes the daemon's table, which outlives the daemon
// (bans survive a restart), so that every scan starts without bans.
// Creating it first makes the deletion succeed when there is none.
const resetDaemonTable = "table inet " + daemonTable + "\ndelete table inet " + daemonTable + "\n"

// killRoute and killRoute6 are the killroute blocker's KILL_ROUTE and
// KILL_ROUTE6: what PortSentry 1.2's admins wrote, run as written (PATH
// finds the programs), by both daemons.
const (
	killRoute  = "iptables -I INPUT -s $TARGET$ -j DROP"
	killRoute6 = "ip6tables -I INPUT -s $TARGET$ -j DROP"
)

// writeDaemonFiles writes the daemon's configuration, ignore file and, for
// the command blocker, block script and ban table into dir, and returns the
// configuration's path. PortSentry 1.2 reads the same configuration (it
// ignores the keys it does not know).
// advancedPorts is ADVANCED_PORTS_* for a blocker: the shipped file's
// 65535 with the kernel trap (every unused port is a trap; the kernel's
// service check and connection tracking keep services and replies out), and
// PortSentry's 1024 for the command baseline, as it was measured.
func advancedPorts(blocker string) string {
	if blocker == blockerNFT {
		return "65535"
	}
	return "1024"
}

func writeDaemonFiles(dir string, t tools, blocker string) (string, error) {
	p := func(name string) string { return filepath.Join(dir, name) }
	files := map[string]string{
		"portsentry.ignore": "# scanlab: neither the scanner nor the innocent host\n127.0.0.1\n::1\n",
		"hosts.deny":        "",
	}
	var blocking []string
	switch blocker {
	case blockerCommand:
		files["block.sh"] = fmt.Sprintf(blockScript, t.nft, t.date, p("blocks.log"))
		files["nft.rules"] = nftRules
		blocking = []string{
			`BLOCKER="command"`,
			`KILL_ROUTE="/bin/sh ` + p("block.sh") + ` ban4 $TARGET$"`,
			`KILL_ROUTE6="/bin/sh ` + p("block.sh") + ` ban6 $TARGET$"`,
		}
	case blockerNFT:
		files["reset.nft"] = resetDaemonTable
		blocking = []string{
			`BLOCKER="nftables"`,
			`KERNEL_TRAP="1"`,
			`BAN_TIME="3600"`,
		}
	case blockerKillRoute:
		blocking = []string{
			`BLOCKER="command"`,
			`KILL_ROUTE="` + killRoute + `"`,
			`KILL_ROUTE6="` + killRoute6 + `"`,
		}
	default:
		return "", fmt.Errorf("unknown blocker %q", blocker)
	}
	conf := strings.Join(append([]string{
		"# scanlab: written for one scan",
		`TCP_PORTS="1-1024"`,
		`UDP_PORTS="1-1024"`,
		`ADVANCED_PORTS_TCP="` + advancedPorts(blocker) + `"`,
		`ADVANCED_PORTS_UDP="` + advancedPorts(blocker) + `"`,
		`ADVANCED_EXCLUDE_TCP="113,139"`,
		`ADVANCED_EXCLUDE_UDP="520,138,137,67"`,
		`IGNORE_FILE="` + p("portsentry.ignore") + `"`,
		`HISTORY_FILE="` + p("portsentry.history") + `"`,
		`BLOCKED_FILE="` + p("portsentry.blocked") + `"`,
		`HOSTS_DENY_FILE="` + p("hosts.deny") + `"`,
		`RESOLVE_HOST="0"`,
		`BLOCK_TCP="1"`,
		`BLOCK_UDP="1"`,
		`SCAN_TRIGGER="0"`,
		// Not the host's /run/portsentry: the lab's daemon shares the
		// host's file system.
		`CONTROL_SOCKET="` + p("control.sock") + `"`,
	}, blocking...), "\n") + "\n"
	files["portsentry.conf"] = conf
	for name, content := range files {
		if err := os.WriteFile(p(name), []byte(content), 0o644); err != nil {
			return "", err
		}
	}
	return p("portsentry.conf"), nil
}

var dropRE = regexp.MustCompile(`(\d+) packets? dropped by kernel`)

// runScan runs one scan with a fresh ban table and daemon, and measures it.
// Every process it starts is stopped before it returns.
// With legacy set, the daemon is Debian's PortSentry 1.2 instead of bin.
func runScan(ctx context.Context, l *lab, o *options, def scanDef, t tools, bin, self, dir string, legacy *debian12, run int) *scanResult {
	daemon := daemonOurs
	if legacy != nil {
		daemon = daemon12
	}
	sc := &scanRun{ctx: ctx, l: l, o: o, def: def, t: t, bin: bin, self: self, dir: dir, legacy: legacy,
		r: &scanResult{def: def, daemon: daemon, run: run, blocker: o.blocker, command: strings.Join(def.argv(l), " ")}}
	defer sc.cleanup()
	_ = sc.run()
	return sc.r
}

// scanRun is one scan under way.
type scanRun struct {
	ctx            context.Context
	l              *lab
	o              *options
	def            scanDef
	t              tools
	bin, self, dir string
	legacy         *debian12 // PortSentry 1.2 instead of bin
	r              *scanResult
	undo           []func() // run last first when the scan ends
}

// fail records err as the scan's error, unless an earlier one is, and
// returns it.
func (sc *scanRun) fail(err error) error {
	if sc.r.err == nil {
		sc.r.err = err
	}
	return err
}

// cleanup stops what the scan started, last first.
func (sc *scanRun) cleanup() {
	for i := len(sc.undo) - 1; i >= 0; i-- {
		sc.undo[i]()
	}
	sc.undo = nil
}

// run goes through the scan's phases: ban table and daemon, capture,
// innocent host, scanner, then the measurements.
func (sc *scanRun) run() error {
	conf, err := sc.prepare()
	if err != nil {
		return sc.fail(err)
	}
	var daemon *labproc.Proc
	if sc.legacy != nil {
		daemon, err = sc.startDebian12(conf)
	} else {
		daemon, err = sc.startDaemon(conf)
	}
	if err != nil {
		return sc.fail(err)
	}
	dump, pcap, err := sc.startCapture()
	if err != nil {
		return sc.fail(err)
	}
	inn, err := sc.startInnocent()
	if err != nil {
		return sc.fail(err)
	}
	scanner, err := sc.runScanner()
	if err != nil {
		return sc.fail(err)
	}
	// Let block commands in flight finish and late replies arrive.
	select {
	case <-sc.ctx.Done():
		return sc.fail(sc.ctx.Err())
	case <-time.After(time.Second):
	}
	sc.stopInnocent(inn)
	sc.stopCapture(dump)
	also, err := sc.bans(daemon.Output())
	if err != nil {
		return sc.fail(err)
	}
	return sc.measure(pcap, scanner.Output(), also)
}

// prepare writes the daemon's files and gives T a fresh ban table: the
// lab's, for the command blocker; none (the daemon makes its own) for
// nftables. It returns the configuration's path.
func (sc *scanRun) prepare() (string, error) {
	conf, err := writeDaemonFiles(sc.dir, sc.t, sc.o.blocker)
	if err != nil {
		return "", err
	}
	switch sc.o.blocker {
	case blockerCommand:
		if _, err := labproc.Run(sc.ctx, 10*time.Second, sc.l.T.ns.Argv(sc.t.nft, "-f", filepath.Join(sc.dir, "nft.rules"))...); err != nil {
			return "", fmt.Errorf("loading T's ban table: %w", err)
		}
	case blockerNFT:
		if _, err := labproc.Run(sc.ctx, 10*time.Second, sc.l.T.ns.Argv(sc.t.nft, "-f", filepath.Join(sc.dir, "reset.nft"))...); err != nil {
			return "", fmt.Errorf("deleting the previous scan's table inet %s in T: %w", daemonTable, err)
		}
	case blockerKillRoute:
		// An empty INPUT chain (made if need be), as on a host whose
		// admin blocks with iptables: the previous scan's rule goes.
		for _, ipt := range []string{sc.t.iptables, sc.t.ip6tables} {
			if _, err := labproc.Run(sc.ctx, 10*time.Second, sc.l.T.ns.Argv(ipt, "-F", "INPUT")...); err != nil {
				return "", fmt.Errorf("flushing T's INPUT chain: %w", err)
			}
		}
	}
	return conf, nil
}

// startDaemon starts the daemon in T (after the services, so that it sees
// them in use) and waits until it listens; with nftables it must have set
// the kernel trap. The daemon is stopped, and its log kept, at the end.
func (sc *scanRun) startDaemon(conf string) (*labproc.Proc, error) {
	dargv := []string{sc.bin, "-c", conf}
	for _, m := range sc.o.modes {
		dargv = append(dargv, "-"+m)
	}
	daemon, err := labproc.Start("portsentry", false, sc.l.T.ns.Argv(dargv...)...)
	if err != nil {
		return nil, err
	}
	sc.undo = append(sc.undo, func() {
		if err := daemon.Stop(syscall.SIGTERM, 5*time.Second); err != nil && sc.r.err == nil && !labproc.IsSignalExit(err) {
			sc.r.notes = append(sc.r.notes, fmt.Sprintf("the daemon's exit: %v", err))
		}
		_ = os.WriteFile(filepath.Join(sc.dir, "daemon.log"), []byte(daemon.Output()), 0o644)
	})
	if err := daemon.WaitOutput(sc.ctx, "active and listening", 15*time.Second); err != nil {
		if out := daemon.Output(); strings.Contains(out, "not supported") {
			return nil, fmt.Errorf("%w -%s: %s\n(connect mode works today: -mode tcp,udp)",
				errModeUnsupported, strings.Join(sc.o.modes, " -"), strings.TrimSpace(labproc.Tail(out, 1)))
		}
		return nil, fmt.Errorf("starting the daemon: %w", err)
	}
	if sc.o.blocker == blockerNFT {
		for _, line := range strings.Split(daemon.Output(), "\n") {
			if strings.Contains(line, trapMark) {
				sc.r.trapLine = strings.TrimSpace(line)
				break
			}
		}
		if sc.r.trapLine == "" {
			return nil, fmt.Errorf("the daemon did not set the kernel trap (no %q line):\n%s", trapMark, daemon.Tail())
		}
	}
	return daemon, nil
}

// startCapture records everything from and to S's addresses on T's
// interface; it returns tcpdump and the capture file.
func (sc *scanRun) startCapture() (*labproc.Proc, string, error) {
	pcap := filepath.Join(sc.dir, "t.pcap")
	filter := fmt.Sprintf("ip host %s or ip6 host %s", sc.l.S.v4, sc.l.S.v6)
	dump, err := labproc.Start("tcpdump", false, sc.l.T.ns.Argv(sc.t.tcpdump, "-i", labIf, "-nn", "-tt", "-Z", "root",
		"-s", "256", "-B", "32768", "--time-stamp-precision=nano", "-w", pcap, filter)...)
	if err != nil {
		return nil, "", err
	}
	sc.undo = append(sc.undo, dump.Kill)
	if err := dump.WaitOutput(sc.ctx, "listening on", 10*time.Second); err != nil {
		return nil, "", fmt.Errorf("starting tcpdump: %w", err)
	}
	return dump, pcap, nil
}

// startInnocent starts the innocent host, using T's services already when
// the scan starts.
func (sc *scanRun) startInnocent() (*labproc.Proc, error) {
	inn, err := labproc.Start("innocent client", true, sc.l.I.ns.Argv(sc.self, labsvc.Innocent,
		"-v4", sc.l.T.v4.String(), "-v6", sc.l.T.v6.String(), "-every", "50ms")...)
	if err != nil {
		return nil, err
	}
	sc.undo = append(sc.undo, inn.Kill)
	if err := inn.WaitOutput(sc.ctx, labsvc.ReadyMark, 10*time.Second); err != nil {
		return nil, fmt.Errorf("the innocent host cannot use T's services before the scan: %w", err)
	}
	return inn, nil
}

// runScanner runs the scan in S to its end. A scanner that fails is
// recorded and the scan still measured; only an interruption is an error.
func (sc *scanRun) runScanner() (*labproc.Proc, error) {
	argv := sc.def.argv(sc.l)
	path := sc.t.nmap
	if sc.def.tool == "masscan" {
		path = sc.t.masscan
	}
	scanner, err := labproc.Start(sc.def.tool, false, sc.l.S.ns.Argv(append([]string{path}, argv[1:]...)...)...)
	if err != nil {
		return nil, err
	}
	began := time.Now()
	serr := scanner.Wait(sc.ctx, sc.def.timeout)
	sc.r.duration = time.Since(began)
	if sc.ctx.Err() != nil {
		return nil, context.Cause(sc.ctx)
	}
	_ = os.WriteFile(filepath.Join(sc.dir, "scanner.out"), []byte(scanner.Output()), 0o644)
	if serr != nil {
		sc.r.err = fmt.Errorf("%s: %v:\n%s", sc.def.tool, serr, scanner.Tail())
	}
	sc.r.scanned = scannerView(sc.def.tool, scanner.Output())
	return scanner, nil
}

// stopInnocent ends the innocent host and reads what it went through.
func (sc *scanRun) stopInnocent(inn *labproc.Proc) {
	_ = inn.Stop(0, 8*time.Second)
	if ir, err := labsvc.ParseInnocent(inn.Output()); err != nil {
		sc.r.notes = append(sc.r.notes, fmt.Sprintf("innocent client: %v: %s", err, inn.Tail()))
		sc.r.innocent.Failures = -1
	} else {
		sc.r.innocent = ir
	}
}

// stopCapture ends tcpdump and reads how many packets it dropped.
func (sc *scanRun) stopCapture(dump *labproc.Proc) {
	if err := dump.Stop(syscall.SIGINT, 10*time.Second); err != nil && !labproc.IsSignalExit(err) {
		sc.r.notes = append(sc.r.notes, fmt.Sprintf("tcpdump: %v", err))
	}
	if m := dropRE.FindStringSubmatch(dump.Output()); m != nil {
		sc.r.drops, _ = strconv.Atoi(m[1])
	}
}

// bans reads who was banned, and when, and what the daemon's log says of
// the innocent host. It returns the addresses other than S and I that
// were banned.
func (sc *scanRun) bans(daemonLog string) ([]string, error) {
	r, l := sc.r, sc.l
	scannerAddr := l.S.v4
	if sc.def.v6 {
		scannerAddr = l.S.v6
	}
	var also []string
	var err error
	switch sc.o.blocker {
	case blockerCommand:
		also, err = r.commandBans(sc.ctx, l, sc.t, sc.dir, scannerAddr)
	case blockerNFT:
		also, err = r.nftBans(sc.ctx, l, sc.t, daemonLog, scannerAddr)
	case blockerKillRoute:
		also, err = r.killRouteBans(sc.ctx, l, sc.t, scannerAddr)
	}
	if err != nil {
		return also, err
	}
	for _, line := range strings.Split(daemonLog, "\n") {
		if !mentions(line, l.I.v4) && !mentions(line, l.I.v6) {
			continue
		}
		if r.innocentSeen++; r.innocentSeen == 1 {
			r.innocentSample = strings.TrimSpace(line)
		}
		if strings.Contains(line, "has been blocked") || strings.Contains(line, "blocked: [true]") {
			r.innocentBanned = append(r.innocentBanned, "daemon log: "+strings.TrimSpace(line))
		}
	}
	return also, nil
}

// measure reads the capture: probes, replies, and when the block landed;
// and adds the notes worth a reader's attention.
func (sc *scanRun) measure(pcap, scannerOut string, also []string) error {
	r, l := sc.r, sc.l
	pkts, err := readPcap(pcap)
	if err != nil {
		return sc.fail(fmt.Errorf("reading the capture: %w", err))
	}
	scanners, targets := []netip.Addr{l.S.v4, l.S.v6}, []netip.Addr{l.T.v4, l.T.v6}
	if r.blocker == blockerKillRoute && r.inSet {
		// No program's clock tells when the rule landed: T answered
		// every probe until then, and none after.
		r.blockAt = lastFreshReply(pkts, scanners, targets)
	}
	r.stats = analyze(pkts, scanners, targets, r.blockTime())
	if r.stats.probes == 0 {
		return sc.fail(errors.New("the capture holds no probe from S"))
	}
	for _, a := range also {
		r.notes = append(r.notes, "also banned: "+a)
	}
	// A handful of replies is worth naming: which probes got through.
	if r.stats.replies > 0 && r.stats.replies <= maxListedReplies {
		lines, _ := describeReplies(pkts, scanners, targets, r.stats.firstProbe, maxListedReplies)
		r.notes = append(r.notes, "T's replies to S, after the first probe: "+strings.Join(lines, "; "))
	}
	if sc.def.tool == "masscan" {
		if n := strings.Count(scannerOut, "Discovered open port"); n != r.stats.open {
			r.notes = append(r.notes, fmt.Sprintf("masscan reported %d open ports; T answered %d ports with SYN/ACK", n, r.stats.open))
		}
	}
	if r.drops > 0 {
		r.notes = append(r.notes, fmt.Sprintf("tcpdump's kernel buffer dropped %d packets: counts are low", r.drops))
	}
	if r.innocentSeen > 0 {
		r.notes = append(r.notes, fmt.Sprintf("the daemon logged %d lines naming the innocent host, e.g. `%s`", r.innocentSeen, r.innocentSample))
	}
	return nil
}

// scannerView summarises what the scanner itself reported: nmap's port
// states (from its XML output, which unlike -oG keeps every ignored state)
// or masscan's open ports.
func scannerView(tool, out string) string {
	if tool == "masscan" {
		return fmt.Sprintf("%d open", strings.Count(out, "Discovered open port"))
	}
	i := strings.Index(out, "<?xml")
	if i < 0 {
		return "no nmap report"
	}
	var run nmapRun
	if err := xml.Unmarshal([]byte(out[i:]), &run); err != nil {
		return "unreadable nmap report"
	}
	counts := map[string]int{}
	var order []string
	add := func(state string, n int) {
		if _, ok := counts[state]; !ok {
			order = append(order, state)
		}
		counts[state] += n
	}
	timedOut := false
	for _, h := range run.Hosts {
		timedOut = timedOut || h.TimedOut == "true"
		for _, p := range h.Ports {
			add(p.State.State, 1)
		}
		for _, e := range h.Extra {
			add(e.State, e.Count)
		}
	}
	slices.SortStableFunc(order, func(a, b string) int { return counts[b] - counts[a] })
	var parts []string
	for _, s := range order {
		parts = append(parts, fmt.Sprintf("%s %d", s, counts[s]))
	}
	if timedOut {
		parts = append(parts, "host timed out")
	}
	if len(parts) == 0 {
		return "—"
	}
	return strings.Join(parts, ", ")
}

// nmapRun is the part of nmap's XML report scanlab reads.
type nmapRun struct {
	Hosts []struct {
		TimedOut string `xml:"timedout,attr"`
		Ports    []struct {
			State struct {
				State string `xml:"state,attr"`
			} `xml:"state"`
		} `xml:"ports>port"`
		Extra []struct {
			State string `xml:"state,attr"`
			Count int    `xml:"count,attr"`
		} `xml:"ports>extraports"`
	} `xml:"host"`
}

// maxListedReplies: up to this many replies to S are listed in the notes.
const maxListedReplies = 12

// trapMark starts the daemon's line telling the kernel trap is set.
const trapMark = "kernel trap set on"

// commandBans reads, for the command blocker, who the block script banned
// and when, and T's ban table. It returns the addresses other than S and I
// that were banned.
func (r *scanResult) commandBans(ctx context.Context, l *lab, t tools, dir string, scannerAddr netip.Addr) ([]string, error) {
	var err error
	r.blocks, err = readBlocks(filepath.Join(dir, "blocks.log"))
	if err != nil {
		return nil, err
	}
	var also []string
	for _, b := range r.blocks {
		switch {
		case b.addr == scannerAddr:
			if r.blockAt.IsZero() || b.at.Before(r.blockAt) {
				r.blockAt = b.at
			}
		case b.addr == l.I.v4 || b.addr == l.I.v6:
			r.innocentBanned = append(r.innocentBanned, "block command ran for "+b.addr.String())
		default:
			also = append(also, fmt.Sprintf("%s (%s)", b.addr, b.set))
		}
	}
	table, err := labproc.Run(ctx, 10*time.Second, l.T.ns.Argv(t.nft, "list", "table", "inet", "lab")...)
	if err != nil {
		return also, err
	}
	for _, a := range []netip.Addr{l.I.v4, l.I.v6} {
		if mentions(table, a) {
			r.innocentBanned = append(r.innocentBanned, a.String()+" in T's ban set")
		}
	}
	r.inSet = mentions(table, scannerAddr)
	if !r.blockAt.IsZero() && !r.inSet {
		r.notes = append(r.notes, fmt.Sprintf("the block script recorded %s but it is not in the ban set", scannerAddr))
	}
	return also, nil
}

// nftBans reads, for the nftables blocker, when the daemon logged S's ban,
// and the daemon's ban sets ban4 and ban6 in T: S must be there, I never.
// It returns the addresses other than S and I that were banned.
func (r *scanResult) nftBans(ctx context.Context, l *lab, t tools, daemonLog string, scannerAddr netip.Addr) ([]string, error) {
	r.blocks = nativeBlocks(daemonLog)
	for _, b := range r.blocks {
		if b.addr == scannerAddr && (r.blockAt.IsZero() || b.at.Before(r.blockAt)) {
			r.blockAt = b.at
		}
	}
	var also []string
	for _, set := range []string{"ban4", "ban6"} {
		out, err := labproc.Run(ctx, 10*time.Second, l.T.ns.Argv(t.nft, "-j", "list", "set", "inet", daemonTable, set)...)
		if err != nil {
			return also, fmt.Errorf("reading the daemon's ban set: %w", err)
		}
		elems, err := nftset.Parse([]byte(out))
		if err != nil {
			return also, fmt.Errorf("nft -j list set inet %s %s: %w", daemonTable, set, err)
		}
		for _, a := range nftset.Addrs(elems) {
			switch {
			case a == scannerAddr:
				r.inSet = true
			case a == l.I.v4 || a == l.I.v6:
				r.innocentBanned = append(r.innocentBanned, a.String()+" in T's set "+set)
			default:
				also = append(also, fmt.Sprintf("%s (%s)", a, set))
			}
		}
	}
	switch {
	case !r.inSet:
		r.notes = append(r.notes, fmt.Sprintf("%s is not in T's ban set after the scan", scannerAddr))
	case r.blockAt.IsZero():
		r.notes = append(r.notes, fmt.Sprintf("%s is in T's ban set, but the daemon logged no \"has been blocked via nftables\" line for it", scannerAddr))
	}
	return also, nil
}

// nativeBlockRE matches the daemon's line for a ban by the nftables
// blocker, after its timestamp (logline.Timestamp2x, milliseconds).
var nativeBlockRE = regexp.MustCompile(`^(\S+) attackalert: Host (\S+) has been blocked via nftables\b`)

// nativeBlocks returns the daemon's "has been blocked via nftables" lines,
// with their timestamps.
func nativeBlocks(daemonLog string) []blockRecord {
	var recs []blockRecord
	for _, line := range strings.Split(daemonLog, "\n") {
		m := nativeBlockRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		at, err := time.Parse(logline.Timestamp2x, m[1])
		if err != nil {
			continue
		}
		a, err := netip.ParseAddr(m[2])
		if err != nil {
			continue
		}
		recs = append(recs, blockRecord{set: "nftables", addr: a.Unmap(), at: at})
	}
	return recs
}

// iptablesRuleRE matches a rule of `iptables -S INPUT` dropping a source.
var iptablesRuleRE = regexp.MustCompile(`^-A INPUT -s (\S+?)(?:/\d+)? -j DROP$`)

// killRouteBans reads, for the killroute blocker, whom KILL_ROUTE dropped:
// the rules of T's INPUT chains. It returns the addresses other than S
// and I that were banned.
func (r *scanResult) killRouteBans(ctx context.Context, l *lab, t tools, scannerAddr netip.Addr) ([]string, error) {
	var also []string
	for _, ipt := range []string{t.iptables, t.ip6tables} {
		out, err := labproc.Run(ctx, 10*time.Second, l.T.ns.Argv(ipt, "-S", "INPUT")...)
		if err != nil {
			return also, fmt.Errorf("reading T's INPUT chain: %w", err)
		}
		for _, line := range strings.Split(out, "\n") {
			m := iptablesRuleRE.FindStringSubmatch(strings.TrimSpace(line))
			if m == nil {
				continue
			}
			a, err := netip.ParseAddr(m[1])
			if err != nil {
				continue
			}
			switch {
			case a == scannerAddr:
				r.inSet = true
			case a == l.I.v4 || a == l.I.v6:
				r.innocentBanned = append(r.innocentBanned, a.String()+" dropped in T's INPUT chain")
			default:
				also = append(also, a.String()+" (INPUT chain)")
			}
		}
	}
	if !r.inSet {
		r.notes = append(r.notes, fmt.Sprintf("%s is not dropped in T's INPUT chain after the scan", scannerAddr))
	}
	return also, nil
}
