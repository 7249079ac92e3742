// Package report tells what the daemon saw and did. Every destination goes
// through one Reporter: the log lines (wording from package logline), the
// history and blocked files (package history), and the Observers beside
// them: Prometheus metrics, the JSON event log and alerts. The enforcement
// layer hands it outcomes; nothing here decides or blocks anything.
//
// A new report destination is an Observer (see observers.go).
//
// # Lines that may be lost, records that may not
//
// Outcomes wait in one bounded queue, in order. A line that is only
// logging (a probe below the trigger, an already blocked host) is dropped
// and counted when the queue is nearly full. An outcome that must be
// recorded, the log-only mode's report (its history line is what fail2ban
// acts on), is never dropped: it has the queue's last reserved slots to
// itself, and when even those are full Report waits for room (the event
// loop then slows down and the sensors' own queue drops probes instead,
// counted). Outcomes still queued when Run ends are written before it
// returns, and Close writes any that came later.
//
// # Names
//
// With RESOLVE_HOST="1", names are looked up by a small pool (a few
// workers, a bounded queue), never by the goroutine that writes the lines:
// a source's lines wait for its name (at most RESOLVE_TIMEOUT) while the
// other sources' lines go on; when the pool's queue is full, a line has the
// address instead.
package report

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portsentry-go/portsentry/internal/enforce/bans"
	"github.com/portsentry-go/portsentry/internal/enforce/respond"
	"github.com/portsentry-go/portsentry/internal/engine"
	"github.com/portsentry-go/portsentry/internal/event"
	"github.com/portsentry-go/portsentry/internal/report/history"
	"github.com/portsentry-go/portsentry/internal/report/logline"
	"github.com/portsentry-go/portsentry/internal/report/metrics"
	"github.com/portsentry-go/portsentry/internal/report/output"
	"github.com/portsentry-go/portsentry/internal/report/resolve"
)

const (
	// queueSize bounds the outcomes waiting to be logged: a flood loses
	// lines (counted), never grows memory.
	queueSize = 4096
	// reserved of the queue's slots are kept for outcomes that must be
	// recorded: lines that may be dropped are, past queueSize-reserved.
	reserved = 1024
	// resolveWorkers look names up at a time, and resolveQueue more may
	// wait: with a name server that never answers, a line waits at most
	// (resolveQueue/resolveWorkers + 1) RESOLVE_TIMEOUTs for its name.
	resolveWorkers = 4
	resolveQueue   = 12
	// maxWaiting bounds the outcomes waiting for their source's name;
	// past it they are logged with the address.
	maxWaiting = 4096
)

// Settings are what reporting takes from the configuration. A reload swaps
// them whole.
type Settings struct {
	HistoryFile string // "" writes no history
	BlockedFile string // "" writes no blocked file
	// History2x writes 2.x's "Scan from" lines to the history instead of
	// 1.2's block records (HISTORY_FORMAT="2.x").
	History2x bool
	// Resolve turns addresses into host names (RESOLVE_HOST="1").
	Resolve        bool
	ResolveTimeout time.Duration
}

// Outcome is an event that needs no response, and the engine's verdict.
type Outcome struct {
	Event   event.Event
	Verdict engine.Verdict
	// Refused is set when the engine asked for a response that the
	// never-block guard refused (a local or ignored address under -L):
	// logged, but recorded nowhere that fail2ban or a restart would act on.
	Refused bool
	// Suppressed counts the lines about this source held back since the
	// last one logged.
	Suppressed int
	// Forged, when set, says the event claimed a peer's address with
	// another hop count than these, the peer's own: logged as forged,
	// recorded in the event stream, never in the history (the Verdict is
	// not used).
	Forged []uint8
	// Unrouted, when set, says the event's source fails the reverse-path
	// check: logged as forged, recorded in the event stream, never in the
	// history.
	Unrouted bool
}

