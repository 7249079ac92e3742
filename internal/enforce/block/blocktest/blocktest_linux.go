//go:build linux

package blocktest

import (
	"fmt"
	"maps"

	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/enforce/block"
	"github.com/portsentry-go/portsentry/internal/netns"
	"github.com/portsentry-go/portsentry/internal/netns/netnstest"
)

// Suite describes the blocker under test.
type Suite struct {
	// Lab makes the namespaces, with the blocker's package's prefix.
	Lab *netnstest.Lab
	// Open opens a blocker whose bans exist only in ns, failing tb on
	// error. The suite opens a second one on the same namespace to stand
	// for a daemon restart.
	Open func(tb testing.TB, ns *netns.NS) block.Blocker
	// KeepsTTL says that the mechanism expires bans itself (nftables):
	// List reports what remains of each TTL. Otherwise every ban lists
	// with TTL 0 and the daemon's ban store keeps the expiry.
	KeepsTTL bool
	// Many is how many bans the bulk check commits at once; 0 means
	// 10 000.
	Many int
}

// Addresses of the list checks: documentation ranges, which exist nowhere
// (the namespaces have no route anywhere either).
var (
	v4 = []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("198.51.100.3")}
	v6 = []netip.Addr{netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")}
)

// The traffic check's network: the defended host and a peer with two
// sources per family, the first of which gets banned.
var (
	hostV4 = netip.MustParseAddr("10.77.0.1")
	hostV6 = netip.MustParseAddr("fd77::1")
	peerV4 = []netip.Addr{netip.MustParseAddr("10.77.0.2"), netip.MustParseAddr("10.77.0.3")}
	peerV6 = []netip.Addr{netip.MustParseAddr("fd77::2"), netip.MustParseAddr("fd77::3")}
)

// Run runs the suite, one subtest per property, each in a fresh
// namespace.
func Run(t *testing.T, s Suite) {
	t.Run("AddList", s.testAddList)
	t.Run("AddAgainReplacesTTL", s.testAddAgain)
	t.Run("Delete", s.testDelete)
	t.Run("LastCallWins", s.testLastCallWins)
	t.Run("CommitEmptiesQueue", s.testCommitEmptiesQueue)
	t.Run("CloseKeepsBans", s.testCloseKeepsBans)
	t.Run("Many", s.testMany)
	t.Run("Traffic", s.testTraffic)
	t.Run("Forward", s.testForward)
}

// open makes a namespace and a blocker in it.
func (s Suite) open(tb testing.TB) (block.Blocker, *netns.NS) {
	tb.Helper()
	ns := s.Lab.New(tb, "b")
	return s.Open(tb, ns), ns
}

// Commit commits b's queue and fails tb on error.
func Commit(tb testing.TB, b block.Blocker) {
	tb.Helper()
	if err := b.Commit(); err != nil {
		tb.Fatalf("Commit: %v", err)
	}
}

// List returns b's bans as address → TTL, failing tb on error or on an
// address listed twice.
func List(tb testing.TB, b block.Blocker) map[netip.Addr]time.Duration {
	tb.Helper()
	l, err := b.List()
	if err != nil {
		tb.Fatalf("List: %v", err)
	}
	m := make(map[netip.Addr]time.Duration, len(l))
	for _, e := range l {
		if _, dup := m[e.Addr]; dup {
			tb.Errorf("List holds %v twice", e.Addr)
		}
		m[e.Addr] = e.TTL
	}
	return m
}

// check compares b's bans with want (address → TTL given to Add): the
// same addresses, and TTLs just under what was given (KeepsTTL) or 0.
func (s Suite) check(tb testing.TB, b block.Blocker, want map[netip.Addr]time.Duration) {
	tb.Helper()
	got := List(tb, b)
	var missing, extra []netip.Addr
	for _, a := range sorted(want) {
		if _, ok := got[a]; !ok {
			missing = append(missing, a)
		}
	}
	for _, a := range sorted(got) {
		if _, ok := want[a]; !ok {
			extra = append(extra, a)
		}
	}
	if len(missing) > 0 || len(extra) > 0 {
		tb.Fatalf("List holds %d bans, want %d: missing %v, not wanted %v", len(got), len(want), first(missing), first(extra))
	}
	for a, ttl := range want {
		g := got[a]
		switch {
		case !s.KeepsTTL && g != 0:
			tb.Errorf("%v: TTL %v, want 0 (the daemon keeps the expiry)", a, g)
		case s.KeepsTTL && ttl == 0 && g != 0:
			tb.Errorf("%v: TTL %v, want permanent", a, g)
		case s.KeepsTTL && ttl != 0 && (g <= ttl-time.Minute || g > ttl):
			tb.Errorf("%v: TTL %v, want just under %v", a, g, ttl)
		}
	}
}

