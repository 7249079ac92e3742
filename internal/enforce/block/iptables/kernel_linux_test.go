package iptables

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/enforce/block"
	"github.com/portsentry-go/portsentry/internal/enforce/block/blocktest"
	"github.com/portsentry-go/portsentry/internal/netns"
	"github.com/portsentry-go/portsentry/internal/netns/netnstest"
)

// The real-kernel tests run only in namespaces they create and delete
// (netnstest): the host's rules, routes and links are never touched.
var lab = netnstest.Lab{Prefix: "psipt-"}

func TestMain(m *testing.M) { os.Exit(lab.Main(m)) }

// backends are the iptables flavours to test against the kernel: the
// default (iptables-nft on Debian 12) and the legacy one.
var backends = []struct{ name, v4, v6 string }{
	{"default", "iptables", "ip6tables"},
	{"legacy", "iptables-legacy", "ip6tables-legacy"},
}

// openIn opens a blocker whose commands run in namespace ns, through
// `ip netns exec`, the programs themselves unchanged.
func openIn(tb testing.TB, ns *netns.NS, v4, v6 string) *Blocker {
	tb.Helper()
	for _, p := range []string{v4, v6, v4 + "-restore", v6 + "-restore"} {
		if _, err := (execRunner{}).lookPath(p); err != nil {
			netnstest.SkipOrFail(tb, "needs "+p+": apt-get install iptables")
		}
	}
	b, err := open(Options{IPv4: v4, IPv6: v6}, execRunner{prefix: ns.Argv(), timeout: time.Minute})
	if err != nil {
		tb.Fatalf("open in %s: %v", ns, err)
	}
	return b
}

// suite is the blocker conformance suite for one backend.
func suite(v4, v6 string) blocktest.Suite {
	return blocktest.Suite{
		Lab:  &lab,
		Open: func(tb testing.TB, ns *netns.NS) block.Blocker { return openIn(tb, ns, v4, v6) },
	}
}

// TestKernel runs the blocker conformance suite (blocktest) against the
// real iptables programs and kernel, with each backend.
func TestKernel(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) { blocktest.Run(t, suite(be.v4, be.v6)) })
	}
}

// jumps counts hook's jumps to PORTSENTRY in ns.
func jumps(t *testing.T, ns *netns.NS, prog, hook string) int {
	t.Helper()
	out := netnstest.Output(t, ns.Command(prog, "-w", "-S", hook))
	return strings.Count(out, "-A "+hook+" -j PORTSENTRY\n")
}

// TestKernelSetUpOnce: a second open (a daemon restart) adds no second
// jump from INPUT or FORWARD.
func TestKernelSetUpOnce(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ns := lab.New(t, "o")
			openIn(t, ns, be.v4, be.v6)
			openIn(t, ns, be.v4, be.v6)
			for _, prog := range []string{be.v4, be.v6} {
				for _, hook := range []string{"INPUT", "FORWARD"} {
					if n := jumps(t, ns, prog, hook); n != 1 {
						t.Errorf("%s: %d jumps from %s; want 1", prog, n, hook)
					}
				}
			}
		})
	}
}

// TestKernelRepairs removes the jump as a firewall reload would, and
// checks that the next Commit puts it back.
func TestKernelRepairs(t *testing.T) {
	ns := lab.New(t, "r")
	b := openIn(t, ns, "iptables", "ip6tables")
	netnstest.Output(t, ns.Command("iptables", "-w", "-F", "INPUT"))
	netnstest.Output(t, ns.Command("iptables", "-w", "-F", "FORWARD"))
	b.Add(a1, 0)
	blocktest.Commit(t, b)
	for _, hook := range []string{"INPUT", "FORWARD"} {
		if n := jumps(t, ns, "iptables", hook); n != 1 {
			t.Errorf("%d jumps from %s after Commit; want 1", n, hook)
		}
	}
}

// TestNewOnHost checks New's detection without changing anything: with
// the programs missing it reports block.ErrUnavailable. (New with working
// programs would set up the host's own chain, so it is not run here.)
func TestNewOnHost(t *testing.T) {
	_, err := New(Options{IPv4: "/nonexistent/iptables", IPv6: "/nonexistent/ip6tables"})
	if !errors.Is(err, block.ErrUnavailable) {
		t.Errorf("New with a missing program = %v; want block.ErrUnavailable", err)
	}
}

// BenchmarkKernelCommit10000 measures one Commit of 10 000 IPv4 bans, and
// of their 10 000 deletions, with the real programs in a fresh namespace.
func BenchmarkKernelCommit10000(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) { blocktest.Benchmark(b, suite(be.v4, be.v6)) })
	}
}
