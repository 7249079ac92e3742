// Package nft is the native nftables blocker: it talks netlink to the
// kernel (github.com/google/nftables), never runs the nft program, and
// implements block.Blocker.
//
// Everything lives in one table, inet portsentry by default, so the
// blocker never touches anyone else's rules and works beside firewalld,
// Docker or a hand-written ruleset. In nft's own syntax, after New,
// SetAllowed and SetTrap (testdata/ruleset.nft; the tests check that the
// kernel holds the same rules for it as for what the blocker sends):
//
//	table inet portsentry {
//		set ban4 { type ipv4_addr; size 1048576; flags dynamic,timeout; }
//		set ban6 { type ipv6_addr; size 1048576; flags dynamic,timeout; }
//		set allow4 { type ipv4_addr; flags interval; }   # SetAllowed
//		set allow6 { type ipv6_addr; flags interval; }
//		set trap_tcp { type inet_service; flags interval; }   # SetTrap
//		set trap_udp { type inet_service; flags interval; }
//		set trap_ifaces { type ifname; }
//		set peer4 { type ipv4_addr; size 65536; flags dynamic,timeout; }   # Trap.Peers
//		set peer6 { type ipv6_addr; size 65536; flags dynamic,timeout; }
//		set hop4 { typeof ip saddr . ip ttl; size 65536; flags dynamic,timeout; }
//		set hop6 { typeof ip6 saddr . ip6 hoplimit; size 65536; flags dynamic,timeout; }
//		set served_tcp { type inet_service; size 65536; flags dynamic,timeout; }   # Trap.Grace
//		set served_udp { type inet_service; size 65536; flags dynamic,timeout; }
//
//		chain input {
//			type filter hook input priority -10; policy accept;
//			ip saddr @allow4 return
//			ip6 saddr @allow6 return
//			fib saddr type local return
//			ip saddr @ban4 counter drop
//			ip6 saddr @ban6 counter drop
//			jump trap
//		}
//
//		chain forward {   # unless Options.InputOnly
//			type filter hook forward priority -10; policy accept;
//			ip saddr @ban4 ip saddr != @allow4 fib saddr type != local counter drop
//			ip6 saddr @ban6 ip6 saddr != @allow6 fib saddr type != local counter drop
//		}
//
//		chain publish {   # ports published by DNAT, for Trap.Grace (at least a minute)
//			type filter hook prerouting priority dstnat + 1; policy accept;
//			meta l4proto tcp ct state new ct status dnat update @served_tcp { ct original proto-dst timeout 1h }
//			meta l4proto udp ct state new ct status dnat update @served_udp { ct original proto-dst timeout 1h }
//		}
//
//		chain trap {   # empty until SetTrap
//			iifname "lo" return   # or: iifname != @trap_ifaces return
//			meta pkttype != host return
//			meta nfproto ipv4 meta l4proto tcp ct state established update @peer4 { ip saddr timeout 1h } update @hop4 { ip saddr . ip ttl timeout 1h }
//			meta nfproto ipv6 meta l4proto tcp ct state established update @peer6 { ip6 saddr timeout 1h } update @hop6 { ip6 saddr . ip6 hoplimit timeout 1h }
//			ct state established,related return
//			meta l4proto tcp socket transparent 0 update @served_tcp { tcp dport timeout 1h } return
//			meta l4proto tcp socket transparent 1 update @served_tcp { tcp dport timeout 1h } return
//			meta l4proto udp socket transparent 0 update @served_udp { udp dport timeout 1h } return
//			meta l4proto udp socket transparent 1 update @served_udp { udp dport timeout 1h } return
//			meta nfproto ipv4 meta l4proto udp udp dport 33434-33534 ip ttl <= 30 return
//			meta nfproto ipv6 meta l4proto udp udp dport 33434-33534 ip6 hoplimit <= 30 return
//			fib saddr . iif oif missing counter drop
//			meta l4proto tcp tcp dport @served_tcp counter drop
//			meta l4proto udp udp dport @served_udp counter drop
//			meta nfproto ipv4 ip saddr @peer4 ip saddr . ip ttl != @hop4 counter drop
//			meta nfproto ipv6 ip6 saddr @peer6 ip6 saddr . ip6 hoplimit != @hop6 counter drop
//			meta nfproto ipv4 tcp dport @trap_tcp tcp flags & (ack|rst) == 0 add @ban4 { ip saddr timeout 1h } counter drop
//			meta nfproto ipv4 tcp dport @trap_tcp tcp flags & (ack|rst) == 0 counter drop
//			... the same for ipv6 and ban6, then for udp dport @trap_udp
//		}
//	}
//
// (`nft list` prints the trap rules without their "meta nfproto", which it
// infers from the address, and "tcp flags ! rst,ack" for the flags test.)
//
// The trap is the point of this package: a probe of an unused trap port
// bans its source and is dropped inside the packet path, so the scanner's
// second probe already meets the ban and it learns nothing, where a
// user-space blocker acts milliseconds too late. The kernel itself tells
// service traffic from probes: the socket expression matches only when a
// local socket owns the packet, so a service started after SetTrap is
// reachable at once, with no race against a port list. Packet capture
// (AF_PACKET) still sees every probe: taps run before the input hook.
//
// Peers (Trap.Peers) are what makes the trap hard to turn against the
// innocent: a source of an established TCP connection completed a
// handshake, so its address is its own, and its packets arrive with a hop
// count (what is left of its initial TTL) that a forger elsewhere does not
// reproduce without knowing it. A probe claiming a peer's address with
// another hop count is dropped without a ban. A port where a local socket
// took a new connection or datagram within Trap.Grace is a service's port
// still when its socket is gone (a restart): its packets are dropped
// without a ban. A source that fails the reverse-path check (this host
// would not reach it through the interface the probe came in by) is
// forged: dropped without a ban, whatever rp_filter says. Traceroute's
// probes, which
// arrive with a nearly spent TTL, go through to the closed port. When a
// ban set is full, the rule after each trap rule still drops the probe.
//
// Bans cover every way in: the input chain (this host's own sockets) and
// the forward chain (what it forwards: a container's service published by
// DNAT, whose packets never reach the input hook, and routed hosts). The
// forward chain has no trap: forwarded traffic is never a probe of this
// host.
//
// Bans are elements of the timeout sets ban4 and ban6 and expire in the
// kernel. Close keeps the table: bans outlive the daemon, so a restart does
// not open the door. To remove everything by hand:
// `nft delete table inet portsentry`.
package nft

