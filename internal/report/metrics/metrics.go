// Package metrics exports the daemon's counters in the Prometheus text
// format on an optional HTTP endpoint (off by default).
//
// Everything lives in a private registry: nothing is registered with the
// client library's global default registry, so two Metrics (a test, a
// reload) never collide, and no library the daemon links can add series
// behind its back.
//
// The per-event counter is on the detection path, so it is not a
// CounterVec: a label lookup hashes its values on every call. Event is one
// bounds check and one atomic add into a fixed array indexed by kind,
// protocol and action (see BenchmarkEvent: 0 allocations).
//
// A nil *Metrics is valid and records nothing, so the daemon calls it
// unconditionally whether or not METRICS_ADDRESS is set.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/portsentry-go/portsentry/internal/engine"
	"github.com/portsentry-go/portsentry/internal/event"
)

// Path is where the endpoint serves the metrics.
const Path = "/metrics"

const namespace = "portsentry"

// Action is the outcome of one event, the "action" label of
// portsentry_events_total. It is a number, not a string, so that Event can
// index an array with it.
type Action uint8

// Actions. The first seven are the engine's verdicts; Blocked and
// BlockFailed are the outcome of a response, known only once it has run.
const (
	Ignored         Action = iota // on the ignore list, or this host
	Counted                       // below SCAN_TRIGGER
	Service                       // a local socket owns the port: not a probe
	Pending                       // a response to this source is under way
	AlreadyBlocked                // the source is blocked already
	AlreadyReported               // log-only mode, reported before
	Reported                      // the trigger is reached in log-only mode (or a block was refused)
	Blocked                       // a response ran and blocked the source
	BlockFailed                   // a response ran and failed: the next probe tries again
	Forged                        // claimed a peer's address with another hop count: not a probe of it
	Flooded                       // a single probe of a flood: summarized, not handled one by one
	numActions
)

var actionNames = [numActions]string{
	"ignored", "counted", "service", "pending", "already_blocked",
	"already_reported", "reported", "blocked", "block_failed", "forged", "flooded",
}

