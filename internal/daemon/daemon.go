package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/enforce/bans"
	"github.com/portsentry-go/portsentry/internal/enforce/block/command"
	"github.com/portsentry-go/portsentry/internal/enforce/block/hostsdeny"
	"github.com/portsentry-go/portsentry/internal/enforce/respond"
	"github.com/portsentry-go/portsentry/internal/engine"
	"github.com/portsentry-go/portsentry/internal/event"
	"github.com/portsentry-go/portsentry/internal/ignore"
	"github.com/portsentry-go/portsentry/internal/report/alert"
	"github.com/portsentry-go/portsentry/internal/report/history"
	"github.com/portsentry-go/portsentry/internal/report/jsonlog"
	"github.com/portsentry-go/portsentry/internal/report/logline"
	"github.com/portsentry-go/portsentry/internal/report/metrics"
	"github.com/portsentry-go/portsentry/internal/report/ratelimit"
	"github.com/portsentry-go/portsentry/internal/report/resolve"
	"github.com/portsentry-go/portsentry/internal/sdnotify"
	"github.com/portsentry-go/portsentry/internal/sensor/capture"
	"github.com/portsentry-go/portsentry/internal/sensor/connect"
	"github.com/portsentry-go/portsentry/internal/sensor/sockets"
)

// Queue sizes bound memory whatever the traffic: a sensor that outruns the
// engine loses events (counted and reported), never grows a queue.
const (
	eventQueue   = 4096
	reportQueue  = 4096
	respondQueue = 256
	responders   = 4
	// A source that keeps probing after its block is logged for quietBurst
	// packets per quietWindow; the rest are counted, not logged one by one.
	quietWindow = 10 * time.Second
	quietBurst  = 20
	// localRefresh is how often this host's own addresses are re-read, so an
	// address gained by DHCP is protected without a reload.
	localRefresh = 30 * time.Second
)

// runtime is what responders and the reporter need from the settings in
// force when an event was decided. A reload swaps it whole.
type runtime struct {
	settings *Settings
	plan     respond.Plan
	exec     respond.Executor
	resolver *resolve.Resolver
	history  *history.Appender // nil when HISTORY_FILE is ""
	blocked  *history.Appender // nil when BLOCKED_FILE is ""
	style2x  bool
}

type report struct {
	ev event.Event
	v  engine.Verdict
	rt *runtime
	// refused is set when the engine asked for a response that the
	// local-address guard refused: logged, but not recorded anywhere that
	// fail2ban or a restart would act on.
	refused bool
	// suppressed counts the "already blocked" lines about this source that
	// were held back since the last one logged.
	suppressed int
}

type job struct {
	ev event.Event
	v  engine.Verdict
	rt *runtime
}

type result struct {
	addr    netip.Addr
	blocked bool
}

// Daemon is one running portsentry.
type Daemon struct {
	opts   Options
	log    *slog.Logger
	engine *engine.Engine
	sensor *connect.Sensor
	// capture is the packet sensor of stealth and advanced modes; nil until
	// one of them is on. services answers its service check.
	capture  *capture.Sensor
	services *sockets.Checker
	// serviceErr limits service-check error lines to one a minute.
	serviceErr time.Time
	// runCtx and wg let a reload start the packet sensor.
	runCtx context.Context
	wg     *sync.WaitGroup
	rt     atomic.Pointer[runtime]
	ignore atomic.Pointer[ignore.List]
	local  atomic.Pointer[ignore.List]

	events  chan event.Event
	reports chan report
	jobs    chan job
	results chan result
	dropped atomic.Int64  // events lost to a full queue since last reported
	seen    atomic.Uint64 // events the sensors produced
	quiet   *ratelimit.Limiter

	enf *enforcer
	// Observers (METRICS_ADDRESS, EVENT_LOG, ALERT_*); nil when off, and
	// every method of theirs is then a no-op.
	metrics      *metrics.Metrics
	eventLog     *jsonlog.Writer
	alerts       *alert.Alerter
	droppedTotal atomic.Uint64 // events lost since start, for the metrics
	sources      atomic.Int64  // the engine's table size, for the metrics
	denyMu       sync.Mutex
	deny         *hostsdeny.File
	ctl          chan func() // work the control socket needs done in the loop
	started      time.Time
}

