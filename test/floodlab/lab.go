package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/portsentry-go/portsentry/internal/netns"
)

// nsPrefix starts the name of every namespace floodlab creates (package
// netns: nsPrefix + creator PID + "-" + random + "-" + role). Leftovers of
// a run whose creator is gone are deleted at start; a live concurrent
// run's are left alone.
const nsPrefix = "psflood-"

// The lab's addresses. They exist only inside the lab's namespaces, which
// have no link to the host.
var (
	targetV4   = netip.MustParseAddr("10.233.0.1")
	targetV6   = netip.MustParseAddr("fd00:233::1")
	scannerV4  = netip.MustParseAddr("10.233.0.2") // scans during the flood
	scannerV6  = netip.MustParseAddr("fd00:233::2")
	innocentV4 = netip.MustParseAddr("10.233.0.3")
	innocentV6 = netip.MustParseAddr("fd00:233::3")
	flooderV4  = netip.MustParseAddr("10.233.0.4")
	flooderV6  = netip.MustParseAddr("fd00:233::4")
	postV4     = netip.MustParseAddr("10.233.0.5") // scans after the flood
	postV6     = netip.MustParseAddr("fd00:233::5")
)

// labIf is the name of every host's interface inside its namespace.
const labIf = "eth0"

// host is one namespace of the lab.
type host struct {
	ns     *netns.NS
	v4, v6 netip.Addr
}

// lab is target T, flooder F, scanners S (during the flood) and P (after
// it) and innocent I, each with a veth whose other end is a port of a
// bridge in a sixth namespace, the hub.
type lab struct {
	hub           *netns.NS
	T, F, S, P, I host
	created       []*netns.NS // namespaces to delete, in creation order
}

// newLab builds the lab and T's routes into F. On error it removes what
// it made.
func newLab(ctx context.Context) (l *lab, err error) {
	l = &lab{}
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	if err := l.createHosts(ctx); err != nil {
		return l, err
	}
	if err := l.routeTargetIntoFlooder(); err != nil {
		return l, err
	}
	return l, l.checkRoutes()
}

// createHosts makes the namespaces and joins them on the hub's bridge.
func (l *lab) createHosts(ctx context.Context) error {
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
	var err error
	if l.hub, err = mk("h"); err != nil {
		return err
	}
	var ifaces []netns.Iface
	for _, h := range []struct {
		h      *host
		role   string
		v4, v6 netip.Addr
	}{
		{&l.T, "t", targetV4, targetV6}, {&l.F, "f", flooderV4, flooderV6},
		{&l.S, "s", scannerV4, scannerV6}, {&l.P, "p", postV4, postV6},
		{&l.I, "i", innocentV4, innocentV6},
	} {
		*h.h = host{v4: h.v4, v6: h.v6}
		if h.h.ns, err = mk(h.role); err != nil {
			return err
		}
		ifaces = append(ifaces, netns.Iface{NS: h.h.ns, Name: labIf, Addrs: netns.OnLink(h.v4, h.v6)})
	}
	return netns.Star(l.hub, "br0", ifaces...)
}

// routeTargetIntoFlooder gives T default routes via F's addresses: the
// flood's random sources are then reachable, as on a real host, but
// anything T sends them goes to F, inside the lab.
func (l *lab) routeTargetIntoFlooder() error {
	h, err := handle(l.T.ns)
	if err != nil {
		return err
	}
	defer h.Close()
	link, err := h.LinkByName(labIf)
	if err != nil {
		return fmt.Errorf("%s in %s: %w", labIf, l.T.ns, err)
	}
	for _, gw := range []netip.Addr{l.F.v4, l.F.v6} {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: net.IP(gw.AsSlice())}
		if err := h.RouteAdd(r); err != nil {
			return fmt.Errorf("default route via %s in %s: %w", gw, l.T.ns, err)
		}
	}
	return nil
}

// checkRoutes makes sure the lab keeps every packet inside it: T's only
// default routes lead to F, and no other namespace has one.
func (l *lab) checkRoutes() error {
	for _, x := range []*host{&l.T, &l.F, &l.S, &l.P, &l.I} {
		gws, err := defaultGateways(x.ns)
		if err != nil {
			return err
		}
		for _, gw := range gws {
			if x != &l.T || (gw != l.F.v4 && gw != l.F.v6) {
				return fmt.Errorf("namespace %s has a default route via %s: refusing to flood", x.ns, gw)
			}
		}
	}
	return nil
}

// defaultGateways lists the gateways of ns's default routes (an invalid
// address for a default route without one).
func defaultGateways(ns *netns.NS) ([]netip.Addr, error) {
	h, err := handle(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	routes, err := h.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("routes of %s: %w", ns, err)
	}
	var gws []netip.Addr
	for _, r := range routes {
		if ones, _ := maskOf(r.Dst); r.Dst != nil && ones > 0 {
			continue
		}
		gw, _ := netip.AddrFromSlice(r.Gw)
		gws = append(gws, gw.Unmap())
	}
	return gws, nil
}

func maskOf(n *net.IPNet) (int, int) {
	if n == nil {
		return 0, 0
	}
	return n.Mask.Size()
}

// handle is a netlink socket inside ns.
func handle(ns *netns.NS) (*netlink.Handle, error) {
	h, err := netlink.NewHandleAt(vnetns.NsHandle(ns.Fd()))
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", ns, err)
	}
	return h, nil
}

// linkCounters are an interface's packet counters.
type linkCounters struct {
	txPackets, rxPackets, rxDropped uint64
}

// counters reads labIf's counters in ns.
func counters(ns *netns.NS) (linkCounters, error) {
	h, err := handle(ns)
	if err != nil {
		return linkCounters{}, err
	}
	defer h.Close()
	link, err := h.LinkByName(labIf)
	if err != nil {
		return linkCounters{}, fmt.Errorf("%s in %s: %w", labIf, ns, err)
	}
	st := link.Attrs().Statistics
	if st == nil {
		return linkCounters{}, fmt.Errorf("%s in %s: no statistics", labIf, ns)
	}
	return linkCounters{txPackets: st.TxPackets, rxPackets: st.RxPackets, rxDropped: st.RxDropped}, nil
}

// close deletes the lab's namespaces (ending any process left in them).
func (l *lab) close() {
	for i := len(l.created) - 1; i >= 0; i-- {
		if err := l.created[i].Delete(); err != nil {
			fmt.Fprintf(os.Stderr, "floodlab: %v: run `ip netns del %s`\n", err, l.created[i])
		}
	}
	l.created = nil
}
