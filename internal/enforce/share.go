package enforce

import (
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/portsentry-go/portsentry/internal/enforce/bans"
)

// Sharer is told of the bans this host decided on its own evidence (a
// response to probes, or the operator's portsentry block) and of the
// operator's unblocks, to share them (the fleet). Bans of forged-looking
// sources and a flood's single probes never reach a response, so are
// never shared; imported bans are never shared again. Called on
// responders, the control socket and the event loop: it must not block.
type Sharer interface {
	Share(b bans.Ban)
	ShareLift(p netip.Prefix)
}

// sharer is the Sharer set, if any.
type sharer struct{ s atomic.Pointer[Sharer] }

func (s *sharer) share(b bans.Ban) {
	if p := s.s.Load(); p != nil && b.Origin == "" {
		(*p).Share(b)
	}
}

func (s *sharer) lift(p netip.Prefix) {
	if x := s.s.Load(); x != nil {
		(*x).ShareLift(p)
	}
}

// SetSharer makes s hear of the bans to share (nil: none).
func (e *Enforcer) SetSharer(s Sharer) {
	if s == nil {
		e.sharer.s.Store(nil)
		return
	}
	e.sharer.s.Store(&s)
}

// ImportAsync is Import without the wait: the import is queued for the
// event loop (waiting only for room in its queue) and done, if not nil,
// hears its result there, where it must not block. For a stream of
// imports (the fleet's consumer), which then needs no round trip each.
// False once the daemon stops.
func (e *Enforcer) ImportAsync(addr netip.Addr, ttl time.Duration, reason, origin string, done func(error)) bool {
	if done == nil {
		done = func(error) {}
	}
	addr = addr.Unmap().WithZone("")
	if !addr.IsValid() || ttl <= 0 {
		done(fmt.Errorf("enforce: import of %s: lifetime %v", addr, ttl))
		return true
	}
	select {
	case e.calls <- func() { done(e.importBan(addr, ttl, reason, origin)) }:
		return true
	case <-e.ctx.Done():
		return false
	}
}

// Revoke lifts the bans inside p whose origin begins with originPrefix
// ("fleet:": any member's), for another origin's word: by ("fleet:web1",
// whose operator unblocked them) is logged. A local ban stays, as do
// other origins'. Event loop only; the caller submits it (Submit).
func (e *Enforcer) Revoke(p netip.Prefix, originPrefix, by string) []bans.Ban {
	if originPrefix == "" {
		return nil
	}
	match := func(o string) bool { return o != "" && strings.HasPrefix(o, originPrefix) }
	var out []bans.Ban
	if p.IsSingleIP() {
		if b, ok := e.jail.Get(p.Addr()); ok && match(b.Origin) {
			out = e.jail.Unban(netip.PrefixFrom(b.Addr, b.Addr.BitLen()))
		}
	} else {
		for _, b := range e.jail.Active() {
			if p.Contains(b.Addr) && match(b.Origin) {
				out = append(out, e.jail.Unban(netip.PrefixFrom(b.Addr, b.Addr.BitLen()))...)
			}
		}
	}
	if len(out) > 0 {
		e.liftAs(out, false, func(b bans.Ban) { e.rep.Revoked(b, by) })
	}
	return out
}

// Submit runs fn in the event loop, waiting for room in its queue (never
// for fn itself); false once the daemon stops.
func (e *Enforcer) Submit(fn func()) bool {
	select {
	case e.calls <- fn:
		return true
	case <-e.ctx.Done():
		return false
	}
}
