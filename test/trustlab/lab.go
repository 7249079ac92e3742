package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/portsentry-go/portsentry/internal/netns"
	"github.com/portsentry-go/portsentry/test/internal/labproc"
)

// nsPrefix starts the name of every namespace trustlab creates (package
// netns: nsPrefix + creator PID + "-" + random + "-" + role). Leftovers of
// a run whose creator is gone are deleted at start; a live concurrent
// run's are left alone.
const nsPrefix = "pstrust-"

// The lab's addresses. They exist only inside the lab's namespaces, which
// have no link to the host and no default route.
var (
	// The LAN: T, the router's LAN side, the forger and the other hosts.
	lanV4     = netip.MustParsePrefix("10.235.0.0/24")
	lanV6     = netip.MustParsePrefix("fd00:235::/64")
	targetV4  = netip.MustParseAddr("10.235.0.1")
	targetV6  = netip.MustParseAddr("fd00:235::1")
	routerV4  = netip.MustParseAddr("10.235.0.254")
	routerV6  = netip.MustParseAddr("fd00:235::fe")
	forgerV4  = netip.MustParseAddr("10.235.0.66")
	forgerV6  = netip.MustParseAddr("fd00:235::66")
	lan1V4    = netip.MustParseAddr("10.235.0.11")
	lan1V6    = netip.MustParseAddr("fd00:235::11")
	lan2V4    = netip.MustParseAddr("10.235.0.12")
	lan2V6    = netip.MustParseAddr("fd00:235::12")
	scannerV4 = netip.MustParseAddr("10.235.0.99")
	scannerV6 = netip.MustParseAddr("fd00:235::99")

	// The client's network, behind the router.
	remoteV4  = netip.MustParsePrefix("10.235.1.0/24")
	remoteV6  = netip.MustParsePrefix("fd00:235:1::/64")
	routerCV4 = netip.MustParseAddr("10.235.1.254")
	routerCV6 = netip.MustParseAddr("fd00:235:1::fe")
	clientV4  = netip.MustParseAddr("10.235.1.2")
	clientV6  = netip.MustParseAddr("fd00:235:1::2")
)

const (
	hostIf = "eth0" // every host's interface on its link (R's on the LAN)
	ifC    = "eth1" // R's interface on C's link
	// defaultTTL is the TTL (IPv6: hop limit) Linux sends with
	// (net.ipv4.ip_default_ttl, hop_limit): C's packets reach T with one
	// less, having crossed R.
	defaultTTL = 64
)

// host is one namespace of the lab.
type host struct {
	ns     *netns.NS
	v4, v6 netip.Addr
}

// addr is h's address of the family of like.
func (h host) addr(like netip.Addr) netip.Addr {
	if like.Is6() {
		return h.v6
	}
	return h.v4
}

// lab is the server T, the forger A, two more LAN clients N1 and N2 and a
// scanner S on one bridge (in a hub namespace), and the client C on a
// link of its own behind the router R, which forwards between the LAN and
// C's link: C's packets reach T with one hop less than they left with.
type lab struct {
	hub                *netns.NS
	T, R, A, N1, N2, S host // R: its LAN side's addresses
	C                  host
	created            []*netns.NS // namespaces to delete, in creation order
}