// first shortens a for a message.
func first(a []netip.Addr) string {
	if len(a) > 10 {
		return fmt.Sprintf("%v and %d more", a[:10], len(a)-10)
	}
	return fmt.Sprint(a)
}

func sorted[V any](m map[netip.Addr]V) []netip.Addr {
	return slices.SortedFunc(maps.Keys(m), netip.Addr.Compare)
}

// testAddList: bans of both families, with TTLs and permanent, all in one
// Commit.
func (s Suite) testAddList(t *testing.T) {
	b, _ := s.open(t)
	if l := List(t, b); len(l) != 0 {
		t.Fatalf("a new blocker lists %v", l)
	}
	want := map[netip.Addr]time.Duration{v4[0]: time.Hour, v4[1]: 0, v4[2]: 3 * time.Hour, v6[0]: 2 * time.Hour, v6[1]: 0}
	for a, ttl := range want {
		b.Add(a, ttl)
	}
	Commit(t, b)
	s.check(t, b, want)
}

// testAddAgain: adding again replaces the TTL, longer, shorter, or
// permanent, or gives a permanent ban one; an address is banned once.
func (s Suite) testAddAgain(t *testing.T) {
	b, _ := s.open(t)
	want := map[netip.Addr]time.Duration{v4[0]: time.Hour, v4[1]: time.Hour, v4[2]: time.Hour, v6[0]: 0}
	for a, ttl := range want {
		b.Add(a, ttl)
	}
	Commit(t, b)
	for a, ttl := range map[netip.Addr]time.Duration{v4[0]: 10 * time.Hour, v4[1]: 10 * time.Minute, v4[2]: 0, v6[0]: 30 * time.Minute} {
		b.Add(a, ttl)
		want[a] = ttl
	}
	Commit(t, b)
	s.check(t, b, want)
}

// testDelete: present and absent addresses in one Commit; absent ones
// alone too.
func (s Suite) testDelete(t *testing.T) {
	b, _ := s.open(t)
	b.Add(v4[0], time.Hour)
	b.Add(v4[1], 0)
	b.Add(v6[0], time.Hour)
	b.Add(v6[1], 0)
	Commit(t, b)
	for _, a := range []netip.Addr{v4[0], v6[0], netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("2001:db8::99")} {
		b.Delete(a)
	}
	Commit(t, b)
	s.check(t, b, map[netip.Addr]time.Duration{v4[1]: 0, v6[1]: 0})
	b.Delete(netip.MustParseAddr("203.0.113.1"))
	b.Delete(v4[0]) // deleted already
	if err := b.Commit(); err != nil {
		t.Errorf("Commit of deletions of absent addresses: %v", err)
	}
	s.check(t, b, map[netip.Addr]time.Duration{v4[1]: 0, v6[1]: 0})
}

// testLastCallWins: Add then Delete, and Delete then Add, of one address
// in one Commit.
func (s Suite) testLastCallWins(t *testing.T) {
	b, _ := s.open(t)
	b.Add(v4[0], time.Hour)
	Commit(t, b)
	b.Add(v4[1], time.Hour)
	b.Delete(v4[1])
	b.Delete(v4[0])
	b.Add(v4[0], 2*time.Hour)
	b.Delete(v6[0])
	b.Add(v6[0], 0)
	Commit(t, b)
	s.check(t, b, map[netip.Addr]time.Duration{v4[0]: 2 * time.Hour, v6[0]: 0})
}

// testCommitEmptiesQueue: once committed, a ban lifted by another
// blocker on the same firewall stays lifted at the next Commit.
func (s Suite) testCommitEmptiesQueue(t *testing.T) {
	b, ns := s.open(t)
	b.Add(v4[0], time.Hour)
	b.Add(v6[0], 0)
	Commit(t, b)
	other := s.Open(t, ns)
	other.Delete(v4[0])
	other.Delete(v6[0])
	Commit(t, other)
	Commit(t, b) // nothing queued
	s.check(t, b, map[netip.Addr]time.Duration{})
}

// testCloseKeepsBans: Close leaves the bans in the kernel; the next
// blocker (a restarted daemon) lists them.
func (s Suite) testCloseKeepsBans(t *testing.T) {
	b, ns := s.open(t)
	want := map[netip.Addr]time.Duration{v4[0]: time.Hour, v4[1]: 0, v6[0]: 0, v6[1]: time.Hour}
	for a, ttl := range want {
		b.Add(a, ttl)
	}
	Commit(t, b)
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s.check(t, s.Open(t, ns), want)
}

