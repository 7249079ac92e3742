// Package alert notifies administrators of attacks by e-mail (the local
// sendmail, or an SMTP server) and by webhook (a JSON POST), batched and
// rate-limited so that a scan of 65 535 ports is one message, not 65 535.
//
// # Batching
//
// The first notification about a source opens a batch. Notifications that
// arrive within Config.Delay (5 s) are merged into it (ports, scan types,
// actions), then one alert is sent. For Config.Window (60 s) after that,
// further notifications about the source are only gathered; at the end of
// the window one summary tells what came since ("64 511 more ports"), and
// a new window starts. A window with nothing in it ends the source's entry:
// its next notification opens a new batch.
//
// Across sources, at most Config.MaxPerHour (60) messages are sent in any
// hour; the next message sent tells how many were held back.
//
// # Never in the way of detection
//
// Notify never blocks: it puts the notification on a bounded queue, and
// counts it as dropped when the queue is full. One worker merges and
// schedules; each destination (e-mail, webhook) has its own goroutine, its
// own bounded queue and a timeout per delivery, so a hung webhook delays
// neither the e-mail nor the worker. A failed delivery is logged and
// counted, not retried: the log and the event stream have the record, and
// a retry would double how long a dead server holds its destination.
//
// # Bounds
//
// The worker keeps at most Config.MaxSources (1 024) sources. A source
// with more than 64 distinct ports carries a 65 536-bit port set (8 KiB),
// so the table stays under about 9 MiB however the attack looks. When it is
// full, an entry that only waits out its window is forgotten first; if none
// is, the new notification is dropped and counted.
package alert

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portsentry-go/portsentry/internal/report/logline"
)

// Actions as alerts write them.
const (
	ActionBlocked     = "blocked"
	ActionBlockFailed = "block failed"
	ActionReported    = "reported"
)

// Alert is one notification: usually one event that triggered a response.
type Alert struct {
	// Time is when the probe was seen; zero means when Notify is called.
	Time time.Time
	// Src is the attacking address.
	Src netip.Addr
	// Host is its resolved name; "" when not resolved.
	Host string
	// Ports are the ports probed. Notify takes ownership of the slice.
	Ports []uint16
	// Kinds are the scan types as PortSentry names them ("TCP SYN/Normal
	// scan"). Notify takes ownership of the slice.
	Kinds []string
	// Action is what was done: ActionBlocked, ActionBlockFailed,
	// ActionReported (any string is written as is).
	Action string
	// BanExpires is when the ban ends; zero when there is none or it is
	// permanent.
	BanExpires time.Time
}

// Stats are the alerter's counters since New.
type Stats struct {
	// Sent counts deliveries made, one per destination and message.
	Sent uint64
	// Failed counts deliveries not made: an error, a timeout, the
	// destination's queue full, or aborted by Close.
	Failed uint64
	// Dropped counts notifications lost: the queue or the source table
	// was full, or Close had been called.
	Dropped uint64
	// RateLimited counts messages not sent because MaxPerHour was reached.
	RateLimited uint64
}

// Alerter batches notifications and delivers them. Its methods are safe
// for concurrent use; on a nil *Alerter they do nothing, so the daemon
// calls Notify whether or not alerts are configured.
type Alerter struct {
	cfg   Config
	log   *slog.Logger
	sinks []*sink
	in    chan Alert

	stop      chan struct{} // closed by Close
	stopOnce  sync.Once
	done      chan struct{} // closed when Run returns
	started   atomic.Bool
	closed    atomic.Bool
	dctx      context.Context // deliveries; outlives Run's ctx for the flush
	abort     context.CancelFunc
	sent      atomic.Uint64
	failed    atomic.Uint64
	dropped   atomic.Uint64
	limited   atomic.Uint64
	reportedD uint64 // dropped count already told in a message (worker only)

	// Worker state, touched only by Run's goroutine.
	table   map[netip.Addr]*entry
	rate    rateLimit
	held    int  // messages held back by the rate limit since the last one sent
	warned  bool // the rate-limit warning was logged since the last message sent
	nextDue time.Time
}

