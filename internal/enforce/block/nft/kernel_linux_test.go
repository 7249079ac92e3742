package nft

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portsentry-go/portsentry/internal/enforce/block/blocktest"
	"github.com/portsentry-go/portsentry/internal/portset"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// Real-kernel tests: root, a fresh network namespace each (see
// netns_linux_test.go); they skip with the remedy elsewhere and fail under
// CI.

// checkGolden compares got with testdata/name, or rewrites it with -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-want +got; -update rewrites it):\n%s", path, diff)
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func ports(t testing.TB, s string) portset.Set {
	t.Helper()
	p, err := portset.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// stdTrap is the trap the ruleset tests install.
func stdTrap(t testing.TB) *Trap {
	return &Trap{TCP: ports(t, "1-1023,65000-65535"), UDP: ports(t, "1-1023"), TTL: time.Hour, Peers: time.Hour, Grace: time.Hour}
}

var stdAllowed = []netip.Prefix{
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("255.255.255.255/32"),
}

// TestKernelRuleset checks what `nft list table` prints after New,
// SetAllowed and SetTrap: the kernel understood every message as the nft
// tool would have written it.
func TestKernelRuleset(t *testing.T) {
	n := newNetns(t)
	b := n.blocker(t, Options{})
	if err := b.SetAllowed(stdAllowed); err != nil {
		t.Fatal(err)
	}
	if err := b.SetTrap(stdTrap(t)); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "ruleset.list", n.nft(t, "list", "table", "inet", "portsentry"))
}

// bytecode returns the rules of `nft --debug=netlink list table` as the
// kernel holds them (expressions, registers, data), without rule handles,
// which differ between two namespaces.
func bytecode(t *testing.T, n *testNS) string {
	out := n.nft(t, "--debug=netlink", "list", "table", "inet", "portsentry")
	header := regexp.MustCompile(`^(inet \S+ \S+)( \d+)+$`)
	var b strings.Builder
	for line := range strings.Lines(out) {
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(line, "  ["):
			b.WriteString(line + "\n")
		case header.MatchString(line):
			b.WriteString(header.ReplaceAllString(line, "$1") + "\n")
		}
	}
	return b.String()
}

// TestKernelSameAsNft loads testdata/ruleset.nft with the nft tool in one
// namespace, sets the blocker up in another, and compares the rule
// bytecode the kernel holds in each: every rule the blocker builds is the
// nft command written beside it in rules_linux.go.
func TestKernelSameAsNft(t *testing.T) {
	ref := newNetns(t)
	ref.nft(t, "-f", "testdata/ruleset.nft")
	n := newNetns(t)
	b := n.blocker(t, Options{})
	if err := b.SetAllowed(stdAllowed); err != nil {
		t.Fatal(err)
	}
	if err := b.SetTrap(stdTrap(t)); err != nil {
		t.Fatal(err)
	}
	want, got := bytecode(t, ref), bytecode(t, n)
	if !strings.Contains(want, "dynset add") {
		t.Fatalf("nft --debug=netlink printed no rule bytecode:\n%s", want)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("bytecode differs from testdata/ruleset.nft loaded by nft (-nft +blocker):\n%s", diff)
	}
	// The sets too, as nft prints them. Not the hop sets: nft's "typeof"
	// keeps the key's expressions in user data that the library cannot
	// write, so nft prints the blocker's as "type ipv4_addr . integer";
	// the kernel's key, what the rules use, is the same (the bytecode
	// above, and TestKernelForgedProbe).
	for _, s := range []string{setBan4, setBan6, setAllow4, setAllow6, setTrapTCP, setTrapUDP, setTrapIface, setPeer4, setPeer6, setServedTCP, setServedUDP, setLink6} {
		w := ref.nft(t, "list", "set", "inet", "portsentry", s)
		g := n.nft(t, "list", "set", "inet", "portsentry", s)
		if diff := cmp.Diff(w, g); diff != "" {
			t.Errorf("set %s differs (-nft +blocker):\n%s", s, diff)
		}
	}
}

