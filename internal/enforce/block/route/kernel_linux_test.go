package route

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/portsentry-go/portsentry/internal/enforce/block"
	"github.com/portsentry-go/portsentry/internal/enforce/block/blocktest"
	"github.com/portsentry-go/portsentry/internal/netns"
	"github.com/portsentry-go/portsentry/internal/netns/netnstest"
)

// The real-kernel tests run only in namespaces they create and delete
// (netnstest): the host's rules, routes and links are never touched.
var lab = netnstest.Lab{Prefix: "psrt-"}

func TestMain(m *testing.M) { os.Exit(lab.Main(m)) }

// openIn opens a blocker on a netlink socket of namespace ns: the routes
// it adds exist only there.
func openIn(tb testing.TB, ns *netns.NS, opts Options) *Blocker {
	tb.Helper()
	h, err := netlink.NewHandleAt(vnetns.NsHandle(ns.Fd()), unix.NETLINK_ROUTE)
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

var suite = blocktest.Suite{
	Lab:  &lab,
	Open: func(tb testing.TB, ns *netns.NS) block.Blocker { return openIn(tb, ns, Options{}) },
}

// TestKernel runs the blocker conformance suite (blocktest) against the
// kernel's routing table.
func TestKernel(t *testing.T) { blocktest.Run(t, suite) }

// ipRoutes is `ip route show` (or -6) of the lines with proto 80, in ns.
func ipRoutes(t *testing.T, ns *netns.NS, family string) []string {
	t.Helper()
	out := netnstest.Output(t, ns.Command("ip", family, "route", "show", "table", "main"))
	var ours []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.Contains(l, "proto 80") {
			ours = append(ours, strings.Join(strings.Fields(l), " "))
		}
	}
	return ours
}

// TestKernelRoutes checks the routes themselves: as iproute2 shows them,
// a type change (a changed configuration) replacing a ban's type and
// deleted by a blocker of the other type, and an administrator's route to
// an address neither replaced nor deleted.
func TestKernelRoutes(t *testing.T) {
	ns := lab.New(t, "k")
	b := openIn(t, ns, Options{})
	for _, a := range []netip.Addr{a1, a2, b1, b2} {
		b.Add(a, time.Hour)
	}
	blocktest.Commit(t, b)
	diff(t, "ip route", []string{"unreachable 192.0.2.1 proto 80", "unreachable 192.0.2.2 proto 80"}, ipRoutes(t, ns, "-4"))
	// `ip -6 route` adds "dev lo" and the metric to reject routes.
	for _, l := range ipRoutes(t, ns, "-6") {
		if !strings.HasPrefix(l, "unreachable 2001:db8::") {
			t.Errorf("ip -6 route: %q; want an unreachable route", l)
		}
	}

	bh := openIn(t, ns, Options{Type: Blackhole})
	bh.Add(a2, 0)
	bh.Add(b2, 0)
	blocktest.Commit(t, bh)
	diff(t, "ip route after a type change", []string{"unreachable 192.0.2.1 proto 80", "blackhole 192.0.2.2 proto 80"}, ipRoutes(t, ns, "-4"))

	for _, foreign := range []string{"198.51.100.7", "2001:db8::77"} {
		netnstest.Output(t, ns.Command("ip", "route", "add", "prohibit", foreign))
		b.Add(netip.MustParseAddr(foreign), 0)
		if err := b.Commit(); !errors.Is(err, ErrNotOurs) {
			t.Errorf("Commit over a foreign route to %s = %v; want ErrNotOurs", foreign, err)
		}
		b.Delete(netip.MustParseAddr(foreign))
		blocktest.Commit(t, b)
		fam := "-4"
		if strings.Contains(foreign, ":") {
			fam = "-6"
		}
		if out := netnstest.Output(t, ns.Command("ip", fam, "route", "show", foreign)); !strings.Contains(out, "prohibit") {
			t.Errorf("the foreign route to %s is gone: %q", foreign, out)
		}
	}

	b.Delete(a2) // a blackhole ban, deleted by an unreachable blocker
	b.Delete(b1)
	blocktest.Commit(t, b)
	diff(t, "List after Delete", entries(a1, b2), list(t, b))
}

// TestNewChecksOptions opens a real netlink socket (reading nothing,
// changing nothing) and checks that bad options close it again.
func TestNewChecksOptions(t *testing.T) {
	netnstest.Require(t) // root: New needs CAP_NET_ADMIN
	if _, err := New(Options{Type: Type(42)}); err == nil {
		t.Error("New with an invalid type succeeded")
	}
	if err := canAdmin(); err != nil {
		t.Errorf("canAdmin as root: %v", err)
	}
}

// BenchmarkKernelCommit10000 measures one Commit of 10 000 IPv4 route
// bans, and of their deletions, in a fresh namespace.
func BenchmarkKernelCommit10000(b *testing.B) { blocktest.Benchmark(b, suite) }

// BenchmarkKernelList measures List with 10 000 bans in the table.
func BenchmarkKernelList(b *testing.B) {
	bl := openIn(b, lab.New(b, "l"), Options{})
	for _, a := range blocktest.ManyAddrs(10000) {
		bl.Add(a, 0)
	}
	blocktest.Commit(b, bl)
	for b.Loop() {
		if _, err := bl.List(); err != nil {
			b.Fatal(err)
		}
	}
}