// Response is a response that ran, and what it did.
type Response struct {
	Event   event.Event
	Verdict engine.Verdict
	Name    string // the source's name (its address when not resolved)
	Result  respond.Result
	Ban     *bans.Ban // the ban in force after a block; nil when none
	Blocker string    // what applied the ban: "nftables", …, "command"
}

// Reporter writes every report. Its methods are safe for concurrent use.
type Reporter struct {
	log       *slog.Logger
	observers []Observer
	queue     chan Outcome
	dropped   atomic.Uint64
	cur       atomic.Pointer[current]
	closers   []func()
	dns       resolve.DNS    // nil: the system's; tests set it before Reconfigure
	last      *lastDetection // nil unless Open was asked for it

	// names looks names up for the lines; waiting holds, per source being
	// looked up, its outcomes in order (nWaiting in all). Run's own.
	names    *resolve.Pool
	waiting  map[netip.Addr][]Outcome
	nWaiting int
	// stopped is closed when Run returns: Report then records what must be
	// recorded itself.
	stopped  chan struct{}
	stopOnce sync.Once
}

// current is what a Settings opened.
type current struct {
	s        Settings
	resolver *resolve.Resolver // nil: names are addresses
	history  *history.Appender // nil when HistoryFile is ""
	blocked  *history.Appender // nil when BlockedFile is ""
}

// New returns a reporter that logs to log; Open adds the observers.
func New(log *slog.Logger, s Settings) *Reporter {
	r := &Reporter{
		log:     log,
		queue:   make(chan Outcome, queueSize),
		names:   resolve.NewPool(resolveWorkers, resolveQueue),
		waiting: make(map[netip.Addr][]Outcome),
		stopped: make(chan struct{}),
	}
	r.Reconfigure(s)
	return r
}

// Reconfigure applies new settings (a reload).
func (r *Reporter) Reconfigure(s Settings) {
	c := &current{s: s}
	if s.Resolve {
		c.resolver = resolve.New(s.ResolveTimeout, 4096, r.dns)
	}
	if s.HistoryFile != "" {
		// Never rotated here: fail2ban reads it, logrotate rotates it.
		c.history = &history.Appender{Path: s.HistoryFile}
	}
	if s.BlockedFile != "" {
		// Bounded: a flood of blocks from random sources must not fill
		// the disk. The rotated copy is reloaded at start too.
		c.blocked = &history.Appender{Path: s.BlockedFile, MaxSize: history.BlockedMaxSize}
	}
	r.cur.Store(c)
}

// Name is addr's host name, or addr itself (RESOLVE_HOST="0", no name, a
// name that is not a plain host name, or a timeout).
func (r *Reporter) Name(ctx context.Context, addr netip.Addr) string {
	return r.cur.Load().resolver.Name(ctx, addr)
}

// Dropped is how many outcomes were lost to a full queue since start: lines
// only, never an outcome that must be recorded.
func (r *Reporter) Dropped() uint64 { return r.dropped.Load() }

// Decided counts one decided event: every event, on the event loop, so it
// must stay cheap (observers only count here). A response is counted when
// it is done.
func (r *Reporter) Decided(ev event.Event, a engine.Action) {
	act, ok := metrics.FromEngine(a)
	if !ok {
		return
	}
	for _, o := range r.observers {
		o.Decided(ev, act)
	}
}

// Forged counts a probe that claimed a peer's address with another hop
// count. The caller reports it (Outcome.Forged) when the line is due.
func (r *Reporter) Forged(ev event.Event) {
	for _, o := range r.observers {
		o.Decided(ev, metrics.Forged)
	}
}