// TestKernelNewTwice: a second New (a daemon restart) keeps the bans and
// the never-ban list, rebuilds the rules without duplicating them, and
// turns the trap off until SetTrap.
func TestKernelNewTwice(t *testing.T) {
	n := newNetns(t)
	b := n.blocker(t, Options{})
	if err := b.SetAllowed(stdAllowed); err != nil {
		t.Fatal(err)
	}
	if err := b.SetTrap(stdTrap(t)); err != nil {
		t.Fatal(err)
	}
	b.Add(mustAddr("198.51.100.7"), time.Hour)
	b.Add(mustAddr("2001:db9::7"), 0)
	blocktest.Commit(t, b)
	b.Close()

	b2 := n.blocker(t, Options{})
	got := blocktest.List(t, b2)
	if len(got) != 2 || got[mustAddr("2001:db9::7")] != 0 || got[mustAddr("198.51.100.7")] <= 0 {
		t.Errorf("bans after the second New: %v", got)
	}
	list := n.nft(t, "list", "table", "inet", "portsentry")
	if c := strings.Count(list, "jump trap"); c != 1 {
		t.Errorf("%d jump rules after two New, want 1:\n%s", c, list)
	}
	if strings.Contains(list, "dport") || strings.Contains(list, "1-1023") {
		t.Errorf("the trap survived New:\n%s", list)
	}
	if !strings.Contains(list, "192.0.2.0/24") {
		t.Errorf("the never-ban list did not survive New:\n%s", list)
	}
	if strings.Contains(list, probeSet) {
		t.Errorf("New left its probe set behind:\n%s", list)
	}
	// A second blocker with another table lives beside the first.
	other := n.blocker(t, Options{Table: "other"})
	if l := blocktest.List(t, other); len(l) != 0 {
		t.Errorf("table other: %v", l)
	}
	// A restart with another priority moves the chain.
	n.blocker(t, Options{Priority: -5})
	if in := n.nft(t, "list", "chain", "inet", "portsentry", "input"); !strings.Contains(in, "priority filter - 5;") || strings.Count(in, "jump trap") != 1 {
		t.Errorf("after New with priority -5:\n%s", in)
	}
	if got := blocktest.List(t, b2); len(got) != 2 {
		t.Errorf("bans after the priority change: %v", got)
	}
	if !b2.updates {
		t.Log("this kernel does not replace timeouts on re-add: Commit uses three operations per ban")
	}
}

// TestKernelExpiry: the kernel removes an element when its TTL runs out,
// with no help from the daemon; a permanent one stays.
func TestKernelExpiry(t *testing.T) {
	n := newNetns(t)
	b := n.blocker(t, Options{})
	short, perm := mustAddr("198.51.100.1"), mustAddr("2001:db9::1")
	b.Add(short, 2*time.Second)
	b.Add(perm, 0)
	blocktest.Commit(t, b)
	if got := blocktest.List(t, b); len(got) != 2 {
		t.Fatalf("listed %v", got)
	}
	deadline := time.Now().Add(6 * time.Second)
	for {
		got := blocktest.List(t, b)
		if _, ok := got[short]; !ok {
			if _, ok := got[perm]; !ok {
				t.Fatal("the permanent ban expired too")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a 2 s ban still listed after 6 s: %v", got)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestKernelAllowed: an allowed address is never added, and Commit says
// nothing about it; replacing the list frees the old prefixes.
func TestKernelAllowed(t *testing.T) {
	n := newNetns(t)
	b := n.blocker(t, Options{})
	if err := b.SetAllowed([]netip.Prefix{
		netip.MustParsePrefix("198.51.100.0/25"),
		netip.MustParsePrefix("198.51.100.64/26"), // inside the first: merged
		netip.MustParsePrefix("::ffff:203.0.113.0/120"),
		netip.MustParsePrefix("2001:db9::/64"),
	}); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"198.51.100.1", "198.51.100.127", "203.0.113.9", "::ffff:203.0.113.10", "2001:db9::1", "198.51.100.128", "2001:db9:0:1::1"} {
		b.Add(mustAddr(a), time.Hour)
	}
	blocktest.Commit(t, b)
	got := blocktest.List(t, b)
	want := map[netip.Addr]bool{mustAddr("198.51.100.128"): true, mustAddr("2001:db9:0:1::1"): true}
	if len(got) != len(want) {
		t.Errorf("listed %v, want only %v", got, want)
	}
	for a := range want {
		if _, ok := got[a]; !ok {
			t.Errorf("%v not banned", a)
		}
	}
	set := n.nft(t, "list", "set", "inet", "portsentry", "allow4")
	if !strings.Contains(set, "198.51.100.0/25") || !strings.Contains(set, "203.0.113.0/24") {
		t.Errorf("allow4 in the kernel:\n%s", set)
	}
	if err := b.SetAllowed(nil); err != nil {
		t.Fatal(err)
	}
	b.Add(mustAddr("198.51.100.1"), time.Hour)
	blocktest.Commit(t, b)
	if _, ok := blocktest.List(t, b)[mustAddr("198.51.100.1")]; !ok {
		t.Error("an address of the replaced list still refused")
	}
	if set := n.nft(t, "list", "set", "inet", "portsentry", "allow4"); strings.Contains(set, "elements") {
		t.Errorf("allow4 not emptied:\n%s", set)
	}
}

// restore100k queues 100 000 bans, half IPv4 and half IPv6.
func restore100k(b *Blocker) {
	for i := range 50_000 {
		b.Add(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), time.Hour)
		b.Add(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb9, 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)}), 0)
	}
}

