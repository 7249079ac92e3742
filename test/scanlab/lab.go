package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/portsentry-go/portsentry/internal/netns"
)

// nsPrefix starts the name of every namespace scanlab creates (package
// netns: nsPrefix + creator PID + "-" + random + "-" + role). Leftovers of
// a run whose creator is gone are deleted at start; a live concurrent
// run's are left alone.
const nsPrefix = "pslab-"

// The lab's addresses. They exist only inside the lab's namespaces, which
// have no default route: nothing can leave them.
var (
	targetV4   = netip.MustParseAddr("10.232.0.1")
	targetV6   = netip.MustParseAddr("fd00:232::1")
	scannerV4  = netip.MustParseAddr("10.232.0.2")
	scannerV6  = netip.MustParseAddr("fd00:232::2")
	innocentV4 = netip.MustParseAddr("10.232.0.3")
	innocentV6 = netip.MustParseAddr("fd00:232::3")
)

// labIf is the name of every host's interface inside its namespace.
const labIf = "eth0"

// host is one namespace of the lab.
type host struct {
	ns     *netns.NS
	v4, v6 netip.Addr
	mac    string // of labIf
}

// lab is target T, scanner S and innocent I, each with a veth whose other
// end is a port of a bridge in a fourth namespace, the hub.
type lab struct {
	hub     *netns.NS
	T, S, I host
	created []*netns.NS // namespaces to delete, in creation order
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
	var ifaces []netns.Iface
	for _, h := range []struct {
		h      *host
		role   string
		v4, v6 netip.Addr
	}{{&l.T, "t", targetV4, targetV6}, {&l.S, "s", scannerV4, scannerV6}, {&l.I, "i", innocentV4, innocentV6}} {
		*h.h = host{v4: h.v4, v6: h.v6}
		if h.h.ns, err = mk(h.role); err != nil {
			return l, err
		}
		ifaces = append(ifaces, netns.Iface{NS: h.h.ns, Name: labIf, Addrs: netns.OnLink(h.v4, h.v6)})
	}
	if err := netns.Star(l.hub, "br0", ifaces...); err != nil {
		return l, err
	}
	for _, h := range []*host{&l.T, &l.S, &l.I} {
		mac, err := h.ns.MAC(labIf)
		if err != nil {
			return l, err
		}
		h.mac = mac.String()
		if err := checkNoDefaultRoute(h.ns); err != nil {
			return l, err
		}
	}
	return l, nil
}

// checkNoDefaultRoute makes sure ns can reach nothing but its own /24 and
// /64: the lab must never send a packet anywhere else.
func checkNoDefaultRoute(ns *netns.NS) error {
	routes, err := ns.DefaultRoutes()
	if err != nil {
		return err
	}
	if len(routes) > 0 {
		return fmt.Errorf("namespace %s has a default route (%s): refusing to scan", ns, strings.Join(routes, "; "))
	}
	return nil
}

// close deletes the lab's namespaces (ending any process left in them).
func (l *lab) close() {
	for i := len(l.created) - 1; i >= 0; i-- {
		if err := l.created[i].Delete(); err != nil {
			fmt.Fprintf(os.Stderr, "scanlab: %v: run `ip netns del %s`\n", err, l.created[i])
		}
	}
	l.created = nil
}

// removeLeftovers deletes namespaces a crashed or killed earlier run left
// behind. Those of a live concurrent scanlab are left alone; a namespace
// whose creator's PID now belongs to another program is a leftover.
func removeLeftovers() []string {
	removed, err := netns.SweepFunc(nsPrefix, func(pid int) bool { return netns.Runs(pid) && isScanlab(pid) })
	if err != nil {
		fmt.Fprintln(os.Stderr, "scanlab:", err)
	}
	return removed
}

// removeOwnNamespaces deletes this run's namespaces (an abort's cleanup).
func removeOwnNamespaces() {
	names, _ := netns.List(netns.Own(nsPrefix))
	var errs []error
	for _, name := range names {
		errs = append(errs, netns.Delete(name))
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintln(os.Stderr, "scanlab:", err)
	}
}

// isScanlab reports whether pid looks like a running scanlab (PIDs are
// reused: a namespace whose creator's PID now belongs to something else is
// a leftover).
func isScanlab(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	argv0, _, _ := strings.Cut(string(b), "\x00")
	return strings.Contains(argv0, "scanlab")
}
