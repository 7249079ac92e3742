package crowdsec

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portsentry-go/portsentry/internal/report/logline"
)

// Scenario names this host's detections in CrowdSec (alerts, decisions,
// `cscli decisions list -s portsentry/scan`).
const Scenario = "portsentry/scan"

// Origin is the decisions' origin. CrowdSec 1.4 (Debian 12) lists only
// decisions of origin crowdsec, cscli, console and cscli-import unless
// `cscli decisions list -a`: an alert pushed by a machine is its agent's
// detection, as a crowdsec agent's is, and Scenario and the machine's
// name tell it apart.
const Origin = "crowdsec"

// Bounds of the push queue and its retries.
const (
	// QueueSize bans wait at most while the LAPI is away; past it the
	// oldest are dropped (counted): they end first.
	QueueSize = 4096
	// batchSize alerts go in one request.
	batchSize = 100
	retryMin  = time.Second
	retryMax  = 5 * time.Minute
	// permanent is the duration a permanent ban (BAN_TIME="0") is
	// pushed with: CrowdSec decisions always end.
	permanent = 365 * 24 * time.Hour
)

// Ban is one of this host's bans, to push.
type Ban struct {
	Prefix  netip.Prefix // the address, or the IPv6 prefix a ban covers
	Reason  string       // the scan type, "TCP SYN/Normal scan"
	Port    uint16
	Proto   string
	Since   time.Time
	Expires time.Time // zero: permanent
}

// alert is the LAPI's models.Alert, with the fields CrowdSec 1.4 requires.
type alert struct {
	Scenario        string     `json:"scenario"`
	ScenarioHash    string     `json:"scenario_hash"`
	ScenarioVersion string     `json:"scenario_version"`
	Message         string     `json:"message"`
	EventsCount     int        `json:"events_count"`
	StartAt         string     `json:"start_at"`
	StopAt          string     `json:"stop_at"`
	Capacity        int        `json:"capacity"`
	Leakspeed       string     `json:"leakspeed"`
	Simulated       bool       `json:"simulated"`
	Events          []event    `json:"events"`
	Source          source     `json:"source"`
	Decisions       []decision `json:"decisions"`
}

type event struct {
	Timestamp string `json:"timestamp"`
	Meta      []meta `json:"meta"`
}

type meta struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type source struct {
	Scope string `json:"scope"`
	Value string `json:"value"`
	IP    string `json:"ip,omitempty"`
	Range string `json:"range,omitempty"`
}

type decision struct {
	Origin   string `json:"origin"`
	Type     string `json:"type"`
	Scope    string `json:"scope"`
	Value    string `json:"value"`
	Duration string `json:"duration"`
	Scenario string `json:"scenario"`
}

// toAlert is b as an alert with its ban decision, for what is left of it
// at now; false when nothing is left.
func toAlert(b Ban, now time.Time) (alert, bool) {
	d := permanent
	if !b.Expires.IsZero() {
		d = b.Expires.Sub(now).Round(time.Second)
		if d < time.Second {
			return alert{}, false
		}
	}
	scope, value := "Ip", b.Prefix.Addr().String()
	src := source{Scope: scope, Value: value, IP: value}
	if !b.Prefix.IsSingleIP() {
		scope, value = "Range", b.Prefix.String()
		src = source{Scope: scope, Value: value, Range: value}
	}
	at := b.Since.UTC().Format(time.RFC3339)
	msg := fmt.Sprintf("portsentry: %s from %s", b.Reason, value)
	m := []meta{{Key: "service", Value: "portsentry"}, {Key: "source_ip", Value: value}, {Key: "reason", Value: b.Reason}}
	if b.Port != 0 {
		msg += fmt.Sprintf(" to %s port %d", b.Proto, b.Port)
		m = append(m, meta{Key: "port", Value: strconv.Itoa(int(b.Port))}, meta{Key: "proto", Value: b.Proto})
	}
	return alert{
		Scenario: Scenario, Message: msg, EventsCount: 1, StartAt: at, StopAt: at,
		Leakspeed: "0", Events: []event{{Timestamp: at, Meta: m}}, Source: src,
		Decisions: []decision{{Origin: Origin, Type: "ban", Scope: scope, Value: value,
			Duration: d.String(), Scenario: Scenario}},
	}, true
}

