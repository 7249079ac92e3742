package main

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/portsentry-go/portsentry/test/internal/labdaemon"
	"github.com/portsentry-go/portsentry/test/internal/labproc"
	"github.com/portsentry-go/portsentry/test/internal/labsvc"
)

// result is the outcome of one scenario.
type result struct {
	s   scenario
	err error // the scenario could not be measured (or only in part)

	flood     time.Duration // the flood's measured length
	sent      uint64        // packets F's interface sent during the flood
	toolSent  int64         // the flooder's own count (-1: unknown)
	received  uint64        // packets T's interface received during the flood
	rxDropped uint64        // of which T's interface dropped

	before, after, end procSample // at the flood's start and end, and before the daemon stops
	files              []fileSize
	filesTotal         int64
	logBytes           int64 // the daemon's output (stdout and stderr)
	ban4, ban6         banSet

	innocent       labsvc.InnocentResult
	during, post   scanOutcome
	idle           statusSample // one `portsentry status` before the flood
	status         statusStats
	trapLine       string
	events, drops  int64 // the daemon's counters at its last status answer
	haveEventCount bool
	perfTop        []string // with -perf: the daemon's hottest symbols during the flood
	notes          []string
}

// cpuCores is the daemon's CPU use over the flood, in cores.
func (r *result) cpuCores() float64 {
	wall := r.after.at.Sub(r.before.at)
	if wall <= 0 {
		return 0
	}
	return float64(r.after.cpu-r.before.cpu) / float64(wall)
}

// rate is the flood's packet rate, per second.
func (r *result) rate() float64 {
	if r.flood <= 0 {
		return 0
	}
	return float64(r.sent) / r.flood.Seconds()
}

// env is what every scenario shares.
type env struct {
	o           *options
	l           *lab
	root, work  string
	bin, self   string
	hping3, nft string
	nmap, perf  string // perf: with -perf only
}

// scenarioRun is one scenario under way.
type scenarioRun struct {
	ctx  context.Context
	e    *env
	dir  string
	f    labdaemon.Files
	r    *result
	undo []func() // run last first when the scenario ends
}

// runScenario runs one flood with a fresh ban table and daemon, and
// measures it. Every process it starts is stopped before it returns.
func runScenario(ctx context.Context, e *env, s scenario, dir string) *result {
	sr := &scenarioRun{ctx: ctx, e: e, dir: dir, f: labdaemon.NewFiles(dir), r: &result{s: s, toolSent: -1, ban4: banSet{elems: -1}, ban6: banSet{elems: -1}}}
	defer sr.cleanup()
	if err := sr.run(); err != nil && sr.r.err == nil {
		sr.r.err = err
	}
	return sr.r
}

// cleanup stops what the scenario started, last first.
func (sr *scenarioRun) cleanup() {
	for i := len(sr.undo) - 1; i >= 0; i-- {
		sr.undo[i]()
	}
	sr.undo = nil
}

func (sr *scenarioRun) note(format string, a ...any) {
	sr.r.notes = append(sr.r.notes, fmt.Sprintf(format, a...))
}

// run goes through the scenario's phases.
func (sr *scenarioRun) run() error {
	d, err := sr.prepare()
	if err != nil {
		return err
	}
	inn, err := sr.startInnocent()
	if err != nil {
		return err
	}
	sr.r.idle = runStatus(sr.ctx, sr.e.bin, sr.f.Socket)
	if err := sr.flood(d); err != nil {
		return err
	}
	sr.scanAfter()
	sr.stopInnocent(inn)
	return sr.measureEnd(d)
}

// prepare writes the daemon's files, deletes the daemon's table left by a
// previous scenario and starts a fresh daemon.
func (sr *scenarioRun) prepare() (*labdaemon.Daemon, error) {
	if err := labdaemon.Write(sr.e.root, sr.f, nil); err != nil {
		return nil, err
	}
	if err := labdaemon.ResetTable(sr.ctx, sr.e.l.T.ns, sr.e.nft, sr.dir); err != nil {
		return nil, err
	}
	d, err := labdaemon.Start(sr.ctx, sr.e.l.T.ns, sr.e.bin, sr.f, true)
	if err != nil {
		return nil, err
	}
	sr.r.trapLine = d.TrapLine
	sr.undo = append(sr.undo, func() { sr.stopDaemon(d) })
	return d, nil
}

// stopDaemon stops the daemon, once, and reads how much it printed.
func (sr *scenarioRun) stopDaemon(d *labdaemon.Daemon) {
	if d.Proc.Exited() {
		return
	}
	if err := d.Stop(); err != nil {
		sr.note("the daemon's exit: %v", err)
	}
	sr.r.logBytes = d.LoggedBytes()
}

// startInnocent starts the innocent client, using T's services before the
// flood starts and until the last scan is over.
func (sr *scenarioRun) startInnocent() (*labproc.Proc, error) {
	l := sr.e.l
	inn, err := labproc.Start("innocent client", true, l.I.ns.Argv(sr.e.self, labsvc.Innocent,
		"-v4", l.T.v4.String(), "-v6", l.T.v6.String(), "-every", "50ms")...)
	if err != nil {
		return nil, err
	}
	sr.undo = append(sr.undo, inn.Kill)
	if err := inn.WaitOutput(sr.ctx, labsvc.ReadyMark, 10*time.Second); err != nil {
		return nil, fmt.Errorf("the innocent client cannot use T's services before the flood: %w", err)
	}
	return inn, nil
}