// Run starts the daemon and serves until ctx is done. Each value on hup
// reloads the configuration and ignore files. A configuration error at
// start is returned before anything is bound.
func Run(ctx context.Context, opts Options, hup <-chan struct{}) error {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	s, err := Load(opts)
	if err != nil {
		return err
	}
	d := &Daemon{
		opts:    opts,
		log:     opts.Log,
		events:  make(chan event.Event, eventQueue),
		reports: make(chan report, reportQueue),
		jobs:    make(chan job, respondQueue),
		results: make(chan result, respondQueue),
		quiet:   ratelimit.New(quietWindow, quietBurst, 4096),
		ctl:     make(chan func()),
		started: time.Now(),
	}
	for _, w := range s.Warnings {
		d.log.Warn("adminalert: WARNING: " + w)
	}
	d.refreshLocal()
	d.ignore.Store(s.Ignore)
	if !opts.NoServiceCheck {
		// A checker that cannot open its netlink socket falls back to
		// /proc/net inside; an error here is unexpected, not fatal.
		if d.services, err = sockets.NewChecker(); err != nil {
			d.log.Warn("adminalert: WARNING: service check unavailable: " + err.Error())
		}
	}
	d.engine = engine.New(s.engineOptions(d.protected, d.inUseFunc()))
	if d.enf, err = openEnforcer(s, d.log); err != nil {
		return err
	}
	defer d.enf.close()
	d.rt.Store(d.newRuntime(s))
	if err := d.restoreBans(s); err != nil {
		return err
	}

	if err := d.applyKernel(s); err != nil {
		return err
	}
	observers, err := d.openObservers(s)
	if err != nil {
		return err
	}
	defer d.closeObservers()
	d.sensor, err = connect.Open(s.sensorConfig(), d.log)
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	if s.needsCapture() {
		if d.capture, err = capture.Open(s.captureConfig(opts.Interfaces), d.log); err != nil {
			d.sensor.Close()
			return fmt.Errorf("daemon: %w", err)
		}
	}
	d.log.Info("adminalert: PortSentry starting: " + s.Summary() + d.boundSummary())

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	d.runCtx, d.wg = ctx, &wg
	wg.Go(func() { _ = d.sensor.Run(ctx, d.emit) })
	if d.capture != nil {
		c := d.capture
		wg.Go(func() { d.runCapture(ctx, c) })
	}
	wg.Go(func() { d.reporter(ctx) })
	for range responders {
		wg.Go(func() { d.responder(ctx) })
	}
	if srv := d.listenControl(s); srv != nil {
		wg.Go(func() { _ = srv.Serve(ctx) })
	}
	for _, serve := range observers {
		wg.Go(func() { serve(ctx) })
	}
	d.log.Info(logline.Active)
	// systemd (Type=notify) learns here that the traps are set.
	if err := sdnotify.Ready(); err != nil {
		d.log.Warn("adminalert: WARNING: telling systemd we are ready: " + err.Error())
	}
	if opts.Ready != nil {
		opts.Ready()
	}
	d.loop(ctx, hup)
	_ = sdnotify.Stopping()
	// A stopped daemon detects nothing: the trap goes with it, so no ban is
	// made that nothing logs or records. Bans in force stay, and expire.
	if err := d.enf.setTrap(nil); err != nil {
		d.log.Error("adminalert: ERROR: removing the kernel trap: " + err.Error())
	}
	cancel()
	wg.Wait()
	if d.services != nil {
		d.services.Close()
	}
	d.log.Info("adminalert: PortSentry is shutting down.")
	return nil
}

func (d *Daemon) runCapture(ctx context.Context, c *capture.Sensor) {
	if err := c.Run(ctx, d.emit); err != nil {
		d.log.Error("adminalert: ERROR: packet sensor stopped: " + err.Error())
	}
}

