// Package engine decides what to do with each probe: ignore it, count it,
// report it, or respond to it. It is pure logic: it never touches the
// network, the firewall or a file, so every rule of PortSentry's state
// machine is tested here without either.
package engine

import (
	"container/list"
	"net/netip"
	"time"

	"github.com/portsentry-go/portsentry/internal/event"
)

// Response is what BLOCK_TCP / BLOCK_UDP ask for.
type Response uint8

// Responses, numbered as BLOCK_TCP/BLOCK_UDP values.
const (
	LogOnly Response = 0 // report and record, block nothing
	Block   Response = 1 // hosts.deny and/or KILL_ROUTE, plus KILL_RUN_CMD
	RunOnly Response = 2 // KILL_RUN_CMD only
)

// Action is the engine's verdict on one event.
type Action uint8

// Actions.
const (
	// Ignored: the source is on the ignore list (or is this host).
	Ignored Action = iota
	// Counted: below SCAN_TRIGGER; logged, nothing else.
	Counted
	// AlreadyBlocked: the source is blocked; PortSentry logs "is already
	// blocked Ignoring". The service check has not been asked (a flood from
	// a blocked host must cost no lookups): ask it before logging.
	AlreadyBlocked
	// AlreadyReported: log-only mode, and this source was reported for this
	// protocol before; logged, not reported again.
	AlreadyReported
	// Report: the trigger is reached in log-only mode: alert and record it.
	Report
	// Respond: the trigger is reached and BLOCK_* asks for a response. The
	// caller runs it and must then call Done with the result.
	Respond
	// Service: a local socket owns the port (PortSentry's service check):
	// the packet is traffic for a service, not a probe. Not counted.
	Service
	// Pending: a response to this source is under way; whether it will be
	// blocked is not known yet.
	Pending
)

var actionNames = [...]string{"ignored", "counted", "already-blocked", "already-reported", "report", "respond", "service", "pending"}

// String names the action for debug logs and tests.
func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "action?"
}

// Verdict is the engine's answer for one event.
type Verdict struct {
	Action Action
	// Count is the hits from this source so far, this one included: the
	// distinct (protocol, port) pairs it probed within the window, counted
	// up to the trigger (max(Trigger, 1)), which is all a decision needs.
	// 0 when the probe was not counted (ignored, blocked, pending, service).
	Count    int
	Response Response // the configured response for the event's protocol
}

// Options configure an Engine. The zero value acts on the first hit, blocks
// nothing, ignores nobody, and uses default caps.
type Options struct {
	// Trigger is SCAN_TRIGGER: act when a source's hit count reaches it.
	// 0 and 1 both act on the first hit, as in PortSentry 1.2 and 2.x. A
	// hit is a distinct (protocol, port) pair: a retransmission to a port
	// already counted does not count again.
	Trigger int
	// Window is SCAN_TRIGGER_WINDOW: a hit counts towards Trigger until
	// the source has not probed that port for longer than this, so probes
	// further apart never add up. 0 keeps every hit for as long as the
	// source is remembered. The clock is event.Event.Time, never the
	// engine's own.
	Window time.Duration
	// Response is BLOCK_TCP and BLOCK_UDP, indexed by event.Proto.
	Response [2]Response
	// Ignore reports sources never acted on (ignore file, local addresses).
	Ignore func(netip.Addr) bool
	// MaxSources caps the table of sources being counted. When full, the
	// source seen least recently is forgotten (its count starts again).
	MaxSources int
	// InUse, when set, is asked about passively captured probes (stealth and
	// advanced modes) whose source is neither ignored nor blocked: true
	// means a local socket owns the event's port right now, for this
	// packet, so it is not a probe. Connect-mode events never ask: their
	// trap socket is the owner. Asking last keeps a flood from a blocked
	// host free of lookups.
	InUse func(ev event.Event) bool
	// Key, when set, maps an address to the source it counts as: with
	// IPv6 bans by prefix, every address of a /64 is one source, counted
	// and blocked together. nil: each address is its own source.
	Key func(netip.Addr) netip.Addr
	// MaxBlocked caps how many blocked sources are remembered. When full,
	// the oldest block is forgotten: the firewall keeps it, and a new probe
	// from that source would only run the response again.
	MaxBlocked int
	// MaxHits bounds the ports all sources keep together, whatever
	// Trigger and MaxSources are: a large trigger lets each source keep
	// many, and forged sources can each bring up to Trigger - 1. When
	// the room for them reaches it, the sources seen least recently are
	// forgotten first, as when MaxSources is reached. 0 means
	// DefaultMaxHits.
	MaxHits int
}

