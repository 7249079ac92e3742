package nft

import (
	"net"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/portsentry-go/portsentry/internal/event"
)

// Object names inside the table. They are part of the on-kernel format: a
// new version must keep them, or a restart would lose the bans.
const (
	setBan4      = "ban4"
	setBan6      = "ban6"
	setAllow4    = "allow4"
	setAllow6    = "allow6"
	setTrapTCP   = "trap_tcp"
	setTrapUDP   = "trap_udp"
	setTrapIface = "trap_ifaces"
	setPeer4     = "peer4"
	setPeer6     = "peer6"
	setHop4      = "hop4"
	setHop6      = "hop6"
	setServedTCP = "served_tcp"
	setServedUDP = "served_udp"
	setLink6     = "link6"
	chainInput   = "input"
	chainForward = "forward"
	chainTrap    = "trap"
	chainPublish = "publish"
)

// publishPriority is the publish chain's: right after dstnat (-100), where
// every nat chain's DNAT has been done (the kernel runs all nat chains of
// a hook at dstnat, whatever their own priority), so "ct status dnat"
// tells what the kernel did to the connection.
const publishPriority = -99

// publishMin is the least a port published by DNAT is remembered in the
// served sets: the daemon must find it there after the packet that
// published it, however busy it is.
const publishMin = time.Minute

// layout is the table and everything in it, as library objects.
type layout struct {
	table                     *nftables.Table
	ban4, ban6                *nftables.Set
	allow4, allow6            *nftables.Set
	trapTCP, trapUDP, trapIfs *nftables.Set
	prefix6                   int           // IPv6 bans cover a prefix this long (Options.Prefix6)
	peer4, peer6              *nftables.Set // sources with an established TCP connection
	hop4, hop6                *nftables.Set // the same, with the TTL / hop limit they arrive with
	servedTCP, servedUDP      *nftables.Set // ports a local socket served recently
	link6                     *nftables.Set // this host's IPv6 networks: bans there are of single addresses
	input, trap               *nftables.Chain
	// publish records the ports that the kernel DNATs (publishRules).
	publish *nftables.Chain
	// forward holds the ban rules for traffic this host forwards: routed
	// traffic, and a container's service published by DNAT. nil with
	// Options.InputOnly.
	forward *nftables.Chain
}

// newLayout describes the table for o (with defaults applied).
//
// Set IDs are fixed rather than left to the library's process-wide counter:
// they only need to be unique within one batch, and fixed values keep the
// netlink bytes identical from run to run (the golden tests compare them).
func newLayout(o Options) *layout {
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: o.Table}
	ban := func(id uint32, name string, key nftables.SetDatatype) *nftables.Set {
		// dynamic (NFT_SET_EVAL): the trap's dynset adds elements from the
		// packet path, which needs a set backend that supports updates.
		// timeout: every element may carry its own.
		return &nftables.Set{Table: t, ID: id, Name: name, KeyType: key,
			HasTimeout: true, Dynamic: true, Size: uint32(o.MaxBans)}
	}
	interval := func(id uint32, name string, key nftables.SetDatatype) *nftables.Set {
		return &nftables.Set{Table: t, ID: id, Name: name, KeyType: key, Interval: true}
	}
	peer := func(id uint32, name string, key nftables.SetDatatype) *nftables.Set {
		s := ban(id, name, key)
		s.Size = uint32(o.MaxPeers)
		s.Concatenation = len(nftables.ConcatSetTypeElements(key)) > 1
		return s
	}
	served := func(id uint32, name string) *nftables.Set {
		s := ban(id, name, nftables.TypeInetService)
		s.Size = 1 << 16
		return s
	}
	policy := nftables.ChainPolicyAccept
	prio := nftables.ChainPriorityRef(nftables.ChainPriority(o.Priority))
	var forward *nftables.Chain
	if !o.InputOnly {
		forward = &nftables.Chain{Table: t, Name: chainForward, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: prio, Policy: &policy}
	}
	return &layout{
		prefix6: o.Prefix6,
		table:   t,
		ban4:    ban(1, setBan4, nftables.TypeIPAddr),
		ban6:    ban(2, setBan6, nftables.TypeIP6Addr),
		allow4:  interval(3, setAllow4, nftables.TypeIPAddr),
		allow6:  interval(4, setAllow6, nftables.TypeIP6Addr),
		trapTCP: interval(5, setTrapTCP, nftables.TypeInetService),
		trapUDP: interval(6, setTrapUDP, nftables.TypeInetService),
		trapIfs: &nftables.Set{Table: t, ID: 7, Name: setTrapIface, KeyType: nftables.TypeIFName},
		peer4:   peer(8, setPeer4, nftables.TypeIPAddr),
		peer6:   peer(9, setPeer6, nftables.TypeIP6Addr),
		// The TTL is one byte, padded to a register's four in the key, as
		// nft's "typeof ip saddr . ip ttl" has it.
		hop4: peer(10, setHop4, nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInteger)),
		hop6: peer(11, setHop6, nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInteger)),
		// Every port may have been served: 65536 elements at most.
		servedTCP: served(12, setServedTCP),
		servedUDP: served(13, setServedUDP),
		link6:     interval(14, setLink6, nftables.TypeIP6Addr),
		input: &nftables.Chain{Table: t, Name: chainInput, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: prio, Policy: &policy},
		forward: forward,
		trap:    &nftables.Chain{Table: t, Name: chainTrap},
		publish: &nftables.Chain{Table: t, Name: chainPublish, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(publishPriority), Policy: &policy},
	}
}

