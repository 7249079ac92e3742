package report

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/portsentry-go/portsentry/internal/enforce/bans"
	"github.com/portsentry-go/portsentry/internal/enforce/respond"
	"github.com/portsentry-go/portsentry/internal/event"
	"github.com/portsentry-go/portsentry/internal/report/alert"
	"github.com/portsentry-go/portsentry/internal/report/jsonlog"
	"github.com/portsentry-go/portsentry/internal/report/logline"
	"github.com/portsentry-go/portsentry/internal/report/metrics"
)

// Observer is a report destination beside the log. A new one (a SIEM
// client, a chat webhook) implements it and is added in Open.
type Observer interface {
	// Decided is told of every event as the engine decides it, on the
	// event loop: it must only count. Responses are not decided here.
	Decided(ev event.Event, a metrics.Action)
	// Record is told of every event the log reports, and of every
	// response once it has run (Action Blocked or BlockFailed).
	Record(r Record)
	// Lifted is told of the end of a ban.
	Lifted(b bans.Ban, expired bool)
	// Imported is told of a ban decided elsewhere (b.Origin: the fleet,
	// CrowdSec) and applied here by blocker.
	Imported(b bans.Ban, blocker string)
	// Reloaded is told of a reload, taken or refused.
	Reloaded(ok bool)
}

// Record is one reported event and what was done about it.
type Record struct {
	Event   event.Event
	Action  metrics.Action
	Hits    int    // the engine's count for the source, this event included
	Host    string // the source's name, or its address
	Refused bool   // a response was refused: the address is never blocked
	// Ban and Blocker are set for Blocked: the ban in force (nil when the
	// record keeps none) and what applied it.
	Ban     *bans.Ban
	Blocker string
	Failed  []respond.StepKind // the steps of a response that failed
}

// Destinations are the optional observers: each is off when empty.
type Destinations struct {
	Version        string
	EventLog       string // EVENT_LOG
	Alert          alert.Config
	MetricsAddress string // METRICS_ADDRESS
	// Gauges are the metrics read from elsewhere (sensors, engine, bans);
	// the alert counters are added here.
	Gauges metrics.Funcs
	// LastDetection keeps the last probe detected, for LastDetection (the
	// status systemd shows).
	LastDetection bool
	// Observers are more destinations, opened by the caller (CrowdSec's
	// pusher).
	Observers []Observer
}

// Open starts the observers d asks for and returns what must run for them
// (the alert sender, the metrics endpoint). Call it once, before Run.
func (r *Reporter) Open(d Destinations) (serve []func(context.Context), err error) {
	if d.LastDetection {
		r.last = &lastDetection{}
		r.observers = append(r.observers, r.last)
	}
	r.observers = append(r.observers, d.Observers...)
	if d.EventLog != "" {
		w, err := jsonlog.Open(d.EventLog, d.Version)
		if err != nil {
			return nil, fmt.Errorf("EVENT_LOG: %w", err)
		}
		r.observers = append(r.observers, &eventLog{w: w, log: r.log})
		r.closers = append(r.closers, func() { w.Close() })
	}
	if d.Alert.Enabled() {
		a, err := alert.New(d.Alert, r.log)
		if err != nil {
			return nil, fmt.Errorf("alerts: %w", err)
		}
		r.observers = append(r.observers, alerts{a})
		serve = append(serve, func(ctx context.Context) { _ = a.Run(ctx) })
		r.closers = append(r.closers, func() {
			// Pending alerts get a bounded time to go out.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := a.Close(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				r.log.Warn(logline.Warning("alerts: " + err.Error()))
			}
		})
		d.Gauges.AlertsSent = func() float64 { return float64(a.Stats().Sent) }
		d.Gauges.AlertsFailed = func() float64 { return float64(a.Stats().Failed) }
		d.Gauges.AlertsDropped = func() float64 { st := a.Stats(); return float64(st.Dropped + st.RateLimited) }
	}
	if d.MetricsAddress == "" {
		return serve, nil
	}
	ln, err := net.Listen("tcp", d.MetricsAddress)
	if err != nil {
		return nil, fmt.Errorf("METRICS_ADDRESS: %w", err)
	}
	m := metrics.New(d.Version, d.Gauges)
	r.observers = append(r.observers, counters{m})
	serve = append(serve, func(ctx context.Context) {
		if err := m.ServeListener(ctx, ln, r.log); err != nil {
			r.log.Error(logline.Error("metrics endpoint: " + err.Error()))
		}
	})
	r.log.Info(logline.Notice("metrics on http://" + ln.Addr().String() + metrics.Path))
	return serve, nil
}

// Close writes the outcomes still queued (Report may have queued some after
// Run returned), then flushes pending alerts (bounded) and closes the event
// log. Call it after Run has returned.
func (r *Reporter) Close() {
	r.drain()
	for _, c := range r.closers {
		c()
	}
}

// counters is the Prometheus metrics.
type counters struct{ m *metrics.Metrics }

func (c counters) Decided(ev event.Event, a metrics.Action) { c.m.Event(ev.Kind, ev.Proto, a) }

