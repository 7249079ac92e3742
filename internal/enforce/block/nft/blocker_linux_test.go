package nft

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/portsentry-go/portsentry/internal/enforce/block"
)

// Unit tests of the blocker's logic against the in-memory fake: no root,
// no kernel, a clock of their own.

// addrCmp lets cmp compare netip.Addr, whose fields are unexported.
var addrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func fakeBlocker(t *testing.T, updates bool) (*Blocker, *fakeConn, *clock) {
	t.Helper()
	clk := &clock{t: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
	f := newFake()
	f.now, f.updates = clk.now, updates
	b, err := open(Options{}, f, f.reset, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b, f, clk
}

// both runs a test on the one-operation path (kernels that replace
// timeouts on re-add) and on the three-operation one.
func both(t *testing.T, f func(t *testing.T, updates bool)) {
	for _, u := range []bool{true, false} {
		t.Run(fmt.Sprintf("updates=%v", u), func(t *testing.T) { f(t, u) })
	}
}

func entries(t *testing.T, b *Blocker) []block.Entry {
	t.Helper()
	l, err := b.List()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestNewLayout(t *testing.T) {
	b, f, _ := fakeBlocker(t, true)
	if !b.updates {
		t.Error("probe missed that the fake replaces timeouts")
	}
	var sets []string
	for n := range f.st.sets {
		sets = append(sets, n)
	}
	if len(sets) != 14 {
		t.Errorf("sets %v, want 14 (and no probe set left)", sets)
	}
	if n := len(f.st.chains[chainInput]); n != 6 {
		t.Errorf("input chain has %d rules, want 6", n)
	}
	if n := len(f.st.chains[chainTrap]); n != 0 {
		t.Errorf("trap chain has %d rules before SetTrap", n)
	}
	// New again on the same state: same rules, not twice as many.
	if _, err := open(Options{}, f, f.reset, nil); err != nil {
		t.Fatal(err)
	}
	if n := len(f.st.chains[chainInput]); n != 6 {
		t.Errorf("after a second New the input chain has %d rules", n)
	}
	_, f2, _ := fakeBlocker(t, false)
	if b2, _ := open(Options{}, f2, f2.reset, nil); b2.updates {
		t.Error("probe saw timeout updates the fake does not do")
	}
}

func TestNewOtherPriority(t *testing.T) {
	_, f, _ := fakeBlocker(t, true)
	if _, err := open(Options{Priority: -20}, f, f.reset, nil); err != nil {
		t.Fatalf("New with another priority: %v", err)
	}
	if got := *f.st.defs[chainInput].Priority; got != -20 {
		t.Errorf("input chain at priority %d, want -20", got)
	}
	if n := len(f.st.chains[chainInput]); n != 6 {
		t.Errorf("input chain has %d rules", n)
	}
}

func TestNewBadTable(t *testing.T) {
	f := newFake()
	for _, name := range []string{strings.Repeat("x", 256), "a\x00b"} {
		if _, err := open(Options{Table: name}, f, f.reset, nil); err == nil {
			t.Errorf("table %q accepted", name)
		}
	}
}

func TestAddList(t *testing.T) {
	both(t, func(t *testing.T, updates bool) {
		b, _, clk := fakeBlocker(t, updates)
		b.Add(mustAddr("2001:db9::1"), time.Hour)
		b.Add(mustAddr("198.51.100.2"), 0)
		b.Add(mustAddr("198.51.100.1"), 90*time.Minute)
		b.Add(mustAddr("::ffff:203.0.113.1"), time.Hour) // IPv4-mapped: banned as IPv4
		b.Add(mustAddr("fe80::1%eth0"), time.Hour)       // zone dropped
		b.Add(netip.Addr{}, time.Hour)                   // ignored
		b.Add(mustAddr("198.51.100.3"), 500*time.Microsecond)
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		clk.advance(10 * time.Minute)
		want := []block.Entry{
			{Addr: mustAddr("198.51.100.1"), TTL: 80 * time.Minute},
			{Addr: mustAddr("198.51.100.2"), TTL: 0},
			{Addr: mustAddr("203.0.113.1"), TTL: 50 * time.Minute},
			{Addr: mustAddr("2001:db9::1"), TTL: 50 * time.Minute},
			{Addr: mustAddr("fe80::1"), TTL: 50 * time.Minute},
		}
		if diff := cmp.Diff(want, entries(t, b), addrCmp); diff != "" {
			t.Errorf("List (-want +got):\n%s", diff)
		}
		// Again: longer, shorter, permanent, from permanent.
		b.Add(mustAddr("198.51.100.1"), 2*time.Hour)
		b.Add(mustAddr("203.0.113.1"), time.Minute)
		b.Add(mustAddr("2001:db9::1"), 0)
		b.Add(mustAddr("198.51.100.2"), time.Hour)
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		want = []block.Entry{
			{Addr: mustAddr("198.51.100.1"), TTL: 2 * time.Hour},
			{Addr: mustAddr("198.51.100.2"), TTL: time.Hour},
			{Addr: mustAddr("203.0.113.1"), TTL: time.Minute},
			{Addr: mustAddr("2001:db9::1"), TTL: 0},
			{Addr: mustAddr("fe80::1"), TTL: 50 * time.Minute},
		}
		if diff := cmp.Diff(want, entries(t, b), addrCmp); diff != "" {
			t.Errorf("List after re-adding (-want +got):\n%s", diff)
		}
	})
}

func TestDeleteAndQueueOrder(t *testing.T) {
	both(t, func(t *testing.T, updates bool) {
		b, _, _ := fakeBlocker(t, updates)
		b.Add(mustAddr("198.51.100.1"), time.Hour)
		b.Add(mustAddr("2001:db9::1"), 0)
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		b.Delete(mustAddr("198.51.100.1"))
		b.Delete(mustAddr("2001:db9::1"))
		b.Delete(mustAddr("198.51.100.99")) // not banned: no error
		b.Add(mustAddr("198.51.100.5"), time.Hour)
		b.Delete(mustAddr("198.51.100.5")) // the last word wins
		b.Delete(mustAddr("198.51.100.6"))
		b.Add(mustAddr("198.51.100.6"), time.Hour)
		b.Add(mustAddr("198.51.100.7"), -time.Second) // already over: a Delete
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		want := []block.Entry{{Addr: mustAddr("198.51.100.6"), TTL: time.Hour}}
		if diff := cmp.Diff(want, entries(t, b), addrCmp); diff != "" {
			t.Errorf("List (-want +got):\n%s", diff)
		}
	})
}

func TestExpiry(t *testing.T) {
	b, _, clk := fakeBlocker(t, true)
	b.Add(mustAddr("198.51.100.1"), 2*time.Second)
	b.Add(mustAddr("198.51.100.2"), 0)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	clk.advance(3 * time.Second)
	want := []block.Entry{{Addr: mustAddr("198.51.100.2")}}
	if diff := cmp.Diff(want, entries(t, b), addrCmp); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	// An expired ban can be deleted and re-added like an absent one.
	b.Delete(mustAddr("198.51.100.1"))
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
}

func TestAlmostExpiredIsNotPermanent(t *testing.T) {
	b, _, clk := fakeBlocker(t, true)
	b.Add(mustAddr("198.51.100.1"), time.Second)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	clk.advance(time.Second - 100*time.Microsecond) // the kernel reports 0 ms left
	if l := entries(t, b); len(l) != 1 || l[0].TTL != time.Millisecond {
		t.Errorf("List %v, want a TTL of 1ms", l)
	}
}

func TestCommitFailure(t *testing.T) {
	b, f, _ := fakeBlocker(t, true)
	b.Add(mustAddr("198.51.100.1"), time.Hour)
	f.failNext = fmt.Errorf("netlink: %w", unix.EIO)
	if err := b.Commit(); !errors.Is(err, unix.EIO) || !strings.HasPrefix(err.Error(), "nft: commit: ") {
		t.Fatalf("Commit: %v", err)
	}
	// The queue was emptied, and nothing of the batch applied.
	n := f.flushes
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if f.flushes != n {
		t.Error("an empty Commit sent a batch")
	}
	if l := entries(t, b); len(l) != 0 {
		t.Errorf("List %v", l)
	}
	// A full set: the kernel's ENFILE, named.
	f.st.sets[setBan4].def.Size = 1
	b.Add(mustAddr("198.51.100.1"), time.Hour)
	b.Add(mustAddr("198.51.100.2"), time.Hour)
	if err := b.Commit(); !errors.Is(err, unix.ENFILE) || !strings.Contains(err.Error(), "MaxBans") {
		t.Errorf("Commit past the size: %v", err)
	}
}

func TestAllowed(t *testing.T) {
	both(t, func(t *testing.T, updates bool) {
		b, f, _ := fakeBlocker(t, updates)
		b.Add(mustAddr("198.51.100.9"), time.Hour) // queued before SetAllowed: checked at Commit
		if err := b.SetAllowed([]netip.Prefix{
			netip.MustParsePrefix("198.51.100.0/24"),
			netip.MustParsePrefix("198.51.100.128/25"),
			netip.MustParsePrefix("198.51.101.0/24"), // adjacent: merged
			netip.MustParsePrefix("2001:db9::1/128"),
		}); err != nil {
			t.Fatal(err)
		}
		b.Add(mustAddr("198.51.100.1"), time.Hour)
		b.Add(mustAddr("::ffff:198.51.101.255"), time.Hour)
		b.Add(mustAddr("2001:db9::1"), 0)
		b.Add(mustAddr("2001:db9::2"), 0)
		b.Add(mustAddr("198.51.102.0"), 0)
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		want := []block.Entry{{Addr: mustAddr("198.51.102.0")}, {Addr: mustAddr("2001:db9::2")}}
		if diff := cmp.Diff(want, entries(t, b), addrCmp); diff != "" {
			t.Errorf("List (-want +got):\n%s", diff)
		}
		// In the kernel: 198.51.100.0-198.51.101.255 as [0 end], start,
		// end at 198.51.102.0.
		wantSet := map[string]time.Duration{"00000000/end": 0, "c6336400": 0, "c6336600/end": 0}
		if diff := cmp.Diff(wantSet, f.elems(setAllow4)); diff != "" {
			t.Errorf("allow4 (-want +got):\n%s", diff)
		}
		// Replacing the list frees the old prefixes.
		if err := b.SetAllowed(nil); err != nil {
			t.Fatal(err)
		}
		if n := len(f.elems(setAllow4)) + len(f.elems(setAllow6)); n != 0 {
			t.Errorf("%d elements left in the allow sets", n)
		}
		b.Add(mustAddr("198.51.100.1"), 0)
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		if len(entries(t, b)) != 3 {
			t.Error("an address of the replaced list is still refused")
		}
	})
}

func TestSetAllowedFailureKeepsList(t *testing.T) {
	b, f, _ := fakeBlocker(t, true)
	if err := b.SetAllowed([]netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}); err != nil {
		t.Fatal(err)
	}
	f.failNext = unix.EIO
	if err := b.SetAllowed(nil); err == nil {
		t.Fatal("SetAllowed did not fail")
	}
	b.Add(mustAddr("198.51.100.1"), 0)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if l := entries(t, b); len(l) != 0 {
		t.Errorf("after a failed SetAllowed the old list no longer applies: %v", l)
	}
}

// trapShape summarizes a rule: its verdict and the sets it refers to.
func trapShape(f *fakeConn) []string {
	var out []string
	for _, r := range f.st.chains[chainTrap] {
		var s []string
		for _, e := range r.Exprs {
			switch e := e.(type) {
			case *expr.Meta:
				if e.Key == expr.MetaKeyIIFNAME {
					s = append(s, "iifname")
				}
			case *expr.Socket:
				s = append(s, "socket")
			case *expr.Ct:
				s = append(s, "ct")
			case *expr.Lookup:
				s = append(s, map[bool]string{false: "@", true: "!@"}[e.Invert]+e.SetName)
			case *expr.Dynset:
				op := map[uint32]string{unix.NFT_DYNSET_OP_ADD: "add", unix.NFT_DYNSET_OP_UPDATE: "update"}[e.Operation]
				s = append(s, fmt.Sprintf("%s@%s/%v", op, e.SetName, e.Timeout))
			case *expr.Verdict:
				s = append(s, map[expr.VerdictKind]string{expr.VerdictReturn: "return", expr.VerdictDrop: "drop"}[e.Kind])
			}
		}
		out = append(out, strings.Join(s, " "))
	}
	return out
}

func TestSetTrap(t *testing.T) {
	b, f, _ := fakeBlocker(t, true)
	tr := &Trap{TCP: ports(t, "1-1023"), TTL: 90 * time.Second, Interfaces: []string{"eth0", "eth1", "eth0"}, Peers: 10 * time.Minute, Grace: 5 * time.Minute}
	if err := b.SetTrap(tr); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"iifname !@trap_ifaces return",
		"return", // pkttype
		"ct ct update@hop4/10m0s update@peer4/10m0s", // learn peers (established and assured), before established packets return
		"ct ct update@hop6/10m0s update@peer6/10m0s",
		"ct return",
		"socket update@served_tcp/5m0s return", // a served port is remembered
		"socket update@served_tcp/5m0s return",
		"@trap_tcp drop",               // fib: the reverse path fails
		"@trap_tcp @served_tcp drop",   // its service is gone, for now: no ban
		"@trap_tcp @peer4 !@hop4 drop", // forged: a peer's address, another hop count
		"@trap_tcp @peer6 !@hop6 drop",
		"@trap_tcp add@ban4/1m30s drop",
		"@trap_tcp drop", // the ban set is full: still dropped
		"@trap_tcp add@ban6/1m30s drop",
		"@trap_tcp drop",
	}
	if diff := cmp.Diff(want, trapShape(f)); diff != "" {
		t.Errorf("trap rules (-want +got):\n%s", diff)
	}
	if n := len(f.elems(setTrapIface)); n != 2 {
		t.Errorf("%d interfaces in trap_ifaces, want 2", n)
	}
	if diff := cmp.Diff(map[string]time.Duration{"0000/end": 0, "0001": 0, "0400/end": 0}, f.elems(setTrapTCP)); diff != "" {
		t.Errorf("trap_tcp (-want +got):\n%s", diff)
	}
	// Replaced whole: UDP only, every interface, permanent bans.
	if err := b.SetTrap(&Trap{UDP: ports(t, "7,9,65535")}); err != nil {
		t.Fatal(err)
	}
	want = []string{
		"iifname return",
		"return",
		"ct return",
		"socket return",
		"socket return",
		"return",         // traceroute, IPv4
		"return",         // traceroute, IPv6
		"@trap_udp drop", // fib
		"@trap_udp add@ban4/0s drop",
		"@trap_udp drop",
		"@trap_udp add@ban6/0s drop",
		"@trap_udp drop",
	}
	if diff := cmp.Diff(want, trapShape(f)); diff != "" {
		t.Errorf("trap rules (-want +got):\n%s", diff)
	}
	if n := len(f.elems(setTrapTCP)) + len(f.elems(setTrapIface)); n != 0 {
		t.Errorf("%d elements left from the first trap", n)
	}
	// 65535 has no end element: it would wrap.
	if diff := cmp.Diff(map[string]time.Duration{"0000/end": 0, "0007": 0, "0008/end": 0, "0009": 0, "000a/end": 0, "ffff": 0}, f.elems(setTrapUDP)); diff != "" {
		t.Errorf("trap_udp (-want +got):\n%s", diff)
	}
	// No ports is no trap, and so is nil.
	for _, tr := range []*Trap{{TTL: time.Hour}, nil} {
		if err := b.SetTrap(tr); err != nil {
			t.Fatal(err)
		}
		if n := len(f.st.chains[chainTrap]) + len(f.elems(setTrapUDP)); n != 0 {
			t.Errorf("SetTrap(%v) left %d rules and elements", tr, n)
		}
	}
}

func TestSetTrapBadInterface(t *testing.T) {
	b, f, _ := fakeBlocker(t, true)
	n := f.flushes
	for _, name := range []string{"", "sixteen-chars-xx", "a\x00b"} {
		if err := b.SetTrap(&Trap{TCP: ports(t, "1"), Interfaces: []string{name}}); err == nil {
			t.Errorf("interface %q accepted", name)
		}
	}
	if f.flushes != n {
		t.Error("a refused trap was sent")
	}
}

func TestSetTrapNoSocketExpr(t *testing.T) {
	b, f, _ := fakeBlocker(t, true)
	f.failNext = fmt.Errorf("conn.Receive: %w", unix.ENOENT) // what a kernel without nft_socket says
	err := b.SetTrap(&Trap{TCP: ports(t, "1")})
	if !errors.Is(err, block.ErrUnavailable) {
		t.Errorf("SetTrap without the socket expression: %v, want block.ErrUnavailable", err)
	}
}

func TestStats(t *testing.T) {
	b, f, _ := fakeBlocker(t, true)
	if err := b.SetTrap(&Trap{TCP: ports(t, "1-10"), UDP: ports(t, "1-10"), Peers: time.Hour, Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range []string{chainInput, chainTrap} {
		for _, r := range f.st.chains[c] {
			for _, e := range r.Exprs {
				if cnt, ok := e.(*expr.Counter); ok {
					n++
					cnt.Packets, cnt.Bytes = uint64(n), uint64(100*n)
				}
			}
		}
	}
	st, err := b.Stats()
	if err != nil {
		t.Fatal(err)
	}
	// Counters 1, 2 on the ban rules; then in the trap chain, for TCP and
	// UDP, the reverse-path rules (3, 4) and the served-port rules (5, 6);
	// the forged rules for IPv4 and IPv6, TCP and UDP (7-10); then for
	// each protocol and family a trap rule (11, 13, 15, 17) and its rule
	// for a full ban set (12, 14, 16, 18).
	want := Stats{
		Banned:   Counter{Packets: 1 + 2, Bytes: 100 * (1 + 2)},
		Unrouted: Counter{Packets: 3 + 4, Bytes: 100 * (3 + 4)},
		Served:   Counter{Packets: 5 + 6, Bytes: 100 * (5 + 6)},
		Forged:   Counter{Packets: 7 + 8 + 9 + 10, Bytes: 100 * (7 + 8 + 9 + 10)},
		Trapped:  Counter{Packets: 11 + 13 + 15 + 17, Bytes: 100 * (11 + 13 + 15 + 17)},
		Unbanned: Counter{Packets: 12 + 14 + 16 + 18, Bytes: 100 * (12 + 14 + 16 + 18)},
	}

	if st != want {
		t.Errorf("Stats %+v, want %+v", st, want)
	}
}

func TestClose(t *testing.T) {
	b, f, _ := fakeBlocker(t, true)
	b.Add(mustAddr("198.51.100.1"), 0)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	b.Add(mustAddr("198.51.100.2"), 0)
	n := f.flushes
	for name, err := range map[string]error{
		"Commit":     b.Commit(),
		"SetAllowed": b.SetAllowed(nil),
		"SetTrap":    b.SetTrap(nil),
	} {
		if !errors.Is(err, errClosed) {
			t.Errorf("%s after Close: %v", name, err)
		}
	}
	if _, err := b.List(); !errors.Is(err, errClosed) {
		t.Errorf("List after Close: %v", err)
	}
	if _, err := b.Stats(); !errors.Is(err, errClosed) {
		t.Errorf("Stats after Close: %v", err)
	}
	if f.flushes != n {
		t.Error("something was sent after Close")
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err   error
		inNew bool
		is    error
		text  string
	}{
		{fmt.Errorf("dial: %w", os.NewSyscallError("socket", unix.EPROTONOSUPPORT)), true, block.ErrUnavailable, "unavailable"},
		{unix.EAFNOSUPPORT, false, block.ErrUnavailable, "unavailable"},
		{unix.EOPNOTSUPP, false, block.ErrUnavailable, "unavailable"},
		{unix.ENOENT, true, block.ErrUnavailable, "unavailable"},
		{unix.ENOENT, false, unix.ENOENT, "nft: x: no such file"},
		{unix.EPERM, true, os.ErrPermission, "CAP_NET_ADMIN"},
		{unix.ENFILE, false, unix.ENFILE, "MaxBans"},
		{unix.EIO, false, unix.EIO, "nft: x: input/output error"},
	} {
		err := classify("x", tc.err, tc.inNew)
		if !errors.Is(err, tc.is) || !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("classify(%v, %v) = %v; want errors.Is %v and text %q", tc.err, tc.inNew, err, tc.is, tc.text)
		}
		if tc.is != block.ErrUnavailable && errors.Is(err, block.ErrUnavailable) {
			t.Errorf("classify(%v, %v) = %v says unavailable", tc.err, tc.inNew, err)
		}
	}
	if classify("x", nil, true) != nil {
		t.Error("classify(nil) is not nil")
	}
}

func TestKernelTTL(t *testing.T) {
	for in, want := range map[time.Duration]time.Duration{
		0:                          0,
		-time.Second:               0,
		time.Nanosecond:            time.Millisecond,
		1500 * time.Microsecond:    2 * time.Millisecond,
		time.Hour:                  time.Hour,
		100 * 365 * 24 * time.Hour: maxTTL,
		time.Duration(1<<63 - 1):   maxTTL,
	} {
		if got := kernelTTL(in); got != want {
			t.Errorf("kernelTTL(%v) = %v, want %v", in, got, want)
		}
	}
}

func TestQueueFailureDropsPartialBatch(t *testing.T) {
	b, f, _ := fakeBlocker(t, true)
	err := b.batch("test", 0, 0, func(c conn) error {
		c.FlushChain(b.l.trap)    // queued...
		return errors.New("boom") // ...then the batch cannot be completed
	})
	if err == nil || len(f.pending) != 0 {
		t.Fatalf("batch: %v, %d operations left queued", err, len(f.pending))
	}
}

// repeatingConn returns every element twice on the first reads, as the
// kernel's dump does when the set's hash table is resized while it is
// read.
type repeatingConn struct {
	*fakeConn
	bad int // reads left that repeat
}

func (r *repeatingConn) GetSetElements(s *nftables.Set) ([]nftables.SetElement, error) {
	el, err := r.fakeConn.GetSetElements(s)
	if r.bad > 0 && len(el) > 0 {
		r.bad--
		el = append(el, el[0])
	}
	return el, err
}

func TestListRereadsOnRepeats(t *testing.T) {
	for _, bad := range []int{1, listTries + 1} {
		b, f, _ := fakeBlocker(t, true)
		b.Add(mustAddr("198.51.100.1"), 0)
		b.Add(mustAddr("198.51.100.2"), 0)
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		r := &repeatingConn{fakeConn: f, bad: bad}
		b.c = r
		want := []block.Entry{{Addr: mustAddr("198.51.100.1")}, {Addr: mustAddr("198.51.100.2")}}
		if diff := cmp.Diff(want, entries(t, b), addrCmp); diff != "" {
			t.Errorf("%d bad reads: List (-want +got):\n%s", bad, diff)
		}
		if bad == 1 && r.bad != 0 {
			t.Error("List did not read again")
		}
	}
}