// Default caps; about 120 bytes a source plus 16 for each port it keeps
// (at most max(Trigger, 1), only as many as it probed within the window):
// a few megabytes at the default caps and a small trigger, and never more
// than DefaultMaxHits × 16 bytes (16 MiB) of ports for a large one.
const (
	DefaultMaxSources = 65536
	DefaultMaxBlocked = 65536
	DefaultMaxHits    = 1 << 20
)

type source struct {
	addr     netip.Addr
	hits     []hit   // at most max(Trigger, 1), in no particular order
	reported [2]bool // log-only mode: reported for TCP / UDP already
}

// hit is one (protocol, port) a source probed, and when it last did.
type hit struct {
	at  time.Duration // since Engine.epoch
	key uint32        // proto<<16 | port
}

// Engine holds per-source state. It is not safe for concurrent use: the
// daemon feeds it from one goroutine, which keeps decisions ordered.
type Engine struct {
	opts    Options
	sources map[netip.Addr]*list.Element // of *source, most recent at front
	lru     list.List
	pending map[netip.Addr]struct{} // responses under way
	blocked map[netip.Addr]*list.Element
	order   list.List // blocked addresses, oldest at back
	// epoch is the time of the first counted event; hits are kept as
	// offsets from it (8 bytes where a time.Time takes 24, and measured on
	// the monotonic clock when the events carry it).
	epoch    time.Time
	hasEpoch bool
	hitRoom  int // the sources' hits capacities together, at most about MaxHits
}

// New returns an engine with no state.
func New(opts Options) *Engine {
	e := &Engine{
		sources: make(map[netip.Addr]*list.Element),
		pending: make(map[netip.Addr]struct{}),
		blocked: make(map[netip.Addr]*list.Element),
	}
	e.Reconfigure(opts)
	return e
}

// Reconfigure applies new options (a reload) and keeps every count and
// block. Shrinking a cap evicts at once.
func (e *Engine) Reconfigure(opts Options) {
	if opts.MaxSources <= 0 {
		opts.MaxSources = DefaultMaxSources
	}
	if opts.MaxBlocked <= 0 {
		opts.MaxBlocked = DefaultMaxBlocked
	}
	if opts.MaxHits <= 0 {
		opts.MaxHits = DefaultMaxHits
	}
	if opts.Ignore == nil {
		opts.Ignore = func(netip.Addr) bool { return false }
	}
	e.opts = opts
	for e.lru.Len() > opts.MaxSources {
		e.evictSource()
	}
	for e.order.Len() > opts.MaxBlocked {
		e.evictBlocked()
	}
}

// Observe decides what to do with one event.
func (e *Engine) Observe(ev event.Event) Verdict {
	resp := e.opts.Response[ev.Proto&1]
	v := Verdict{Response: resp}
	// The address itself is ignored or not; its source (Key) is what
	// is counted and blocked.
	if e.opts.Ignore(ev.Src.Unmap()) {
		v.Action = Ignored
		return v
	}
	src := e.key(ev.Src)
	// Blocked wins over pending: a source blocked by hand while its
	// response runs is blocked, whatever the response's outcome.
	if _, ok := e.blocked[src]; ok {
		v.Action = AlreadyBlocked
		return v
	}
	if _, ok := e.pending[src]; ok {
		v.Action = Pending
		return v
	}
	if e.opts.InUse != nil && ev.Mode.Passive() && e.opts.InUse(ev) {
		v.Action = Service
		return v
	}
	s := e.touch(src)
	v.Count = e.count(s, ev)
	if v.Count < e.opts.Trigger {
		v.Action = Counted
		return v
	}
	if resp == LogOnly {
		if s.reported[ev.Proto&1] {
			v.Action = AlreadyReported
			return v
		}
		s.reported[ev.Proto&1] = true
		v.Action = Report
		return v
	}
	e.pending[src] = struct{}{}
	v.Action = Respond
	return v
}

// Done records the result of a Respond verdict. A source whose response
// failed is not recorded as blocked: its next probe triggers again.
func (e *Engine) Done(addr netip.Addr, blocked bool) {
	addr = e.key(addr)
	delete(e.pending, addr)
	if blocked {
		e.MarkBlocked(addr)
	}
}

// MarkBlocked records addr as blocked without a probe (BLOCKED_FILE at start,
// or a block made by hand).
func (e *Engine) MarkBlocked(addr netip.Addr) {
	addr = e.key(addr)
	if el, ok := e.sources[addr]; ok {
		e.hitRoom -= cap(el.Value.(*source).hits)
		e.lru.Remove(el)
		delete(e.sources, addr)
	}
	if _, ok := e.blocked[addr]; ok {
		return
	}
	e.blocked[addr] = e.order.PushFront(addr)
	for e.order.Len() > e.opts.MaxBlocked {
		e.evictBlocked()
	}
}