// String returns the label value: "ignored", "already_blocked", …
func (a Action) String() string {
	if a < numActions {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", a)
}

// FromEngine maps an engine verdict to its label. It reports false for
// engine.Respond: the outcome of a response is Blocked or BlockFailed, and
// is counted when the response is done, so that each event is counted once.
func FromEngine(a engine.Action) (Action, bool) {
	switch a {
	case engine.Ignored:
		return Ignored, true
	case engine.Counted:
		return Counted, true
	case engine.Service:
		return Service, true
	case engine.Pending:
		return Pending, true
	case engine.AlreadyBlocked:
		return AlreadyBlocked, true
	case engine.AlreadyReported:
		return AlreadyReported, true
	case engine.Report:
		return Reported, true
	}
	return 0, false
}

// Proto names, as the "proto" label writes them; indexed by event.Proto.
var protoNames = [...]string{event.TCP: "tcp", event.UDP: "udp"}

const numProtos = len(protoNames)

// Label values known in advance. Their series are exported at 0 from the
// start, so that rate() and absent-series alerts work before the first
// ban; any other value the daemon passes is still counted.
var (
	blockerNames = []string{"nftables", "iptables", "route", "hostsdeny", "command"}
	unbanReasons = []string{"expired", "manual"}
	// originKinds label imported bans by where they come from, without
	// the member's name (a fleet of thousands must not make thousands of
	// series).
	originKinds  = []string{"fleet", "crowdsec"}
	commandSteps = []string{"route", "hostsdeny", "runcmd", "native"}
)

// Funcs are read at each scrape: state that another part of the daemon
// already keeps (a sensor's packet counters, the engine's table) is
// exported from there, not copied into a second counter that could drift.
// A nil func leaves its metric out. Counter funcs must never decrease
// (return a running total, not a count since the last read).
type Funcs struct {
	// PacketsInspected: packets the sensors read (portsentry_sensor_packets_inspected_total).
	PacketsInspected func() float64
	// PacketsDropped: packets the kernel dropped before the sensor read them
	// (portsentry_sensor_packets_dropped_total).
	PacketsDropped func() float64
	// EventsDropped: events lost to a full queue between sensors and engine
	// (portsentry_events_dropped_total).
	EventsDropped func() float64
	// EngineSources: sources the engine is counting (portsentry_engine_sources).
	EngineSources func() float64
	// BansActive: bans in force (portsentry_bans_active).
	BansActive func() float64
	// KernelTrapDrops: probes the in-kernel nftables trap dropped
	// (portsentry_kernel_trap_drops_total).
	KernelTrapDrops func() float64
	// AlertsSent, AlertsFailed, AlertsDropped: administrator notifications
	// delivered, failed, and not sent (queue full, rate limit)
	// (portsentry_alerts_{sent,failed,dropped}_total).
	AlertsSent, AlertsFailed, AlertsDropped func() float64
	// Flooding: 1 while a flood of single probes is being summarized
	// (portsentry_flooding).
	Flooding func() float64
	// The fleet (FLEET_URL, FLEET_LISTEN); nil when not in one.
	// FleetConnected is 1 while connected; FleetMembers the members
	// heard from; FleetLag the age in seconds of the last ban applied
	// when it was applied; FleetPublished the bans and lifts this member
	// sent; FleetReceived those of others it read; FleetRefused those
	// local policy refused; FleetThrottled those dropped because their
	// member was over FLEET_MAX_RATE; FleetQueued those waiting to go out.
	FleetConnected, FleetMembers, FleetLag                      func() float64
	FleetPublished, FleetReceived, FleetRefused, FleetThrottled func() float64
	FleetQueued                                                 func() float64
	// CrowdSec (CROWDSEC_*); nil when not pushing, or not pulling.
	// The pusher: CrowdSecPushConnected is 1 while the LAPI takes the
	// alerts; CrowdSecPushed the alerts it took; CrowdSecPushQueued the
	// bans waiting; CrowdSecPushDropped those dropped from a full queue.
	CrowdSecPushConnected, CrowdSecPushed, CrowdSecPushQueued, CrowdSecPushDropped func() float64
	// The puller: CrowdSecPullConnected is 1 while polls succeed;
	// CrowdSecLastPoll the Unix time of the last that did; then the
	// decisions read, applied, lifted, skipped (not an IP ban) and
	// failed; CrowdSecRefused those local policy refused, by why (one
	// of CrowdSecRefusedWhy).
	CrowdSecPullConnected, CrowdSecLastPoll                                          func() float64
	CrowdSecPulled, CrowdSecApplied, CrowdSecLifted, CrowdSecSkipped, CrowdSecFailed func() float64
	CrowdSecRefused                                                                  func(why string) float64
}

// CrowdSecRefusedWhy are the "why" label's values of
// portsentry_crowdsec_decisions_refused_total: the address is protected
// (ignore list, this host, its infrastructure), or a peer.
var CrowdSecRefusedWhy = []string{"protected", "peer"}

// Metrics holds the daemon's metrics. Its methods are safe for concurrent
// use, and do nothing on a nil *Metrics.
type Metrics struct {
	reg      *prometheus.Registry
	events   *eventCounter
	bans     *prometheus.CounterVec
	unbans   *prometheus.CounterVec
	failures *prometheus.CounterVec
	reloads  [2]prometheus.Counter // failure, success
	imported *prometheus.CounterVec
}

// New returns metrics registered in a fresh private registry. version is
// the build_info label.
func New(version string, funcs Funcs) *Metrics {
	m := &Metrics{
		reg:    prometheus.NewRegistry(),
		events: newEventCounter(),
		bans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "bans_total",
			Help: "Bans applied, by blocker.",
		}, []string{"blocker"}),
		unbans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "unbans_total",
			Help: "Bans lifted, by reason.",
		}, []string{"reason"}),
		imported: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "imported_bans_total",
			Help: "Bans decided elsewhere and applied here, by origin: fleet, crowdsec.",
		}, []string{"origin"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "command_failures_total",
			Help: "Response steps that failed, by step.",
		}, []string{"step"}),
	}
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "reloads_total",
		Help: "Configuration reloads, by result.",
	}, []string{"result"})
	m.reloads[0] = reloads.WithLabelValues("failure")
	m.reloads[1] = reloads.WithLabelValues("success")
	for _, v := range blockerNames {
		m.bans.WithLabelValues(v)
	}
	for _, v := range unbanReasons {
		m.unbans.WithLabelValues(v)
	}
	for _, v := range commandSteps {
		m.failures.WithLabelValues(v)
	}
	for _, v := range originKinds {
		m.imported.WithLabelValues(v)
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help:        "Always 1; the version label tells the running build.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	build.Set(1)
	m.reg.MustRegister(m.events, m.bans, m.unbans, m.failures, m.imported, reloads, build,
		// The Go runtime and process collectors show the daemon's memory
		// and file descriptors, the bounds an operator wants to watch.
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	for _, f := range []struct {
		name, help string
		fn         func() float64
		gauge      bool
	}{
		{"sensor_packets_inspected_total", "Packets read by the sensors.", funcs.PacketsInspected, false},
		{"sensor_packets_dropped_total", "Packets the kernel dropped before the sensors read them.", funcs.PacketsDropped, false},
		{"events_dropped_total", "Events lost because the engine's queue was full.", funcs.EventsDropped, false},
		{"engine_sources", "Sources the engine is counting.", funcs.EngineSources, true},
		{"bans_active", "Bans in force.", funcs.BansActive, true},
		{"flooding", "1 while a flood of single probes from many sources is summarized rather than handled one by one.", funcs.Flooding, true},
		{"kernel_trap_drops_total", "Probes dropped by the in-kernel nftables trap.", funcs.KernelTrapDrops, false},
		{"alerts_sent_total", "Administrator notifications delivered.", funcs.AlertsSent, false},
		{"alerts_failed_total", "Administrator notifications that could not be delivered.", funcs.AlertsFailed, false},
		{"alerts_dropped_total", "Administrator notifications not sent: queue full or rate limit.", funcs.AlertsDropped, false},
		{"fleet_connected", "1 while connected to the fleet's NATS servers.", funcs.FleetConnected, true},
		{"fleet_members", "Members of the fleet heard from (bans, lifts or presence).", funcs.FleetMembers, true},
		{"fleet_lag_seconds", "Age of the last fleet ban when it was applied here.", funcs.FleetLag, true},
		{"fleet_published_total", "Bans and lifts this member shared with the fleet.", funcs.FleetPublished, false},
		{"fleet_received_total", "Bans and lifts of other members read from the fleet.", funcs.FleetReceived, false},
		{"fleet_refused_total", "Fleet bans local policy refused (ignore list, own addresses, infrastructure, peers).", funcs.FleetRefused, false},
		{"fleet_throttled_total", "Fleet bans dropped because their member was over FLEET_MAX_RATE.", funcs.FleetThrottled, false},
		{"fleet_queued", "Bans and lifts waiting to be shared (the fleet unreachable).", funcs.FleetQueued, true},
		{"crowdsec_push_connected", "1 while the CrowdSec LAPI takes the alerts pushed (the last push succeeded).", funcs.CrowdSecPushConnected, true},
		{"crowdsec_alerts_pushed_total", "Bans pushed to the CrowdSec LAPI as alerts.", funcs.CrowdSecPushed, false},
		{"crowdsec_alerts_queued", "Bans waiting to be pushed to the CrowdSec LAPI.", funcs.CrowdSecPushQueued, true},
		{"crowdsec_alerts_dropped_total", "Bans not pushed to the CrowdSec LAPI: dropped from a full queue.", funcs.CrowdSecPushDropped, false},
		{"crowdsec_pull_connected", "1 while polls of the CrowdSec LAPI's decisions succeed.", funcs.CrowdSecPullConnected, true},
		{"crowdsec_last_poll_timestamp_seconds", "Unix time of the last successful poll of the CrowdSec LAPI's decisions (0: none yet).", funcs.CrowdSecLastPoll, true},
		{"crowdsec_decisions_pulled_total", "CrowdSec decisions read (every type and scope).", funcs.CrowdSecPulled, false},
		{"crowdsec_decisions_applied_total", "CrowdSec ban decisions applied here.", funcs.CrowdSecApplied, false},
		{"crowdsec_decisions_lifted_total", "Bans lifted here because their CrowdSec decisions were deleted or expired.", funcs.CrowdSecLifted, false},
		{"crowdsec_decisions_skipped_total", "CrowdSec decisions not applied: not a ban of an address (captcha, Range, Country, AS), or over the 1 048 576 followed.", funcs.CrowdSecSkipped, false},
		{"crowdsec_decisions_failed_total", "CrowdSec decisions whose ban or lift failed.", funcs.CrowdSecFailed, false},
	} {
		if f.fn == nil {
			continue
		}
		if f.gauge {
			m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: f.name, Help: f.help}, f.fn))
		} else {
			m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: f.name, Help: f.help}, f.fn))
		}
	}
	if fn := funcs.CrowdSecRefused; fn != nil {
		for _, why := range CrowdSecRefusedWhy {
			m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
				Namespace: namespace, Name: "crowdsec_decisions_refused_total",
				Help:        "CrowdSec ban decisions local policy refused, by why: protected (ignore list, this host, its infrastructure), peer (an established connection).",
				ConstLabels: prometheus.Labels{"why": why},
			}, func() float64 { return fn(why) }))
		}
	}
	return m
}

