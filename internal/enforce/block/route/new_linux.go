package route

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/portsentry-go/portsentry/internal/enforce/block"
)

// New opens a netlink socket to the kernel's routing table. Without
// CAP_NET_ADMIN, which adding routes needs, the error wraps
// block.ErrUnavailable: detection then reports it instead of every ban
// failing later.
func New(opts Options) (*Blocker, error) {
	if err := canAdmin(); err != nil {
		return nil, err
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("route: netlink: %w: %w", err, block.ErrUnavailable)
	}
	b, err := newBlocker(opts, h)
	if err != nil {
		h.Close()
		return nil, err
	}
	return b, nil
}

// canAdmin checks that CAP_NET_ADMIN is in the effective set.
func canAdmin() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	// Version 3 fills two structs: capabilities 0-31, then 32-63.
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("route: capget: %w", err)
	}
	if data[0].Effective&(1<<unix.CAP_NET_ADMIN) == 0 {
		return fmt.Errorf("route: needs CAP_NET_ADMIN to add routes (run as root): %w", block.ErrUnavailable)
	}
	return nil
}

// errDumpInterrupted marks a dump the kernel flagged inconsistent because
// the table changed while it was read; the dump is then worth repeating.
var errDumpInterrupted = netlink.ErrDumpInterrupted