// inUseFunc is the engine's service check: nil when it is off (-S).
func (d *Daemon) inUseFunc() func(event.Proto, uint16) bool {
	if d.opts.NoServiceCheck || d.services == nil {
		return nil
	}
	return func(proto event.Proto, port uint16) bool {
		used, err := d.services.InUse(proto, port)
		if err != nil {
			// Unknown counts as in use: a broken check must not turn a
			// service's clients into scanners. Said once a minute.
			if now := time.Now(); now.Sub(d.serviceErr) > time.Minute {
				d.serviceErr = now
				d.log.Error("adminalert: ERROR: service check failed: " + err.Error())
			}
			return true
		}
		return used
	}
}

// emit is the sensors' callback. It never blocks a sensor.
func (d *Daemon) emit(ev event.Event) {
	d.seen.Add(1)
	select {
	case d.events <- ev:
	default:
		d.dropped.Add(1)
		d.droppedTotal.Add(1)
	}
}

func (d *Daemon) loop(ctx context.Context, hup <-chan struct{}) {
	tick := time.NewTicker(localRefresh)
	defer tick.Stop()
	expiry := time.NewTicker(time.Second)
	defer expiry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case fn := <-d.ctl:
			fn()
		case <-expiry.C:
			d.expire()
		case ev := <-d.events:
			d.decide(ev)
		case r := <-d.results:
			d.engine.Done(r.addr, r.blocked)
		case <-hup:
			d.reload()
		case <-tick.C:
			d.refreshLocal()
			if n := d.dropped.Swap(0); n > 0 {
				d.log.Warn(fmt.Sprintf("adminalert: WARNING: %d events dropped: the engine could not keep up", n))
			}
		}
	}
}

// banOver reports whether the record's ban of src ended by t.
func (d *Daemon) banOver(src netip.Addr, t time.Time) bool {
	b, ok := d.enf.store.Get(src)
	return ok && !b.Permanent() && !t.Before(b.Expires)
}

// protected reports sources never acted on: the ignore list, and this
// host's own addresses unless -L.
func (d *Daemon) protected(a netip.Addr) bool {
	if d.ignore.Load().Contains(a) {
		return true
	}
	return !d.opts.AllowLocal && d.local.Load().Contains(a)
}

func (d *Daemon) decide(ev event.Event) {
	v := d.engine.Observe(ev)
	if v.Action == engine.AlreadyBlocked && d.banOver(ev.Src, ev.Time) {
		// Its ban has ended but the expiry tick has not run yet: lift it
		// now, so this probe counts (the kernel trap has banned it anew).
		d.expire()
		v = d.engine.Observe(ev)
	}
	rt := d.rt.Load()
	if act, ok := metrics.FromEngine(v.Action); ok {
		d.metrics.Event(ev.Kind, ev.Proto, act)
	}
	n, _, _ := d.engine.Stats()
	d.sources.Store(int64(n))
	switch v.Action {
	case engine.Respond:
	case engine.Pending, engine.AlreadyBlocked:
		ok, n := d.quiet.Allow(ev.Src, ev.Time)
		if !ok {
			return
		}
		// Only now, for a line about to be logged, is the service check
		// worth its lookup: a blocked host's packets to a service are no
		// probes either.
		if inUse := d.inUseFunc(); inUse != nil && ev.Mode.Passive() && inUse(ev.Proto, ev.Port) {
			return
		}
		d.report(report{ev: ev, v: v, rt: rt, suppressed: n})
		return
	default:
		d.report(report{ev: ev, v: v, rt: rt})
		return
	}
	// Defence in depth: with -L the engine may decide to act on this host's
	// own address, but no block ever lands on it or on an ignored one.
	if d.local.Load().Contains(ev.Src) || d.ignore.Load().Contains(ev.Src) {
		d.engine.Done(ev.Src, false)
		v.Action = engine.Report
		d.report(report{ev: ev, v: v, rt: rt, refused: true})
		return
	}
	select {
	case d.jobs <- job{ev: ev, v: v, rt: rt}:
	default:
		d.engine.Done(ev.Src, false)
		d.log.Error("adminalert: ERROR: too many responses under way; not responding to " + ev.Src.String() + " now (its next probe retries)")
	}
}