// Pusher pushes bans to the LAPI as the machine, off the daemon's path:
// Push queues and returns; Run sends, a batch at a time, and while the
// LAPI is away keeps the queue (bounded) and retries with backoff.
type Pusher struct {
	c   *Client
	log *slog.Logger
	now func() time.Time
	// retryMin is the first wait after a failure (tests shorten it).
	retryMin time.Duration

	mu      sync.Mutex
	queue   []queued // oldest first, at most QueueSize
	seq     uint64   // the last ban queued
	wake    chan struct{}
	dropped atomic.Uint64
	pushed  atomic.Uint64
	failing bool // Run's own: a failure was logged and none has succeeded since
	// Under mu, for Stats: the last request that reached the LAPI, and
	// the last failure with its time (cleared by a success).
	lastPush  time.Time
	lastErr   string
	lastErrAt time.Time
}

// queued is a ban in the queue, numbered in order.
type queued struct {
	seq uint64
	ban Ban
}

// NewPusher returns a pusher through c, which must have machine
// credentials.
func NewPusher(c *Client, log *slog.Logger) *Pusher {
	return &Pusher{c: c, log: log, now: time.Now, retryMin: retryMin, wake: make(chan struct{}, 1)}
}

// Push queues b. It never waits: with the queue full, the oldest ban
// waiting is dropped (counted).
func (p *Pusher) Push(b Ban) {
	p.mu.Lock()
	if len(p.queue) >= QueueSize {
		p.queue = p.queue[1:]
		p.dropped.Add(1)
	}
	p.seq++
	p.queue = append(p.queue, queued{p.seq, b})
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Stats are the pusher's counts since start, and how its last request
// went.
type Stats struct {
	Pushed, Dropped uint64 // alerts the LAPI took; bans dropped from a full queue
	Queued          int    // bans waiting
	// LastPush is when alerts last reached the LAPI (zero: never yet).
	LastPush time.Time
	// LastError is why the last request failed, and LastErrorAt when;
	// "" when the last request succeeded or none was made.
	LastError   string
	LastErrorAt time.Time
}

// Connected reports whether the LAPI took the last alerts pushed: false
// before the first push and while pushes fail.
func (s Stats) Connected() bool { return !s.LastPush.IsZero() && s.LastError == "" }

// Stats returns the counts.
func (p *Pusher) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{Pushed: p.pushed.Load(), Dropped: p.dropped.Load(), Queued: len(p.queue),
		LastPush: p.lastPush, LastError: p.lastErr, LastErrorAt: p.lastErrAt}
}

// noteResult records how a request went, for Stats.
func (p *Pusher) noteResult(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.lastErr, p.lastErrAt = err.Error(), p.now()
		return
	}
	p.lastPush, p.lastErr, p.lastErrAt = p.now(), "", time.Time{}
}

// Run sends queued bans until ctx is done. A failed batch stays at the
// head of the queue and is tried again after a wait that doubles from 1 s
// to 5 min; the failure is logged once, and its end once.
func (p *Pusher) Run(ctx context.Context) {
	wait := p.retryMin
	for {
		batch := p.peek()
		if len(batch) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-p.wake:
			}
			continue
		}
		now := p.now()
		alerts := make([]alert, 0, len(batch))
		for _, q := range batch {
			if a, ok := toAlert(q.ban, now); ok {
				alerts = append(alerts, a)
			}
		}
		var err error
		if len(alerts) > 0 {
			err = p.c.postAlerts(ctx, alerts)
		}
		if ctx.Err() != nil {
			return
		}
		if len(alerts) > 0 {
			p.noteResult(err)
		}
		if err != nil {
			if !p.failing {
				p.failing = true
				p.log.Warn(logline.Warning(fmt.Sprintf("CrowdSec: pushing bans to %s failed, retrying (bans wait, at most %d): %v", p.c.base.Redacted(), QueueSize, err)))
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(wait*2, retryMax)
			continue
		}
		if p.failing {
			p.failing = false
			p.log.Info(logline.Notice(fmt.Sprintf("CrowdSec: pushing bans to %s again", p.c.base.Redacted())))
		}
		wait = p.retryMin
		p.pop(batch[len(batch)-1].seq)
		p.pushed.Add(uint64(len(alerts)))
	}
}

// peek returns the head of the queue, at most batchSize bans.
func (p *Pusher) peek() []queued {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]queued(nil), p.queue[:min(len(p.queue), batchSize)]...)
}

// pop removes the bans up to seq, those sent; some may have been
// dropped from the head meanwhile.
func (p *Pusher) pop(seq uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for n < len(p.queue) && p.queue[n].seq <= seq {
		n++
	}
	p.queue = p.queue[n:]
}