// testMany: thousands of bans in one Commit, listed, then deleted in one.
func (s Suite) testMany(t *testing.T) {
	b, _ := s.open(t)
	many := ManyAddrs(s.many())
	want := make(map[netip.Addr]time.Duration, len(many))
	for _, a := range many {
		b.Add(a, 0)
		want[a] = 0
	}
	start := time.Now()
	Commit(t, b)
	t.Logf("Commit of %d bans: %v", len(many), time.Since(start))
	s.check(t, b, want)
	for _, a := range many {
		b.Delete(a)
	}
	Commit(t, b)
	s.check(t, b, map[netip.Addr]time.Duration{})
}

func (s Suite) many() int {
	if s.Many > 0 {
		return s.Many
	}
	return 10000
}

// ManyAddrs returns n distinct IPv4 addresses in 10.0.0.0/8.
func ManyAddrs(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	return out
}

// testTraffic: from a second namespace over a veth pair, the banned
// source of each family (IPv4 for good, IPv6 for an hour) can no longer
// connect to a listener in the first, the other source can, and after
// Delete the banned one can again.
func (s Suite) testTraffic(t *testing.T) {
	host, peer := s.Lab.New(t, "h"), s.Lab.New(t, "p")
	netnstest.Pair(t,
		netns.Iface{NS: host, Name: "eth0", Addrs: netns.OnLink(hostV4, hostV6)},
		netns.Iface{NS: peer, Name: "eth0", Addrs: netns.OnLink(append(slices.Clone(peerV4), peerV6...)...)})
	port := netnstest.Listen(t, host)
	b := s.Open(t, host)
	for _, fam := range []struct {
		dst  netip.Addr
		srcs []netip.Addr
		ttl  time.Duration
	}{{hostV4, peerV4, 0}, {hostV6, peerV6, time.Hour}} {
		dst := netip.AddrPortFrom(fam.dst, uint16(port))
		banned, other := fam.srcs[0], fam.srcs[1]
		if err := netnstest.Dial(t, peer, banned, dst, 5*time.Second); err != nil {
			t.Fatalf("%v → %v before the ban: %v", banned, dst, err)
		}
		b.Add(banned, fam.ttl)
		Commit(t, b)
		if err := netnstest.Dial(t, peer, banned, dst, time.Second); err == nil {
			t.Errorf("%v → %v connected while banned", banned, dst)
		}
		if err := netnstest.Dial(t, peer, other, dst, 5*time.Second); err != nil {
			t.Errorf("%v → %v while %v is banned: %v", other, dst, banned, err)
		}
		b.Delete(banned)
		Commit(t, b)
		if err := netnstest.Dial(t, peer, banned, dst, 5*time.Second); err != nil {
			t.Errorf("%v → %v after Delete: %v", banned, dst, err)
		}
	}
}

// Benchmark measures one Commit of s.Many (10 000) IPv4 bans, and one of
// their deletions, in a fresh namespace.
func Benchmark(b *testing.B, s Suite) {
	many := ManyAddrs(s.many())
	apply := func(bl block.Blocker, add bool) {
		for _, a := range many {
			if add {
				bl.Add(a, 0)
			} else {
				bl.Delete(a)
			}
		}
		Commit(b, bl)
	}
	for _, op := range []string{"add", "delete"} {
		b.Run(op, func(b *testing.B) {
			bl, _ := s.open(b)
			for range b.N {
				b.StopTimer()
				if op == "delete" {
					apply(bl, true)
				}
				b.StartTimer()
				apply(bl, op == "add")
				b.StopTimer()
				if op == "add" {
					apply(bl, false)
				}
				b.StartTimer()
			}
		})
	}
}

// Published is a container host in a lab, as Docker makes one: the host
// forwards (ip_forward), a bridge in it holds a "container" namespace whose
// service the host publishes on one of its own ports by DNAT, and a
// Docker-like filter chain (policy drop) accepts the published service.
// A peer namespace on a veth pair with the host has two sources per
// family and a route to the container's network through the host.
type Published struct {
	Host, Container, Peer *netns.NS
	// Port is the published port on the host's addresses (hostV4,
	// hostV6); ServicePort is the container's own, where DNAT sends it.
	Port, ServicePort uint16
}

// The container network, behind the host's bridge.
var (
	bridgeV4    = netip.MustParseAddr("10.78.0.1")
	bridgeV6    = netip.MustParseAddr("fd78::1")
	containerV4 = netip.MustParseAddr("10.78.0.2")
	containerV6 = netip.MustParseAddr("fd78::2")
)

// PublishedPort is the port the host publishes the container's service on.
const PublishedPort = 8080