// flood runs the flood for -duration, with the status poller and the scan
// from S during it, and samples the daemon and the links at both ends.
func (sr *scenarioRun) flood(d *labdaemon.Daemon) error {
	l, r := sr.e.l, sr.r
	f0, t0, err := sr.sampleAll(d, &r.before)
	if err != nil {
		return err
	}
	fl, err := startFlood(l, r.s, sr.e.hping3, sr.e.self)
	if err != nil {
		return err
	}
	sr.undo = append(sr.undo, fl.Kill)
	prof := sr.startPerf(d)
	poller := startStatusPoller(sr.ctx, sr.e.bin, sr.f.Socket, sr.e.o.statusEvery)
	during, err := sr.scanDuring(fl)
	if err == nil {
		err = waitFlood(sr.ctx, fl, sr.e.o.duration-time.Since(r.before.at))
	}
	sent, serr := stopFlood(fl, r.s)
	r.flood, r.toolSent = time.Since(r.before.at), sent
	f1, t1, aerr := sr.sampleAll(d, &r.after)
	r.status = summarizeStatus(poller.finish())
	sr.stopPerf(prof)
	r.sent, r.received, r.rxDropped = f1.txPackets-f0.txPackets, t1.rxPackets-t0.rxPackets, t1.rxDropped-t0.rxDropped
	if during != nil {
		r.during = during.wait(sr.ctx)
		if end := r.during.start.Add(r.during.duration); end.After(r.after.at) {
			sr.note("the scan during the flood ended %.1f s after the flood", end.Sub(r.after.at).Seconds())
		}
	}
	for _, e := range []error{err, serr, aerr} {
		if e != nil {
			return e
		}
	}
	return nil
}

// startPerf starts perf record on the daemon, with -perf; nil otherwise
// or when perf fails (noted: the flood is measured all the same).
func (sr *scenarioRun) startPerf(d *labdaemon.Daemon) *labproc.Proc {
	if !sr.e.o.perf {
		return nil
	}
	p, err := startPerf(sr.e.perf, d.Pid(), sr.dir)
	if err != nil {
		sr.note("perf: %v", err)
		return nil
	}
	sr.undo = append(sr.undo, p.Kill)
	return p
}

func (sr *scenarioRun) stopPerf(p *labproc.Proc) {
	if p == nil {
		return
	}
	top, err := stopPerf(sr.ctx, p, sr.e.perf, sr.dir)
	if err != nil {
		sr.note("perf: %v", err)
	}
	sr.r.perfTop = top
}

// scanSettle is how long the flood runs before S starts its scan (at most
// a fifth of the flood).
const scanSettle = 3 * time.Second

// scanDuring starts S's scan once the flood has settled.
func (sr *scenarioRun) scanDuring(fl *labproc.Proc) (*scan, error) {
	if err := waitFlood(sr.ctx, fl, min(scanSettle, sr.e.o.duration/5)); err != nil {
		return nil, err
	}
	s, err := startScan(sr.e.l.S, sr.e.nmap, sr.target(), scanOutput(sr.dir, "during"))
	if err != nil {
		return nil, err
	}
	sr.undo = append(sr.undo, s.p.Kill)
	return s, nil
}

// target is T's address of the scenario's family.
func (sr *scenarioRun) target() netip.Addr {
	if sr.r.s.v6 {
		return sr.e.l.T.v6
	}
	return sr.e.l.T.v4
}

// sampleAll reads the daemon's counters into p and F's and T's link
// counters.
func (sr *scenarioRun) sampleAll(d *labdaemon.Daemon, p *procSample) (flooder, target linkCounters, err error) {
	if *p, err = sampleProc(d.Pid()); err != nil {
		return flooder, target, fmt.Errorf("the daemon's /proc: %w", err)
	}
	if flooder, err = counters(sr.e.l.F.ns); err != nil {
		return flooder, target, err
	}
	target, err = counters(sr.e.l.T.ns)
	return flooder, target, err
}

// scanAfter runs P's scan once the flood is over, then gives the daemon
// recordWait to name both scanners in its history file.
func (sr *scenarioRun) scanAfter() {
	r := sr.r
	s, err := startScan(sr.e.l.P, sr.e.nmap, sr.target(), scanOutput(sr.dir, "after"))
	if err != nil {
		r.post.err = err
		return
	}
	r.post = s.wait(sr.ctx)
	if err := waitRecorded(sr.ctx, sr.f.History, &r.during, &r.post); err != nil {
		sr.note("reading the history file: %v", err)
	}
}

// stopInnocent ends the innocent client and reads what it went through.
func (sr *scenarioRun) stopInnocent(inn *labproc.Proc) {
	_ = inn.Stop(0, 10*time.Second)
	ir, err := labsvc.ParseInnocent(inn.Output())
	if err != nil {
		sr.note("innocent client: %v: %s", err, inn.Tail())
		sr.r.innocent.Failures = -1
		return
	}
	sr.r.innocent = ir
}

// measureEnd reads the daemon's peak memory and its own event counters,
// stops it, then reads its files and the kernel's ban sets: listing a set
// of a million elements keeps the kernel busy for minutes, which must not
// be charged to a running daemon, and a change to the set during the
// listing would make nft start over.
func (sr *scenarioRun) measureEnd(d *labdaemon.Daemon) error {
	r := sr.r
	var err error
	if r.end, err = sampleProc(d.Pid()); err != nil {
		return fmt.Errorf("the daemon's /proc: %w", err)
	}
	if st := runStatus(sr.ctx, sr.e.bin, sr.f.Socket); st.err == nil {
		r.events, r.drops, r.haveEventCount = statusEvents(st.out)
	}
	sr.stopDaemon(d)
	if r.files, r.filesTotal, err = dirFiles(sr.f.State); err != nil {
		return err
	}
	r.ban4, r.ban6, err = readBanSets(sr.ctx, sr.e.l, sr.e.nft)
	return err
}