// Report queues an outcome to be logged off the event loop. A line that is
// only logging never waits: when the queue is nearly full it is dropped and
// counted. An outcome that must be recorded (mustRecord) is never dropped:
// when the queue is full, Report waits for room; once Run has returned, it
// is written here. So Run must be running, or have run.
func (r *Reporter) Report(o Outcome) {
	if !mustRecord(o) {
		if len(r.queue) >= queueSize-reserved {
			r.dropped.Add(1)
			return
		}
		select {
		case r.queue <- o:
		default:
			r.dropped.Add(1)
		}
		return
	}
	select {
	case r.queue <- o:
		return
	default:
	}
	select {
	case r.queue <- o:
	case <-r.stopped:
		r.logOutcome(o, r.knownName(r.cur.Load(), o.Event.Src))
	}
}

// mustRecord tells an outcome that must never be dropped: a report in
// log-only mode, whose history line fail2ban acts on (the engine will not
// report the source again). A refused one is recorded nowhere.
func mustRecord(o Outcome) bool {
	return o.Forged == nil && !o.Unrouted && o.Verdict.Action == engine.Report && !o.Refused
}

// Run logs queued outcomes, in order for each source, until ctx is done,
// then the ones still queued or waiting for a name. Host names are looked
// up by the pool, off the packet path and off this goroutine.
func (r *Reporter) Run(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { r.names.Run(ctx) })
	defer func() {
		cancel()
		wg.Wait()
		r.stopOnce.Do(func() { close(r.stopped) })
		r.drain()
	}()
	for {
		select {
		case <-ctx.Done():
			// What waits for a name is written with what is known.
			c := r.cur.Load()
			for addr, waiting := range r.waiting {
				name := r.knownName(c, addr)
				for _, o := range waiting {
					r.logOutcome(o, name)
				}
			}
			clear(r.waiting)
			r.nWaiting = 0
			return
		case o := <-r.queue:
			r.handle(o)
		case res := <-r.names.Results():
			waiting := r.waiting[res.Addr]
			delete(r.waiting, res.Addr)
			r.nWaiting -= len(waiting)
			for _, o := range waiting {
				r.logOutcome(o, res.Name)
			}
		}
	}
}

// drain writes what is still queued, names as far as known. Run does it as
// it ends, Close once more for what came after.
func (r *Reporter) drain() {
	c := r.cur.Load()
	for {
		select {
		case o := <-r.queue:
			r.logOutcome(o, r.knownName(c, o.Event.Src))
		default:
			return
		}
	}
}

// handle logs o now if its lines need no name or its source's name is
// known, or has it wait for the name (behind its source's earlier lines).
// Run only.
func (r *Reporter) handle(o Outcome) {
	c, src := r.cur.Load(), o.Event.Src
	if !needsName(c, o) {
		r.logOutcome(o, r.knownName(c, src))
		return
	}
	if waiting, ok := r.waiting[src]; ok {
		if r.nWaiting < maxWaiting {
			r.waiting[src] = append(waiting, o)
			r.nWaiting++
			return
		}
		r.logOutcome(o, src.String())
		return
	}
	if name, ok := c.resolver.Cached(src); ok {
		r.logOutcome(o, name)
		return
	}
	if r.nWaiting < maxWaiting && r.names.Submit(c.resolver, src) {
		r.waiting[src] = []Outcome{o}
		r.nWaiting++
		return
	}
	// The pool is busy (a slow name server, a flood of sources): the
	// address now rather than the name late.
	r.logOutcome(o, src.String())
}

// needsName tells the outcomes whose lines show the source's name: those
// wait for it. Others (ignored, service, forged, unrouted) are written at once, with
// the name if it is known already.
func needsName(c *current, o Outcome) bool {
	if c.resolver == nil || o.Forged != nil || o.Unrouted {
		return false
	}
	switch o.Verdict.Action {
	case engine.Counted, engine.Pending, engine.AlreadyBlocked, engine.AlreadyReported, engine.Report:
		return true
	}
	return false
}

// knownName is addr's name if looked up already, else the address.
func (r *Reporter) knownName(c *current, addr netip.Addr) string {
	if name, ok := c.resolver.Cached(addr); ok {
		return name
	}
	return addr.String()
}

