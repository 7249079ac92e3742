// Package engine decides what to do with each probe: ignore it, count it,
// report it, or respond to it. It is pure logic: it never touches the
// network, the firewall or a file, so every rule of PortSentry's state
// machine is tested here without either.
package engine

import (
	"container/list"
	"net/netip"

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
	Action   Action
	Count    int      // hits from this source so far, this one included (0 when ignored or blocked)
	Response Response // the configured response for the event's protocol
}

// Options configure an Engine. The zero value acts on the first hit, blocks
// nothing, ignores nobody, and uses default caps.
type Options struct {
	// Trigger is SCAN_TRIGGER: act when a source's hit count reaches it.
	// 0 and 1 both act on the first hit, as in PortSentry 1.2 and 2.x.
	Trigger int
	// Response is BLOCK_TCP and BLOCK_UDP, indexed by event.Proto.
	Response [2]Response
	// Ignore reports sources never acted on (ignore file, local addresses).
	Ignore func(netip.Addr) bool
	// MaxSources caps the table of sources being counted. When full, the
	// source seen least recently is forgotten (its count starts again).
	MaxSources int
	// InUse, when set, is asked about passively captured probes (stealth and
	// advanced modes) whose source is neither ignored nor blocked: true
	// means a local socket owns the port right now, so the packet is not a
	// probe. Connect-mode events never ask: their trap socket is the owner.
	// Asking last keeps a flood from a blocked host free of lookups.
	InUse func(proto event.Proto, port uint16) bool
	// MaxBlocked caps how many blocked sources are remembered. When full,
	// the oldest block is forgotten: the firewall keeps it, and a new probe
	// from that source would only run the response again.
	MaxBlocked int
}

// Default caps; about 100 bytes a source, so a few megabytes at most.
const (
	DefaultMaxSources = 65536
	DefaultMaxBlocked = 65536
)

type source struct {
	addr     netip.Addr
	count    int
	reported [2]bool // log-only mode: reported for TCP / UDP already
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
	src := ev.Src.Unmap()
	resp := e.opts.Response[ev.Proto&1]
	v := Verdict{Response: resp}
	if e.opts.Ignore(src) {
		v.Action = Ignored
		return v
	}
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
	if e.opts.InUse != nil && ev.Mode.Passive() && e.opts.InUse(ev.Proto, ev.Port) {
		v.Action = Service
		return v
	}
	s := e.touch(src)
	s.count++
	v.Count = s.count
	if s.count < e.opts.Trigger {
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
	addr = addr.Unmap()
	delete(e.pending, addr)
	if blocked {
		e.MarkBlocked(addr)
	}
}

// MarkBlocked records addr as blocked without a probe (BLOCKED_FILE at start,
// or a block made by hand).
func (e *Engine) MarkBlocked(addr netip.Addr) {
	addr = addr.Unmap()
	if el, ok := e.sources[addr]; ok {
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
	addr = addr.Unmap()
	el, ok := e.blocked[addr]
	if ok {
		e.order.Remove(el)
		delete(e.blocked, addr)
	}
	return ok
}

// IsBlocked reports whether addr is recorded as blocked.
func (e *Engine) IsBlocked(addr netip.Addr) bool {
	_, ok := e.blocked[addr.Unmap()]
	return ok
}

// Stats reports the sizes of the engine's tables.
func (e *Engine) Stats() (sources, pending, blocked int) {
	return e.lru.Len(), len(e.pending), e.order.Len()
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
	delete(e.sources, el.Value.(*source).addr)
	e.lru.Remove(el)
}

func (e *Engine) evictBlocked() {
	el := e.order.Back()
	delete(e.blocked, el.Value.(netip.Addr))
	e.order.Remove(el)
}