func (d *Daemon) report(r report) {
	select {
	case d.reports <- r:
	default:
		d.dropped.Add(1)
		d.droppedTotal.Add(1)
	}
}

// reporter logs events that need no response, in order. Host names are
// resolved here, off the packet path.
func (d *Daemon) reporter(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-d.reports:
			d.logReport(ctx, r)
		}
	}
}

func (d *Daemon) logReport(ctx context.Context, r report) {
	ev, rt := r.ev, r.rt
	if act, ok := metrics.FromEngine(r.v.Action); ok && d.eventLog != nil {
		host := ev.Src.String()
		if rt.resolver != nil {
			host = rt.resolver.Name(ctx, ev.Src)
		}
		d.writeEvent(ev, act, r.v.Count, host, nil)
	}
	if r.refused {
		d.log.Warn("attackalert: Host " + ev.Src.String() + " is a local or ignored address: not blocking it")
	}
	var o logline.Outcome
	switch r.v.Action {
	case engine.Service:
		d.log.Debug(fmt.Sprintf("%s from %s to %s port %d: a local service uses the port, not a probe", ev.Describe(), ev.Src, ev.Proto, ev.Port))
		return
	case engine.Ignored:
		o = logline.Outcome{Ignored: logline.True}
		d.log.Info(logline.ScanFrom(ev, ev.Src.String(), o))
		return
	case engine.Counted:
		o = logline.Outcome{Ignored: logline.False, Triggered: logline.False}
	case engine.Pending:
		// Arrived while the response runs: its outcome is not known yet,
		// and the response's own lines will tell it.
		o = logline.Outcome{Ignored: logline.False}
		if r.suppressed > 0 {
			d.log.Info(fmt.Sprintf("attackalert: Host: %s sent %d more packets (not logged one by one)", ev.Src, r.suppressed))
		}
	case engine.AlreadyBlocked:
		o = logline.Outcome{Ignored: logline.False, Blocked: logline.True}
		name := rt.resolver.Name(ctx, ev.Src)
		if r.suppressed > 0 {
			d.log.Info(fmt.Sprintf("attackalert: Host: %s/%s sent %d more packets while blocked (not logged one by one)", name, ev.Src, r.suppressed))
		}
		d.log.Info(logline.AlreadyBlocked(name, ev.Src.String()))
		// The alert about this attacker lists every port it tried.
		d.notify(ev, name, alert.ActionBlocked, nil)
		d.log.Info(logline.ScanFrom(ev, name, o))
		return
	case engine.AlreadyReported:
		o = logline.Outcome{Ignored: logline.False, Triggered: logline.True, NoBlock: logline.True, Blocked: logline.False}
	case engine.Report:
		o = logline.Outcome{Ignored: logline.False, Triggered: logline.True, NoBlock: logline.True, Blocked: logline.False}
		name := rt.resolver.Name(ctx, ev.Src)
		d.log.Info(logline.Attack(ev, name))
		line := logline.ScanFrom(ev, name, o)
		d.log.Info(line)
		// As 1.2 does in log-only mode, the history records the host so
		// that fail2ban's stock jail can act on it.
		if !r.refused {
			d.record(rt, ev, name, line, false)
			d.notify(ev, name, alert.ActionReported, nil)
		}
		return
	}
	d.log.Info(logline.ScanFrom(ev, rt.resolver.Name(ctx, ev.Src), o))
}

// responder runs the responses, a few hosts at a time, so that a slow
// command delays neither detection nor the other hosts.
func (d *Daemon) responder(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-d.jobs:
			blocked := d.respond(ctx, j)
			select {
			case d.results <- result{addr: j.ev.Src, blocked: blocked}:
			case <-ctx.Done():
				return
			}
		}
	}
}