// Event counts one event. Out-of-range values are not counted (they would
// be a bug in the caller, not traffic).
func (m *Metrics) Event(kind event.Kind, proto event.Proto, action Action) {
	if m == nil {
		return
	}
	m.events.inc(kind, proto, action)
}

// Ban counts a ban applied by blocker ("nftables", "iptables", "route",
// "hostsdeny", "command").
func (m *Metrics) Ban(blocker string) {
	if m == nil {
		return
	}
	m.bans.WithLabelValues(blocker).Inc()
}

// Unban counts a ban lifted; reason is "expired" or "manual".
func (m *Metrics) Unban(reason string) {
	if m == nil {
		return
	}
	m.unbans.WithLabelValues(reason).Inc()
}

// CommandFailure counts a response step that failed: "route", "hostsdeny",
// "runcmd" or "native".
// Imported counts a ban decided elsewhere and applied here; origin is
// the ban's ("fleet:web1" counts as "fleet").
func (m *Metrics) Imported(origin string) {
	if m == nil {
		return
	}
	kind, _, _ := strings.Cut(origin, ":")
	if !slices.Contains(originKinds, kind) {
		kind = "other"
	}
	m.imported.WithLabelValues(kind).Inc()
}

func (m *Metrics) CommandFailure(step string) {
	if m == nil {
		return
	}
	m.failures.WithLabelValues(step).Inc()
}

