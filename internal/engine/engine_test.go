package engine

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portsentry-go/portsentry/internal/event"
)

func probe(src string, proto event.Proto) event.Event {
	kind := event.SYN
	if proto == event.UDP {
		kind = event.UDPProbe
	}
	return event.Event{Src: netip.MustParseAddr(src), Port: 143, Proto: proto, Kind: kind}
}

func tcp(src string) event.Event { return probe(src, event.TCP) }
func udp(src string) event.Event { return probe(src, event.UDP) }

// step is one probe fed to the engine and the verdict expected for it.
type step struct {
	ev   event.Event
	want Verdict
}

func run(t *testing.T, e *Engine, steps []step) {
	t.Helper()
	for i, s := range steps {
		got := e.Observe(s.ev)
		if diff := cmp.Diff(s.want, got); diff != "" {
			t.Fatalf("probe %d (%s %s): verdict mismatch (-want +got):\n%s", i+1, s.ev.Proto, s.ev.Src, diff)
		}
	}
}

func blockBoth() [2]Response { return [2]Response{Block, Block} }

// TestTrigger checks SCAN_TRIGGER as PortSentry counts it: act when the
// count reaches the trigger, so 0 and 1 both act on the first hit.
func TestTrigger(t *testing.T) {
	tests := []struct {
		trigger int
		actions []Action // for probes 1, 2, … from one source
	}{
		{0, []Action{Respond, Pending, Pending}},
		{1, []Action{Respond, Pending, Pending}},
		{2, []Action{Counted, Respond, Pending}},
		{3, []Action{Counted, Counted, Respond, Pending}},
		{5, []Action{Counted, Counted, Counted, Counted, Respond, Pending}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("trigger=%d", tt.trigger), func(t *testing.T) {
			e := New(Options{Trigger: tt.trigger, Response: blockBoth()})
			var got []Action
			for range tt.actions {
				got = append(got, e.Observe(tcp("192.0.2.7")).Action)
			}
			if diff := cmp.Diff(tt.actions, got); diff != "" {
				t.Errorf("actions mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTriggerCounts(t *testing.T) {
	e := New(Options{Trigger: 3, Response: blockBoth()})
	run(t, e, []step{
		{tcp("192.0.2.1"), Verdict{Action: Counted, Count: 1, Response: Block}},
		{tcp("192.0.2.2"), Verdict{Action: Counted, Count: 1, Response: Block}}, // another source counts apart
		{tcp("192.0.2.1"), Verdict{Action: Counted, Count: 2, Response: Block}},
		{tcp("192.0.2.1"), Verdict{Action: Respond, Count: 3, Response: Block}},
		{tcp("192.0.2.2"), Verdict{Action: Counted, Count: 2, Response: Block}},
	})
}

func TestZeroOptionsReportOnFirstHit(t *testing.T) {
	e := New(Options{})
	run(t, e, []step{
		{tcp("192.0.2.1"), Verdict{Action: Report, Count: 1, Response: LogOnly}},
		{tcp("192.0.2.1"), Verdict{Action: AlreadyReported, Count: 2, Response: LogOnly}},
	})
}

func TestIgnoredNeverCounted(t *testing.T) {
	ignored := netip.MustParseAddr("10.0.0.1")
	var asked []netip.Addr
	opts := Options{
		Trigger:  2,
		Response: blockBoth(),
		Ignore: func(a netip.Addr) bool {
			asked = append(asked, a)
			return a == ignored
		},
	}
	e := New(opts)
	for i := 0; i < 5; i++ {
		got := e.Observe(tcp("10.0.0.1"))
		if diff := cmp.Diff(Verdict{Action: Ignored, Response: Block}, got); diff != "" {
			t.Fatalf("probe %d from ignored source (-want +got):\n%s", i+1, diff)
		}
	}
	// The mapped spelling of an ignored address is ignored too: Ignore is
	// asked about the IPv4 address.
	if got := e.Observe(tcp("::ffff:10.0.0.1")).Action; got != Ignored {
		t.Errorf("probe from ::ffff:10.0.0.1 = %v, want %v", got, Ignored)
	}
	for _, a := range asked {
		if a.Is4In6() {
			t.Errorf("Ignore was asked about mapped address %v", a)
		}
	}
	if s, p, b := e.Stats(); s != 0 || p != 0 || b != 0 {
		t.Errorf("Stats() = %d, %d, %d after ignored probes only; want 0, 0, 0", s, p, b)
	}

	// Taken off the ignore list (a reload), it starts from zero: none of the
	// six ignored probes was counted.
	opts.Ignore = nil
	e.Reconfigure(opts)
	run(t, e, []step{
		{tcp("10.0.0.1"), Verdict{Action: Counted, Count: 1, Response: Block}},
		{tcp("10.0.0.1"), Verdict{Action: Respond, Count: 2, Response: Block}},
	})
}

func TestRespondPendingThenBlocked(t *testing.T) {
	src := netip.MustParseAddr("198.51.100.9")
	e := New(Options{Response: blockBoth()})
	run(t, e, []step{{tcp(src.String()), Verdict{Action: Respond, Count: 1, Response: Block}}})

	// While the response is under way, no second response starts.
	for _, ev := range []event.Event{tcp(src.String()), udp(src.String()), tcp(src.String())} {
		if got := e.Observe(ev); got.Action != Pending {
			t.Fatalf("pending: %s probe = %v, want %v", ev.Proto, got.Action, Pending)
		}
	}
	if e.IsBlocked(src) {
		t.Error("IsBlocked is true before Done")
	}
	if _, p, _ := e.Stats(); p != 1 {
		t.Errorf("pending = %d, want 1", p)
	}

	e.Done(src, true)
	if !e.IsBlocked(src) {
		t.Error("IsBlocked is false after Done(true)")
	}
	if s, p, b := e.Stats(); s != 0 || p != 0 || b != 1 {
		t.Errorf("Stats() after Done(true) = %d, %d, %d; want 0, 0, 1", s, p, b)
	}
	for _, ev := range []event.Event{tcp(src.String()), udp(src.String())} {
		want := Verdict{Action: AlreadyBlocked, Response: Block}
		if diff := cmp.Diff(want, e.Observe(ev)); diff != "" {
			t.Errorf("blocked: %s probe (-want +got):\n%s", ev.Proto, diff)
		}
	}
}

func TestDoneFalseTriggersAgain(t *testing.T) {
	for _, trigger := range []int{0, 1, 3} {
		t.Run(fmt.Sprintf("trigger=%d", trigger), func(t *testing.T) {
			src := netip.MustParseAddr("203.0.113.5")
			e := New(Options{Trigger: trigger, Response: blockBoth()})
			var first Verdict
			for first.Action != Respond {
				first = e.Observe(tcp(src.String()))
			}
			e.Done(src, false)
			if e.IsBlocked(src) {
				t.Fatal("IsBlocked after a failed response")
			}
			// The very next probe tries again: the failed host is not made
			// to climb back to the trigger.
			got := e.Observe(tcp(src.String()))
			if got.Action != Respond {
				t.Errorf("probe after Done(false) = %v, want %v", got.Action, Respond)
			}
			if got.Count != first.Count+1 {
				t.Errorf("count after Done(false) = %d, want %d", got.Count, first.Count+1)
			}
		})
	}
}

func TestBlockedAcrossProtocols(t *testing.T) {
	tests := []struct {
		name      string
		response  [2]Response
		first     event.Event
		other     event.Event
		otherResp Response
	}{
		{"tcp block, udp probe", [2]Response{Block, Block}, tcp("192.0.2.10"), udp("192.0.2.10"), Block},
		{"udp block, tcp probe", [2]Response{Block, Block}, udp("192.0.2.10"), tcp("192.0.2.10"), Block},
		// UDP is log-only, yet a host the TCP side blocked is still blocked.
		{"tcp block, udp log-only", [2]Response{Block, LogOnly}, tcp("192.0.2.10"), udp("192.0.2.10"), LogOnly},
		{"tcp run-only, udp probe", [2]Response{RunOnly, Block}, tcp("192.0.2.10"), udp("192.0.2.10"), Block},
		{"mapped source", [2]Response{Block, Block}, tcp("::ffff:192.0.2.10"), udp("192.0.2.10"), Block},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := New(Options{Response: tt.response})
			if got := e.Observe(tt.first).Action; got != Respond {
				t.Fatalf("first probe = %v, want %v", got, Respond)
			}
			e.Done(tt.first.Src, true)
			want := Verdict{Action: AlreadyBlocked, Response: tt.otherResp}
			if diff := cmp.Diff(want, e.Observe(tt.other)); diff != "" {
				t.Errorf("probe on the other protocol (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLogOnlyReportsOncePerProtocol(t *testing.T) {
	e := New(Options{Response: [2]Response{LogOnly, LogOnly}})
	a := "192.0.2.20"
	run(t, e, []step{
		{tcp(a), Verdict{Action: Report, Count: 1, Response: LogOnly}},
		{tcp(a), Verdict{Action: AlreadyReported, Count: 2, Response: LogOnly}},
		{udp(a), Verdict{Action: Report, Count: 3, Response: LogOnly}},
		{udp(a), Verdict{Action: AlreadyReported, Count: 4, Response: LogOnly}},
		{tcp(a), Verdict{Action: AlreadyReported, Count: 5, Response: LogOnly}},
		{tcp("192.0.2.21"), Verdict{Action: Report, Count: 1, Response: LogOnly}},
	})
	if e.IsBlocked(netip.MustParseAddr(a)) {
		t.Error("log-only mode recorded a block")
	}
	if _, p, b := e.Stats(); p != 0 || b != 0 {
		t.Errorf("log-only: pending=%d blocked=%d, want 0, 0", p, b)
	}
}

func TestMixedResponses(t *testing.T) {
	// BLOCK_TCP="0", BLOCK_UDP="2": TCP is reported, UDP runs KILL_RUN_CMD.
	e := New(Options{Response: [2]Response{LogOnly, RunOnly}})
	run(t, e, []step{
		{tcp("192.0.2.30"), Verdict{Action: Report, Count: 1, Response: LogOnly}},
		{udp("192.0.2.30"), Verdict{Action: Respond, Count: 2, Response: RunOnly}},
		{tcp("192.0.2.30"), Verdict{Action: Pending, Response: LogOnly}},
	})
}

func TestRunOnlyResponds(t *testing.T) {
	e := New(Options{Trigger: 2, Response: [2]Response{RunOnly, RunOnly}})
	run(t, e, []step{
		{udp("192.0.2.40"), Verdict{Action: Counted, Count: 1, Response: RunOnly}},
		{udp("192.0.2.40"), Verdict{Action: Respond, Count: 2, Response: RunOnly}},
		{udp("192.0.2.40"), Verdict{Action: Pending, Response: RunOnly}},
	})
}

func TestMappedSourceCountsAsIPv4(t *testing.T) {
	e := New(Options{Trigger: 3, Response: blockBoth()})
	run(t, e, []step{
		{tcp("10.1.2.3"), Verdict{Action: Counted, Count: 1, Response: Block}},
		{tcp("::ffff:10.1.2.3"), Verdict{Action: Counted, Count: 2, Response: Block}},
		{udp("10.1.2.3"), Verdict{Action: Respond, Count: 3, Response: Block}},
	})
	if s, _, _ := e.Stats(); s != 1 {
		t.Errorf("sources = %d, want 1 (one host under two spellings)", s)
	}
	// Done with the mapped spelling settles the IPv4 host.
	e.Done(netip.MustParseAddr("::ffff:10.1.2.3"), true)
	if !e.IsBlocked(netip.MustParseAddr("10.1.2.3")) || !e.IsBlocked(netip.MustParseAddr("::ffff:10.1.2.3")) {
		t.Error("mapped Done did not block the IPv4 host under both spellings")
	}
	if _, p, _ := e.Stats(); p != 0 {
		t.Errorf("pending = %d after mapped Done, want 0", p)
	}
	// A real IPv6 address is a different host.
	if got := e.Observe(tcp("2001:db8::a01:203")).Action; got != Counted {
		t.Errorf("IPv6 host = %v, want %v", got, Counted)
	}
}

func TestMaxSourcesEvictsLeastRecentlySeen(t *testing.T) {
	e := New(Options{Trigger: 100, MaxSources: 3, Response: blockBoth()})
	run(t, e, []step{
		{tcp("192.0.2.1"), Verdict{Action: Counted, Count: 1, Response: Block}},
		{tcp("192.0.2.2"), Verdict{Action: Counted, Count: 1, Response: Block}},
		{tcp("192.0.2.3"), Verdict{Action: Counted, Count: 1, Response: Block}},
		// .1 is seen again: .2 is now the least recently seen.
		{tcp("192.0.2.1"), Verdict{Action: Counted, Count: 2, Response: Block}},
		// A fourth source evicts .2.
		{tcp("192.0.2.4"), Verdict{Action: Counted, Count: 1, Response: Block}},
		{tcp("192.0.2.1"), Verdict{Action: Counted, Count: 3, Response: Block}},
		{tcp("192.0.2.3"), Verdict{Action: Counted, Count: 2, Response: Block}},
		// .2 was forgotten: its count starts again (and evicts .4).
		{tcp("192.0.2.2"), Verdict{Action: Counted, Count: 1, Response: Block}},
		{tcp("192.0.2.4"), Verdict{Action: Counted, Count: 1, Response: Block}},
	})
	if s, _, _ := e.Stats(); s != 3 {
		t.Errorf("sources = %d, want 3", s)
	}
}

// TestMaxSourcesUnderFlood feeds 1e5 distinct sources (a spoofed-source
// flood) and checks that the table stays within its cap while a source that
// keeps probing keeps its count and is blocked at the trigger.
func TestMaxSourcesUnderFlood(t *testing.T) {
	const (
		max     = 1000
		flood   = 100_000
		every   = 500 // the persistent scanner probes once per this many spoofed packets
		trigger = flood / every
	)
	e := New(Options{Trigger: trigger, MaxSources: max, Response: blockBoth()})
	scanner := "2001:db8:ffff::1"
	hits := 0
	for i := 0; i < flood; i++ {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if v := e.Observe(event.Event{Src: a, Proto: event.TCP, Kind: event.SYN}); v.Action != Counted || v.Count != 1 {
			t.Fatalf("spoofed source %v: %+v, want counted once", a, v)
		}
		if s, _, _ := e.Stats(); s > max {
			t.Fatalf("after %d sources the table holds %d, cap %d", i+1, s, max)
		}
		if i%every == every-1 {
			hits++
			v := e.Observe(tcp(scanner))
			if v.Count != hits {
				t.Fatalf("scanner count = %d after %d probes: it was evicted", v.Count, hits)
			}
			want := Counted
			if hits == trigger {
				want = Respond
			}
			if v.Action != want {
				t.Fatalf("scanner probe %d = %v, want %v", hits, v.Action, want)
			}
		}
	}
	if s, _, _ := e.Stats(); s != max {
		t.Errorf("sources = %d at the end, want the cap %d", s, max)
	}
	// The first spoofed source was seen least recently: it starts over.
	if v := e.Observe(tcp("10.0.0.0")); v.Count != 1 {
		t.Errorf("oldest source count = %d, want 1 (evicted)", v.Count)
	}
}

func TestMaxBlockedEvictsOldest(t *testing.T) {
	e := New(Options{Trigger: 2, MaxBlocked: 2, Response: blockBoth()})
	a, b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::3")
	e.MarkBlocked(a)
	e.MarkBlocked(b)
	e.MarkBlocked(a) // already blocked: does not refresh or duplicate
	if _, _, n := e.Stats(); n != 2 {
		t.Fatalf("blocked = %d, want 2", n)
	}
	// Blocking a third forgets the oldest, a.
	e.Observe(tcp(c.String()))
	if got := e.Observe(tcp(c.String())).Action; got != Respond {
		t.Fatalf("c = %v, want %v", got, Respond)
	}
	e.Done(c, true)
	got := map[string]bool{"a": e.IsBlocked(a), "b": e.IsBlocked(b), "c": e.IsBlocked(c)}
	if diff := cmp.Diff(map[string]bool{"a": false, "b": true, "c": true}, got); diff != "" {
		t.Errorf("IsBlocked mismatch (-want +got):\n%s", diff)
	}
	if _, _, n := e.Stats(); n != 2 {
		t.Errorf("blocked = %d, want 2", n)
	}
	// A forgotten block counts from zero again.
	run(t, e, []step{{tcp(a.String()), Verdict{Action: Counted, Count: 1, Response: Block}}})
}

func TestReconfigureKeepsState(t *testing.T) {
	a, b := "192.0.2.1", netip.MustParseAddr("192.0.2.2")
	e := New(Options{Trigger: 5, Response: blockBoth()})
	e.Observe(tcp(a))
	e.Observe(tcp(a))
	e.MarkBlocked(b)

	e.Reconfigure(Options{Trigger: 3, Response: [2]Response{RunOnly, RunOnly}})
	run(t, e, []step{
		{tcp(a), Verdict{Action: Respond, Count: 3, Response: RunOnly}},
		{tcp(b.String()), Verdict{Action: AlreadyBlocked, Response: RunOnly}},
	})
	// A response started before the reload still completes.
	e.Done(netip.MustParseAddr(a), true)
	if !e.IsBlocked(netip.MustParseAddr(a)) {
		t.Error("response pending across a reload was lost")
	}
}

func TestReconfigureShrinksCaps(t *testing.T) {
	e := New(Options{Trigger: 100, Response: blockBoth()})
	for _, s := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.1"} {
		e.Observe(tcp(s))
	}
	for _, s := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.3"} {
		e.MarkBlocked(netip.MustParseAddr(s))
	}
	e.Reconfigure(Options{Trigger: 100, MaxSources: 2, MaxBlocked: 1, Response: blockBoth()})
	if s, _, b := e.Stats(); s != 2 || b != 1 {
		t.Fatalf("Stats() after shrinking = %d sources, %d blocked; want 2, 1", s, b)
	}
	// Kept: the two seen most recently (.1 and .3) and the newest block.
	run(t, e, []step{
		{tcp("192.0.2.1"), Verdict{Action: Counted, Count: 3, Response: Block}},
		{tcp("192.0.2.3"), Verdict{Action: Counted, Count: 2, Response: Block}},
		{tcp("192.0.2.2"), Verdict{Action: Counted, Count: 1, Response: Block}},
	})
	if !e.IsBlocked(netip.MustParseAddr("198.51.100.3")) || e.IsBlocked(netip.MustParseAddr("198.51.100.1")) {
		t.Error("shrinking MaxBlocked did not keep the newest block")
	}
}

func TestMarkBlockedAndUnblock(t *testing.T) {
	e := New(Options{Trigger: 3, Response: blockBoth()})
	a := netip.MustParseAddr("192.0.2.50")
	e.Observe(tcp(a.String()))
	e.Observe(tcp(a.String()))

	e.MarkBlocked(netip.MustParseAddr("::ffff:192.0.2.50")) // from a blocked file, say
	if !e.IsBlocked(a) {
		t.Fatal("MarkBlocked of the mapped spelling did not block the IPv4 host")
	}
	if s, _, _ := e.Stats(); s != 0 {
		t.Errorf("a blocked host is still counted: sources = %d", s)
	}
	run(t, e, []step{{tcp(a.String()), Verdict{Action: AlreadyBlocked, Response: Block}}})

	if !e.Unblock(a) {
		t.Error("Unblock of a blocked host = false")
	}
	if e.Unblock(a) {
		t.Error("second Unblock = true")
	}
	if e.Unblock(netip.MustParseAddr("192.0.2.51")) {
		t.Error("Unblock of a host never blocked = true")
	}
	// Unblocked, it counts from zero.
	run(t, e, []step{
		{tcp(a.String()), Verdict{Action: Counted, Count: 1, Response: Block}},
		{tcp(a.String()), Verdict{Action: Counted, Count: 2, Response: Block}},
		{tcp(a.String()), Verdict{Action: Respond, Count: 3, Response: Block}},
	})
}

func TestActionString(t *testing.T) {
	want := []string{"ignored", "counted", "already-blocked", "already-reported", "report", "respond", "service", "pending", "action?"}
	var got []string
	for a := Ignored; a <= Pending+1; a++ {
		got = append(got, a.String())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Action names (-want +got):\n%s", diff)
	}
}

// FuzzEngine drives the engine with arbitrary sequences of probes, Done
// calls, blocks, unblocks and reloads over a small address space and small
// caps, and checks the rules that must hold whatever the sequence.
func FuzzEngine(f *testing.F) {
	f.Add(uint8(0), []byte{0, 1, 2, 3, 4, 5, 6, 7})
	f.Add(uint8(3), []byte{0x10, 0x10, 0x10, 0x90, 0x10, 0x20, 0x30})
	f.Add(uint8(2), []byte{0x01, 0x41, 0x81, 0xC1, 0x02, 0x42, 0x82, 0xC2, 0x03})
	// Blocked by hand while its response is under way: blocked wins.
	f.Add(uint8(6), []byte{0x00, 0xE0, 0x00, 0xA0, 0x00})
	f.Fuzz(func(t *testing.T, trigger uint8, ops []byte) {
		const maxSources, maxBlocked = 4, 3
		addrs := []netip.Addr{
			netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("::ffff:192.0.2.1"),
			netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3"),
			netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"),
			netip.MustParseAddr("10.0.0.1"), // ignored
			netip.MustParseAddr("10.0.0.2"),
		}
		ignored := netip.MustParseAddr("10.0.0.1")
		opts := Options{
			Trigger:    int(trigger % 6),
			Response:   [2]Response{Response(trigger / 6 % 3), Response(trigger / 18 % 3)},
			Ignore:     func(a netip.Addr) bool { return a == ignored },
			MaxSources: maxSources,
			MaxBlocked: maxBlocked,
		}
		e := New(opts)
		pending := map[netip.Addr]bool{}
		for _, op := range ops {
			a := addrs[op&7]
			u := a.Unmap()
			switch op >> 6 {
			case 0, 1: // a probe
				proto := event.Proto(op >> 3 & 1)
				v := e.Observe(event.Event{Src: a, Proto: proto, Kind: event.SYN})
				if v.Response != opts.Response[proto] {
					t.Fatalf("%v: Response = %v, want %v", a, v.Response, opts.Response[proto])
				}
				if (v.Action == Ignored) != (u == ignored) {
					t.Fatalf("%v: action %v; ignored = %v", a, v.Action, u == ignored)
				}
				// A blocked source is already blocked even while a response
				// to it is under way (blocked by hand meanwhile).
				if want := Pending; pending[u] && v.Action != want && !(e.IsBlocked(u) && v.Action == AlreadyBlocked) {
					t.Fatalf("%v: pending, but action %v", a, v.Action)
				}
				switch v.Action {
				case Counted:
					if v.Count < 1 || v.Count >= opts.Trigger {
						t.Fatalf("%v: counted with count %d, trigger %d", a, v.Count, opts.Trigger)
					}
				case Report, AlreadyReported, Respond:
					if v.Count < 1 || v.Count < opts.Trigger {
						t.Fatalf("%v: %v with count %d, trigger %d", a, v.Action, v.Count, opts.Trigger)
					}
					if (v.Action == Respond) != (v.Response != LogOnly) {
						t.Fatalf("%v: %v under response %v", a, v.Action, v.Response)
					}
				case Ignored, AlreadyBlocked, Pending:
					if v.Count != 0 {
						t.Fatalf("%v: %v with count %d", a, v.Action, v.Count)
					}
				}
				if v.Action == Respond {
					pending[u] = true
				}
			case 2: // the response finished
				if pending[u] {
					ok := op&0x20 != 0
					e.Done(a, ok)
					delete(pending, u)
					// Done(false) may leave a host blocked that was also
					// marked by hand meanwhile; Done(true) always blocks.
					if ok && !e.IsBlocked(u) {
						t.Fatalf("%v: Done(true) but not blocked", a)
					}
				}
			case 3:
				if op&0x20 != 0 {
					e.MarkBlocked(a)
					if !e.IsBlocked(u) {
						t.Fatalf("%v: MarkBlocked did not block", a)
					}
				} else {
					e.Unblock(a)
					if e.IsBlocked(u) {
						t.Fatalf("%v: still blocked after Unblock", a)
					}
				}
			}
			s, p, b := e.Stats()
			if s > maxSources || b > maxBlocked || p != len(pending) {
				t.Fatalf("Stats() = %d, %d, %d; caps %d, %d; pending %d", s, p, b, maxSources, maxBlocked, len(pending))
			}
		}
	})
}

// The service check is asked only about passively captured probes from
// sources that are neither ignored nor blocked, and a port in use is
// never counted.
func TestServiceCheck(t *testing.T) {
	var asked []uint16
	inUse := map[uint16]bool{22: true}
	e := New(Options{
		Trigger:  2,
		Response: [2]Response{Block, Block},
		Ignore:   func(a netip.Addr) bool { return a == netip.MustParseAddr("192.0.2.9") },
		InUse: func(_ event.Proto, port uint16) bool {
			asked = append(asked, port)
			return inUse[port]
		},
	})
	probe := func(src string, port uint16, kind event.Kind) Verdict {
		return e.Observe(event.Event{Src: netip.MustParseAddr(src), Port: port, Proto: event.TCP, Kind: kind, Mode: event.ModeATCP})
	}
	if v := probe("192.0.2.1", 22, event.SYN); v.Action != Service {
		t.Errorf("SYN to a port in use: %v, want service", v.Action)
	}
	if v := probe("192.0.2.1", 23, event.SYN); v.Action != Counted || v.Count != 1 {
		t.Errorf("first SYN to a free port: %v count %d, want counted 1 (the port in use must not count)", v.Action, v.Count)
	}
	if v := probe("192.0.2.1", 24, event.SYN); v.Action != Respond {
		t.Errorf("second SYN to a free port: %v, want respond", v.Action)
	}
	asked = nil
	probe("192.0.2.1", 25, event.SYN) // pending: no lookup
	probe("192.0.2.9", 26, event.SYN) // ignored: no lookup
	for _, ev := range []event.Event{
		{Src: netip.MustParseAddr("192.0.2.2"), Port: 27, Proto: event.TCP, Kind: event.Connect, Mode: event.ModeTCP},
		{Src: netip.MustParseAddr("192.0.2.3"), Port: 28, Proto: event.UDP, Kind: event.UDPProbe, Mode: event.ModeUDP},
	} {
		if v := e.Observe(ev); v.Action != Counted {
			t.Errorf("connect-mode %v event: %v, want counted (its trap socket owns the port)", ev.Proto, v.Action)
		}
	}
	if len(asked) != 0 {
		t.Errorf("service check asked about ports %v; want no lookups for pending, ignored or connect-mode events", asked)
	}
}
