// Package route bans addresses with host routes that lead nowhere: the
// native form of PortSentry's KILL_ROUTE, "route add -host $TARGET$
// reject", without running a program per ban.
//
// Each ban is an unreachable (by default), blackhole or prohibit route to
// the address as a host (/32, /128) in the main table, added over netlink
// with the routing protocol number Protocol. That number marks the routes
// as ours: List reports only them, Delete removes only them, and a route
// the administrator made to the same address is never replaced.
//
// A route decides where replies go, not what comes in. A banned host's
// packets still arrive, so a stealth (SYN, FIN, NULL, XMAS) scan still
// reaches every port and is still seen by the sensors, but nothing is
// answered: no SYN-ACK and no RST, so connections cannot be made and a
// scan gets no answer to learn from. Use nftables or iptables to drop the
// packets themselves. The same holds for traffic this host forwards: a
// container's answers to a banned client (a service published by DNAT)
// and a routed host's are routed by this host too, and go nowhere.
//
// Routes have no expiry. Add ignores its TTL and List reports TTL 0: the
// daemon's ban store keeps the expiry times and calls Delete when a ban
// ends. The routes stay when the daemon stops (Close removes nothing), but
// not across a reboot.
package route

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/portsentry-go/portsentry/internal/enforce/block"
)

// Protocol is the routing protocol number (rtm_protocol) of our routes.
// The kernel and routing daemons use numbers up to 42, 99 and 186-192
// (see /etc/iproute2/rt_protos); 0x50 is free. A line "80 portsentry" in
// /etc/iproute2/rt_protos.d/portsentry.conf makes `ip route show proto
// portsentry` list the bans.
const Protocol = 0x50

// Type is what a ban route does with the replies it catches.
type Type int

// The route types. Locally generated packets (all that a host route of
// ours catches, the replies to the banned address) are dropped by each of
// them, the sending call failing with an error; they differ in that
// error, and in the ICMP message sent for packets routed through the host.
const (
	// Unreachable (RTN_UNREACHABLE, "host unreachable") is what "route
	// add -host X reject" makes, and the default.
	Unreachable Type = iota
	// Blackhole (RTN_BLACKHOLE) discards silently.
	Blackhole
	// Prohibit (RTN_PROHIBIT) answers "administratively prohibited".
	Prohibit
)

// rtn maps a Type to its kernel route type (linux/rtnetlink.h); kept here
// because x/sys/unix defines them for Linux only.
var rtn = map[Type]int{Unreachable: 7, Blackhole: 6, Prohibit: 8}

func (t Type) String() string {
	switch t {
	case Unreachable:
		return "unreachable"
	case Blackhole:
		return "blackhole"
	case Prohibit:
		return "prohibit"
	}
	return fmt.Sprintf("Type(%d)", int(t))
}

// ParseType reads a Type as String writes it.
func ParseType(s string) (Type, error) {
	for t := range rtn {
		if t.String() == s {
			return t, nil
		}
	}
	return 0, fmt.Errorf("route: unknown route type %q (want unreachable, blackhole or prohibit)", s)
}

// Options configures a Blocker. The zero value is usable.
type Options struct {
	// Type is the route type of a ban; the zero value is Unreachable.
	Type Type
	// Table is the routing table; 0 means the main table (254), which
	// every lookup reaches. Another table only works with a rule that
	// sends lookups to it.
	Table int
}

// mainTable is RT_TABLE_MAIN.
const mainTable = 254

// scopeNowhere (RT_SCOPE_NOWHERE) in a delete request matches a route of
// any scope.
const scopeNowhere = 255

// ErrNotOurs is wrapped by Commit's error for an address that already has
// a route in the table that is not ours: it is left alone, because
// replacing it could cut off a network the administrator routes there.
var ErrNotOurs = errors.New("route: address has a route not made by portsentry")

// Blocker bans addresses with host routes. It implements block.Blocker;
// its methods are safe for concurrent use.
type Blocker struct {
	h     handle
	rtype int
	table int

	mu     sync.Mutex
	queue  block.Queue
	closed bool
}

var _ block.Blocker = (*Blocker)(nil)

// handle is the part of *netlink.Handle the blocker uses. Tests replace it
// with an in-memory routing table.
type handle interface {
	RouteAdd(*netlink.Route) error
	RouteReplace(*netlink.Route) error
	RouteDel(*netlink.Route) error
	RouteListFiltered(family int, filter *netlink.Route, filterMask uint64) ([]netlink.Route, error)
	Close()
}

// newBlocker checks opts and makes a blocker on h. It is New with the
// handle given.
func newBlocker(opts Options, h handle) (*Blocker, error) {
	t, ok := rtn[opts.Type]
	if !ok {
		return nil, fmt.Errorf("route: invalid route type %v", opts.Type)
	}
	table := opts.Table
	if table == 0 {
		table = mainTable
	}
	if table < 0 {
		return nil, fmt.Errorf("route: invalid table %d", opts.Table)
	}
	return &Blocker{h: h, rtype: t, table: table}, nil
}

// Add queues a ban of addr. The TTL is ignored: routes do not expire, the
// daemon deletes them. An IPv4-mapped address is banned as IPv4.
func (b *Blocker) Add(addr netip.Addr, ttl time.Duration) { b.queue.Put(addr, true) }

// Paths says that the routes cover every path: input and forward alike,
// the answers to a banned source go nowhere (its own packets still
// arrive).
func (b *Blocker) Paths() block.Paths { return block.Paths{Input: true, Forward: true} }