func (d *Daemon) respond(ctx context.Context, j job) bool {
	ev, rt := j.ev, j.rt
	// Resolve while the block runs: the block never waits for DNS.
	names := make(chan string, 1)
	go func() { names <- rt.resolver.Name(ctx, ev.Src) }()
	mode := ev.Mode.String()
	if rt.style2x {
		mode = ev.Mode.Style2x()
	}
	steps := rt.plan.Steps(j.v.Response, command.Target{Addr: ev.Src, Port: ev.Port, Mode: mode})
	x := rt.exec
	x.Ban = func(a netip.Addr) (string, error) { return d.enf.ban(a, ev.Describe(), ev.Port, ev.Proto.String()) }
	res := x.Execute(ctx, ev.Src, steps)
	if res.Blocked && !d.enf.native() && j.v.Response != engine.LogOnly {
		// KILL_ROUTE blocked it: the record gives the ban its lifetime
		// (UNKILL_ROUTE lifts it) and lists it for the operator.
		d.enf.store.Ban(ev.Src, ev.Describe(), ev.Port, ev.Proto.String())
	}
	name := <-names
	d.log.Info(logline.Attack(ev, name))
	for _, l := range res.Lines {
		if len(res.FailedSteps) > 0 && !res.Blocked {
			d.log.Error(l)
		} else {
			d.log.Info(l)
		}
	}
	act, alertAction := metrics.BlockFailed, alert.ActionBlockFailed
	var ban *bans.Ban
	if res.Blocked {
		act, alertAction = metrics.Blocked, alert.ActionBlocked
		if b, ok := d.enf.store.Get(ev.Src); ok {
			ban = &b
		}
		d.metrics.Ban(d.enf.kind)
	}
	d.metrics.Event(ev.Kind, ev.Proto, act)
	d.countFailures(res)
	d.writeEvent(ev, act, j.v.Count, name, ban)
	d.notify(ev, name, alertAction, ban)
	o := logline.Outcome{Ignored: logline.False, Triggered: logline.True, NoBlock: logline.False, Blocked: logline.Of(res.Blocked)}
	line := logline.ScanFrom(ev, name, o)
	d.log.Info(line)
	if res.Blocked {
		d.record(rt, ev, name, line, true)
	} else {
		d.log.Error(fmt.Sprintf("attackalert: ERROR: Host %s was NOT blocked; its next probe will try again", ev.Src))
	}
	return res.Blocked
}

// record writes the history (and, for a block, the blocked file).
func (d *Daemon) record(rt *runtime, ev event.Event, name, scanFrom string, blocked bool) {
	now := time.Now()
	rec := logline.History12(now, name, ev)
	if rt.history != nil {
		line := rec
		if rt.settings.Conf.HistoryFormat == config.History2x {
			line = logline.History2x(now, scanFrom)
		}
		if err := rt.history.Append(line); err != nil {
			d.log.Error("adminalert: ERROR: cannot write history file: " + err.Error())
		}
	}
	if blocked && rt.blocked != nil {
		if err := rt.blocked.Append(rec); err != nil {
			d.log.Error("adminalert: ERROR: cannot write blocked file: " + err.Error())
		}
	}
}

// denyFile returns the one hosts.deny writer for path: its lock must be
// shared by every runtime a reload creates.
func (d *Daemon) denyFile(path string) *hostsdeny.File {
	d.denyMu.Lock()
	defer d.denyMu.Unlock()
	if d.deny == nil || d.deny.Path != path {
		d.deny = &hostsdeny.File{Path: path}
	}
	return d.deny
}

func (rt *runtime) denyFile() *hostsdeny.File { return rt.exec.Deny.(*hostsdeny.File) }

func (d *Daemon) newRuntime(s *Settings) *runtime {
	plan := s.plan()
	if d.enf.native() {
		plan.Native = d.enf.kind
	}
	rt := &runtime{
		settings: s,
		plan:     plan,
		exec: respond.Executor{
			Shell: command.Shell{Timeout: s.Conf.CommandTimeout},
			Deny:  d.denyFile(s.Conf.HostsDenyFile),
		},
		style2x: d.opts.Style2x,
	}
	if s.Conf.ResolveHost {
		rt.resolver = resolve.New(s.Conf.ResolveTimeout, 4096, nil)
	}
	if s.Conf.HistoryFile != "" {
		rt.history = &history.Appender{Path: s.Conf.HistoryFile}
	}
	if s.Conf.BlockedFile != "" {
		rt.blocked = &history.Appender{Path: s.Conf.BlockedFile}
	}
	return rt
}

