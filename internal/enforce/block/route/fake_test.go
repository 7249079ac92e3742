package route

import (
	"fmt"
	"net"
	"syscall"

	"github.com/vishvananda/netlink"
)

// fakeTable stands in for the kernel's routing tables, answering as the
// kernel does: EEXIST for a second route to the same destination, table
// and priority without replace, ESRCH for a delete that matches nothing (a
// delete naming a protocol matches only routes of that protocol).
type fakeTable struct {
	routes map[string]netlink.Route // by key
	calls  []string
	// failAdd makes every RouteAdd fail with it.
	failAdd error
	// interrupted makes that many dumps fail as interrupted.
	interrupted int
	closed      int
}

func key(r *netlink.Route) string { return fmt.Sprintf("%d %v %d", r.Table, r.Dst, r.Priority) }

// newFake returns a table holding routes.
func newFake(routes ...netlink.Route) *fakeTable {
	f := &fakeTable{routes: map[string]netlink.Route{}}
	for _, r := range routes {
		f.routes[key(&r)] = r
	}
	return f
}

func (f *fakeTable) record(op string, r *netlink.Route) {
	f.calls = append(f.calls, fmt.Sprintf("%s %v type=%d proto=%d table=%d scope=%d", op, r.Dst, r.Type, r.Protocol, r.Table, r.Scope))
}

func (f *fakeTable) RouteAdd(r *netlink.Route) error {
	f.record("add", r)
	if f.failAdd != nil {
		return f.failAdd
	}
	if _, ok := f.routes[key(r)]; ok {
		return syscall.EEXIST
	}
	f.routes[key(r)] = *r
	return nil
}

func (f *fakeTable) RouteReplace(r *netlink.Route) error {
	f.record("replace", r)
	f.routes[key(r)] = *r
	return nil
}

func (f *fakeTable) RouteDel(r *netlink.Route) error {
	f.record("del", r)
	// Our routes all have priority 0, so the key finds the only candidate.
	k := key(&netlink.Route{Table: r.Table, Dst: r.Dst})
	if have, ok := f.routes[k]; ok && (r.Protocol == 0 || have.Protocol == r.Protocol) {
		delete(f.routes, k)
		return nil
	}
	return syscall.ESRCH
}

func (f *fakeTable) RouteListFiltered(family int, filter *netlink.Route, mask uint64) ([]netlink.Route, error) {
	f.calls = append(f.calls, fmt.Sprintf("list family=%d proto=%d table=%d mask=%#x", family, filter.Protocol, filter.Table, mask))
	if f.interrupted > 0 {
		f.interrupted--
		return nil, errDumpInterrupted
	}
	var out []netlink.Route
	for _, r := range f.routes {
		if mask&netlink.RT_FILTER_PROTOCOL != 0 && r.Protocol != filter.Protocol ||
			mask&netlink.RT_FILTER_TABLE != 0 && r.Table != filter.Table {
			continue
		}
		// The kernel returns IPv4 destinations as 4 bytes.
		if ip4 := r.Dst.IP.To4(); ip4 != nil {
			r.Dst = &net.IPNet{IP: ip4, Mask: r.Dst.Mask}
		}
		out = append(out, r)
	}
	return out, nil
}

func (f *fakeTable) Close() { f.closed++ }

// take returns the calls made since the last take.
func (f *fakeTable) take() []string {
	c := f.calls
	f.calls = nil
	return c
}