// Unblock forgets that addr is blocked; its next probe counts from zero.
func (e *Engine) Unblock(addr netip.Addr) bool {
	addr = e.key(addr)
	el, ok := e.blocked[addr]
	if ok {
		e.order.Remove(el)
		delete(e.blocked, addr)
	}
	return ok
}

// IsBlocked reports whether addr is recorded as blocked.
func (e *Engine) IsBlocked(addr netip.Addr) bool {
	_, ok := e.blocked[e.key(addr)]
	return ok
}

// key is the source addr counts as: unmapped, then Options.Key.
func (e *Engine) key(addr netip.Addr) netip.Addr {
	addr = addr.Unmap()
	if e.opts.Key != nil {
		addr = e.opts.Key(addr)
	}
	return addr
}

// Stats reports the sizes of the engine's tables.
func (e *Engine) Stats() (sources, pending, blocked int) {
	return e.lru.Len(), len(e.pending), e.order.Len()
}

// count records ev's (protocol, port) as probed by s at ev.Time and returns
// how many distinct pairs s probed within the window, up to max(Trigger, 1).
//
// s keeps the pairs it probed most recently, each with the time of its
// latest probe, and forgets the least recent when full. The count is then
// exact up to the cap: if a kept pair is out of the window, every pair
// forgotten is older still.
func (e *Engine) count(s *source, ev event.Event) int {
	if !e.hasEpoch {
		e.epoch, e.hasEpoch = ev.Time, true
	}
	now := ev.Time.Sub(e.epoch) // saturates; monotonic when both carry it
	key := uint32(ev.Proto&1)<<16 | uint32(ev.Port)
	limit := max(e.opts.Trigger, 1)
	seen := -1
	kept := s.hits[:0]
	for _, h := range s.hits {
		if !e.live(h, now) {
			continue
		}
		if h.key == key {
			seen = len(kept)
			h.at = max(h.at, now) // an event that arrives late never makes it older
		}
		kept = append(kept, h)
	}
	clear(s.hits[len(kept):])
	s.hits = kept
	// A reload may have lowered the trigger: keep the most recent.
	for len(s.hits) > limit {
		s.hits, seen = dropOldest(s.hits, seen)
	}
	if seen >= 0 {
		return len(s.hits)
	}
	if len(s.hits) == limit {
		s.hits, _ = dropOldest(s.hits, -1)
	}
	if len(s.hits) == cap(s.hits) {
		// Grow by doubling but never past the limit: a flood of spoofed
		// sources costs one hit each.
		grown := make([]hit, len(s.hits), min(max(2*len(s.hits), 1), limit))
		copy(grown, s.hits)
		e.hitRoom += cap(grown) - cap(s.hits)
		s.hits = grown
		// All sources' hits together stay under MaxHits: the sources
		// seen least recently are forgotten first, never s itself.
		for e.hitRoom > e.opts.MaxHits && e.lru.Back() != e.sources[s.addr] {
			e.evictSource()
		}
	}
	s.hits = append(s.hits, hit{at: now, key: key})
	return len(s.hits)
}

// live reports whether h is within the window at now. A hit stamped after
// now (events from two sensors slightly out of order) is live.
func (e *Engine) live(h hit, now time.Duration) bool {
	if e.opts.Window <= 0 || now <= h.at {
		return true
	}
	age := now - h.at
	return age >= 0 && age <= e.opts.Window // age < 0: overflowed, so huge
}

// dropOldest removes the least recent hit other than hits[keep] (keep is
// -1 for none) and returns the index hits[keep] has moved to.
func dropOldest(hits []hit, keep int) ([]hit, int) {
	old := -1
	for i, h := range hits {
		if i != keep && (old < 0 || h.at < hits[old].at) {
			old = i
		}
	}
	last := len(hits) - 1
	hits[old] = hits[last]
	hits[last] = hit{}
	if keep == last {
		keep = old
	}
	return hits[:last], keep
}

func (e *Engine) touch(addr netip.Addr) *source {
	if el, ok := e.sources[addr]; ok {
		e.lru.MoveToFront(el)
		return el.Value.(*source)
	}
	for e.lru.Len() >= e.opts.MaxSources {
		e.evictSource()
	}
	s := &source{addr: addr}
	e.sources[addr] = e.lru.PushFront(s)
	return s
}

func (e *Engine) evictSource() {
	el := e.lru.Back()
	s := el.Value.(*source)
	e.hitRoom -= cap(s.hits)
	delete(e.sources, s.addr)
	e.lru.Remove(el)
}

func (e *Engine) evictBlocked() {
	el := e.order.Back()
	delete(e.blocked, el.Value.(netip.Addr))
	e.order.Remove(el)
}
