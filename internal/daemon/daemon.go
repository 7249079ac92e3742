package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/control"
	"github.com/portsentry-go/portsentry/internal/enforce"
	"github.com/portsentry-go/portsentry/internal/event"
	"github.com/portsentry-go/portsentry/internal/fleet"
	"github.com/portsentry-go/portsentry/internal/ignore"
	"github.com/portsentry-go/portsentry/internal/infra"
	"github.com/portsentry-go/portsentry/internal/report"
	"github.com/portsentry-go/portsentry/internal/report/logline"
	"github.com/portsentry-go/portsentry/internal/report/metrics"
	"github.com/portsentry-go/portsentry/internal/sdnotify"
	"github.com/portsentry-go/portsentry/internal/sensor/capture"
	"github.com/portsentry-go/portsentry/internal/sensor/connect"
	"github.com/portsentry-go/portsentry/internal/settings"
)

// Version is reported by the control socket, the metrics and the event
// log; set by main.
var Version = "dev"

// Options are the daemon's start-up choices.
type Options struct {
	settings.Options // the command line
	Log              *slog.Logger
	// Ready is called once every sensor is bound, after the "now active and
	// listening" line (systemd's READY=1 hooks in here).
	Ready func()
}

const (
	// eventQueue bounds the events between the sensors and the engine: a
	// sensor that outruns the engine loses events (counted and reported),
	// never grows a queue.
	eventQueue = 4096
	// localRefresh is how often this host's own addresses and
	// infrastructure are re-read, so an address gained by DHCP or a new SSH
	// session is protected without a reload.
	localRefresh = 30 * time.Second
	// statusEvery is how often the status systemd shows is brought up to
	// date, when it has changed: under a scan or a flood it changes with
	// every probe, and systemd needs it only when someone looks.
	statusEvery = 2 * time.Second
)

// Daemon is one running portsentry: the sensors feed the event loop, which
// hands each event to enforcement, which reports.
type Daemon struct {
	opts     Options
	log      *slog.Logger
	settings atomic.Pointer[settings.Settings] // in force
	sensor   *connect.Sensor
	// capture is the packet sensor of stealth and advanced modes; nil until
	// one of them is on (a reload may start it while metrics read it).
	capture atomic.Pointer[capture.Sensor]
	// events carries the sensors' events to the loop in batches: what a
	// packet sensor read at once, or one event of the connect sensor.
	// queued counts the events in it, at most eventQueue; batches
	// recycles the batches' memory.
	events  chan *[]event.Event
	queued  atomic.Int64
	batches sync.Pool
	counts  counts
	enf     *enforce.Enforcer
	rep     *report.Reporter
	fleet   *fleet.Member   // nil: not in a fleet
	crowd   crowdLink       // CROWDSEC_*: what is pushed and pulled
	ctx     context.Context // ends with Run; goroutines a reload starts use it
	wg      sync.WaitGroup  // every goroutine Run starts
	started time.Time
	status  string // the status systemd was last told (event loop only)
}

// counts are the event loop's own counters.
type counts struct {
	seen    atomic.Uint64 // events the sensors produced
	dropped atomic.Uint64 // events lost to a full queue
	warned  uint64        // events and reports lost, as last logged (loop only)
}