func (l *layout) sets() []*nftables.Set {
	return []*nftables.Set{l.ban4, l.ban6, l.allow4, l.allow6, l.trapTCP, l.trapUDP, l.trapIfs, l.peer4, l.peer6, l.hop4, l.hop6, l.servedTCP, l.servedUDP, l.link6}
}

// Expression building blocks. Register 1 everywhere, as nft itself uses;
// comparisons of packet fields are in network byte order, of kernel
// metadata (fib type, ct state) in host byte order, as the kernel stores
// them.

const reg = 1

func metaNFProto(proto byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: []byte{proto}},
	}
}

func metaL4Proto(proto byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: []byte{proto}},
	}
}

// loadSaddr loads the IPv4 or IPv6 source address.
func loadSaddr(v4 bool) expr.Any {
	if v4 {
		return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}
	}
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16}
}

// banKey loads what the ban sets are keyed by: the IPv4 source address,
// or the IPv6 source masked to the ban prefix.
func (l *layout) banKey(v4 bool) []expr.Any {
	if v4 || l.prefix6 >= 128 {
		return one(loadSaddr(v4))
	}
	mask := net.CIDRMask(l.prefix6, 128)
	return one(loadSaddr(false),
		&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 16, Mask: mask, Xor: make([]byte, 16)})
}

// loadHop loads the IPv4 TTL or IPv6 hop limit right after the source
// address loaded by loadSaddr, making the key "saddr . ttl" of the hop
// sets: register 9 (the second 32-bit word of register 1) after IPv4's 4
// bytes, register 2 after IPv6's 16, as nft does.
func loadHop(v4 bool) expr.Any {
	if v4 {
		return hopTo(v4, 9)
	}
	return hopTo(v4, 2)
}

func nfproto(v4 bool) byte {
	if v4 {
		return unix.NFPROTO_IPV4
	}
	return unix.NFPROTO_IPV6
}

func lookup(s *nftables.Set, invert bool) expr.Any {
	return &expr.Lookup{SourceRegister: reg, SetName: s.Name, SetID: s.ID, Invert: invert}
}

func verdict(k expr.VerdictKind) expr.Any { return &expr.Verdict{Kind: k} }

func ruleOf(c *nftables.Chain, exprs ...[]expr.Any) *nftables.Rule {
	var all []expr.Any
	for _, e := range exprs {
		all = append(all, e...)
	}
	return &nftables.Rule{Table: c.Table, Chain: c, Exprs: all}
}

func one(e ...expr.Any) []expr.Any { return e }

