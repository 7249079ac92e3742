package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/portsentry-go/portsentry/test/internal/labdaemon"
	"github.com/portsentry-go/portsentry/test/internal/labproc"
	"github.com/portsentry-go/portsentry/test/internal/labsvc"
	"github.com/portsentry-go/portsentry/test/internal/nftset"
)

// scenario is one of the benchmark's situations.
type scenario struct {
	name, title string
	run         func(sr *scenarioRun) error
}

// scenarios in their default order.
var scenarios = []scenario{
	{"forged", "forged SYNs and UDP datagrams claiming a client one hop away, then that client's own nmap", func(sr *scenarioRun) error { return sr.forged(defaultTTL, true) }},
	{"forged-hop", "the same forgeries from a forger who guessed the client's hop count", func(sr *scenarioRun) error { return sr.forged(defaultTTL-1, false) }},
	{"restart", "clients of a service that is stopped for 2 s and started again", (*scenarioRun).restart},
	{"traceroute", "traceroute and mtr from a client two hops away", (*scenarioRun).traceroutes},
	{"slowscan", `nmap -T1 (a probe every 15 s) with SCAN_TRIGGER="3"`, (*scenarioRun).slowScan},
}

func scenarioNames() []string {
	out := make([]string, len(scenarios))
	for i, s := range scenarios {
		out[i] = s.name
	}
	return out
}

func scenarioByName(name string) (scenario, bool) {
	for _, s := range scenarios {
		if s.name == name {
			return s, true
		}
	}
	return scenario{}, false
}

// row is one measurement: what was measured, its target (empty: for
// information) and what was found; met says whether the target was met.
type row struct {
	measure, target, result string
	met                     bool
}

// result is the outcome of one scenario.
type result struct {
	s     scenario
	err   error // the scenario could not be measured (or only in part)
	rows  []row
	notes []string
	// trapLine is the daemon's line telling the kernel trap is set.
	trapLine string
}

// scenarioRun is one scenario under way.
type scenarioRun struct {
	ctx      context.Context
	e        *env
	dir      string
	r        *result
	d        *labdaemon.Daemon // the current daemon
	f        labdaemon.Files   // and its files
	n        int               // daemons started so far
	progress func(string, ...any)
	undo     []func() // run last first when the scenario ends
}

// runScenario runs one scenario. Every process it starts is stopped
// before it returns.
func runScenario(ctx context.Context, e *env, s scenario, dir string, progress func(string, ...any)) *result {
	sr := &scenarioRun{ctx: ctx, e: e, dir: dir, r: &result{s: s}, progress: progress}
	defer sr.cleanup()
	if err := s.run(sr); err != nil && sr.r.err == nil {
		sr.r.err = err
	}
	return sr.r
}

func (sr *scenarioRun) cleanup() {
	for i := len(sr.undo) - 1; i >= 0; i-- {
		sr.undo[i]()
	}
	sr.undo = nil
}

func (sr *scenarioRun) note(format string, a ...any) {
	sr.r.notes = append(sr.r.notes, fmt.Sprintf(format, a...))
}

// add records a measurement with a target.
func (sr *scenarioRun) add(measure, target, result string, met bool) {
	sr.r.rows = append(sr.r.rows, row{measure: measure, target: target, result: result, met: met})
}

// info records a measurement without a target.
func (sr *scenarioRun) info(measure, result string) {
	sr.r.rows = append(sr.r.rows, row{measure: measure, result: result})
}

// startDaemon stops the scenario's previous daemon, if any, deletes its
// ban table and starts a fresh daemon on the shipped configuration with
// set's keys changed, its files in a directory of its own.
func (sr *scenarioRun) startDaemon(set map[string]string) error {
	if sr.d != nil {
		sr.stopDaemon()
	}
	sr.n++
	dir := fmt.Sprintf("%s/daemon-%d", sr.dir, sr.n)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	sr.f = labdaemon.NewFiles(dir)
	if err := labdaemon.Write(sr.e.root, sr.f, set); err != nil {
		return err
	}
	if err := labdaemon.ResetTable(sr.ctx, sr.e.l.T.ns, sr.e.nft, dir); err != nil {
		return err
	}
	d, err := labdaemon.Start(sr.ctx, sr.e.l.T.ns, sr.e.bin, sr.f, set["SCAN_TRIGGER"] == "")
	if err != nil {
		return err
	}
	sr.d = d
	if d.TrapLine != "" {
		sr.r.trapLine = d.TrapLine
	}
	sr.undo = append(sr.undo, sr.stopDaemon)
	return nil
}