// Run starts the daemon and serves until ctx is done. Each value on hup
// reloads the configuration and ignore files. A configuration error at
// start is returned before anything is bound.
func Run(ctx context.Context, opts Options, hup <-chan struct{}) error {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	s, err := settings.Load(opts.Options)
	if err != nil {
		return err
	}
	d := &Daemon{opts: opts, log: opts.Log, events: make(chan *[]event.Event, eventQueue), started: time.Now()}
	d.settings.Store(s)
	d.warn(s)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d.ctx = ctx
	if err := d.openEnforcement(ctx, s); err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	defer d.enf.Jail().Close()
	if err := d.openFleet(s); err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	// CrowdSec before the metrics: its gauges read the pusher and the puller.
	crowdObs, crowdRun, err := d.openCrowdSec(s)
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	dest := s.Destinations(Version, d.gauges())
	dest.LastDetection = sdnotify.Enabled()
	dest.Observers = crowdObs
	serve, err := d.rep.Open(dest)
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	serve = append(serve, crowdRun...)
	defer d.rep.Close()
	if err := d.openSensors(s); err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	d.log.Info(logline.Starting(s.Summary() + d.boundSummary()))

	d.wg.Go(func() { _ = d.sensor.Run(ctx, d.emitOne) })
	if c := d.capture.Load(); c != nil {
		d.wg.Go(func() { d.runCapture(ctx, c) })
	}
	d.wg.Go(func() { d.rep.Run(ctx) })
	d.wg.Go(d.enf.Run)
	if d.fleet != nil {
		// In the background: the daemon never waits for the fleet.
		d.wg.Go(func() { d.fleet.Run(ctx) })
	}
	if srv := d.listenControl(s); srv != nil {
		d.wg.Go(func() { _ = srv.Serve(ctx) })
	}
	for _, fn := range serve {
		d.wg.Go(func() { fn(ctx) })
	}
	d.log.Info(logline.Active)
	// systemd (Type=notify) learns here that the traps are set.
	if err := sdnotify.Ready(); err != nil {
		d.log.Warn(logline.Warning("telling systemd we are ready: " + err.Error()))
	}
	d.updateStatus()
	if opts.Ready != nil {
		opts.Ready()
	}
	d.loop(ctx, hup)
	_ = sdnotify.Stopping()
	d.enf.RemoveTrap()
	cancel()
	d.wg.Wait()
	d.log.Info(logline.ShuttingDown)
	return nil
}

// openEnforcement opens the ban record and the blocker, restores the bans
// and applies the settings. The service check closes with ctx.
func (d *Daemon) openEnforcement(ctx context.Context, s *settings.Settings) error {
	jail, err := enforce.OpenJail(s.Jail(), d.log)
	if err != nil {
		return err
	}
	guard := enforce.NewGuard(d.opts.AllowLocal, ignore.LocalPrefixes, ignore.LinkPrefixes, func() (infra.Infra, error) { return infra.Discover(infra.Paths{}) })
	guard.SetIgnore(s.Ignore)
	guard.ProtectInfrastructure(s.Conf.ProtectInfrastructure)
	if err := guard.Refresh(); err != nil {
		d.log.Warn(logline.Warning(err.Error()))
	}
	var services *enforce.ServiceCheck
	if !d.opts.NoServiceCheck {
		services = enforce.OpenServiceCheck(d.log)
		context.AfterFunc(ctx, services.Close)
	}
	d.rep = report.New(d.log, s.Report())
	d.enf = enforce.New(ctx, jail, guard, d.rep, services, d.log)
	// Bans first, then the trap: a ban the trap made before the restore
	// would be taken for a stale one.
	if err := d.enf.Restore(s.Conf.BanFile, s.Conf.BlockedFile); err != nil {
		jail.Close()
		return err
	}
	if err := d.enf.Reconfigure(s.Enforce()); err != nil {
		jail.Close()
		return err
	}
	return nil
}

// openSensors binds connect mode's trap sockets and, in stealth and
// advanced modes, opens the packet sensor.
func (d *Daemon) openSensors(s *settings.Settings) error {
	var err error
	if d.sensor, err = connect.Open(s.SensorConfig(), d.log); err != nil {
		return err
	}
	if s.NeedsCapture() {
		c, err := capture.Open(s.CaptureConfig(), d.log)
		if err != nil {
			d.sensor.Close()
			return err
		}
		d.capture.Store(c)
	}
	return nil
}

func (d *Daemon) runCapture(ctx context.Context, c *capture.Sensor) {
	if err := c.Run(ctx, d.emit); err != nil {
		d.log.Error(logline.Error("packet sensor stopped: " + err.Error()))
	}
}