import "github.com/portsentry-go/portsentry/internal/enforce/block"

// Defaults for Options.
const (
	DefaultTable    = "portsentry"
	DefaultPriority = -10
	DefaultMaxBans  = 1 << 20
	DefaultMaxPeers = 1 << 16
)

// Options configures New. The zero value is ready to use.
type Options struct {
	// Table is the name of the inet table the blocker owns; "" means
	// DefaultTable. Everything the blocker does stays inside it.
	Table string
	// Priority is the hook priority of the input and forward chains; 0
	// means DefaultPriority (-10): before the usual filter chains at 0.
	// A drop in any base chain is final, and an accept only ends its own
	// chain, so a ban holds whatever firewalld, Docker or the admin's
	// ruleset accepts; coming first, it also spares them the packets.
	// Priority 0 itself cannot be chosen: it would tie with those chains,
	// and the order of tied chains is not defined.
	Priority int
	// InputOnly limits bans to traffic for this host's own sockets (the
	// input hook). By default they cover forwarded traffic as well (a
	// forward chain at the same priority): a banned source then loses
	// the containers this host publishes by DNAT, as Docker does, and the
	// hosts it routes for, not only this host's services. On a host that
	// does not forward, the forward chain sees no packet and costs
	// nothing; when forwarding is turned on later (Docker's start sets
	// net.ipv4.ip_forward), it is covered at once.
	InputOnly bool
	// MaxBans caps each of ban4 and ban6 (the kernel's set size); 0 means
	// DefaultMaxBans. The trap adds elements from the packet path, so
	// without a cap a scanner rotating IPv6 source addresses could grow
	// kernel memory without bound. At the cap the kernel trap stops
	// banning but still drops the probe, so the trap goes on hiding
	// every unused port; Commit fails for new bans. The size is fixed
	// when the table is first created; a later New keeps the old one.
	MaxBans int
	// MaxPeers caps each of the peer sets (peer4, peer6, hop4, hop6); 0
	// means DefaultMaxPeers. At the cap no new peer is learnt until one
	// expires: its forged probes are then banned as any probe.
	MaxPeers int
	// Prefix6 is the length of the IPv6 prefix a ban covers: ban6 holds
	// prefixes (their first address) and the rules mask a source to it,
	// so that one /64, which a scanner can rotate through by the billion,
	// is one ban. 0 or 128: single addresses. IPv4 bans are always single
	// addresses. Add and Delete mask IPv6 addresses themselves.
	Prefix6 int
}

func (o Options) withDefaults() Options {
	if o.Table == "" {
		o.Table = DefaultTable
	}
	if o.Priority == 0 {
		o.Priority = DefaultPriority
	}
	if o.MaxBans <= 0 {
		o.MaxBans = DefaultMaxBans
	}
	if o.MaxPeers <= 0 {
		o.MaxPeers = DefaultMaxPeers
	}
	if o.Prefix6 <= 0 || o.Prefix6 > 128 {
		o.Prefix6 = 128
	}
	return o
}

// Trap, Counter and Stats are the kernel trap's description and counters,
// shared by every blocker that traps (block.Trapper).
type (
	Trap    = block.Trap
	Peer    = block.Peer
	Counter = block.Counter
	Stats   = block.Stats
)