// logOutcome writes o's lines and records, with name for its source.
// Each line carries the event for the journal's fields (output.Event).
func (r *Reporter) logOutcome(o Outcome, name string) {
	ev, c := o.Event, r.cur.Load()
	if o.Unrouted || o.Forged != nil {
		if r.wantRecords() {
			r.record(Record{Event: ev, Action: metrics.Forged, Host: ev.Src.String()})
		}
		about := output.Event(ev, metrics.Forged.String())
		if o.Suppressed > 0 {
			r.log.Info(logline.MorePackets(ev.Src.String(), o.Suppressed), about)
		}
		if o.Unrouted {
			r.log.Warn(logline.Unrouted(ev), about)
		} else {
			r.log.Warn(logline.Forged(ev, o.Forged), about)
		}
		return
	}
	// Traffic for a service is no probe: counted (metrics), never
	// recorded, or every client's connection would cost a line of the
	// event stream.
	act, ok := metrics.FromEngine(o.Verdict.Action)
	if ok && act != metrics.Service && r.wantRecords() {
		r.record(Record{Event: ev, Action: act, Hits: o.Verdict.Count, Host: name, Refused: o.Refused})
	}
	action := ""
	if ok {
		action = act.String()
	}
	about := output.Event(ev, action)
	if o.Refused {
		r.log.Warn(logline.Protected(ev.Src.String()), about)
	}
	f := logline.False
	switch o.Verdict.Action {
	case engine.Service:
		r.log.Debug(fmt.Sprintf("%s from %s to %s port %d: a local service uses the port, not a probe", ev.Describe(), ev.Src, ev.Proto, ev.Port), about)
	case engine.Ignored:
		r.log.Info(logline.ScanFrom(ev, ev.Src.String(), logline.Outcome{Ignored: logline.True}), about)
	case engine.Counted:
		r.log.Info(logline.ScanFrom(ev, name, logline.Outcome{Ignored: f, Triggered: f}), about)
	case engine.Pending:
		// Arrived while the response runs: its outcome is not known yet,
		// and the response's own lines will tell it.
		if o.Suppressed > 0 {
			r.log.Info(logline.MorePackets(ev.Src.String(), o.Suppressed), about)
		}
		r.log.Info(logline.ScanFrom(ev, name, logline.Outcome{Ignored: f}), about)
	case engine.AlreadyBlocked:
		if o.Suppressed > 0 {
			r.log.Info(logline.MorePacketsBlocked(name, ev.Src.String(), o.Suppressed), about)
		}
		r.log.Info(logline.AlreadyBlocked(name, ev.Src.String()), about)
		r.log.Info(logline.ScanFrom(ev, name, logline.Outcome{Ignored: f, Blocked: logline.True}), about)
	case engine.AlreadyReported:
		r.log.Info(logline.ScanFrom(ev, name, logline.Outcome{Ignored: f, Triggered: logline.True, NoBlock: logline.True, Blocked: f}), about)
	case engine.Report:
		r.log.Info(logline.Attack(ev, name), about)
		line := logline.ScanFrom(ev, name, logline.Outcome{Ignored: f, Triggered: logline.True, NoBlock: logline.True, Blocked: f})
		r.log.Info(line, about)
		// As 1.2 does in log-only mode, the history records the host so
		// that fail2ban's stock jail can act on it.
		if !o.Refused {
			r.writeFiles(c, ev, name, line, false)
		}
	}
}