// TestKernelRestore100k: 100 000 bans in one Commit (one netlink batch of
// several megabytes), all listed. A second restore over the first (a
// daemon restart: the bans are still in the kernel) works too.
func TestKernelRestore100k(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	n := newNetns(t)
	b := n.blocker(t, Options{})
	for range 2 {
		restore100k(b)
		blocktest.Commit(t, b)
		l, err := b.List()
		if err != nil {
			t.Fatal(err)
		}
		if len(l) != 100_000 {
			t.Fatalf("listed %d bans, want 100000", len(l))
		}
		if e := l[0]; e.Addr != mustAddr("10.0.0.0") || e.TTL <= 0 || e.TTL > time.Hour {
			t.Errorf("first entry %v", e)
		}
		if e := l[len(l)-1]; e.Addr != mustAddr("2001:db9::c34f") || e.TTL != 0 {
			t.Errorf("last entry %v", e)
		}
	}
}

// BenchmarkRestore100k times one Commit of 100 000 bans into an empty
// table (a boot), in a fresh namespace each time. The target is under a
// second.
func BenchmarkRestore100k(b *testing.B) { benchRestore(b, true) }

// BenchmarkRestore100kOldKernel is the same with three element operations
// per ban, what kernels that keep an element's timeout on re-add need.
func BenchmarkRestore100kOldKernel(b *testing.B) { benchRestore(b, false) }

func benchRestore(b *testing.B, updates bool) {
	for b.Loop() {
		b.StopTimer()
		n := newNetns(b)
		bl := n.blocker(b, Options{})
		if updates && !bl.updates {
			b.Skip("this kernel does not replace timeouts on re-add")
		}
		bl.updates = updates
		restore100k(bl)
		b.StartTimer()
		blocktest.Commit(b, bl)
	}
}

// BenchmarkList100k times List of 100 000 bans.
func BenchmarkList100k(b *testing.B) {
	n := newNetns(b)
	bl := n.blocker(b, Options{})
	restore100k(bl)
	blocktest.Commit(b, bl)
	for b.Loop() {
		if l, err := bl.List(); err != nil || len(l) != 100_000 {
			b.Fatal(len(l), err)
		}
	}
}

// TestKernelErrors: what a caller can branch on.
func TestKernelErrors(t *testing.T) {
	n := newNetns(t)
	b := n.blocker(t, Options{MaxBans: 2})
	b.Add(mustAddr("198.51.100.1"), 0)
	b.Add(mustAddr("198.51.100.2"), 0)
	b.Add(mustAddr("198.51.100.3"), 0)
	err := b.Commit()
	if err == nil || !strings.Contains(err.Error(), "MaxBans") {
		t.Errorf("Commit past MaxBans: %v", err)
	}
	if l := blocktest.List(t, b); len(l) != 0 {
		t.Errorf("a failed batch applied in part: %v", l)
	}
	// The queue was emptied: nothing is sent again.
	if err := b.Commit(); err != nil {
		t.Errorf("Commit after a failed one: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.List(); err == nil {
		t.Error("List after Close worked")
	}
}

// BenchmarkServed: one reading of the served sets, what the daemon's
// service check costs when no socket owns a probed port and its last
// reading is older than the probe: with a host's handful of served and
// published ports, and with a few thousand (a published range).
func BenchmarkServed(b *testing.B) {
	for _, n := range []int{20, 3000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ns := newNetns(b)
			bl := ns.blocker(b, Options{})
			var elems []string
			for p := range n {
				elems = append(elems, fmt.Sprintf("%d timeout 1h", 30000+p))
			}
			ns.nft(b, "add", "element", "inet", "portsentry", "served_tcp", "{ "+strings.Join(elems, ", ")+" }")
			for b.Loop() {
				if s, err := bl.Served(); err != nil || len(s) != n {
					b.Fatal(len(s), err)
				}
			}
		})
	}
}
