package route

import (
	"errors"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// openIn opens a blocker on a netlink socket of namespace ns: the routes
// it adds exist only there.
func openIn(tb testing.TB, ns string, opts Options) *Blocker {
	tb.Helper()
	nsh, err := netns.GetFromName(ns)
	if err != nil {
		tb.Fatalf("namespace %s: %v", ns, err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh, unix.NETLINK_ROUTE)
	if err != nil {
		tb.Fatalf("netlink handle in %s: %v", ns, err)
	}
	b, err := newBlocker(opts, h)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { b.Close() })
	return b
}

func commit(tb testing.TB, b *Blocker) {
	tb.Helper()
	if err := b.Commit(); err != nil {
		tb.Fatal(err)
	}
}

// ipRoutes is `ip route show` (or -6) of the lines with proto 80, in ns.
func ipRoutes(t *testing.T, ns string, family string) []string {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns, family, "route", "show", "table", "main").Output()
	if err != nil {
		t.Fatal(err)
	}
	var ours []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(l, "proto 80") {
			ours = append(ours, strings.Join(strings.Fields(l), " "))
		}
	}
	return ours
}

// TestKernel runs the blocker against the kernel's routing table in a
// fresh namespace: bans of both families, as iproute2 shows them, List,
// a type change, Delete, a foreign route left alone, and 10 000 routes.
func TestKernel(t *testing.T) {
	requireNetns(t)
	ns := newNS(t, "k")
	b := openIn(t, ns, Options{})
	for _, a := range []netip.Addr{a1, a2, b1, b2} {
		b.Add(a, time.Hour)
	}
	commit(t, b)
	diff(t, "List", entries(a1, a2, b1, b2), list(t, b))
	diff(t, "ip route", []string{"unreachable 192.0.2.1 proto 80", "unreachable 192.0.2.2 proto 80"}, ipRoutes(t, ns, "-4"))
	// `ip -6 route` adds "dev lo" and the metric to reject routes.
	for _, l := range ipRoutes(t, ns, "-6") {
		if !strings.HasPrefix(l, "unreachable 2001:db8::") {
			t.Errorf("ip -6 route: %q; want an unreachable route", l)
		}
	}

	// Again, and under another type (a changed configuration).
	b.Add(a1, 0)
	commit(t, b)
	bh := openIn(t, ns, Options{Type: Blackhole})
	bh.Add(a2, 0)
	bh.Add(b2, 0)
	commit(t, bh)
	diff(t, "ip route after a type change", []string{"unreachable 192.0.2.1 proto 80", "blackhole 192.0.2.2 proto 80"}, ipRoutes(t, ns, "-4"))

	// An administrator's route to an address is neither replaced nor
	// deleted.
	for _, foreign := range []string{"198.51.100.7", "2001:db8::77"} {
		mustIP(t, "-n", ns, "route", "add", "prohibit", foreign)
		b.Add(netip.MustParseAddr(foreign), 0)
		if err := b.Commit(); !errors.Is(err, ErrNotOurs) {
			t.Errorf("Commit over a foreign route to %s = %v; want ErrNotOurs", foreign, err)
		}
		b.Delete(netip.MustParseAddr(foreign))
		commit(t, b)
		fam := "-4"
		if strings.Contains(foreign, ":") {
			fam = "-6"
		}
		if out, _ := exec.Command("ip", "-n", ns, fam, "route", "show", foreign).Output(); !strings.Contains(string(out), "prohibit") {
			t.Errorf("the foreign route to %s is gone: %q", foreign, out)
		}
	}

	b.Delete(a2) // a blackhole ban, deleted by an unreachable blocker
	b.Delete(b1)
	b.Delete(netip.MustParseAddr("203.0.113.1")) // never banned
	b.Delete(netip.MustParseAddr("2001:db8::99"))
	commit(t, b)
	diff(t, "List after Delete", entries(a1, b2), list(t, b))

	many := manyAddrs(10000)
	for _, a := range many {
		b.Add(a, 0)
	}
	start := time.Now()
	commit(t, b)
	t.Logf("Commit of %d routes: %v", len(many), time.Since(start))
	if got := list(t, b); len(got) != len(many)+2 {
		t.Errorf("List after 10 000 bans: %d entries; want %d", len(got), len(many)+2)
	}
	for _, a := range append(many, a1, b2) {
		b.Delete(a)
	}
	commit(t, b)
	diff(t, "List after deleting all", entries(), list(t, b))
}

