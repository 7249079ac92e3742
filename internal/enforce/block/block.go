// Package block defines what every native blocker (nftables, iptables,
// route) offers the daemon. Each lives in a package of its own below this
// one; the daemon sees only this interface.
package block

import (
	"errors"
	"net/netip"
	"time"
)

// Entry is one ban as a firewall holds it.
type Entry struct {
	Addr netip.Addr // unmapped, no zone
	// TTL is what remains of the ban; 0 means permanent.
	TTL time.Duration
}

// Blocker applies bans. Changes are queued by Add and Delete and applied
// together by Commit, in one kernel transaction where the mechanism has
// them (one netlink batch for nftables): restoring 100 000 bans at start is
// one Commit, not 100 000 commands.
type Blocker interface {
	// Add queues a ban of addr for ttl (0: permanent). Adding a banned
	// address again replaces its TTL.
	Add(addr netip.Addr, ttl time.Duration)
	// Delete queues the removal of addr's ban; removing an address that is
	// not banned is not an error.
	Delete(addr netip.Addr)
	// Commit applies what was queued. On error nothing of the batch may be
	// assumed applied; the queue is emptied either way.
	Commit() error
	// List reports the bans the firewall holds now, with their remaining
	// time, so the daemon can reconcile them with its own record.
	List() ([]Entry, error)
	// Close releases the blocker's resources. It does not remove bans: they
	// outlive the daemon (a restart must not open the door).
	Close() error
}

// ErrUnavailable is wrapped when a mechanism is missing on this host (no
// nftables in the kernel, no iptables binary): detection then tries the next.
var ErrUnavailable = errors.New("block: mechanism unavailable")
