// Package enforce acts on the engine's verdicts: it is the one decision
// point between a probe and a ban. For each event it lifts a ban that has
// run out, asks the engine, keeps the never-block guard, and queues the
// response; responders run PortSentry's ordered actions (package respond)
// and the native blocker's ban (the Jail); expiry and operator commands
// lift bans. Every outcome goes to the reporter.
//
// The engine is not safe for concurrent use, so everything that touches it
// runs in the daemon's event loop: Decide, Expire, and the functions the
// loop receives from Calls (responses done, control requests).
package enforce

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portsentry-go/portsentry/internal/enforce/bans"
	"github.com/portsentry-go/portsentry/internal/enforce/block"
	"github.com/portsentry-go/portsentry/internal/enforce/block/command"
	"github.com/portsentry-go/portsentry/internal/enforce/block/hostsdeny"
	"github.com/portsentry-go/portsentry/internal/enforce/respond"
	"github.com/portsentry-go/portsentry/internal/engine"
	"github.com/portsentry-go/portsentry/internal/event"
	"github.com/portsentry-go/portsentry/internal/ignore"
	"github.com/portsentry-go/portsentry/internal/report"
	"github.com/portsentry-go/portsentry/internal/report/logline"
	"github.com/portsentry-go/portsentry/internal/report/ratelimit"
)

// Queue sizes bound memory whatever the traffic.
const (
	respondQueue = 256
	responders   = 4
	// A source that keeps probing after its block is logged for quietBurst
	// packets per quietWindow; the rest are counted, not logged one by one.
	quietWindow = 10 * time.Second
	quietBurst  = 20
)

// Settings are what enforcement takes from the configuration. A reload
// swaps them whole; a decision uses the settings in force when it was made.
type Settings struct {
	Engine         engine.Options // Ignore and InUse are the Enforcer's own
	Plan           respond.Plan
	CommandTimeout time.Duration
	HostsDenyFile  string
	// Style2x makes $MODE$ expand to 2.x's names (a 2.x flag was used).
	Style2x bool
	// ServiceGrace is SERVICE_GRACE: how long a port stays a service's
	// after its socket is gone, for the service check.
	ServiceGrace time.Duration
	// Trap is the kernel trap the settings ask for; nil for none. Only a
	// Trapper sets it.
	Trap *block.Trap
	// ImportMax caps the lifetime of a ban from elsewhere (Import); 0
	// leaves bans.MaxDuration as the only cap.
	ImportMax time.Duration
}

// current is a Settings with what it opened.
type current struct {
	Settings
	exec respond.Executor
}

// Enforcer decides and responds. Create it with New, then Reconfigure.
type Enforcer struct {
	log      *slog.Logger
	jail     *Jail
	guard    *Guard
	rep      *report.Reporter
	services *ServiceCheck // nil: no service check (-S)
	engine   *engine.Engine
	quiet    *ratelimit.Limiter
	cur      atomic.Pointer[current]
	jobs     chan job
	calls    chan func()
	// bg runs the commands nothing waits for (UNKILL_ROUTE, a
	// KILL_RUN_CMD ending in "&"), a few at a time.
	bg *command.Queue
	// deny is the hosts.deny writer of the settings in force: one per
	// path, so that every Settings shares its batches.
	denyMu sync.Mutex
	deny   *hostsdeny.Writer
	ctx    context.Context // the daemon's: ends responses and control calls
	// sources is the engine's table size, readable off the event loop.
	sources atomic.Int64
	// peers is the kernel trap's knowledge of peers, for the daemon's own
	// decisions; unlike counts their forged-looking probes towards
	// peerTrigger. Event loop only.
	peers  peers
	unlike *engine.Engine
	// flood sums up floods of single probes. Event loop only.
	flood *flood
	// rpath is the reverse-path check of probes' sources.
	rpath reversePath
	// sharer hears of the bans to share with the fleet.
	sharer sharer
}

type job struct {
	ev    event.Event
	v     engine.Verdict
	cur   *current
	steps []respond.Step
	// route, when set, has KILL_ROUTE started already (prestart).
	route *prestarted
}