// New checks cfg, fills in its defaults and returns an alerter. Nothing
// runs until Run.
func New(cfg Config, log *slog.Logger) (*Alerter, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	var sinks []*sink
	switch cfg.Mailer {
	case MailerSendmail:
		sinks = append(sinks, newSink("e-mail", &sendmail{cfg: &cfg}, cfg.QueueSize))
	case MailerSMTP:
		sinks = append(sinks, newSink("e-mail", &smtpMailer{cfg: &cfg}, cfg.QueueSize))
	}
	if cfg.WebhookURL != "" {
		sinks = append(sinks, newSink("webhook", newWebhook(&cfg), cfg.QueueSize))
	}
	return newAlerter(cfg, log, sinks), nil
}

// newAlerter is New after validation, with the destinations given: tests
// pass fakes here.
func newAlerter(cfg Config, log *slog.Logger, sinks []*sink) *Alerter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Alerter{
		cfg:   cfg,
		log:   log,
		sinks: sinks,
		in:    make(chan Alert, cfg.QueueSize),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
		table: make(map[netip.Addr]*entry),
		rate:  newRateLimit(cfg.MaxPerHour),
	}
	a.dctx, a.abort = context.WithCancel(context.Background())
	return a
}

// Notify queues one notification and returns at once. When the queue is
// full, or after Close, the notification is dropped and counted.
func (a *Alerter) Notify(al Alert) {
	if a == nil {
		return
	}
	if a.closed.Load() {
		a.dropped.Add(1)
		return
	}
	if al.Time.IsZero() {
		al.Time = time.Now()
	}
	select {
	case a.in <- al:
	default:
		a.dropped.Add(1)
	}
}

// Stats returns the counters.
func (a *Alerter) Stats() Stats {
	if a == nil {
		return Stats{}
	}
	return Stats{Sent: a.sent.Load(), Failed: a.failed.Load(), Dropped: a.dropped.Load(), RateLimited: a.limited.Load()}
}

// ErrRunning is returned by a second call to Run.
var ErrRunning = errors.New("alert: Run already called")