// baseRules are the input chain's rules, in order.
func (l *layout) baseRules() []*nftables.Rule {
	saddrIn := func(v4 bool, s *nftables.Set) []expr.Any {
		return append(metaNFProto(nfproto(v4)), loadSaddr(v4), lookup(s, false))
	}
	rules := []*nftables.Rule{
		// ip saddr @allow4 return
		// (the never-ban list comes first: an allowed source is never
		// dropped, even if an old ban for it is still in ban4)
		ruleOf(l.input, saddrIn(true, l.allow4), one(verdict(expr.VerdictReturn))),
		// ip6 saddr @allow6 return
		ruleOf(l.input, saddrIn(false, l.allow6), one(verdict(expr.VerdictReturn))),
		// fib saddr type local return
		// (the host's own addresses, whatever the interface: the host
		// never bans or traps itself)
		ruleOf(l.input, one(
			&expr.Fib{Register: reg, FlagSADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
			verdict(expr.VerdictReturn))),
		// ip saddr @ban4 counter drop
		ruleOf(l.input, saddrIn(true, l.ban4), one(&expr.Counter{}, verdict(expr.VerdictDrop))),
		// ip6 saddr @ban6 counter drop
		ruleOf(l.input, saddrIn(false, l.ban6), one(&expr.Counter{}, verdict(expr.VerdictDrop))),
	}
	if l.prefix6 < 128 {
		// ip6 saddr != @link6 ip6 saddr & ffff:ffff:ffff:ffff:: @ban6 counter drop
		// (a ban of a whole /64, kept under its first address; never
		// matched by a source on this host's own networks, banned
		// address by address, whose address may equal a prefix's)
		rules = append(rules, ruleOf(l.input, metaNFProto(nfproto(false)),
			one(loadSaddr(false), lookup(l.link6, true)), l.banKey(false),
			one(lookup(l.ban6, false), &expr.Counter{}, verdict(expr.VerdictDrop))))
	}
	// jump trap
	// (the trap's rules live in a chain of their own so that SetTrap
	// replaces them with one flush, without rule handles)
	return append(rules, ruleOf(l.input, one(&expr.Verdict{Kind: expr.VerdictJump, Chain: l.trap.Name})))
}

// forwardRules are the forward chain's rules, in order: the ban rules
// alone. Bans cover every way in: a banned source loses the containers
// this host publishes by DNAT (their packets are forwarded, after DNAT in
// prerouting, and never reach the input hook) and the hosts it routes to,
// as well as this host's own services. Forwarded traffic is never a probe
// of this host (it is for another host, after any DNAT), so there is no
// trap here and no peer is learnt from it.
//
// Each rule looks the source up in the ban set first: the traffic of a
// router or a container host, almost all from sources that are not
// banned, costs one hash lookup per packet, and the never-ban checks
// (which the input chain makes first, for the trap) run for banned
// sources only.
func (l *layout) forwardRules() []*nftables.Rule {
	c := l.forward
	notLocal := one(
		&expr.Fib{Register: reg, FlagSADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)})
	drop := one(&expr.Counter{}, verdict(expr.VerdictDrop))
	var rules []*nftables.Rule
	for _, v4 := range []bool{true, false} {
		ban, allow := l.ban6, l.allow6
		if v4 {
			ban, allow = l.ban4, l.allow4
		}
		// ip saddr @ban4 ip saddr != @allow4 fib saddr type != local counter drop
		// ip6 saddr @ban6 ip6 saddr != @allow6 fib saddr type != local counter drop
		rules = append(rules, ruleOf(c, metaNFProto(nfproto(v4)),
			one(loadSaddr(v4), lookup(ban, false), loadSaddr(v4), lookup(allow, true)), notLocal, drop))
	}
	if l.prefix6 < 128 {
		// ip6 saddr & ffff:ffff:ffff:ffff:: @ban6 ip6 saddr != @link6 ip6 saddr != @allow6 fib saddr type != local counter drop
		rules = append(rules, ruleOf(c, metaNFProto(nfproto(false)), l.banKey(false),
			one(lookup(l.ban6, false), loadSaddr(false), lookup(l.link6, true), loadSaddr(false), lookup(l.allow6, true)),
			notLocal, drop))
	}
	return rules
}

// ipsDstNAT is conntrack's IPS_DST_NAT status bit: the connection's
// destination was rewritten (DNAT, REDIRECT).
const ipsDstNAT = 1 << 5

