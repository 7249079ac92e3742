package iptables

import (
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/enforce/block"
)

// backends are the iptables flavours to test against the kernel: the
// default (iptables-nft on Debian 12) and the legacy one, each when
// installed.
var backends = []struct{ name, v4, v6 string }{
	{"default", "iptables", "ip6tables"},
	{"legacy", "iptables-legacy", "ip6tables-legacy"},
}

// openIn opens a blocker whose commands run in namespace ns, through
// `ip netns exec`, the programs themselves unchanged.
func openIn(tb testing.TB, ns, v4, v6 string) *Blocker {
	tb.Helper()
	for _, p := range []string{v4, v6, v4 + "-restore", v6 + "-restore"} {
		if _, err := (execRunner{}).lookPath(p); err != nil {
			requireTool(tb, p)
		}
	}
	b, err := open(Options{IPv4: v4, IPv6: v6}, execRunner{prefix: []string{"ip", "netns", "exec", ns}, timeout: time.Minute})
	if err != nil {
		tb.Fatalf("open in %s: %v", ns, err)
	}
	return b
}

// requireTool skips (fails under CI) when a program is missing.
func requireTool(tb testing.TB, name string) {
	tb.Helper()
	if os.Getenv("CI") != "" {
		tb.Fatalf("CI is set but %s is missing: apt-get install iptables", name)
	}
	tb.Skipf("needs %s: apt-get install iptables", name)
}

func commit(tb testing.TB, b *Blocker) {
	tb.Helper()
	if err := b.Commit(); err != nil {
		tb.Fatal(err)
	}
}

// jumps counts INPUT's jumps to PORTSENTRY in ns.
func jumps(t *testing.T, ns, prog string) int {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, prog, "-w", "-S", "INPUT").Output()
	if err != nil {
		t.Fatalf("%s -S INPUT: %v", prog, err)
	}
	return strings.Count(string(out), "-A INPUT -j PORTSENTRY\n")
}

// TestKernel runs the blocker against the real iptables programs and
// kernel, in a fresh namespace: bans of both families, List, Delete,
// idempotent setup, and 10 000 bans in one Commit.
func TestKernel(t *testing.T) {
	requireNetns(t)
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ns := newNS(t, "k")
			b := openIn(t, ns, be.v4, be.v6)
			bans := []netip.Addr{a1, a2, a3, b1, b2}
			for _, a := range bans {
				b.Add(a, time.Hour)
			}
			commit(t, b)
			got, err := b.List()
			if err != nil {
				t.Fatal(err)
			}
			diff(t, "List", entries(bans...), got)

			// A second open (a daemon restart) adds no second jump and
			// keeps the bans.
			b = openIn(t, ns, be.v4, be.v6)
			for _, prog := range []string{be.v4, be.v6} {
				if n := jumps(t, ns, prog); n != 1 {
					t.Errorf("%s: %d jumps from INPUT; want 1", prog, n)
				}
			}
			b.Add(a1, 0) // again: no duplicate
			b.Delete(a2)
			b.Delete(b1)
			b.Delete(netip.MustParseAddr("203.0.113.1")) // never banned
			commit(t, b)
			got, err = b.List()
			if err != nil {
				t.Fatal(err)
			}
			diff(t, "List after Delete", entries(a1, a3, b2), got)

			many := manyAddrs(10000)
			for _, a := range many {
				b.Add(a, 0)
			}
			start := time.Now()
			commit(t, b)
			t.Logf("%s: Commit of %d bans: %v", be.name, len(many), time.Since(start))
			got, err = b.List()
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(many)+3 {
				t.Errorf("List after 10 000 bans: %d entries; want %d", len(got), len(many)+3)
			}
			for _, a := range append(many, a1, a3, b2) {
				b.Delete(a)
			}
			commit(t, b)
			if got, err = b.List(); err != nil || len(got) != 0 {
				t.Errorf("List after deleting all = %d entries, %v; want none", len(got), err)
			}
		})
	}
}

// TestKernelRepairs removes the jump as a firewall reload would, and
// checks that the next Commit puts it back.
func TestKernelRepairs(t *testing.T) {
	requireNetns(t)
	ns := newNS(t, "r")
	b := openIn(t, ns, "iptables", "ip6tables")
	if out, err := exec.Command("ip", "netns", "exec", ns, "iptables", "-w", "-F", "INPUT").CombinedOutput(); err != nil {
		t.Fatalf("iptables -F INPUT: %v: %s", err, out)
	}
	b.Add(a1, 0)
	commit(t, b)
	if n := jumps(t, ns, "iptables"); n != 1 {
		t.Errorf("%d jumps from INPUT after Commit; want 1", n)
	}
}

// TestKernelTraffic checks that a ban really keeps a source out: from a
// second namespace over a veth pair, the banned address of each family
// can no longer connect to a listener in the first, the other can, and
// after Delete the banned one can again.
func TestKernelTraffic(t *testing.T) {
	requireNetns(t)
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			l := newLab(t)
			port := listen(t, l.host)
			b := openIn(t, l.host, be.v4, be.v6)
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
		})
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

// manyAddrs returns n distinct IPv4 addresses in 10.0.0.0/8.
func manyAddrs(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	return out
}

// BenchmarkKernelCommit10000 measures one Commit of 10 000 IPv4 bans, and
// of their 10 000 deletions, with the real programs in a fresh namespace.
func BenchmarkKernelCommit10000(b *testing.B) {
	requireNetns(b)
	many := manyAddrs(10000)
	for _, be := range backends {
		for _, op := range []string{"add", "delete"} {
			b.Run(be.name+"/"+op, func(b *testing.B) {
				ns := newNS(b, "b")
				bl := openIn(b, ns, be.v4, be.v6)
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