// emit is the packet sensor's callback, with the events of one read (a
// flood's packets come many at a time: one hand-off, one wake-up of the
// loop). It copies them, and never blocks a sensor: when the queue holds
// eventQueue events the batch is dropped, counted.
func (d *Daemon) emit(evs []event.Event) {
	n := int64(len(evs))
	d.counts.seen.Add(uint64(n))
	if d.queued.Add(n) > eventQueue {
		d.queued.Add(-n)
		d.counts.dropped.Add(uint64(n))
		return
	}
	b, _ := d.batches.Get().(*[]event.Event)
	if b == nil {
		b = new([]event.Event)
	}
	*b = append((*b)[:0], evs...)
	// The channel has room for eventQueue batches of at least one event
	// each, so this send never waits.
	d.events <- b
}

// emitOne is the connect sensor's callback, one event at a time.
func (d *Daemon) emitOne(ev event.Event) {
	one := [1]event.Event{ev}
	d.emit(one[:])
}

// lost is every event and report lost to a full queue since start.
func (d *Daemon) lost() uint64 { return d.counts.dropped.Load() + d.rep.Dropped() }

func (d *Daemon) loop(ctx context.Context, hup <-chan struct{}) {
	tick := time.NewTicker(localRefresh)
	defer tick.Stop()
	expiry := time.NewTicker(time.Second)
	defer expiry.Stop()
	var status <-chan time.Time // none when systemd does not listen
	if sdnotify.Enabled() {
		t := time.NewTicker(statusEvery)
		defer t.Stop()
		status = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-status:
			d.updateStatus()
		case fn := <-d.enf.Calls():
			fn()
		case now := <-expiry.C:
			d.enf.Tick(now)
		case b := <-d.events:
			for _, ev := range *b {
				d.enf.Decide(ev)
			}
			d.queued.Add(-int64(len(*b)))
			d.batches.Put(b)
		case <-hup:
			d.reload()
		case <-tick.C:
			d.enf.RefreshGuard()
			if n := d.lost(); n > d.counts.warned {
				d.log.Warn(logline.EventsDropped(int64(n - d.counts.warned)))
				d.counts.warned = n
			}
		}
	}
}

// reload applies a new configuration. A bad one is refused whole and the
// running one stays; counts and bans are kept either way.
func (d *Daemon) reload() {
	_ = sdnotify.Reloading()
	// Ready again whatever the outcome: a refused reload keeps the
	// running configuration, which is ready.
	defer sdnotify.Ready()
	s, err := settings.Load(d.opts.Options)
	if err == nil {
		err = d.reconfigureSensors(s)
	}
	if err != nil {
		d.rep.Reloaded("", err)
		return
	}
	d.warn(s)
	keys := startOnly(d.settings.Load().Conf, s.Conf)
	if fleetChanged(d.settings.Load(), s) {
		keys = append(keys, "FLEET_*")
	}
	if len(keys) > 0 {
		d.log.Warn(logline.Warning(strings.Join(keys, ", ") + " changed: the change takes effect at the next start"))
	}
	d.enf.SetGuard(s.Ignore, s.Conf.ProtectInfrastructure)
	d.enf.RefreshGuard()
	if err := d.enf.Reconfigure(s.Enforce()); err != nil {
		d.log.Error(logline.Error(err.Error()))
	}
	d.rep.Reconfigure(s.Report())
	d.settings.Store(s)
	d.rep.Reloaded(s.Summary()+d.boundSummary(), nil)
}

// startOnly names the keys that differ between old and new among those a
// reload cannot apply: the blocker and its ban store are opened once.
func startOnly(old, new *config.Config) []string {
	var keys []string
	for _, k := range []struct {
		name    string
		changed bool
	}{
		{"BLOCKER", old.Blocker != new.Blocker},
		{"BAN_FILE", old.BanFile != new.BanFile},
		{"BAN_TIME", old.BanTime != new.BanTime},
		{"BAN_TIME_MAX", old.BanTimeMax != new.BanTimeMax},
		{"BAN_PREFIX6", old.BanPrefix6 != new.BanPrefix6},
		{"BAN_FORWARD", old.BanForward != new.BanForward},
		{"CROWDSEC_*", old.CrowdSecURL != new.CrowdSecURL || old.CrowdSecMachineID != new.CrowdSecMachineID ||
			old.CrowdSecMachinePassword != new.CrowdSecMachinePassword || old.CrowdSecCredentials != new.CrowdSecCredentials ||
			old.CrowdSecBouncerKey != new.CrowdSecBouncerKey || old.CrowdSecPoll != new.CrowdSecPoll},
	} {
		if k.changed {
			keys = append(keys, k.name)
		}
	}
	return keys
}