// TestKernelTraffic checks what a route ban does to traffic: from a second
// namespace over a veth pair, the banned address of each family can no
// longer connect to a listener in the first (its SYN arrives, the SYN-ACK
// has no route back), the other can, and after Delete the banned one can
// again.
func TestKernelTraffic(t *testing.T) {
	requireNetns(t)
	l := newLab(t)
	port := listen(t, l.host)
	b := openIn(t, l.host, Options{})
	for _, fam := range []struct {
		dst  netip.Addr
		srcs []netip.Addr
	}{{hostV4, peerV4}, {hostV6, peerV6}} {
		dst := netip.AddrPortFrom(fam.dst, uint16(port))
		banned, other := fam.srcs[0], fam.srcs[1]
		if err := dial(t, l.peer, banned, dst, 5*time.Second); err != nil {
			t.Fatalf("%v → %v before the ban: %v", banned, dst, err)
		}
		b.Add(banned, 0)
		commit(t, b)
		if err := dial(t, l.peer, banned, dst, time.Second); err == nil {
			t.Errorf("%v → %v connected while banned", banned, dst)
		}
		if err := dial(t, l.peer, other, dst, 5*time.Second); err != nil {
			t.Errorf("%v → %v while %v is banned: %v", other, dst, banned, err)
		}
		b.Delete(banned)
		commit(t, b)
		if err := dial(t, l.peer, banned, dst, 5*time.Second); err != nil {
			t.Errorf("%v → %v after Delete: %v", banned, dst, err)
		}
	}
}

// TestNewChecksOptions opens a real netlink socket (reading nothing,
// changing nothing) and checks that bad options close it again.
func TestNewChecksOptions(t *testing.T) {
	requireNetns(t) // root: New needs CAP_NET_ADMIN
	if _, err := New(Options{Type: Type(42)}); err == nil {
		t.Error("New with an invalid type succeeded")
	}
	if err := canAdmin(); err != nil {
		t.Errorf("canAdmin as root: %v", err)
	}
}

// BenchmarkKernelCommit10000 measures one Commit of 10 000 IPv4 route
// bans, and of their deletions, in a fresh namespace.
func BenchmarkKernelCommit10000(b *testing.B) {
	requireNetns(b)
	many := manyAddrs(10000)
	for _, op := range []string{"add", "delete"} {
		b.Run(op, func(b *testing.B) {
			bl := openIn(b, newNS(b, "b"), Options{})
			for range b.N {
				b.StopTimer()
				if op == "delete" {
					addAll(b, bl, many, true)
				}
				b.StartTimer()
				addAll(b, bl, many, op == "add")
				b.StopTimer()
				if op == "add" {
					addAll(b, bl, many, false)
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkKernelList measures List with 10 000 bans in the table.
func BenchmarkKernelList(b *testing.B) {
	requireNetns(b)
	bl := openIn(b, newNS(b, "l"), Options{})
	addAll(b, bl, manyAddrs(10000), true)
	for b.Loop() {
		if _, err := bl.List(); err != nil {
			b.Fatal(err)
		}
	}
}

func addAll(b *testing.B, bl *Blocker, addrs []netip.Addr, add bool) {
	for _, a := range addrs {
		if add {
			bl.Add(a, 0)
		} else {
			bl.Delete(a)
		}
	}
	commit(b, bl)
}