// Publish builds the container host lab (needs the nft program for the
// DNAT and Docker-like rules, as a test tool). The host's own firewall
// holds nothing else; a blocker opened on Host is added beside them.
func Publish(tb testing.TB, lab *netnstest.Lab) *Published {
	tb.Helper()
	nft := netnstest.RequireTool(tb, "nft", "nftables")
	p := &Published{Host: lab.New(tb, "h"), Container: lab.New(tb, "c"), Peer: lab.New(tb, "p"), Port: PublishedPort}
	netnstest.Pair(tb,
		netns.Iface{NS: p.Host, Name: "eth0", Addrs: netns.OnLink(hostV4, hostV6)},
		netns.Iface{NS: p.Peer, Name: "eth0", Addrs: netns.OnLink(append(slices.Clone(peerV4), peerV6...)...)})
	netnstest.Star(tb, p.Host, "psbr0", netns.Iface{NS: p.Container, Name: "eth0", Addrs: netns.OnLink(containerV4, containerV6)})
	for _, err := range []error{
		netns.Address(netns.Iface{NS: p.Host, Name: "psbr0", Addrs: netns.OnLink(bridgeV4, bridgeV6)}),
		p.Container.Route(netip.MustParsePrefix("0.0.0.0/0"), bridgeV4),
		p.Container.Route(netip.MustParsePrefix("::/0"), bridgeV6),
		p.Peer.Route(netip.PrefixFrom(containerV4, 24).Masked(), hostV4),
		p.Peer.Route(netip.PrefixFrom(containerV6, 64).Masked(), hostV6),
		p.Host.Forward(true),
	} {
		if err != nil {
			tb.Fatal(err)
		}
	}
	p.ServicePort = uint16(netnstest.Listen(tb, p.Container))
	// What Docker installs for "docker run -p 8080:PORT" (through
	// iptables-nft, in tables of its own): DNAT in prerouting, and a
	// forward filter that drops all but the published service.
	rules := fmt.Sprintf(`table inet dockerlike {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		fib daddr type local meta nfproto ipv4 tcp dport %[1]d dnat ip to %[2]s:%[3]d
		fib daddr type local meta nfproto ipv6 tcp dport %[1]d dnat ip6 to [%[4]s]:%[3]d
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		oifname "psbr0" ip daddr %[2]s tcp dport %[3]d accept
		oifname "psbr0" ip6 daddr %[4]s tcp dport %[3]d accept
		iifname "psbr0" accept
	}
}
`, p.Port, containerV4, p.ServicePort, containerV6)
	cmd := p.Host.Command(nft, "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	netnstest.Output(tb, cmd)
	return p
}

// Published returns the published service's address on the host, and
// the container's own (reached by routing, without DNAT), for a family.
func (p *Published) Published(v6 bool) (published, direct netip.AddrPort) {
	if v6 {
		return netip.AddrPortFrom(hostV6, p.Port), netip.AddrPortFrom(containerV6, p.ServicePort)
	}
	return netip.AddrPortFrom(hostV4, p.Port), netip.AddrPortFrom(containerV4, p.ServicePort)
}

// Sources returns the peer's two sources of a family: the first is the
// one the tests ban.
func (p *Published) Sources(v6 bool) (banned, other netip.Addr) {
	if v6 {
		return peerV6[0], peerV6[1]
	}
	return peerV4[0], peerV4[1]
}

// dropWait is how long a connection attempt waits before calling its SYN
// (or the answer) dropped: on veth pairs an answer takes microseconds,
// and the first retransmission is a second away.
const dropWait = 500 * time.Millisecond

// testForward: on a container host that publishes a service by DNAT
// (Publish), a banned source can no longer reach the published service,
// nor the container's address routed through the host, while the other
// source can; after Delete the banned one can again. Forwarded traffic
// never reaches the input path: a ban must cover the forward path too.
func (s Suite) testForward(t *testing.T) {
	p := Publish(t, s.Lab)
	b := s.Open(t, p.Host)
	for _, v6 := range []bool{false, true} {
		published, direct := p.Published(v6)
		banned, other := p.Sources(v6)
		for _, to := range []netip.AddrPort{published, direct} {
			if err := netnstest.Dial(t, p.Peer, banned, to, 5*time.Second); err != nil {
				t.Fatalf("%v → %v before the ban: %v", banned, to, err)
			}
		}
		b.Add(banned, time.Hour)
		Commit(t, b)
		for _, to := range []netip.AddrPort{published, direct} {
			if err := netnstest.Dial(t, p.Peer, banned, to, dropWait); err == nil {
				t.Errorf("%v → %v connected while banned: the ban does not cover forwarded traffic", banned, to)
			}
			if err := netnstest.Dial(t, p.Peer, other, to, 5*time.Second); err != nil {
				t.Errorf("%v → %v while %v is banned: %v", other, to, banned, err)
			}
		}
		b.Delete(banned)
		Commit(t, b)
		if err := netnstest.Dial(t, p.Peer, banned, published, 5*time.Second); err != nil {
			t.Errorf("%v → %v after Delete: %v", banned, published, err)
		}
	}
}