// newLab builds the lab. On error it removes what it made.
func newLab(ctx context.Context) (l *lab, err error) {
	l = &lab{}
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	mk := func(role string) (*netns.NS, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, err := netns.New(nsPrefix, role)
		if err == nil {
			l.created = append(l.created, n)
		}
		return n, err
	}
	if l.hub, err = mk("h"); err != nil {
		return l, err
	}
	var lan []netns.Iface
	for _, h := range []struct {
		h      *host
		role   string
		v4, v6 netip.Addr
	}{
		{&l.T, "t", targetV4, targetV6}, {&l.R, "r", routerV4, routerV6},
		{&l.A, "a", forgerV4, forgerV6}, {&l.N1, "n1", lan1V4, lan1V6},
		{&l.N2, "n2", lan2V4, lan2V6}, {&l.S, "s", scannerV4, scannerV6},
	} {
		*h.h = host{v4: h.v4, v6: h.v6}
		if h.h.ns, err = mk(h.role); err != nil {
			return l, err
		}
		lan = append(lan, netns.Iface{NS: h.h.ns, Name: hostIf, Addrs: netns.OnLink(h.v4, h.v6)})
	}
	if err := netns.Star(l.hub, "br0", lan...); err != nil {
		return l, err
	}
	l.C = host{v4: clientV4, v6: clientV6}
	if l.C.ns, err = mk("c"); err != nil {
		return l, err
	}
	if err := netns.Pair(
		netns.Iface{NS: l.R.ns, Name: ifC, Addrs: netns.OnLink(routerCV4, routerCV6)},
		netns.Iface{NS: l.C.ns, Name: hostIf, Addrs: netns.OnLink(clientV4, clientV6)},
	); err != nil {
		return l, err
	}
	if err := l.route(ctx); err != nil {
		return l, err
	}
	return l, l.checkRoutes()
}

// route turns R into a router and gives T and C their routes to each
// other's network through it (no default routes: nothing else is
// reachable).
func (l *lab) route(ctx context.Context) error {
	if _, err := labproc.Run(ctx, 10*time.Second, l.R.ns.Argv("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")...); err != nil {
		return fmt.Errorf("forwarding in R: %w", err)
	}
	for _, r := range []struct {
		h   host
		dst netip.Prefix
		via netip.Addr
	}{
		{l.T, remoteV4, routerV4}, {l.T, remoteV6, routerV6},
		{l.C, lanV4, routerCV4}, {l.C, lanV6, routerCV6},
	} {
		if err := addRoute(r.h.ns, r.dst, r.via); err != nil {
			return err
		}
	}
	return nil
}

// addRoute adds the route dst via gw on hostIf in ns.
func addRoute(ns *netns.NS, dst netip.Prefix, gw netip.Addr) error {
	h, err := netlink.NewHandleAt(vnetns.NsHandle(ns.Fd()))
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", ns, err)
	}
	defer h.Close()
	link, err := h.LinkByName(hostIf)
	if err != nil {
		return fmt.Errorf("%s in %s: %w", hostIf, ns, err)
	}
	r := &netlink.Route{
		LinkIndex: link.Attrs().Index,
		Dst:       &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), dst.Addr().BitLen())},
		Gw:        net.IP(gw.AsSlice()),
	}
	if err := h.RouteAdd(r); err != nil {
		return fmt.Errorf("route %s via %s in %s: %w", dst, gw, ns, err)
	}
	return nil
}

// checkRoutes makes sure the lab keeps every packet inside it: no
// namespace has a default route.
func (l *lab) checkRoutes() error {
	for _, n := range l.created {
		gws, err := n.DefaultRoutes()
		if err != nil {
			return err
		}
		if len(gws) > 0 {
			return fmt.Errorf("namespace %s has a default route via %v: refusing to run", n, gws)
		}
	}
	return nil
}

// prime connects from C to T's SSH-like service over IPv4 and IPv6, so
// that the neighbour caches on the way (T's of R, R's of T and C, C's of
// R) are filled before the first scenario: the first IPv6 connection
// across R takes about 2 s here (SYN retransmissions while neighbour
// discovery completes), with no daemon running yet, which would otherwise
// count as a client's failures. It returns how long each took.
func (l *lab) prime() ([]time.Duration, error) {
	var took []time.Duration
	for _, to := range []netip.Addr{l.T.v4, l.T.v6} {
		start := time.Now()
		err := l.C.ns.Do(func() error {
			c, err := net.DialTimeout("tcp", netip.AddrPortFrom(to, sessionPort).String(), 5*time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err != nil {
			return took, fmt.Errorf("C cannot reach T: %w", err)
		}
		took = append(took, time.Since(start))
	}
	return took, nil
}

// close deletes the lab's namespaces (ending any process left in them).
func (l *lab) close() {
	for i := len(l.created) - 1; i >= 0; i-- {
		if err := l.created[i].Delete(); err != nil {
			fmt.Fprintf(os.Stderr, "trustlab: %v: run `ip netns del %s`\n", err, l.created[i])
		}
	}
	l.created = nil
}