// Responded reports a response that ran: its log lines, the history and
// blocked files, and the observers. It runs on the responder's goroutine.
func (r *Reporter) Responded(x Response) {
	ev, res := x.Event, x.Result
	rec := Record{Event: ev, Action: metrics.BlockFailed, Hits: x.Verdict.Count, Host: x.Name, Failed: res.FailedSteps}
	if res.Blocked {
		rec.Action, rec.Ban, rec.Blocker = metrics.Blocked, x.Ban, x.Blocker
	}
	about := output.Event(ev, rec.Action.String())
	r.log.Info(logline.Attack(ev, x.Name), about)
	for _, l := range res.Lines {
		if len(res.FailedSteps) > 0 && !res.Blocked {
			r.log.Error(l, about)
		} else {
			r.log.Info(l, about)
		}
	}
	r.record(rec)
	o := logline.Outcome{Ignored: logline.False, Triggered: logline.True, NoBlock: logline.False, Blocked: logline.Of(res.Blocked)}
	line := logline.ScanFrom(ev, x.Name, o)
	r.log.Info(line, about)
	if res.Blocked {
		r.writeFiles(r.cur.Load(), ev, x.Name, line, true)
	} else {
		r.log.Error(logline.NotBlocked(ev.Src.String()), about)
	}
}

// Lifted reports the end of a ban. expired tells a ban that ran its
// course from one lifted by hand.
func (r *Reporter) Lifted(b bans.Ban, expired bool) {
	why := "unblocked by hand"
	if expired {
		why = "ban expired"
	}
	r.log.Info(logline.Unblocked(b.Addr.String(), why), output.Source(b.Addr, ""))
	for _, o := range r.observers {
		o.Lifted(b, expired)
	}
}

// Imported reports a ban made on another's word (a CrowdSec decision, a
// fleet member's ban), applied by blocker: a line, never a history or
// blocked-file record, which fail2ban would act on; the observers hear of
// it (the event stream's "imported" line, the metrics).
func (r *Reporter) Imported(b bans.Ban, how, blocker string) {
	r.log.Info(logline.Imported(b.Target(), b.Origin, b.Reason, how), output.Source(b.Addr, "imported"))
	for _, o := range r.observers {
		o.Imported(b, blocker)
	}
}

// Revoked reports the end of imported bans lifted by another origin's
// word (by: "fleet:web1", whose operator unblocked the address).
func (r *Reporter) Revoked(b bans.Ban, by string) {
	r.log.Info(logline.Revoked(b.Target(), by), output.Source(b.Addr, ""))
	for _, o := range r.observers {
		o.Lifted(b, false)
	}
}

// Withdrawn reports the end of an imported ban whose origin withdrew it
// (the decision was deleted there).
func (r *Reporter) Withdrawn(b bans.Ban) {
	r.log.Info(logline.Unblocked(b.Addr.String(), "withdrawn by "+b.Origin), output.Source(b.Addr, ""))
	for _, o := range r.observers {
		o.Lifted(b, false)
	}
}

// Reloaded reports a reload: its summary when it took effect, its error
// when it was refused.
func (r *Reporter) Reloaded(summary string, err error) {
	if err != nil {
		r.log.Error(logline.ReloadRefused(err))
	} else {
		r.log.Info(logline.Reloaded(summary))
	}
	for _, o := range r.observers {
		o.Reloaded(err == nil)
	}
}

func (r *Reporter) wantRecords() bool { return len(r.observers) > 0 }

func (r *Reporter) record(rec Record) {
	for _, o := range r.observers {
		o.Record(rec)
	}
}

// writeFiles writes the history (and, for a block, the blocked file).
func (r *Reporter) writeFiles(c *current, ev event.Event, name, scanFrom string, blocked bool) {
	now := time.Now()
	rec := logline.History12(now, name, ev)
	if c.history != nil {
		line := rec
		if c.s.History2x {
			line = logline.History2x(now, scanFrom)
		}
		if err := c.history.Append(line); err != nil {
			r.log.Error(logline.Error("cannot write history file: " + err.Error()))
		}
	}
	if blocked && c.blocked != nil {
		if err := c.blocked.Append(rec); err != nil {
			r.log.Error(logline.Error("cannot write blocked file: " + err.Error()))
		}
	}
}