func (c counters) Record(r Record) {
	if r.Action != metrics.Blocked && r.Action != metrics.BlockFailed {
		return // counted when decided
	}
	if r.Action == metrics.Blocked {
		c.m.Ban(r.Blocker)
	}
	c.m.Event(r.Event.Kind, r.Event.Proto, r.Action)
	for _, k := range r.Failed {
		c.m.CommandFailure(stepNames[k])
	}
}

var stepNames = map[respond.StepKind]string{
	respond.RunCmd: "runcmd", respond.HostsDeny: "hostsdeny", respond.Route: "route", respond.Native: "native",
}

func (c counters) Lifted(_ bans.Ban, expired bool) {
	if expired {
		c.m.Unban("expired")
	} else {
		c.m.Unban("manual")
	}
}

func (c counters) Reloaded(ok bool) { c.m.Reload(ok) }

func (c counters) Imported(b bans.Ban, blocker string) {
	c.m.Ban(blocker)
	c.m.Imported(b.Origin)
}

// eventLog is the JSON event stream (EVENT_LOG).
type eventLog struct {
	w   *jsonlog.Writer
	log *slog.Logger
}

func (eventLog) Decided(event.Event, metrics.Action) {}
func (eventLog) Lifted(bans.Ban, bool)               {}
func (eventLog) Reloaded(bool)                       {}

// Imported writes a line with action "imported": the address as src, the
// ban's reason as type, its origin.
func (e *eventLog) Imported(b bans.Ban, blocker string) {
	rec := jsonlog.Record{Action: jsonlog.Imported, Blocker: blocker, BanExpires: b.Expires, BanCount: b.Count,
		Origin: b.Origin, Type: b.Reason, Event: event.Event{Src: b.Addr, Port: b.Port}}
	if err := e.w.Write(rec); err != nil {
		e.log.Error(logline.Error("EVENT_LOG: " + err.Error()))
	}
}

func (e *eventLog) Record(r Record) {
	rec := jsonlog.Record{Event: r.Event, Action: r.Action.String(), Hits: r.Hits}
	if r.Host != r.Event.Src.String() {
		rec.Host = r.Host
	}
	if r.Ban != nil {
		rec.Blocker, rec.BanExpires, rec.BanCount = r.Blocker, r.Ban.Expires, r.Ban.Count
	}
	if err := e.w.Write(rec); err != nil {
		e.log.Error(logline.Error("EVENT_LOG: " + err.Error()))
	}
}

// alerts tells the administrators, batched per attacker by the alerter.
type alerts struct{ a *alert.Alerter }

func (alerts) Decided(event.Event, metrics.Action) {}
func (alerts) Lifted(bans.Ban, bool)               {}
func (alerts) Reloaded(bool)                       {}
func (alerts) Imported(bans.Ban, string)           {}

func (al alerts) Record(r Record) {
	var action string
	switch {
	case r.Action == metrics.Blocked, r.Action == metrics.AlreadyBlocked:
		// An already-blocked probe is told too: the alert about an
		// attacker lists every port it tried.
		action = alert.ActionBlocked
	case r.Action == metrics.BlockFailed:
		action = alert.ActionBlockFailed
	case r.Action == metrics.Reported && !r.Refused:
		action = alert.ActionReported
	default:
		return
	}
	ev := r.Event
	a := alert.Alert{Time: ev.Time, Src: ev.Src, Ports: []uint16{ev.Port}, Kinds: []string{ev.Describe()}, Action: action}
	if r.Host != ev.Src.String() {
		a.Host = r.Host
	}
	if r.Ban != nil {
		a.BanExpires = r.Ban.Expires
	}
	al.a.Notify(a)
}

// LastDetection returns the last probe detected (by time seen), if any and
// if Open was asked to keep it: a probe counted, reported, blocked or
// summarized in a flood; not an ignored source's, a service's client's, or
// a forged one.
func (r *Reporter) LastDetection() (event.Event, bool) {
	if r.last == nil {
		return event.Event{}, false
	}
	r.last.mu.Lock()
	defer r.last.mu.Unlock()
	return r.last.ev, r.last.ev.Src.IsValid()
}

// lastDetection keeps the last probe detected. Decided tells of the probes
// the engine decides on the event loop, Record of the ones that triggered
// a response, once it has run, from the responders.
type lastDetection struct {
	mu sync.Mutex
	ev event.Event
}

func (l *lastDetection) Decided(ev event.Event, a metrics.Action) {
	switch a {
	case metrics.Counted, metrics.Pending, metrics.AlreadyBlocked, metrics.AlreadyReported, metrics.Reported, metrics.Flooded:
		l.see(ev)
	}
}

func (l *lastDetection) Record(r Record) {
	switch r.Action {
	case metrics.Blocked, metrics.BlockFailed, metrics.Reported:
		l.see(r.Event)
	}
}

func (l *lastDetection) see(ev event.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	// A response's record comes after later probes may have been seen.
	if !l.ev.Src.IsValid() || !ev.Time.Before(l.ev.Time) {
		l.ev = ev
	}
}

func (*lastDetection) Lifted(bans.Ban, bool)     {}
func (*lastDetection) Reloaded(bool)             {}
func (*lastDetection) Imported(bans.Ban, string) {}