// Delete queues the removal of addr's ban.
func (b *Blocker) Delete(addr netip.Addr) { b.queue.Put(addr, false) }

// hostRoute is the route banning a, without a type: a delete request
// leaves it out so that a ban made under another Type is removed too.
func (b *Blocker) hostRoute(a netip.Addr) *netlink.Route {
	bits := a.BitLen()
	return &netlink.Route{
		Dst:      &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, bits)},
		Protocol: Protocol,
		Table:    b.table,
	}
}

// maxErrors bounds how many addresses a Commit error names, so that a
// batch of 100 000 failing bans gives a readable line, not megabytes.
const maxErrors = 5

// Commit applies the queued changes, one netlink request each: the kernel
// has no batch for routes. Adding uses NLM_F_EXCL, so that a route that is
// not ours is never overwritten; only when an address already has a route
// does Commit read the table (once) to tell ours, which it replaces (the
// Type may have changed) or keeps, from someone else's, which it reports.
// Deleting asks for our protocol number, so the kernel removes only ours;
// a ban that is not there is not an error.
//
// An error names the first failing addresses and the count; the others are
// applied. The queue is emptied either way.
func (b *Blocker) Commit() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	pending, invalid := b.queue.Take()
	if b.closed {
		return errors.New("route: Commit after Close")
	}
	addrs := make([]netip.Addr, 0, len(pending))
	for a := range pending {
		addrs = append(addrs, a)
	}
	// Sorted, so that errors and the order routes appear in do not depend
	// on map order.
	slices.SortFunc(addrs, netip.Addr.Compare)

	var failed []error
	fail := func(a netip.Addr, op string, err error) {
		failed = append(failed, fmt.Errorf("%s %v: %w", op, a, err))
	}
	var exist []netip.Addr
	for _, a := range addrs {
		r := b.hostRoute(a)
		if !pending[a] {
			r.Scope = scopeNowhere
			if err := b.h.RouteDel(r); err != nil && !errors.Is(err, syscall.ESRCH) {
				fail(a, "delete", err)
			}
			continue
		}
		r.Type = b.rtype
		err := b.h.RouteAdd(r)
		switch {
		case errors.Is(err, syscall.EEXIST):
			exist = append(exist, a)
		case err != nil:
			fail(a, "add", err)
		}
	}
	if len(exist) > 0 {
		ours, err := b.list()
		if err != nil {
			for _, a := range exist {
				fail(a, "add", err)
			}
		}
		for _, a := range exist {
			t, ok := ours[a]
			switch {
			case err != nil:
			case !ok:
				fail(a, "add", ErrNotOurs)
			case t != b.rtype:
				r := b.hostRoute(a)
				r.Type = b.rtype
				if err := b.h.RouteReplace(r); err != nil {
					fail(a, "replace", err)
				}
			}
		}
	}
	var errs []error
	if n := len(failed); n > 0 {
		msgs := make([]string, 0, maxErrors)
		for _, e := range failed[:min(n, maxErrors)] {
			msgs = append(msgs, e.Error())
		}
		if n > maxErrors {
			msgs = append(msgs, fmt.Sprintf("and %d more", n-maxErrors))
		}
		// Wrap the first error, so errors.Is finds ErrNotOurs or an errno.
		errs = append(errs, fmt.Errorf("route: %d of %d changes failed: %s: %w", n, len(addrs), strings.Join(msgs, "; "), errors.Unwrap(failed[0])))
	}
	if invalid > 0 {
		errs = append(errs, fmt.Errorf("route: %d invalid addresses queued and ignored", invalid))
	}
	return errors.Join(errs...)
}

// maxDumpTries bounds the retries of a route dump that the kernel marked
// interrupted (the table changed while it was read).
const maxDumpTries = 3

// list reads our ban routes: address → route type.
func (b *Blocker) list() (map[netip.Addr]int, error) {
	filter := &netlink.Route{Protocol: Protocol, Table: b.table}
	var routes []netlink.Route
	var err error
	for range maxDumpTries {
		// FAMILY_ALL (AF_UNSPEC, 0) dumps IPv4 and IPv6 in one request.
		routes, err = b.h.RouteListFiltered(0, filter, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
		if !errors.Is(err, errDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("route: listing routes: %w", err)
	}
	ours := make(map[netip.Addr]int, len(routes))
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		a, ok := netip.AddrFromSlice(r.Dst.IP)
		if !ok {
			continue
		}
		a = a.Unmap()
		if ones, bits := r.Dst.Mask.Size(); ones != a.BitLen() || bits != a.BitLen() {
			continue // not a host route, so not a ban of ours
		}
		ours[a] = r.Type
	}
	return ours, nil
}

// List reports our ban routes, sorted, with TTL 0: routes keep no expiry.
func (b *Blocker) List() ([]block.Entry, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errors.New("route: List after Close")
	}
	ours, err := b.list()
	if err != nil {
		return nil, err
	}
	entries := make([]block.Entry, 0, len(ours))
	for a := range ours {
		entries = append(entries, block.Entry{Addr: a})
	}
	slices.SortFunc(entries, func(x, y block.Entry) int { return x.Addr.Compare(y.Addr) })
	return entries, nil
}

// Close releases the netlink socket. The routes stay: bans outlive the
// daemon.
func (b *Blocker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		b.h.Close()
	}
	return nil
}
