package enforce

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// kernelRoute asks the kernel's routing table which interface it would
// send to addr through (RTM_GETROUTE, as `ip route get ADDR`), and says
// whether that is arrival, or arrival's bridge or bond (arrival is one of
// its ports). No route at all fails the check. routeGet and linkByIndex
// are netlink's, on a handle or not.
func kernelRoute(routeGet func(net.IP) ([]netlink.Route, error), linkByIndex func(int) (netlink.Link, error), addr netip.Addr, arrival int) (bool, error) {
	routes, err := routeGet(addr.AsSlice())
	if err != nil {
		if errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.EHOSTUNREACH) {
			return false, nil
		}
		return false, err
	}
	for _, r := range routes {
		if r.LinkIndex == arrival {
			return true, nil
		}
		if l, err := linkByIndex(arrival); err == nil && l.Attrs().MasterIndex == r.LinkIndex && r.LinkIndex != 0 {
			return true, nil
		}
	}
	return false, nil
}

// routeAsker asks through one netlink socket, opened at the first check
// and kept until ctx ends: a check is on the path of every probe of a
// source not yet blocked, the first one included, and a socket made and
// closed per question (netlink's package functions) costs more than the
// question.
type routeAsker struct {
	mu     sync.Mutex
	h      *netlink.Handle
	closed bool
}

func (r *routeAsker) route(addr netip.Addr, arrival int) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.h == nil && !r.closed {
		if h, err := netlink.NewHandle(unix.NETLINK_ROUTE); err == nil {
			r.h = h
		}
	}
	if r.h == nil {
		return kernelRoute(netlink.RouteGet, netlink.LinkByIndex, addr, arrival)
	}
	return kernelRoute(r.h.RouteGet, r.h.LinkByIndex, addr, arrival)
}

func (r *routeAsker) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.h != nil {
		r.h.Close()
		r.h = nil
	}
}

// defaultReversePath asks the kernel, in the network namespace of the
// thread making the first check (the daemon's), until ctx ends.
func defaultReversePath(ctx context.Context) reversePath {
	r := &routeAsker{}
	context.AfterFunc(ctx, r.close)
	return reversePath{route: r.route, answers: make(map[routeQuestion]routeAnswer)}
}
