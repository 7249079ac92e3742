package enforce

import (
	"errors"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// kernelRoute asks the kernel's routing table which interface it would
// send to addr through (RTM_GETROUTE, as `ip route get ADDR`), and says
// whether that is arrival, or arrival's bridge or bond (arrival is one of
// its ports). No route at all fails the check.
func kernelRoute(addr netip.Addr, arrival int) (bool, error) {
	routes, err := netlink.RouteGet(addr.AsSlice())
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
		if l, err := netlink.LinkByIndex(arrival); err == nil && l.Attrs().MasterIndex == r.LinkIndex && r.LinkIndex != 0 {
			return true, nil
		}
	}
	return false, nil
}

func defaultReversePath() reversePath { return reversePath{route: kernelRoute} }