// publishRules are the publish chain's rules: each new connection or
// datagram that the kernel DNATed (a port published by Docker without its
// userland proxy, by Podman, a Kubernetes NodePort; or a REDIRECT)
// records its original destination port, the one the client asked for,
// in the served sets for ttl. Such a port has no local socket, yet it is
// a service's: the packet capture sees the client's packet before the
// DNAT, and the daemon's service check reads these sets when no socket
// owns the port (block.Trapper.Served); the trap's grace rules spare it
// too when a packet reaches the input path undNATed (a container
// restarting). Only new connections get here, so established traffic
// costs two comparisons per packet; a forged packet can record only a
// port that the kernel really DNATs.
//
//	meta l4proto tcp ct state new ct status dnat update @served_tcp { ct original proto-dst timeout G }
//	meta l4proto udp ct state new ct status dnat update @served_udp { ct original proto-dst timeout G }
func (l *layout) publishRules(ttl time.Duration) []*nftables.Rule {
	var rules []*nftables.Rule
	for _, p := range []struct {
		proto  byte
		served *nftables.Set
	}{{unix.IPPROTO_TCP, l.servedTCP}, {unix.IPPROTO_UDP, l.servedUDP}} {
		rules = append(rules, ruleOf(l.publish, metaL4Proto(p.proto), one(
			&expr.Ct{Key: expr.CtKeySTATE, Register: reg},
			&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW),
				Xor:  binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg, Data: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Ct{Key: expr.CtKeySTATUS, Register: reg},
			&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(ipsDstNAT),
				Xor:  binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg, Data: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Ct{Key: expr.CtKeyPROTODST, Register: reg, Direction: 0}, // original
			&expr.Dynset{SrcRegKey: reg, SetName: p.served.Name, SetID: p.served.ID,
				Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: kernelTTL(ttl)})))
	}
	return rules
}

// publishTTL is how long the served sets remember a port published by
// DNAT under trap t: the trap's grace (so that a container's clients are
// spared while it restarts, as a local service's are), and at least
// publishMin.
func publishTTL(t *Trap) time.Duration {
	if t != nil && t.Grace > publishMin {
		return t.Grace
	}
	return publishMin
}

// probeOf matches a probe of one of ports: meta l4proto P, th dport
// @ports, and for TCP tcp flags & (ack|rst) == 0 (SYN, FIN, NULL, XMAS and
// the odd ones; never a packet of an existing conversation).
func probeOf(proto byte, ports *nftables.Set) []expr.Any {
	e := append(metaL4Proto(proto), loadDport(), lookup(ports, false))
	if proto == unix.IPPROTO_TCP {
		e = append(e,
			&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
			&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 1, Mask: []byte{0x14}, Xor: []byte{0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: []byte{0}})
	}
	return e
}

// ipsAssured is conntrack's IPS_ASSURED status bit: for TCP, set once the
// three-way handshake completed.
const ipsAssured = 1 << 2

// loadDport loads the TCP or UDP destination port.
func loadDport() expr.Any {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
}

// hopTo loads the IPv4 TTL or IPv6 hop limit into register r.
func hopTo(v4 bool, r uint32) expr.Any {
	if v4 {
		return &expr.Payload{DestRegister: r, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 1}
	}
	return &expr.Payload{DestRegister: r, Base: expr.PayloadBaseNetworkHeader, Offset: 7, Len: 1}
}

