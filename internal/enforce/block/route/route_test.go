package route

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/vishvananda/netlink"

	"github.com/portsentry-go/portsentry/internal/enforce/block"
)

var (
	a1 = netip.MustParseAddr("192.0.2.1")
	a2 = netip.MustParseAddr("192.0.2.2")
	b1 = netip.MustParseAddr("2001:db8::1")
	b2 = netip.MustParseAddr("2001:db8::2")
)

func diff(t *testing.T, what string, want, got any) {
	t.Helper()
	if d := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{})); d != "" {
		t.Errorf("%s (-want +got):\n%s", what, d)
	}
}

func entries(addrs ...netip.Addr) []block.Entry {
	e := []block.Entry{}
	for _, a := range addrs {
		e = append(e, block.Entry{Addr: a})
	}
	return e
}

func mustNew(t *testing.T, opts Options, f *fakeTable) *Blocker {
	t.Helper()
	b, err := newBlocker(opts, f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func list(t *testing.T, b *Blocker) []block.Entry {
	t.Helper()
	got, err := b.List()
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// hostNet is a /32 or /128 as the kernel reports it.
func hostNet(s string) *net.IPNet {
	a := netip.MustParseAddr(s)
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}
}

// TestCommit checks the exact requests of a Commit and List's reading of
// the result.
func TestCommit(t *testing.T) {
	f := newFake()
	b := mustNew(t, Options{}, f)
	b.Add(b2, time.Hour) // the TTL is ignored: routes do not expire
	b.Add(a1, 0)
	b.Add(netip.MustParseAddr("::ffff:192.0.2.2"), 0) // mapped: banned as IPv4
	b.Add(netip.MustParseAddr("2001:db8::1%eth0"), 0) // the zone is dropped
	b.Delete(netip.MustParseAddr("203.0.113.9"))      // not banned: no error
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	diff(t, "requests", []string{
		"add 192.0.2.1/32 type=7 proto=80 table=254 scope=0",
		"add 192.0.2.2/32 type=7 proto=80 table=254 scope=0",
		"del 203.0.113.9/32 type=0 proto=80 table=254 scope=255",
		"add 2001:db8::1/128 type=7 proto=80 table=254 scope=0",
		"add 2001:db8::2/128 type=7 proto=80 table=254 scope=0",
	}, f.take())
	diff(t, "List", entries(a1, a2, b1, b2), list(t, b))
	diff(t, "List requests", []string{"list family=0 proto=80 table=254 mask=0x402"}, f.take())

	b.Delete(a2)
	b.Delete(b1)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	diff(t, "List after Delete", entries(a1, b2), list(t, b))
}

// TestAddAgain checks that re-adding a ban is a no-op, and that a ban made
// under another Type is replaced by one of the configured Type.
func TestAddAgain(t *testing.T) {
	f := newFake()
	b := mustNew(t, Options{}, f)
	b.Add(a1, 0)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	f.take()
	b.Add(a1, 0)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	diff(t, "requests re-adding", []string{
		"add 192.0.2.1/32 type=7 proto=80 table=254 scope=0",
		"list family=0 proto=80 table=254 mask=0x402",
	}, f.take())

	bh := mustNew(t, Options{Type: Blackhole}, f)
	bh.Add(a1, 0)
	if err := bh.Commit(); err != nil {
		t.Fatal(err)
	}
	diff(t, "requests changing the type", []string{
		"add 192.0.2.1/32 type=6 proto=80 table=254 scope=0",
		"list family=0 proto=80 table=254 mask=0x402",
		"replace 192.0.2.1/32 type=6 proto=80 table=254 scope=0",
	}, f.take())
	if r := f.routes[key(&netlink.Route{Table: mainTable, Dst: hostNet("192.0.2.1")})]; len(f.routes) != 1 || r.Type != 6 {
		t.Errorf("routes = %v; want one blackhole route", f.routes)
	}
	// Delete carries no type, so a ban of any type goes.
	b.Delete(a1)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	diff(t, "List after Delete", entries(), list(t, b))
}

// TestNotOurs checks that a route the administrator made to a banned
// address is neither replaced by Add nor removed by Delete, nor listed.
func TestNotOurs(t *testing.T) {
	foreign := netlink.Route{Dst: hostNet("192.0.2.1"), Gw: net.ParseIP("198.51.100.1"), Protocol: 3 /* boot */, Table: mainTable}
	f := newFake(foreign)
	b := mustNew(t, Options{}, f)
	b.Add(a1, 0)
	b.Add(a2, 0)
	err := b.Commit()
	if !errors.Is(err, ErrNotOurs) || !strings.Contains(err.Error(), "route: 1 of 2 changes failed: add 192.0.2.1: ") {
		t.Errorf("Commit = %v; want ErrNotOurs for 192.0.2.1", err)
	}
	diff(t, "List", entries(a2), list(t, b))
	b.Delete(a1)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if r, ok := f.routes[key(&foreign)]; len(f.routes) != 2 || !ok || r.Protocol != 3 {
		t.Errorf("routes = %v; want the foreign route kept", f.routes)
	}
}

// TestListOnlyHostRoutes checks that List skips routes of our protocol
// that are not host routes (none of ours) and routes of other tables.
func TestListOnlyHostRoutes(t *testing.T) {
	f := newFake(
		netlink.Route{Dst: hostNet("192.0.2.1"), Protocol: Protocol, Table: mainTable, Type: 7},
		netlink.Route{Dst: &net.IPNet{IP: net.ParseIP("192.0.2.0").To4(), Mask: net.CIDRMask(24, 32)}, Protocol: Protocol, Table: mainTable},
		netlink.Route{Dst: hostNet("192.0.2.2"), Protocol: Protocol, Table: 100, Type: 7},
		netlink.Route{Dst: hostNet("2001:db8::1"), Protocol: Protocol, Table: mainTable, Type: 7},
		netlink.Route{Dst: hostNet("2001:db8::2"), Protocol: 4, Table: mainTable, Type: 7},
	)
	diff(t, "main table", entries(a1, b1), list(t, mustNew(t, Options{}, f)))
	diff(t, "table 100", entries(a2), list(t, mustNew(t, Options{Table: 100}, f)))
}

// TestDumpInterrupted checks that an interrupted dump is retried, and
// reported when it keeps failing.
func TestDumpInterrupted(t *testing.T) {
	f := newFake(netlink.Route{Dst: hostNet("192.0.2.1"), Protocol: Protocol, Table: mainTable})
	b := mustNew(t, Options{}, f)
	f.interrupted = maxDumpTries - 1
	diff(t, "List", entries(a1), list(t, b))
	f.interrupted = maxDumpTries
	if _, err := b.List(); !errors.Is(err, errDumpInterrupted) {
		t.Errorf("List = %v; want ErrDumpInterrupted after %d tries", err, maxDumpTries)
	}
}

// TestCommitErrorsBounded checks that a batch of failures gives one short
// error naming the first few, and that the queue is emptied.
func TestCommitErrorsBounded(t *testing.T) {
	f := newFake()
	f.failAdd = syscall.EPERM
	b := mustNew(t, Options{}, f)
	for i := range 10 {
		b.Add(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 0)
	}
	err := b.Commit()
	if !errors.Is(err, syscall.EPERM) {
		t.Fatalf("Commit = %v; want EPERM", err)
	}
	for _, s := range []string{"route: 10 of 10 changes failed", "add 192.0.2.0: operation not permitted", "add 192.0.2.4", "and 5 more"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	if strings.Contains(err.Error(), "192.0.2.5") {
		t.Errorf("error %q names more than %d addresses", err, maxErrors)
	}
	f.take()
	if err := b.Commit(); err != nil || len(f.take()) != 0 {
		t.Errorf("second Commit = %v with requests; want an empty queue", err)
	}
}

func TestInvalidAddress(t *testing.T) {
	f := newFake()
	b := mustNew(t, Options{}, f)
	b.Add(netip.Addr{}, 0)
	b.Delete(netip.Addr{})
	b.Add(a1, 0)
	if err := b.Commit(); err == nil || !strings.Contains(err.Error(), "2 invalid addresses") {
		t.Errorf("Commit = %v; want the invalid addresses reported", err)
	}
	diff(t, "List", entries(a1), list(t, b))
}

func TestOptions(t *testing.T) {
	for _, opts := range []Options{{Type: Type(9)}, {Type: -1}, {Table: -2}} {
		if _, err := newBlocker(opts, newFake()); err == nil {
			t.Errorf("newBlocker(%+v) succeeded", opts)
		}
	}
	f := newFake()
	b := mustNew(t, Options{Type: Prohibit, Table: 100}, f)
	b.Add(a1, 0)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	diff(t, "requests", []string{"add 192.0.2.1/32 type=8 proto=80 table=100 scope=0"}, f.take())
}

func TestParseType(t *testing.T) {
	for _, ty := range []Type{Unreachable, Blackhole, Prohibit} {
		got, err := ParseType(ty.String())
		if err != nil || got != ty {
			t.Errorf("ParseType(%q) = %v, %v", ty.String(), got, err)
		}
	}
	if _, err := ParseType("reject"); err == nil {
		t.Error(`ParseType("reject") succeeded`)
	}
}

func TestClose(t *testing.T) {
	f := newFake()
	b := mustNew(t, Options{}, f)
	b.Add(a1, 0)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b.Close()
	if f.closed != 1 {
		t.Errorf("handle closed %d times; want 1", f.closed)
	}
	if len(f.routes) != 1 {
		t.Errorf("Close removed routes: %v", f.routes)
	}
	b.Add(a2, 0)
	if err := b.Commit(); err == nil {
		t.Error("Commit after Close succeeded")
	}
	if _, err := b.List(); err == nil {
		t.Error("List after Close succeeded")
	}
}

// nopHandle accepts every request and holds nothing.
type nopHandle struct{}

func (nopHandle) RouteAdd(*netlink.Route) error     { return nil }
func (nopHandle) RouteReplace(*netlink.Route) error { return nil }
func (nopHandle) RouteDel(*netlink.Route) error     { return nil }
func (nopHandle) Close()                            {}
func (nopHandle) RouteListFiltered(int, *netlink.Route, uint64) ([]netlink.Route, error) {
	return nil, nil
}

// BenchmarkCommitNoKernel measures the blocker's own work for a Commit of
// 10 000 bans, the kernel left out.
func BenchmarkCommitNoKernel(b *testing.B) {
	addrs := manyAddrs(10000)
	for b.Loop() {
		bl, _ := newBlocker(Options{}, nopHandle{})
		for _, a := range addrs {
			bl.Add(a, 0)
		}
		if err := bl.Commit(); err != nil {
			b.Fatal(err)
		}
	}
}

// manyAddrs returns n distinct IPv4 addresses in 10.0.0.0/8.
func manyAddrs(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	return out
}