// stopDaemon stops the current daemon, once.
func (sr *scenarioRun) stopDaemon() {
	if sr.d == nil || sr.d.Proc.Exited() {
		return
	}
	if err := sr.d.Stop(); err != nil {
		sr.note("the daemon's exit: %v", err)
	}
}

// start starts argv in h's namespace with a stdin pipe (a helper of
// trustlab's or labsvc's: it stops when stdin closes) and waits for its
// ReadyMark.
func (sr *scenarioRun) start(name string, h host, argv ...string) (*labproc.Proc, error) {
	p, err := labproc.Start(name, true, h.ns.Argv(argv...)...)
	if err != nil {
		return nil, err
	}
	sr.undo = append(sr.undo, p.Kill)
	if err := p.WaitOutput(sr.ctx, labsvc.ReadyMark, 15*time.Second); err != nil {
		return nil, err
	}
	return p, nil
}

// finish stops a helper started with start and reads its result into v.
func finish(p *labproc.Proc, v any) error {
	if err := p.Stop(0, 10*time.Second); err != nil {
		return fmt.Errorf("%s: %w:\n%s", p.Name(), err, p.Tail())
	}
	if err := parseResult(p.Output(), v); err != nil {
		return fmt.Errorf("%s: %w:\n%s", p.Name(), err, p.Tail())
	}
	return nil
}

// inSet reports whether addr is in the daemon's nftables set (ban4, ban6,
// peer4, …) of its family in T. The set is listed (`nft -j list set`,
// read with package nftset), not asked with `nft get element`: nft 1.0.6
// aborts on that (an assertion in concat_expr_msort_value) once the
// table's concatenated hop sets hold elements.
func (sr *scenarioRun) inSet(set4 string, addr netip.Addr) (bool, error) {
	set := set4
	if addr.Is6() {
		set = strings.TrimSuffix(set4, "4") + "6"
	}
	out, err := labproc.Run(sr.ctx, 30*time.Second, sr.e.l.T.ns.Argv(sr.e.nft, "-j", "list", "set", "inet", labdaemon.Table, set)...)
	if err != nil {
		return false, fmt.Errorf("listing %s: %w", set, err)
	}
	elems, err := nftset.Parse([]byte(out))
	if err != nil {
		return false, fmt.Errorf("nft -j list set inet %s %s: %w", labdaemon.Table, set, err)
	}
	return slices.Contains(nftset.Addrs(elems), addr), nil
}

// banned reports whether any of addrs is in a ban set, naming those that
// are.
func (sr *scenarioRun) banned(addrs ...netip.Addr) ([]netip.Addr, error) {
	var in []netip.Addr
	for _, a := range addrs {
		ok, err := sr.inSet("ban4", a)
		if err != nil {
			return in, err
		}
		if ok {
			in = append(in, a)
		}
	}
	return in, nil
}

// daemonLines returns the current daemon's output lines holding every one
// of subs.
func (sr *scenarioRun) daemonLines(subs ...string) []string {
	b, err := os.ReadFile(sr.f.Log)
	if err != nil {
		sr.note("reading the daemon's log: %v", err)
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		all := l != ""
		for _, s := range subs {
			all = all && strings.Contains(l, s)
		}
		if all {
			out = append(out, l)
		}
	}
	return out
}

// blockLines are the daemon's lines saying it blocked addr.
func (sr *scenarioRun) blockLines(addr netip.Addr) []string {
	return sr.daemonLines("Host " + addr.String() + " has been blocked")
}

// recordWait is how long the daemon has to write a scanner into its
// history file.
const recordWait = 10 * time.Second

// recorded waits until the history file names addr, or recordWait has
// passed.
func (sr *scenarioRun) recorded(addr netip.Addr) bool {
	deadline := time.Now().Add(recordWait)
	for {
		ok, err := labdaemon.InHistory(sr.f.History, addr)
		if err != nil {
			sr.note("reading the history file: %v", err)
			return false
		}
		if ok || time.Now().After(deadline) {
			return ok
		}
		select {
		case <-sr.ctx.Done():
			return false
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// sleep waits d, or less if the run is given up.
func (sr *scenarioRun) sleep(d time.Duration) error {
	select {
	case <-sr.ctx.Done():
		return sr.ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// addrList is "10.235.1.2, fd00:235:1::2", or "none".
func addrList(as []netip.Addr) string {
	if len(as) == 0 {
		return "none"
	}
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