// ifname returns name as the kernel's 16-byte, NUL-padded interface name.
func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// trapRules are the trap chain's rules for t, in order.
func (l *layout) trapRules(t *Trap) []*nftables.Rule {
	c := l.trap
	ret := verdict(expr.VerdictReturn)
	var rules []*nftables.Rule
	if len(t.Interfaces) == 0 {
		// iifname "lo" return
		rules = append(rules, ruleOf(c, one(
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: ifname("lo")},
			ret)))
	} else {
		// iifname != @trap_ifaces return
		rules = append(rules, ruleOf(c, one(
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg},
			lookup(l.trapIfs, true),
			ret)))
	}
	rules = append(rules,
		// meta pkttype != host return
		// (a broadcast or multicast is not a probe of this host: a
		// neighbour's NetBIOS or DHCP broadcast must not ban it)
		ruleOf(c, one(
			&expr.Meta{Key: expr.MetaKeyPKTTYPE, Register: reg},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg, Data: []byte{unix.PACKET_HOST}},
			ret)))
	if t.Peers > 0 {
		// meta nfproto ipv4 meta l4proto tcp ct state established ct status assured update @hop4 { ip saddr . ip ttl timeout P } update @peer4 { ip saddr timeout P }
		// meta nfproto ipv6 meta l4proto tcp ct state established ct status assured update @hop6 { ip6 saddr . ip6 hoplimit timeout P } update @peer6 { ip6 saddr timeout P }
		// (a peer: a source of an assured TCP connection, in either
		// direction: its three-way handshake completed, which no one can
		// do blindly from a forged address (a SYN answered, or its
		// retransmission, is established but not assured); with the hop
		// count its packets arrive with. The hop set first: a full set
		// refuses the update and ends the rule, so a peer is known in
		// both sets or in neither, and the packet goes on unharmed.)
		for _, v4 := range []bool{true, false} {
			peer, hop := l.peer6, l.hop6
			if v4 {
				peer, hop = l.peer4, l.hop4
			}
			rules = append(rules, ruleOf(c, metaNFProto(nfproto(v4)), metaL4Proto(unix.IPPROTO_TCP), one(
				&expr.Ct{Key: expr.CtKeySTATE, Register: reg},
				&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 4,
					Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED),
					Xor:  binaryutil.NativeEndian.PutUint32(0)},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: reg, Data: binaryutil.NativeEndian.PutUint32(0)},
				&expr.Ct{Key: expr.CtKeySTATUS, Register: reg},
				&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 4,
					Mask: binaryutil.NativeEndian.PutUint32(ipsAssured),
					Xor:  binaryutil.NativeEndian.PutUint32(0)},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: reg, Data: binaryutil.NativeEndian.PutUint32(0)},
				loadSaddr(v4), loadHop(v4),
				&expr.Dynset{SrcRegKey: reg, SetName: hop.Name, SetID: hop.ID,
					Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: kernelTTL(t.Peers)},
				loadSaddr(v4),
				&expr.Dynset{SrcRegKey: reg, SetName: peer.Name, SetID: peer.ID,
					Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: kernelTTL(t.Peers)})))
		}
	}
	rules = append(rules,
		// ct state established,related return
		// (replies to the host's own traffic, such as a DNS answer that
		// arrives after the asking socket has closed)
		ruleOf(c, one(
			&expr.Ct{Key: expr.CtKeySTATE, Register: reg},
			&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
				Xor:  binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg, Data: binaryutil.NativeEndian.PutUint32(0)},
			ret)),
	)
	// meta l4proto tcp socket transparent 0 return
	// meta l4proto tcp socket transparent 1 return
	// (and the same for udp). The socket expression looks the packet up
	// as the stack would deliver it and matches only when a local socket
	// owns it: a listener, an established connection, a bound UDP socket.
	// Testing both values of "transparent" matches every found socket.
	// What is left is a packet no socket wants: a probe.
	// With a grace period each of them first remembers the port:
	// meta l4proto tcp socket transparent 0 update @served_tcp { tcp dport timeout G } return
	// (only a new connection or datagram gets here: established traffic
	// returned above, so this costs one update per flow, not per packet)
	for _, p := range []struct {
		proto  byte
		ports  int
		served *nftables.Set
	}{{unix.IPPROTO_TCP, t.TCP.Len(), l.servedTCP}, {unix.IPPROTO_UDP, t.UDP.Len(), l.servedUDP}} {
		if p.ports == 0 {
			continue
		}
		for _, v := range []byte{0, 1} {
			e := one(
				&expr.Socket{Key: expr.SocketKeyTransparent, Register: reg},
				&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: []byte{v}})
			if t.Grace > 0 {
				e = append(e, loadDport(),
					&expr.Dynset{SrcRegKey: reg, SetName: p.served.Name, SetID: p.served.ID,
						Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: kernelTTL(t.Grace)})
			}
			rules = append(rules, ruleOf(c, metaL4Proto(p.proto), e, one(ret)))
		}
	}
	if t.UDP.Len() > 0 {
		// meta nfproto ipv4 udp dport 33434-33534 ip ttl <= 30 return
		// meta nfproto ipv6 udp dport 33434-33534 ip6 hoplimit <= 30 return
		// (traceroute's and mtr's probes that reach this host: someone
		// measuring the path, not a scan; the port-unreachable reply is
		// what ends their traceroute)
		for _, v4 := range []bool{true, false} {
			rules = append(rules, ruleOf(c, metaNFProto(nfproto(v4)), metaL4Proto(unix.IPPROTO_UDP), one(
				&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Cmp{Op: expr.CmpOpGte, Register: reg, Data: binaryutil.BigEndian.PutUint16(event.TracerouteFirstPort)},
				&expr.Cmp{Op: expr.CmpOpLte, Register: reg, Data: binaryutil.BigEndian.PutUint16(event.TracerouteLastPort)},
				hopTo(v4, reg),
				&expr.Cmp{Op: expr.CmpOpLte, Register: reg, Data: []byte{event.TracerouteMaxTTL}},
				ret)))
		}
	}
	// The checks below drop a probe without banning its source. Each is
	// made of probes only (a TCP packet without ACK or RST, or a UDP
	// datagram, to a trap port no socket owns): never of ICMPv6 neighbour
	// discovery, or of anything else the host must answer.
	probes := []struct {
		proto  byte
		ports  *nftables.Set
		served *nftables.Set
		on     bool
	}{
		{unix.IPPROTO_TCP, l.trapTCP, l.servedTCP, t.TCP.Len() > 0},
		{unix.IPPROTO_UDP, l.trapUDP, l.servedUDP, t.UDP.Len() > 0},
	}
	// meta l4proto tcp tcp dport @trap_tcp tcp flags & (ack|rst) == 0 fib saddr . iif oif missing counter drop
	// meta l4proto udp udp dport @trap_udp fib saddr . iif oif missing counter drop
	// (the reverse-path check, as rp_filter's strict mode makes it: a
	// source this host would not reach through the interface the probe
	// came in by is forged, such as a LAN address arriving from outside.
	// Dropped, never banned, whatever the host's rp_filter says.)
	for _, p := range probes {
		if p.on {
			rules = append(rules, ruleOf(c, probeOf(p.proto, p.ports), one(
				&expr.Fib{Register: reg, FlagSADDR: true, FlagIIF: true, ResultOIF: true, FlagPRESENT: true},
				&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: binaryutil.NativeEndian.PutUint32(0)},
				&expr.Counter{}, verdict(expr.VerdictDrop))))
		}
	}
	if t.Grace > 0 {
		// meta l4proto tcp tcp dport @trap_tcp tcp flags & (ack|rst) == 0 tcp dport @served_tcp counter drop
		// meta l4proto udp udp dport @trap_udp udp dport @served_udp counter drop
		// (a port whose service went away within the grace period: a
		// client reconnecting to a restarting service, a monitor checking
		// one that is down. Dropped, so nobody learns anything, and not
		// banned; a TCP client's retransmission finds the service back.)
		for _, p := range probes {
			if p.on {
				rules = append(rules, ruleOf(c, probeOf(p.proto, p.ports), one(
					loadDport(), lookup(p.served, false), &expr.Counter{}, verdict(expr.VerdictDrop))))
			}
		}
	}
	if t.Peers > 0 {
		// meta nfproto ipv4 meta l4proto tcp tcp dport @trap_tcp tcp flags & (ack|rst) == 0 ip saddr @peer4 ip saddr . ip ttl != @hop4 counter drop
		// ... and the same for ipv6 (peer6, hop6) and for udp dport @trap_udp
		// (a probe claiming a peer's address but arriving with another
		// hop count than the peer's own packets: forged. Dropped, so it
		// learns nothing, and never a reason to ban the peer.)
		for _, v4 := range []bool{true, false} {
			peer, hop := l.peer6, l.hop6
			if v4 {
				peer, hop = l.peer4, l.hop4
			}
			for _, p := range probes {
				if p.on {
					rules = append(rules, ruleOf(c, metaNFProto(nfproto(v4)), probeOf(p.proto, p.ports), one(
						loadSaddr(v4), lookup(peer, false),
						loadSaddr(v4), loadHop(v4), lookup(hop, true),
						&expr.Counter{}, verdict(expr.VerdictDrop))))
				}
			}
		}
	}
	trap := func(v4 bool, proto byte, ports *nftables.Set) []*nftables.Rule {
		ban := l.ban6
		if v4 {
			ban = l.ban4
		}
		e := append(metaNFProto(nfproto(v4)), probeOf(proto, ports)...)
		// add @ban4 { ip saddr timeout TTL } counter drop
		add := func(key []expr.Any) []expr.Any {
			return append(append(slices.Clip(e), key...),
				&expr.Dynset{SrcRegKey: reg, SetName: ban.Name, SetID: ban.ID,
					Operation: unix.NFT_DYNSET_OP_ADD, Timeout: kernelTTL(t.TTL)},
				&expr.Counter{},
				verdict(expr.VerdictDrop))
		}
		full := append(slices.Clip(e), &expr.Counter{}, verdict(expr.VerdictDrop))
		if t.NoBan {
			// meta nfproto ipv4 tcp dport @trap_tcp tcp flags & (ack|rst) == 0 counter drop
			// (a flood is being summarized: probes are dropped, and
			// the ban sets are kept for the scanners among them)
			return []*nftables.Rule{ruleOf(c, full)}
		}
		var rules []*nftables.Rule
		if !v4 && l.prefix6 < 128 {
			// ... ip6 saddr @link6 add @ban6 { ip6 saddr timeout TTL } counter drop
			// ... add @ban6 { ip6 saddr & ffff:ffff:ffff:ffff:: timeout TTL } counter drop
			// (this host's own networks are banned address by address:
			// a scanner on the LAN must not take the LAN with it)
			rules = append(rules, ruleOf(c, add(one(loadSaddr(false), lookup(l.link6, false), loadSaddr(false)))))
		}
		banned := add(l.banKey(v4))
		// The same match again, without the ban: reached only when the
		// add failed because the ban set is full (a flood of random
		// sources). The probe is still dropped, so the trap keeps hiding
		// every unused port; only the ban waits for room.
		return append(rules, ruleOf(c, banned), ruleOf(c, full))
	}
	if t.TCP.Len() > 0 {
		// meta nfproto ipv4 tcp dport @trap_tcp tcp flags & (ack|rst) == 0 add @ban4 { ip saddr timeout TTL } counter drop
		// meta nfproto ipv4 tcp dport @trap_tcp tcp flags & (ack|rst) == 0 counter drop
		rules = append(rules, trap(true, unix.IPPROTO_TCP, l.trapTCP)...)
		// meta nfproto ipv6 tcp dport @trap_tcp tcp flags & (ack|rst) == 0 add @ban6 { ip6 saddr timeout TTL } counter drop
		// meta nfproto ipv6 tcp dport @trap_tcp tcp flags & (ack|rst) == 0 counter drop
		rules = append(rules, trap(false, unix.IPPROTO_TCP, l.trapTCP)...)
	}
	if t.UDP.Len() > 0 {
		// meta nfproto ipv4 udp dport @trap_udp add @ban4 { ip saddr timeout TTL } counter drop
		// meta nfproto ipv4 udp dport @trap_udp counter drop
		rules = append(rules, trap(true, unix.IPPROTO_UDP, l.trapUDP)...)
		// meta nfproto ipv6 udp dport @trap_udp add @ban6 { ip6 saddr timeout TTL } counter drop
		// meta nfproto ipv6 udp dport @trap_udp counter drop
		rules = append(rules, trap(false, unix.IPPROTO_UDP, l.trapUDP)...)
	}
	return rules
}

// maxTTL is the longest timeout the blocker asks for. The kernel keeps
// timeouts in jiffies and refuses (ERANGE) what does not fit; anything
// longer than this is as good as permanent for a ban and is clamped.
const maxTTL = 10 * 365 * 24 * time.Hour

// kernelTTL converts a ban length to what the kernel is sent: 0 stays 0
// (no timeout: permanent), anything else is rounded up to a whole
// millisecond, the kernel's unit, so that a sub-millisecond TTL does not
// truncate to 0 and become permanent.
func kernelTTL(d time.Duration) time.Duration {
	switch {
	case d <= 0:
		return 0
	case d >= maxTTL:
		return maxTTL
	}
	return (d + time.Millisecond - 1).Truncate(time.Millisecond)
}