// New returns an enforcer over jail and guard that reports to rep;
// services is the service check (nil with -S). ctx is the daemon's life.
func New(ctx context.Context, jail *Jail, guard *Guard, rep *report.Reporter, services *ServiceCheck, log *slog.Logger) *Enforcer {
	e := &Enforcer{
		log: log, jail: jail, guard: guard, rep: rep, services: services,
		quiet: ratelimit.New(quietWindow, quietBurst, 4096),
		jobs:  make(chan job, respondQueue),
		calls: make(chan func(), respondQueue),
		bg:    command.NewQueue(command.QueueSize),
		ctx:   ctx,
	}
	e.engine = engine.New(engine.Options{Ignore: guard.Ignored})
	e.unlike = engine.New(peerCounting(0))
	jail.onLink = guard.OnLink
	e.flood = newFlood(guard.Ignored, jail.Key)
	e.rpath = defaultReversePath(ctx)
	if jail.trapper != nil {
		// Ports the kernel publishes by DNAT have no socket: the kernel
		// records them with the served ports (nftables only).
		services.ReadKernel(jail.trapper.Served)
	}
	return e
}

// Calls delivers work that must run in the event loop: the daemon's loop
// runs each function it receives.
func (e *Enforcer) Calls() <-chan func() { return e.calls }

// Run runs the responders and the background commands until the context
// given to New is done.
func (e *Enforcer) Run() {
	var wg sync.WaitGroup
	for range responders {
		wg.Go(func() { e.responder(e.ctx) })
	}
	wg.Go(func() {
		if left := e.bg.Run(e.ctx, command.Workers); left > 0 {
			e.log.Warn(logline.Warning(fmt.Sprintf("%d background commands (UNKILL_ROUTE, KILL_RUN_CMD ending in &) not run: the daemon stopped", left)))
		}
	})
	wg.Wait()
}

// CommandsRefused is how many background commands (UNKILL_ROUTE, a
// KILL_RUN_CMD ending in "&") were refused because the queue was full.
func (e *Enforcer) CommandsRefused() uint64 { return e.bg.Refused() }

// Reconfigure applies settings (at start and at each reload): the engine
// keeps its counts, the kernel's never-ban list and trap follow. Event
// loop only.
func (e *Enforcer) Reconfigure(s Settings) error {
	opts := s.Engine
	opts.Ignore = e.guard.Ignored
	opts.Key = e.jail.Key
	if e.services != nil {
		opts.InUse = e.services.InUse
		e.services.SetGrace(s.ServiceGrace)
	}
	e.engine.Reconfigure(opts)
	e.unlike.Reconfigure(peerCounting(s.Engine.Window))
	c := &current{Settings: s}
	c.exec = respond.Executor{Shell: command.Shell{Timeout: s.CommandTimeout}, Deny: e.denyFile(s.HostsDenyFile)}
	if e.jail.Native() {
		c.Plan.Native = e.jail.Kind()
		c.Plan.Cover = e.jail.Cover
	}
	e.cur.Store(c)
	if e.jail.Native() && (s.Plan.KillRoute != "" || s.Plan.KillRoute6 != "") {
		e.log.Warn(logline.Warning(fmt.Sprintf("BLOCKER=%q blocks with %s: KILL_ROUTE and KILL_ROUTE6 are not used", e.jail.asked, e.jail.Kind())))
	}
	return e.applyKernel(s.Trap)
}

// Decide takes one event from a sensor. Event loop only.
func (e *Enforcer) Decide(ev event.Event) {
	if e.jail.Over(ev.Src, ev.Time) {
		// Its ban has ended but the expiry tick has not run yet: lift it
		// now, so this probe counts (the kernel trap has banned it anew).
		e.Expire()
	}
	if hops, ok := e.peers.forged(ev); ok && e.spared(ev, hops) {
		return
	}
	if !e.engine.IsBlocked(ev.Src) && e.flood.single(ev) {
		e.rep.Flooded(ev)
		return
	}
	if !e.engine.IsBlocked(ev.Src) && e.rpath.fails(ev) {
		// The kernel drops it (rp_filter, or the trap's own check): a
		// forged source, as far as this host can tell.
		e.rep.Forged(ev)
		if ok, n := e.quiet.Allow(ev.Src, ev.Time); ok {
			e.rep.Report(report.Outcome{Event: ev, Unrouted: true, Suppressed: n})
		}
		// A line per source: a flood of such sources is one.
		if e.flood.acted(ev.Time) {
			e.rep.FloodBegins(floodRate, floodInterval)
			e.floodTrap(true)
		}
		return
	}
	v := e.engine.Observe(ev)
	n, _, _ := e.engine.Stats()
	e.sources.Store(int64(n))
	e.rep.Decided(ev, v.Action)
	switch v.Action {
	case engine.Respond, engine.Report, engine.Counted:
		// A source handled one by one: a response, or a line and a record.
		if e.flood.acted(ev.Time) {
			e.rep.FloodBegins(floodRate, floodInterval)
			e.floodTrap(true)
		}
	}
	switch v.Action {
	case engine.Respond:
		e.respondTo(ev, v)
	case engine.Pending, engine.AlreadyBlocked:
		ok, n := e.quiet.Allow(ev.Src, ev.Time)
		// Only now, for a line about to be logged, is the service check
		// worth its lookup: a blocked host's packets to a service are no
		// probes either.
		if !ok || (ev.Mode.Passive() && e.services.InUse(ev)) {
			return
		}
		e.rep.Report(report.Outcome{Event: ev, Verdict: v, Suppressed: n})
	default:
		e.rep.Report(report.Outcome{Event: ev, Verdict: v})
	}
}