// reconfigureSensors gives the sensors what s watches, starting the packet
// sensor if a stealth or advanced mode is new.
func (d *Daemon) reconfigureSensors(s *settings.Settings) error {
	if c := d.capture.Load(); c != nil {
		if err := c.Reconfigure(s.CaptureConfig()); err != nil {
			return err
		}
	} else if s.NeedsCapture() {
		c, err := capture.Open(s.CaptureConfig(), d.log)
		if err != nil {
			return err
		}
		d.capture.Store(c)
		d.wg.Go(func() { d.runCapture(d.ctx, c) })
	}
	return d.sensor.Reconfigure(s.SensorConfig())
}

func (d *Daemon) warn(s *settings.Settings) {
	for _, w := range s.Warnings {
		d.log.Warn(logline.Warning(w))
	}
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

// listenControl opens the operator's socket; a failure is not fatal (the
// daemon protects the host without it).
func (d *Daemon) listenControl(s *settings.Settings) *control.Server {
	path := s.Conf.ControlSocket
	if path == "" {
		return nil
	}
	srv, err := control.Listen(path, d.enf.Control(d.about), d.log)
	if err != nil {
		d.log.Warn(logline.Warning(fmt.Sprintf("control socket %s: %v; portsentry list/block/unblock will not reach this daemon", path, err)))
		return nil
	}
	return srv
}

// about is the daemon's part of portsentry status.
func (d *Daemon) about() control.Status {
	s := d.settings.Load()
	st := control.Status{Version: Version, PID: os.Getpid(), Started: d.started, Events: d.counts.seen.Load(), Dropped: d.lost(), BanFile: s.Conf.BanFile,
		Fleet: d.fleetStatus(), CrowdSec: d.crowdStatus()}
	for _, m := range s.Modes {
		st.Modes = append(st.Modes, m.String())
	}
	return st
}

// gauges are the metrics read from the sensors, the engine and the bans.
func (d *Daemon) gauges() metrics.Funcs {
	jail := d.enf.Jail()
	f := metrics.Funcs{
		EventsDropped: func() float64 { return float64(d.lost()) },
		EngineSources: func() float64 { return float64(d.enf.Sources()) },
		BansActive:    func() float64 { return float64(jail.Len()) },
		Flooding: func() float64 {
			if d.enf.Flooding() {
				return 1
			}
			return 0
		},
		PacketsInspected: func() float64 {
			if c := d.capture.Load(); c != nil {
				n, _, _ := c.Stats()
				return float64(n)
			}
			return 0
		},
		PacketsDropped: func() float64 {
			if c := d.capture.Load(); c != nil {
				_, _, n := c.Stats()
				return float64(n)
			}
			return 0
		},
	}
	if jail.Traps() {
		f.KernelTrapDrops = func() float64 { return float64(jail.Trapped()) }
	}
	d.fleetGauges(&f)
	d.crowdGauges(&f)
	return f
}

// updateStatus tells systemd the daemon's one-line status (systemctl
// status) if it has changed since last told. Event loop only.
func (d *Daemon) updateStatus() {
	if !sdnotify.Enabled() {
		return
	}
	s := d.settings.Load()
	tcp, udp := d.sensor.Bound()
	var watch []logline.Watch
	for _, m := range s.Modes {
		ports := s.Watched(m)
		n := ports.Len()
		// Connect mode watches the ports it holds a trap socket on: a
		// port a service uses is not one.
		switch m {
		case event.ModeTCP:
			n = tcp.Len()
		case event.ModeUDP:
			n = udp.Len()
		}
		watch = append(watch, logline.Watch{Mode: m, Ports: n})
	}
	last, _ := d.rep.LastDetection()
	line := logline.Status(watch, d.enf.Jail().Len(), last)
	if line == d.status {
		return
	}
	if err := sdnotify.Status(line); err != nil {
		d.log.Debug("telling systemd the status: " + err.Error())
		return
	}
	d.status = line
}