// Reload counts a configuration reload, applied (ok) or refused.
func (m *Metrics) Reload(ok bool) {
	if m == nil {
		return
	}
	if ok {
		m.reloads[1].Inc()
	} else {
		m.reloads[0].Inc()
	}
}

// Registry returns the private registry, for tests and for a caller that
// wants to add its own collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text (or OpenMetrics)
// format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		// A scraper gone mad must not pile up collections: two at a time,
		// the rest get 503.
		MaxRequestsInFlight: 2,
		Timeout:             10 * time.Second,
		EnableOpenMetrics:   true,
	})
}

// ErrNoAddress is returned by Serve for an empty address: the endpoint is
// off, and the caller should not have started it.
var ErrNoAddress = errors.New("metrics: no listen address")

// Serve listens on addr (host:port; bind 127.0.0.1 unless a remote
// Prometheus must reach it) and serves Path until ctx is done. It returns
// a listen error at once, and nil after ctx is done.
func (m *Metrics) Serve(ctx context.Context, addr string, log *slog.Logger) error {
	if addr == "" {
		return ErrNoAddress
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return m.ServeListener(ctx, ln, log)
}

// ServeListener is Serve on a listener the caller opened, so that a bind
// error can stop start-up before anything else runs. It closes ln.
func (m *Metrics) ServeListener(ctx context.Context, ln net.Listener, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+Path, m.Handler())
	srv := &http.Server{
		Handler: mux,
		// Slow or idle clients must not hold connections: the endpoint
		// lives in a security daemon that may itself be probed.
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	// Shutdown runs beside Serve; the deferred wait makes a return from
	// here mean that every connection is closed.
	done := make(chan struct{})
	stopped := make(chan struct{})
	defer func() { close(done); <-stopped }()
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
		case <-done:
			return
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
	}()
	log.Debug("metrics: serving on http://" + ln.Addr().String() + Path)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil // only Shutdown, after ctx is done, closes the server
}

// eventCounter is portsentry_events_total: a collector over a fixed array
// of atomic counts. The array costs 7×2×9×8 bytes; a CounterVec would hash
// three label values on every event.
type eventCounter struct {
	desc *prometheus.Desc
	n    [event.NumKinds][numProtos][numActions]atomic.Uint64
}

func newEventCounter() *eventCounter {
	return &eventCounter{desc: prometheus.NewDesc(
		prometheus.BuildFQName(namespace, "", "events_total"),
		"Events seen by the sensors, by scan kind, protocol and outcome.",
		[]string{"kind", "proto", "action"}, nil)}
}

func (c *eventCounter) inc(kind event.Kind, proto event.Proto, action Action) {
	if int(kind) < event.NumKinds && int(proto) < numProtos && action < numActions {
		c.n[kind][proto][action].Add(1)
	}
}

// natural reports whether a kind is seen on a protocol: connect and the
// flag kinds are TCP, udp is UDP. Those series are exported from the start;
// any other combination only once counted.
func natural(kind event.Kind, proto event.Proto) bool {
	return (kind == event.UDPProbe) == (proto == event.UDP)
}

// Describe implements prometheus.Collector.
func (c *eventCounter) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *eventCounter) Collect(ch chan<- prometheus.Metric) {
	for k := range event.NumKinds {
		for p := range numProtos {
			for a := range numActions {
				v := c.n[k][p][a].Load()
				if v == 0 && !natural(event.Kind(k), event.Proto(p)) {
					continue
				}
				ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(v),
					event.Kind(k).Name(), protoNames[p], actionNames[a])
			}
		}
	}
}
