package enforce

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/portsentry-go/portsentry/internal/enforce/bans"
)

// Errors Import returns for bans that local policy refuses; callers count
// them rather than log each one.
var (
	// ErrProtected: the address is on the ignore list, one of this
	// host's own, or its infrastructure (Guard.NeverBlock).
	ErrProtected = errors.New("enforce: never blocked here (ignore list, this host's own address or its infrastructure)")
	// ErrPeer: the address has an established connection with this host
	// (a peer the kernel trap learnt; see peers.go).
	ErrPeer = errors.New("enforce: a peer of this host (an established connection): not banned on another's word")
	// ErrNoNativeBlocker: BLOCKER="command" bans by running commands,
	// which imported bans never do.
	ErrNoNativeBlocker = errors.New(`enforce: imported bans need a native blocker (BLOCKER="auto", "nftables", "iptables" or "route")`)
)

// Import bans addr on another's word: a CrowdSec decision, a fleet
// member's ban. origin says whose ("crowdsec", "fleet:<member>"); reason
// is theirs. Local policy comes first: an address the Guard protects or a
// peer of this host is refused (ErrProtected, ErrPeer), and the ban lasts
// ttl capped at Settings.ImportMax. An address already banned keeps its
// ban, extended if this one ends later (bans.Store.Import). The ban is
// applied by the native blocker only: no hosts.deny line, no KILL_ROUTE
// or KILL_RUN_CMD, and nothing is reported as a detection (no history,
// blocked-file or alert), so a flood of imports costs no commands and
// fail2ban never acts on another's word.
//
// It runs in the event loop, and waits for it: call it from any other
// goroutine, never from the loop itself.
func (e *Enforcer) Import(addr netip.Addr, ttl time.Duration, reason, origin string) error {
	addr = addr.Unmap().WithZone("")
	if !addr.IsValid() {
		return errors.New("enforce: import: no address")
	}
	if ttl <= 0 {
		return fmt.Errorf("enforce: import of %s: lifetime %v", addr, ttl)
	}
	var err error
	if lerr := e.inLoop(func() { err = e.importBan(addr, ttl, reason, origin) }); lerr != nil {
		return lerr
	}
	return err
}

func (e *Enforcer) importBan(addr netip.Addr, ttl time.Duration, reason, origin string) error {
	if !e.jail.Native() {
		return ErrNoNativeBlocker
	}
	if e.guard.NeverBlock(addr) {
		return ErrProtected
	}
	if e.peers.known(addr) {
		return ErrPeer
	}
	if limit := e.cur.Load().ImportMax; limit > 0 {
		ttl = min(ttl, limit)
	}
	b, fresh, err := e.jail.Import(addr, ttl, reason, origin)
	if err != nil {
		return err
	}
	e.engine.MarkBlocked(addr)
	if fresh {
		e.rep.Imported(b, Describe(b), e.jail.Kind())
	}
	return nil
}

// Withdraw lifts addr's ban if it came from origin: the decision that
// made it was deleted or expired there. A ban of another origin (this
// host's own, another member's) stays. It reports whether a ban was
// lifted; like Import it runs in the event loop and waits for it.
func (e *Enforcer) Withdraw(addr netip.Addr, origin string) (bool, error) {
	addr = addr.Unmap().WithZone("")
	lifted := false
	err := e.inLoop(func() {
		b, ok := e.jail.Get(addr)
		if !ok || b.Origin != origin || origin == "" {
			return
		}
		bs := e.jail.Unban(netip.PrefixFrom(b.Addr, b.Addr.BitLen()))
		e.liftAs(bs, false, func(b bans.Ban) { e.rep.Withdrawn(b) })
		lifted = len(bs) > 0
	})
	return lifted, err
}

// Imported lists the bans in force that came from origin. Safe off the
// event loop.
func (e *Enforcer) Imported(origin string) []bans.Ban {
	var out []bans.Ban
	for _, b := range e.jail.Active() {
		if b.Origin == origin {
			out = append(out, b)
		}
	}
	return out
}