// spared handles a probe that claims a peer's address from another
// distance (hops are the peer's own): dropped by the kernel trap without
// a ban, and here neither counted nor banned, until such probes reach
// peerTrigger ports; then the peer is acted on as a scanner, once, and its
// probes are handled as anyone's until its ban is lifted. It reports
// whether ev was spared.
func (e *Enforcer) spared(ev event.Event, hops []uint8) bool {
	switch v := e.unlike.Observe(ev); v.Action {
	case engine.Respond:
		e.unlike.Done(ev.Src, true)
		e.log.Warn(logline.PeerScanned(ev.Src.String(), peerTrigger))
		return false
	case engine.AlreadyBlocked:
		return false
	}
	e.rep.Forged(ev)
	if ok, n := e.quiet.Allow(ev.Src, ev.Time); ok {
		e.rep.Report(report.Outcome{Event: ev, Forged: hops, Suppressed: n})
	}
	return true
}

// respondTo queues the response the engine asked for, unless the guard
// refuses it (with -L the engine acts on this host's own addresses, but no
// block ever lands on them), or a reading of the kernel's peers made now
// finds ev forged after all.
func (e *Enforcer) respondTo(ev event.Event, v engine.Verdict) {
	if e.guard.NeverBlock(ev.Src) {
		e.engine.Done(ev.Src, false)
		v.Action = engine.Report
		e.rep.Report(report.Outcome{Event: ev, Verdict: v, Refused: true})
		return
	}
	if !e.unlike.IsBlocked(ev.Src) {
		if hops, ok := e.peers.forgedNow(ev); ok && e.spared(ev, hops) {
			e.engine.Done(ev.Src, false)
			return
		}
	}
	j := job{ev: ev, v: v, cur: e.cur.Load()}
	j.steps = j.cur.steps(ev, v)
	// The block first: KILL_ROUTE starts here, before the response is
	// queued for a responder (which does the rest, and writes hosts.deny
	// meanwhile), when a responder is sure to take it. Only this loop
	// sends jobs, so room seen now is room at the send.
	if len(e.jobs) < cap(e.jobs) {
		j.route = e.prestart(&j)
	}
	select {
	case e.jobs <- j:
	default:
		e.engine.Done(ev.Src, false)
		e.log.Error(logline.TooManyResponses(ev.Src.String()))
	}
}

// responder runs responses, a few hosts at a time, so that a slow command
// delays neither detection nor the other hosts.
func (e *Enforcer) responder(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-e.jobs:
			blocked := e.respond(ctx, j)
			select {
			case e.calls <- func() { e.engine.Done(j.ev.Src, blocked) }:
			case <-ctx.Done():
				return
			}
		}
	}
}

func (e *Enforcer) respond(ctx context.Context, j job) bool {
	ev, c := j.ev, j.cur
	// Resolve while the block runs: the block never waits for DNS.
	names := make(chan string, 1)
	go func() { names <- e.rep.Name(ctx, ev.Src) }()
	steps := j.steps
	x := c.exec
	if j.route != nil {
		x.Shell = j.route
		defer j.route.wait()
	}
	x.Ban = func(a netip.Addr) (string, error) { return e.jail.Ban(a, ev.Describe(), ev.Port, ev.Proto.String()) }
	x.Background, x.Late = e.bg, func(line string) { e.log.Error(line) }
	res := x.Execute(ctx, ev.Src, steps)
	if res.Blocked && !e.jail.Native() && j.v.Response != engine.LogOnly {
		e.jail.Record(ev.Src, ev.Describe(), ev.Port, ev.Proto.String())
	}
	r := report.Response{Event: ev, Verdict: j.v, Result: res, Blocker: e.jail.Kind(), Name: <-names}
	if b, ok := e.jail.Get(ev.Src); ok && res.Blocked {
		r.Ban = &b
		// A ban on this host's evidence: probes that reached a response
		// (a flood's single probes and forged-looking ones never do).
		if j.v.Response != engine.LogOnly {
			e.sharer.share(b)
		}
	}
	e.rep.Responded(r)
	return res.Blocked
}