// Run gathers notifications and sends the messages until ctx is done or
// Close is called. Before returning it flushes: every batch still
// gathering is sent as an alert and every pending summary as a summary,
// ignoring Delay and Window; the flush takes at most Config.Timeout.
func (a *Alerter) Run(ctx context.Context) error {
	if a == nil {
		return nil
	}
	if !a.started.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer close(a.done)
	var wg sync.WaitGroup
	for _, s := range a.sinks {
		wg.Go(func() { a.deliverLoop(s) })
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var armed time.Time // what the timer is set for: reset only on a change
	for running := true; running; {
		select {
		case <-ctx.Done():
			running = false
		case <-a.stop:
			running = false
		case al := <-a.in:
			a.add(al, time.Now())
		case <-timer.C:
			armed = time.Time{}
			a.fire(time.Now(), false)
		}
		if !a.nextDue.IsZero() && !a.nextDue.Equal(armed) {
			armed = a.nextDue
			timer.Reset(time.Until(armed))
		}
	}

	// The flush. Deliveries still queued or under way get Config.Timeout
	// in all; then they are cancelled.
	a.closed.Store(true)
	stopFlush := time.AfterFunc(a.cfg.Timeout, a.abort)
	defer stopFlush.Stop()
	for drained := false; !drained; {
		select {
		case al := <-a.in:
			a.add(al, time.Now())
		default:
			drained = true
		}
	}
	a.fire(time.Now(), true)
	for _, s := range a.sinks {
		close(s.queue)
	}
	wg.Wait()
	return nil
}

// Close stops Run after its flush and waits for it, at most until ctx is
// done: then the deliveries under way are cancelled (and counted as
// failed) and Close returns ctx's error. Notify drops everything after
// Close. Close before Run makes Run flush and return at once.
func (a *Alerter) Close(ctx context.Context) error {
	if a == nil {
		return nil
	}
	a.stopOnce.Do(func() {
		a.closed.Store(true)
		close(a.stop)
	})
	if !a.started.Load() {
		return nil
	}
	select {
	case <-a.done:
		return nil
	case <-ctx.Done():
		a.abort()
		<-a.done
		return fmt.Errorf("alert: close: %w", ctx.Err())
	}
}

// add merges one notification into its source's entry.
func (a *Alerter) add(al Alert, now time.Time) {
	src := al.Src.Unmap().WithZone("")
	e, ok := a.table[src]
	if !ok {
		if len(a.table) >= a.cfg.MaxSources && !a.evictIdle() {
			a.dropped.Add(1)
			return
		}
		e = &entry{src: src, due: now.Add(a.cfg.Delay)}
		a.table[src] = e
		a.schedule(e.due)
	}
	e.b.merge(al)
	if al.Host != "" {
		// A DNS name is at most 253 bytes; anything longer is not one.
		e.host = cleanLine(al.Host[:min(len(al.Host), 253)])
	}
}

// evictIdle forgets one entry that only waits out its window with nothing
// gathered, the one whose window ends first. It reports false when every
// entry holds something to send.
func (a *Alerter) evictIdle() bool {
	var victim *entry
	for _, e := range a.table {
		if e.quiet && e.b.n == 0 && (victim == nil || e.due.Before(victim.due)) {
			victim = e
		}
	}
	if victim == nil {
		return false
	}
	delete(a.table, victim.src)
	return true
}

func (a *Alerter) schedule(t time.Time) {
	if a.nextDue.IsZero() || t.Before(a.nextDue) {
		a.nextDue = t
	}
}

// fire sends what is due at now (everything when flushing) and schedules
// the next wake-up.
func (a *Alerter) fire(now time.Time, flush bool) {
	due := make([]*entry, 0, 8)
	for _, e := range a.table {
		if flush || !e.due.After(now) {
			due = append(due, e)
		}
	}
	// Oldest first, and in a stable order when several fall due together.
	slices.SortFunc(due, func(x, y *entry) int {
		if c := x.due.Compare(y.due); c != 0 {
			return c
		}
		return x.src.Compare(y.src)
	})
	for _, e := range due {
		if e.quiet && e.b.n == 0 {
			delete(a.table, e.src) // a window with nothing in it: done
			continue
		}
		m := e.message(a, now)
		a.send(m, now, flush)
		e.quiet = true
		e.lastSent = now
		e.b = batch{}
		e.due = now.Add(a.cfg.Window)
	}
	if flush {
		return
	}
	a.nextDue = time.Time{}
	for _, e := range a.table {
		a.schedule(e.due)
	}
}

// send applies the rate limit and hands m to every destination.
func (a *Alerter) send(m *message, now time.Time, flush bool) {
	if !a.rate.allow(now) {
		a.limited.Add(1)
		a.held++
		if !a.warned {
			a.warned = true
			a.log.Warn(logline.Warning(fmt.Sprintf("alert: %d messages in the last hour, the limit: holding alerts back", a.cfg.MaxPerHour)))
		}
		return
	}
	m.Held = a.held
	a.held, a.warned = 0, false
	d := a.dropped.Load()
	m.Lost = int(d - a.reportedD)
	a.reportedD = d
	for _, s := range a.sinks {
		if flush {
			select {
			case s.queue <- m:
			case <-a.dctx.Done():
				a.failed.Add(1)
			}
			continue
		}
		select {
		case s.queue <- m:
		default:
			a.failed.Add(1)
			a.log.Error(logline.Error(fmt.Sprintf("alert: %s about %s not sent: too many messages waiting", s.name, m.Src)))
		}
	}
}

// deliverLoop sends the messages of one destination, one at a time.
func (a *Alerter) deliverLoop(s *sink) {
	for m := range s.queue {
		if a.dctx.Err() != nil {
			a.failed.Add(1)
			continue
		}
		ctx, cancel := context.WithTimeout(a.dctx, a.cfg.Timeout)
		err := s.d.deliver(ctx, m)
		cancel()
		if err != nil {
			a.failed.Add(1)
			a.log.Error(logline.Error(fmt.Sprintf("alert: %s about %s failed: %v", s.name, m.Src, err)))
			continue
		}
		a.sent.Add(1)
		a.log.Debug(fmt.Sprintf("alert: %s about %s sent", s.name, m.Src))
	}
}

// deliverer is one destination.
type deliverer interface {
	deliver(ctx context.Context, m *message) error
}

type sink struct {
	name  string
	d     deliverer
	queue chan *message
}

func newSink(name string, d deliverer, queue int) *sink {
	// Messages are few (rate-limited); a short queue is enough to ride
	// out one slow delivery.
	return &sink{name: name, d: d, queue: make(chan *message, min(queue, 64))}
}
