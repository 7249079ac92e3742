//go:build linux

package netns

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// LinkUp sets link dev of the namespace up.
func (n *NS) LinkUp(dev string) error {
	h, err := n.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(dev)
	if err == nil {
		err = h.LinkSetUp(l)
	}
	if err != nil {
		return fmt.Errorf("netns: %s up in %s: %w", dev, n.name, err)
	}
	return nil
}

// MAC returns the hardware address of link dev.
func (n *NS) MAC(dev string) (net.HardwareAddr, error) {
	h, err := n.handle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	l, err := h.LinkByName(dev)
	if err != nil {
		return nil, fmt.Errorf("netns: %s in %s: %w", dev, n.name, err)
	}
	return l.Attrs().HardwareAddr, nil
}

// DefaultRoutes returns the namespace's default routes, of either family,
// as text: a lab namespace has none, so that nothing sent in it can leave
// the lab.
func (n *NS) DefaultRoutes() ([]string, error) {
	h, err := n.handle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	routes, err := h.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("netns: routes of %s: %w", n.name, err)
	}
	var out []string
	for _, r := range routes {
		if ones, _ := maskOf(r.Dst); r.Dst == nil || ones == 0 {
			out = append(out, r.String())
		}
	}
	return out, nil
}

func maskOf(n *net.IPNet) (int, int) {
	if n == nil {
		return 0, 0
	}
	return n.Mask.Size()
}

// Pair joins a and b with a veth pair, a.Name in a.NS and b.Name in b.NS,
// sets both ends up and gives them their addresses. The pair is made
// inside a.NS with its peer inside b.NS: no link ever exists in the
// namespace of the caller. When the kernel has IPv6 turned off, the IPv4
// part is done and the error wraps ErrNoIPv6.
func Pair(a, b Iface) error {
	if err := veth(a.NS, a.Name, b.NS, b.Name); err != nil {
		return err
	}
	return configure(a, b)
}

// Star joins every iface to a bridge called bridge in hub, multicast
// snooping off: each gets a veth pair whose other end (bridge-p0,
// bridge-p1, …) is a port of the bridge. Then it sets everything up and
// gives each iface its addresses, as Pair does.
func Star(hub *NS, bridge string, ifaces ...Iface) error {
	h, err := hub.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	off := false
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridge}, MulticastSnooping: &off}
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("netns: bridge %s in %s: %w", bridge, hub.name, err)
	}
	if err := h.LinkSetUp(br); err != nil {
		return fmt.Errorf("netns: bridge %s up in %s: %w", bridge, hub.name, err)
	}
	for i, f := range ifaces {
		port := fmt.Sprintf("%s-p%d", bridge, i)
		if err := veth(f.NS, f.Name, hub, port); err != nil {
			return err
		}
		l, err := h.LinkByName(port)
		if err == nil {
			err = h.LinkSetMaster(l, br)
		}
		if err == nil {
			err = h.LinkSetUp(l)
		}
		if err != nil {
			return fmt.Errorf("netns: port %s of %s in %s: %w", port, bridge, hub.name, err)
		}
	}
	return configure(ifaces...)
}

// Address sets f.Name up and gives it f.Addrs, as Pair does for its
// ends, for a link that exists already: a Star's bridge, which then
// routes for the namespaces on it as Docker's docker0 does.
func Address(f Iface) error { return configure(f) }

// Route adds a route to dst through the gateway via in the namespace
// (dst 0.0.0.0/0 or ::/0: a default route). Only a route to another lab
// namespace: nothing sent in a lab may leave it.
func (n *NS) Route(dst netip.Prefix, via netip.Addr) error {
	h, err := n.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	r := &netlink.Route{Dst: &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), dst.Addr().BitLen())}, Gw: via.AsSlice()}
	if err := h.RouteAdd(r); err != nil {
		return fmt.Errorf("netns: route to %s via %s in %s: %w", dst, via, n.name, err)
	}
	return nil
}

// Forward turns IPv4 and IPv6 forwarding on or off in the namespace
// (net.ipv4.ip_forward, net.ipv6.conf.all.forwarding), as a router or a
// container host (Docker sets ip_forward) has it. IPv6 is skipped when
// the kernel has it turned off.
func (n *NS) Forward(on bool) error {
	v := []byte("0\n")
	if on {
		v = []byte("1\n")
	}
	return n.Do(func() error {
		// /proc/sys/net is the namespace of the thread that opens it.
		for _, f := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"} {
			err := os.WriteFile(f, v, 0o644)
			if errors.Is(err, fs.ErrNotExist) && f != "/proc/sys/net/ipv4/ip_forward" {
				continue
			}
			if err != nil {
				return fmt.Errorf("netns: forwarding in %s: %w", n.name, err)
			}
		}
		return nil
	})
}

// veth makes the pair aName (in a) – bName (in b).
func veth(a *NS, aName string, b *NS, bName string) error {
	h, err := a.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: aName}, PeerName: bName, PeerNamespace: netlink.NsFd(b.fd)}
	if err := h.LinkAdd(v); err != nil {
		return fmt.Errorf("netns: veth pair %s (%s) – %s (%s): %w", aName, a.name, bName, b.name, err)
	}
	return nil
}

// configure sets each iface up and adds its addresses: every IPv4 one
// first, so that a kernel without IPv6 still gets a working IPv4 network.
func configure(ifaces ...Iface) error {
	for _, v6 := range []bool{false, true} {
		for _, f := range ifaces {
			if err := f.configure(v6); err != nil {
				return err
			}
		}
	}
	return nil
}

func (f Iface) configure(v6 bool) error {
	h, err := f.NS.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(f.Name)
	if err != nil {
		return fmt.Errorf("netns: %s in %s: %w", f.Name, f.NS.name, err)
	}
	if !v6 {
		if err := h.LinkSetUp(l); err != nil {
			return fmt.Errorf("netns: %s up in %s: %w", f.Name, f.NS.name, err)
		}
	}
	for _, p := range f.Addrs {
		if p.Addr().Is6() != v6 {
			continue
		}
		err := h.AddrAdd(l, netlinkAddr(p))
		if err != nil && v6 && noIPv6(err) {
			return fmt.Errorf("%w (address %s on %s in %s: %v)", ErrNoIPv6, p, f.Name, f.NS.name, err)
		}
		if err != nil {
			return fmt.Errorf("netns: address %s on %s in %s: %w", p, f.Name, f.NS.name, err)
		}
	}
	return nil
}

// netlinkAddr is p as netlink adds it: IPv4 with the subnet's broadcast
// address (as `ip addr add … brd +`), IPv6 without duplicate address
// detection (nodad).
func netlinkAddr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
		return a
	}
	if p.Bits() < 31 {
		b := p.Addr().As4()
		m := a.IPNet.Mask
		for i := range b {
			b[i] |= ^m[i]
		}
		a.Broadcast = net.IP(b[:])
	}
	return a
}

// noIPv6 reports whether adding an IPv6 address failed because IPv6 is
// off: not built or ipv6.disable=1 (no /proc/sys/net/ipv6; EAFNOSUPPORT),
// or disable_ipv6 set (EACCES, EPERM).
func noIPv6(err error) bool {
	if _, serr := os.Stat("/proc/sys/net/ipv6"); errors.Is(serr, fs.ErrNotExist) {
		return true
	}
	return errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM)
}
