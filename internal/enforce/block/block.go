// Package block defines what every native blocker (nftables, iptables,
// route) offers the enforcement layer. Each lives in a package of its own
// below this one; package enforce sees only these interfaces: Blocker,
// which every one implements, and Trapper, the optional in-kernel trap
// (nftables only).
package block

import (
	"errors"
	"net/netip"
	"time"

	"github.com/portsentry-go/portsentry/internal/portset"
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

// Trapper is a Blocker that also bans in the packet path: the kernel bans a
// probe's source itself (the trap), never banning a source on its
// never-ban list. Its bans expire in the kernel too.
type Trapper interface {
	Blocker
	// SetAllowed replaces the never-ban list (the ignore list and this
	// host's own addresses).
	SetAllowed(prefixes []netip.Prefix) error
	// SetTrap installs t, replacing any trap; nil removes it.
	SetTrap(t *Trap) error
	// Stats reads the kernel's counters.
	Stats() (Stats, error)
	// Peers lists the sources the trap knows as peers (Trap.Peers), with
	// the hop counts their packets arrive with.
	Peers() ([]Peer, error)
	// Served lists the ports the kernel remembers as served: within
	// Trap.Grace, and, with or without a trap, the ports it published by
	// DNAT (which no local socket owns) within the grace or at least the
	// last minute. The daemon's service check reads them when no socket
	// owns a probed port, so that it judges those ports as the kernel
	// does, after a restart of the daemon too.
	Served() ([]Served, error)
}

// Served is a port where a new connection or datagram found a local
// socket (Trap.Grace), or that the kernel DNATed to elsewhere (a port
// published by DNAT), as the kernel remembers it.
type Served struct {
	UDP  bool // else TCP
	Port uint16
	// Left is how much longer the kernel remembers it: the grace period
	// less the time since a socket last served the port.
	Left time.Duration
}

// Peer is a source with an established TCP connection to or from this
// host in the last Trap.Peers: it completed a handshake, which nobody can
// forge blindly, so its address is really its own.
type Peer struct {
	Addr netip.Addr // unmapped
	// Hops are the TTLs (IPv4) or hop limits (IPv6) its packets arrived
	// with: what is left of the sender's initial value after the routers
	// on its way. A forger elsewhere sends from another distance.
	Hops []uint8
}

// Trap is the in-kernel trap of stealth and advanced modes (SCAN_TRIGGER 0
// or 1): a TCP probe (no ACK, no RST) or a UDP datagram to one of the
// ports, from a source that is neither allowed nor local and to a port no
// local socket owns, bans its source for TTL and is dropped.
type Trap struct {
	// TCP and UDP are the trap ports; an empty set means no trap for that
	// protocol.
	TCP, UDP portset.Set
	// TTL is the ban the kernel gives a trapped source; 0 is permanent.
	TTL time.Duration
	// Interfaces limits the trap to packets arriving on these interfaces
	// (exact names, as `ip link` prints them). Empty means every interface
	// but loopback.
	Interfaces []string
	// Peers, when above 0, makes the trap learn peers (see Peer), each
	// for this long after its last packet, and spare them: a probe that
	// claims a peer's address but arrives with a hop count the peer's own
	// packets never had is dropped without a ban, as forged. 0: no peers.
	Peers time.Duration
	// Grace, when above 0, keeps ports that a local socket served
	// recently out of the trap: the kernel remembers, for this long, each
	// port where a new connection or datagram found a local socket, and a
	// probe of such a port whose socket is gone (a service restarting,
	// crashed, being deployed) is dropped without a ban. 0: no grace.
	Grace time.Duration
	// NoBan makes the trap drop probes without banning their sources: a
	// flood of random sources would otherwise fill the ban sets within
	// seconds, leaving no room for the scanners among them, which the
	// daemon then bans itself.
	NoBan bool
}

// Paths are the ways into this host that a blocker's bans cover.
type Paths struct {
	// Input: traffic for this host's own sockets, its services among
	// them.
	Input bool
	// Forward: traffic this host forwards to another host: routed
	// traffic, and a container's service that this host publishes by
	// DNAT (Docker's published ports), whose packets never reach the
	// input path.
	Forward bool
}

// Coverer is a Blocker that says which paths its bans cover. The
// enforcement layer reports it (portsentry status, selftest).
type Coverer interface {
	Paths() Paths
}

// Counter is a packet and byte count kept by the kernel.
type Counter struct {
	Packets, Bytes uint64
}

// Stats are counts kept by the kernel's rules, which start from zero when
// the rules are installed.
type Stats struct {
	// Banned counts packets dropped because their source was banned,
	// since New, on every path.
	Banned Counter
	// BannedForward is the part of Banned dropped on the forward path:
	// packets a banned source sent through this host, to a container
	// published by DNAT or a host it routes for.
	BannedForward Counter
	// Trapped counts probes that hit the trap since the last SetTrap:
	// each one banned its source and was dropped.
	Trapped Counter
	// Forged counts probes dropped without a ban since the last SetTrap
	// because they claimed a peer's address with another hop count.
	Forged Counter
	// Unbanned counts probes dropped without a ban since the last
	// SetTrap: the ban set was full, or the trap was set with NoBan.
	Unbanned Counter
	// Served counts packets dropped without a ban since the last SetTrap
	// because their port had a local socket within Trap.Grace.
	Served Counter
	// Unrouted counts probes dropped without a ban since the last SetTrap
	// because their source fails the reverse-path check: this host would
	// not reach it through the interface the probe came in by.
	Unrouted Counter
}