// Tick is the event loop's once-a-second work: expiry (Expire), and the
// summary of a flood under way when its interval is over.
func (e *Enforcer) Tick(now time.Time) {
	e.Expire()
	if sum, ok := e.flood.tick(now); ok {
		e.rep.Flooding(sum)
		if sum.Ended {
			e.floodTrap(false)
		}
	}
}

// Flooding reports whether a flood is being summarized. Safe off the
// event loop.
func (e *Enforcer) Flooding() bool { return e.flood.active.Load() }

// Expire lifts the bans whose time has come, and makes the ban file
// durable. Event loop only.
func (e *Enforcer) Expire() {
	if expired := e.jail.Expire(); len(expired) > 0 {
		e.lift(expired, true)
	}
	e.jail.Sync()
}

// lift undoes bans the record no longer holds: in the engine (the host
// counts from zero again), in the firewall, in hosts.deny, and through
// UNKILL_ROUTE. Event loop only; commands run beside it.
func (e *Enforcer) lift(bs []bans.Ban, expired bool) {
	e.liftAs(bs, expired, func(b bans.Ban) { e.rep.Lifted(b, expired) })
}

// liftAs is lift with report telling each ban's end.
func (e *Enforcer) liftAs(bs []bans.Ban, expired bool, report func(bans.Ban)) {
	c := e.cur.Load()
	var unkill []string
	for _, b := range bs {
		e.engine.Unblock(b.Addr)
		e.unlike.Unblock(b.Addr) // a peer acted on is a peer again
		report(b)
		if line := c.Plan.HostsDenyLine(b.Addr); line != "" {
			// Queued: the writer rewrites the file once for all the lines
			// removed meanwhile, off the loop.
			e.denyFile(c.HostsDenyFile).Remove(line)
		}
		if cmd := c.Plan.UnblockCommand(b.Addr); cmd != "" && !e.jail.Native() {
			unkill = append(unkill, cmd)
		}
	}
	if err := e.jail.Lift(bs, expired); err != nil {
		e.log.Error(logline.Error("unblocking with " + e.jail.Kind() + ": " + err.Error()))
	}
	// The background queue runs them, a few at a time: neither a mass
	// expiry nor a stream of unblocks can start shells without bound, and
	// a full queue refuses (logged, counted) rather than stall the loop.
	shell := command.Shell{Timeout: c.CommandTimeout}
	for _, cmd := range unkill {
		err := e.bg.Submit(shell, cmd, func(err error) {
			if err != nil {
				e.log.Error(logline.UnkillFailed(cmd, err))
			} else {
				e.log.Info(logline.UnkillRan(cmd))
			}
		})
		if err != nil {
			e.log.Error(logline.UnkillFailed(cmd, err))
		}
	}
}

// RefreshGuard re-reads this host's addresses and infrastructure, and
// keeps the kernel's never-ban list in step.
func (e *Enforcer) RefreshGuard() {
	if err := e.guard.Refresh(); err != nil {
		e.log.Warn(logline.Warning(err.Error()))
	}
	if err := e.jail.SetNeverBan(e.guard.Prefixes()); err != nil {
		e.log.Error(logline.Error("updating the kernel's never-ban list: " + err.Error()))
	}
	if err := e.jail.SetLinks(e.guard.Links()); err != nil {
		e.log.Error(logline.Error("updating the kernel's list of this host's networks: " + err.Error()))
	}
}

// Sources is how many sources the engine counted at the last event.
func (e *Enforcer) Sources() int { return int(e.sources.Load()) }

// SetGuard replaces the ignore list and turns the infrastructure's
// protection on or off (a reload); RefreshGuard then brings the kernel's
// never-ban list in step.
func (e *Enforcer) SetGuard(l *ignore.List, protectInfrastructure bool) {
	e.guard.SetIgnore(l)
	e.guard.ProtectInfrastructure(protectInfrastructure)
}

// Jail is where the bans are kept.
func (e *Enforcer) Jail() *Jail { return e.jail }

// denyFile returns the one hosts.deny writer for path.
func (e *Enforcer) denyFile(path string) *hostsdeny.Writer {
	e.denyMu.Lock()
	defer e.denyMu.Unlock()
	if e.deny == nil || e.deny.Path() != path {
		e.deny = hostsdeny.NewWriter(&hostsdeny.File{Path: path}, func(err error) {
			e.log.Error(logline.Error("removing hosts.deny lines: " + err.Error()))
		})
	}
	return e.deny
}