// restoreBlocked reloads BLOCKED_FILE so that a restart does not act on
// the same hosts again.
func (d *Daemon) restoreBlocked(path string) {
	if path == "" {
		return
	}
	recs, bad, err := history.LoadBlocked(path)
	if err != nil {
		d.log.Error("adminalert: ERROR: cannot read blocked file: " + err.Error())
	}
	for i, e := range bad {
		if i == 10 {
			d.log.Warn(fmt.Sprintf("adminalert: WARNING: %d more unreadable lines in %s", len(bad)-10, path))
			break
		}
		d.log.Warn("adminalert: WARNING: skipping unreadable blocked-file line: " + e.Error())
	}
	for _, r := range recs {
		d.engine.MarkBlocked(r.Addr)
	}
	if len(recs) > 0 {
		_, _, n := d.engine.Stats()
		d.log.Info(fmt.Sprintf("adminalert: %d hosts already blocked, from %s", n, path))
	}
}

func (d *Daemon) refreshLocal() {
	prefixes, err := ignore.LocalPrefixes()
	if err != nil {
		d.log.Warn("adminalert: WARNING: cannot list this host's addresses: " + err.Error())
		if d.local.Load() != nil {
			return // keep the last good list
		}
	}
	d.local.Store(ignore.New(prefixes...))
	if d.enf != nil {
		if err := d.enf.setAllowed(d.neverBan()); err != nil {
			d.log.Error("adminalert: ERROR: updating the kernel's never-ban list: " + err.Error())
		}
	}
}

// reload applies a new configuration. A bad one is refused whole and the
// running one stays; counts and blocks are kept either way.
func (d *Daemon) reload() {
	_ = sdnotify.Reloading()
	// Ready again whatever the outcome: a refused reload keeps the
	// running configuration, which is ready.
	defer sdnotify.Ready()
	s, err := Load(d.opts)
	if err == nil && s.needsCapture() && d.capture == nil {
		var c *capture.Sensor
		if c, err = capture.Open(s.captureConfig(d.opts.Interfaces), d.log); err == nil {
			d.capture = c
			d.wg.Go(func() { d.runCapture(d.runCtx, c) })
		}
	} else if err == nil && d.capture != nil {
		err = d.capture.Reconfigure(s.captureConfig(d.opts.Interfaces))
	}
	if err == nil {
		err = d.sensor.Reconfigure(s.sensorConfig())
	}
	if err != nil {
		d.log.Error("adminalert: ERROR: reload refused, keeping the running configuration: " + err.Error())
		d.metrics.Reload(false)
		return
	}
	d.metrics.Reload(true)
	for _, w := range s.Warnings {
		d.log.Warn("adminalert: WARNING: " + w)
	}
	old := d.rt.Load().settings.Conf
	if old.Blocker != s.Conf.Blocker || old.BanFile != s.Conf.BanFile || old.BanTime != s.Conf.BanTime || old.BanTimeMax != s.Conf.BanTimeMax {
		d.log.Warn("adminalert: WARNING: BLOCKER, BAN_FILE, BAN_TIME and BAN_TIME_MAX changes take effect at the next start")
	}
	d.ignore.Store(s.Ignore)
	if err := d.applyKernel(s); err != nil {
		d.log.Error("adminalert: ERROR: " + err.Error())
	}
	d.engine.Reconfigure(s.engineOptions(d.protected, d.inUseFunc()))
	d.rt.Store(d.newRuntime(s))
	d.refreshLocal()
	d.log.Info("adminalert: configuration reloaded: " + s.Summary() + d.boundSummary())
}

// boundSummary tells how many trap sockets connect mode holds: fewer than
// asked when services use some of the ports.
func (d *Daemon) boundSummary() string {
	tcp, udp := d.sensor.Bound()
	if tcp.Len()+udp.Len() == 0 {
		return ""
	}
	return fmt.Sprintf("; bound %d TCP and %d UDP trap sockets", tcp.Len(), udp.Len())
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return !errors.Is(err, os.ErrNotExist)
}
