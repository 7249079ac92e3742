package engine

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portsentry-go/portsentry/internal/event"
)

// t0 is the clock of the tests that give events a time.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// probe is a probe from src to port at t0+at.
func probe(src string, proto event.Proto, port uint16, at time.Duration) event.Event {
	kind := event.SYN
	if proto == event.UDP {
		kind = event.UDPProbe
	}
	return event.Event{Time: t0.Add(at), Src: netip.MustParseAddr(src), Port: port, Proto: proto, Kind: kind}
}

// tcp and udp are probes to port 143; tcpTo and udpTo to another port.
// Only distinct ports count: a test that needs several hits from one
// source uses several ports.
func tcp(src string) event.Event                { return probe(src, event.TCP, 143, 0) }
func udp(src string) event.Event                { return probe(src, event.UDP, 143, 0) }
func tcpTo(src string, port uint16) event.Event { return probe(src, event.TCP, port, 0) }
func udpTo(src string, port uint16) event.Event { return probe(src, event.UDP, port, 0) }

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
			for i := range tt.actions {
				got = append(got, e.Observe(tcpTo("192.0.2.7", uint16(1000+i))).Action)
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
		{tcpTo("192.0.2.1", 1), Verdict{Action: Counted, Count: 1, Response: Block}},
		{tcpTo("192.0.2.2", 2), Verdict{Action: Counted, Count: 1, Response: Block}}, // another source counts apart
		{tcpTo("192.0.2.1", 2), Verdict{Action: Counted, Count: 2, Response: Block}},
		{tcpTo("192.0.2.1", 3), Verdict{Action: Respond, Count: 3, Response: Block}},
		{tcpTo("192.0.2.2", 3), Verdict{Action: Counted, Count: 2, Response: Block}},
	})
}

func TestZeroOptionsReportOnFirstHit(t *testing.T) {
	e := New(Options{})
	run(t, e, []step{
		{tcp("192.0.2.1"), Verdict{Action: Report, Count: 1, Response: LogOnly}},
		// Counts stop at the trigger (1 here): that is all a decision needs.
		{tcpTo("192.0.2.1", 144), Verdict{Action: AlreadyReported, Count: 1, Response: LogOnly}},
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
		{tcpTo("10.0.0.1", 144), Verdict{Action: Respond, Count: 2, Response: Block}},
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
			e := New(Options{Trigger: trigger, Window: time.Hour, Response: blockBoth()})
			var first Verdict
			for port := uint16(1); first.Action != Respond; port++ {
				first = e.Observe(tcpTo(src.String(), port))
			}
			e.Done(src, false)
			if e.IsBlocked(src) {
				t.Fatal("IsBlocked after a failed response")
			}
			// The very next probe tries again, to a new port or to one
			// already counted: the failed host is not made to climb back
			// to the trigger.
			for _, port := range []uint16{100, 1} {
				got := e.Observe(tcpTo(src.String(), port))
				if got.Action != Respond || got.Count != first.Count {
					t.Errorf("probe to %d after Done(false) = %v count %d, want %v count %d", port, got.Action, got.Count, Respond, first.Count)
				}
				e.Done(src, false)
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
		{tcpTo(a, 144), Verdict{Action: AlreadyReported, Count: 1, Response: LogOnly}},
		{udp(a), Verdict{Action: Report, Count: 1, Response: LogOnly}},
		{udpTo(a, 144), Verdict{Action: AlreadyReported, Count: 1, Response: LogOnly}},
		{tcp(a), Verdict{Action: AlreadyReported, Count: 1, Response: LogOnly}},
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
		{udp("192.0.2.30"), Verdict{Action: Respond, Count: 1, Response: RunOnly}},
		{tcp("192.0.2.30"), Verdict{Action: Pending, Response: LogOnly}},
	})
}

func TestRunOnlyResponds(t *testing.T) {
	e := New(Options{Trigger: 2, Response: [2]Response{RunOnly, RunOnly}})
	run(t, e, []step{
		{udp("192.0.2.40"), Verdict{Action: Counted, Count: 1, Response: RunOnly}},
		{udpTo("192.0.2.40", 144), Verdict{Action: Respond, Count: 2, Response: RunOnly}},
		{udpTo("192.0.2.40", 145), Verdict{Action: Pending, Response: RunOnly}},
	})
}

func TestMappedSourceCountsAsIPv4(t *testing.T) {
	e := New(Options{Trigger: 3, Response: blockBoth()})
	run(t, e, []step{
		{tcp("10.1.2.3"), Verdict{Action: Counted, Count: 1, Response: Block}},
		{tcp("::ffff:10.1.2.3"), Verdict{Action: Counted, Count: 1, Response: Block}}, // the same port, the same host
		{tcpTo("::ffff:10.1.2.3", 144), Verdict{Action: Counted, Count: 2, Response: Block}},
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
		{tcpTo("192.0.2.1", 1), Verdict{Action: Counted, Count: 1, Response: Block}},
		{tcpTo("192.0.2.2", 1), Verdict{Action: Counted, Count: 1, Response: Block}},
		{tcpTo("192.0.2.3", 1), Verdict{Action: Counted, Count: 1, Response: Block}},
		// .1 is seen again: .2 is now the least recently seen.
		{tcpTo("192.0.2.1", 2), Verdict{Action: Counted, Count: 2, Response: Block}},
		// A fourth source evicts .2.
		{tcpTo("192.0.2.4", 1), Verdict{Action: Counted, Count: 1, Response: Block}},
		{tcpTo("192.0.2.1", 3), Verdict{Action: Counted, Count: 3, Response: Block}},
		{tcpTo("192.0.2.3", 2), Verdict{Action: Counted, Count: 2, Response: Block}},
		// .2 was forgotten: its count starts again (and evicts .4).
		{tcpTo("192.0.2.2", 2), Verdict{Action: Counted, Count: 1, Response: Block}},
		{tcpTo("192.0.2.4", 2), Verdict{Action: Counted, Count: 1, Response: Block}},
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
			v := e.Observe(tcpTo(scanner, uint16(hits)))
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
	if got := e.Observe(tcpTo(c.String(), 144)).Action; got != Respond {
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
	e.Observe(tcpTo(a, 1))
	e.Observe(tcpTo(a, 2))
	e.MarkBlocked(b)

	e.Reconfigure(Options{Trigger: 3, Response: [2]Response{RunOnly, RunOnly}})
	run(t, e, []step{
		{tcpTo(a, 3), Verdict{Action: Respond, Count: 3, Response: RunOnly}},
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
	for i, s := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.1"} {
		e.Observe(tcpTo(s, uint16(i+1)))
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
		{tcpTo("192.0.2.1", 10), Verdict{Action: Counted, Count: 3, Response: Block}},
		{tcpTo("192.0.2.3", 10), Verdict{Action: Counted, Count: 2, Response: Block}},
		{tcpTo("192.0.2.2", 10), Verdict{Action: Counted, Count: 1, Response: Block}},
	})
	if !e.IsBlocked(netip.MustParseAddr("198.51.100.3")) || e.IsBlocked(netip.MustParseAddr("198.51.100.1")) {
		t.Error("shrinking MaxBlocked did not keep the newest block")
	}
}

func TestMarkBlockedAndUnblock(t *testing.T) {
	e := New(Options{Trigger: 3, Response: blockBoth()})
	a := netip.MustParseAddr("192.0.2.50")
	e.Observe(tcpTo(a.String(), 1))
	e.Observe(tcpTo(a.String(), 2))

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
	// Unblocked, it counts from zero: the ports it probed before its
	// block are forgotten.
	run(t, e, []step{
		{tcpTo(a.String(), 1), Verdict{Action: Counted, Count: 1, Response: Block}},
		{tcpTo(a.String(), 2), Verdict{Action: Counted, Count: 2, Response: Block}},
		{tcpTo(a.String(), 3), Verdict{Action: Respond, Count: 3, Response: Block}},
	})
}

// hitAt is one probe of a timed sequence, from a single source, and the
// verdict expected for it.
type hitAt struct {
	at     time.Duration // since t0
	proto  event.Proto
	port   uint16
	action Action
	count  int
}

// runTimed feeds hits from one source and compares action and count.
func runTimed(t *testing.T, e *Engine, hits []hitAt) {
	t.Helper()
	for i, h := range hits {
		v := e.Observe(probe("198.51.100.20", h.proto, h.port, h.at))
		if v.Action != h.action || v.Count != h.count {
			t.Fatalf("probe %d (%s %d at +%v) = %v count %d, want %v count %d",
				i+1, h.proto, h.port, h.at, v.Action, v.Count, h.action, h.count)
		}
	}
}

// TestDistinctPorts: a hit is a distinct (protocol, port) pair, so a
// retransmitted SYN does not count twice, and the same port number on the
// other protocol is another hit.
func TestDistinctPorts(t *testing.T) {
	const tcp, udp = event.TCP, event.UDP
	tests := []struct {
		name string
		hits []hitAt
	}{
		{"retransmissions count once", []hitAt{
			{0, tcp, 22, Counted, 1},
			{time.Second, tcp, 22, Counted, 1},
			{3 * time.Second, tcp, 22, Counted, 1},
			{4 * time.Second, tcp, 23, Counted, 2},
			{5 * time.Second, tcp, 23, Counted, 2},
			{6 * time.Second, tcp, 24, Respond, 3},
		}},
		{"the other protocol is another hit", []hitAt{
			{0, tcp, 53, Counted, 1},
			{0, udp, 53, Counted, 2},
			{0, udp, 53, Counted, 2},
			{0, tcp, 53, Counted, 2},
			{0, udp, 54, Respond, 3},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runTimed(t, New(Options{Trigger: 3, Window: time.Hour, Response: blockBoth()}), tt.hits)
		})
	}
}

// TestWindow: hits count together only while they are within
// SCAN_TRIGGER_WINDOW of each other, by the events' own clock.
func TestWindow(t *testing.T) {
	const tcp, udp = event.TCP, event.UDP
	const hour = time.Hour
	tests := []struct {
		name    string
		trigger int
		window  time.Duration
		hits    []hitAt
	}{
		// nmap -sS -T1 --max-retries 0: one probe every 15 s.
		{"slow scan, 15 s apart", 3, hour, []hitAt{
			{0, tcp, 1, Counted, 1},
			{15 * time.Second, tcp, 2, Counted, 2},
			{30 * time.Second, tcp, 3, Respond, 3},
		}},
		{"stray probes 12 h apart never add up", 3, hour, []hitAt{
			{0, tcp, 1, Counted, 1},
			{12 * hour, tcp, 2, Counted, 1},
			{24 * hour, udp, 3, Counted, 1},
			{36 * hour, tcp, 4, Counted, 1},
		}},
		{"window 0 counts forever", 3, 0, []hitAt{
			{0, tcp, 1, Counted, 1},
			{12 * hour, tcp, 2, Counted, 2},
			{30 * 24 * hour, tcp, 3, Respond, 3},
		}},
		{"exactly the window apart: together", 2, hour, []hitAt{
			{0, tcp, 1, Counted, 1},
			{hour, tcp, 2, Respond, 2},
		}},
		{"just over the window apart: not", 2, hour, []hitAt{
			{0, tcp, 1, Counted, 1},
			{hour + time.Millisecond, tcp, 2, Counted, 1},
		}},
		{"hits leave the window one at a time", 3, 100 * time.Second, []hitAt{
			{0, tcp, 1, Counted, 1},
			{60 * time.Second, tcp, 2, Counted, 2},
			{120 * time.Second, tcp, 3, Counted, 2}, // port 1 is out
			{150 * time.Second, tcp, 4, Respond, 3}, // ports 2, 3, 4
		}},
		{"a port probed again counts from its latest probe", 3, hour, []hitAt{
			{0, tcp, 1, Counted, 1},
			{50 * time.Minute, tcp, 1, Counted, 1},
			{70 * time.Minute, tcp, 2, Counted, 2}, // port 1 last seen 20 min ago
			{75 * time.Minute, tcp, 3, Respond, 3},
		}},
		{"a retransmission out of the window counts anew", 2, hour, []hitAt{
			{0, tcp, 1, Counted, 1},
			{2 * hour, tcp, 1, Counted, 1},
			{2*hour + time.Second, tcp, 2, Respond, 2},
		}},
		// Two sensors' events may arrive slightly out of order.
		{"an earlier event is counted, and ages from its own time", 3, 10 * time.Second, []hitAt{
			{100 * time.Second, tcp, 1, Counted, 1},
			{99 * time.Second, tcp, 2, Counted, 2},
			{109500 * time.Millisecond, tcp, 3, Counted, 2}, // port 2 is 10.5 s old
			{110 * time.Second, tcp, 4, Respond, 3},
		}},
		{"trigger 0 acts on the first hit, whatever the window", 0, time.Second, []hitAt{
			{0, tcp, 1, Respond, 1},
		}},
		{"trigger 1 acts on the first hit, whatever the window", 1, time.Second, []hitAt{
			{0, udp, 1, Respond, 1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runTimed(t, New(Options{Trigger: tt.trigger, Window: tt.window, Response: blockBoth()}), tt.hits)
		})
	}
}

// TestSlowScanBlocked is `nmap -sS -T1 --max-retries 0 -p 1-10` against
// SCAN_TRIGGER="3" and the default SCAN_TRIGGER_WINDOW (3600): a probe every
// 15 s, blocked at the third, the rest already blocked.
func TestSlowScanBlocked(t *testing.T) {
	e := New(Options{Trigger: 3, Window: 3600 * time.Second, Response: blockBoth()})
	src := "203.0.113.77"
	var got []Action
	for i := range 10 {
		v := e.Observe(probe(src, event.TCP, uint16(1+i), time.Duration(i)*15*time.Second))
		if v.Action == Respond {
			e.Done(netip.MustParseAddr(src), true)
		}
		got = append(got, v.Action)
	}
	want := []Action{Counted, Counted, Respond}
	for len(want) < 10 {
		want = append(want, AlreadyBlocked)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("actions (-want +got):\n%s", diff)
	}
}

// TestStrayProbesNeverBlocked: three probes a day apart from a client,
// with the default window, are three first hits.
func TestStrayProbesNeverBlocked(t *testing.T) {
	e := New(Options{Trigger: 3, Window: 3600 * time.Second, Response: blockBoth()})
	for i := range 3 {
		at := time.Duration(i) * 12 * time.Hour
		if v := e.Observe(probe("192.0.2.99", event.TCP, uint16(8000+i), at)); v.Action != Counted || v.Count != 1 {
			t.Fatalf("stray probe %d at +%v = %v count %d, want counted 1", i+1, at, v.Action, v.Count)
		}
	}
}

// A failed response leaves the hits: the next probe tries again while they
// are in the window, and counts from zero once they have left it.
func TestDoneFalseThenWindowPasses(t *testing.T) {
	e := New(Options{Trigger: 2, Window: time.Minute, Response: blockBoth()})
	src := "192.0.2.60"
	if v := e.Observe(probe(src, event.TCP, 1, 0)); v.Action != Counted {
		t.Fatalf("first probe = %v", v.Action)
	}
	if v := e.Observe(probe(src, event.TCP, 2, time.Second)); v.Action != Respond {
		t.Fatalf("second probe = %v", v.Action)
	}
	e.Done(netip.MustParseAddr(src), false)
	if v := e.Observe(probe(src, event.TCP, 2, 30*time.Second)); v.Action != Respond || v.Count != 2 {
		t.Fatalf("probe within the window after a failed response = %v count %d, want respond 2", v.Action, v.Count)
	}
	e.Done(netip.MustParseAddr(src), false)
	if v := e.Observe(probe(src, event.TCP, 3, 2*time.Minute)); v.Action != Counted || v.Count != 1 {
		t.Errorf("probe after the window = %v count %d, want counted 1", v.Action, v.Count)
	}
}

// TestHitsBounded: a source keeps at most max(Trigger, 1) ports however
// many it probes, and the count stops there; a reload that lowers the
// trigger trims what a source keeps at its next probe.
func TestHitsBounded(t *testing.T) {
	for _, trigger := range []int{0, 1, 3, 8} {
		t.Run(fmt.Sprintf("trigger=%d", trigger), func(t *testing.T) {
			limit := max(trigger, 1)
			e := New(Options{Trigger: trigger, Window: time.Hour, Response: [2]Response{LogOnly, LogOnly}})
			src := "192.0.2.70"
			for i := range 1000 {
				v := e.Observe(probe(src, event.Proto(i&1), uint16(i), time.Duration(i)*time.Millisecond))
				if want := min(i+1, limit); v.Count != want {
					t.Fatalf("probe %d: count %d, want %d", i+1, v.Count, want)
				}
			}
			s := e.sources[netip.MustParseAddr(src)].Value.(*source)
			if len(s.hits) != limit || cap(s.hits) > limit {
				t.Errorf("source keeps %d hits in room for %d; want %d in at most %d", len(s.hits), cap(s.hits), limit, limit)
			}
		})
	}
	t.Run("one probe each", func(t *testing.T) {
		// A spoofed flood under a high trigger costs one hit a source.
		e := New(Options{Trigger: 1000, Response: blockBoth()})
		for i := range 100 {
			e.Observe(tcp(netip.AddrFrom4([4]byte{10, 9, 0, byte(i)}).String()))
		}
		for el := e.lru.Front(); el != nil; el = el.Next() {
			if s := el.Value.(*source); cap(s.hits) != 1 {
				t.Fatalf("%v: room for %d hits after one probe", s.addr, cap(s.hits))
			}
		}
	})
	t.Run("reload lowers the trigger", func(t *testing.T) {
		e := New(Options{Trigger: 5, Window: time.Hour, Response: blockBoth()})
		src := "192.0.2.71"
		for i := range 4 {
			e.Observe(probe(src, event.TCP, uint16(10+i), time.Duration(i)*time.Second))
		}
		e.Reconfigure(Options{Trigger: 2, Window: time.Hour, Response: blockBoth()})
		// Port 10, the oldest, is probed again: trimming must keep it.
		v := e.Observe(probe(src, event.TCP, 10, 5*time.Second))
		if v.Action != Respond || v.Count != 2 {
			t.Errorf("after lowering the trigger to 2: %v count %d, want respond 2", v.Action, v.Count)
		}
		s := e.sources[netip.MustParseAddr(src)].Value.(*source)
		var ports []uint32
		for _, h := range s.hits {
			ports = append(ports, h.key&0xffff)
		}
		if len(ports) != 2 || !(ports[0] == 10 || ports[1] == 10) || !(ports[0] == 13 || ports[1] == 13) {
			t.Errorf("kept ports %v, want 10 (just probed) and 13 (the most recent before)", ports)
		}
	})
}

// TestMaxHitsBoundsAllSources: under a high trigger, sources that each
// probe many ports (forged ones can) never keep more than MaxHits ports
// together; the sources seen least recently are forgotten first, and the
// source being counted keeps its count.
func TestMaxHitsBoundsAllSources(t *testing.T) {
	const maxHits, perSource = 256, 40
	e := New(Options{Trigger: 1000, MaxHits: maxHits, Window: time.Hour, Response: blockBoth()})
	room := func() (n int) {
		for el := e.lru.Front(); el != nil; el = el.Next() {
			n += cap(el.Value.(*source).hits)
		}
		return n
	}
	for i := range 50 {
		src := netip.AddrFrom4([4]byte{10, 9, 1, byte(i)}).String()
		for p := range perSource {
			v := e.Observe(probe(src, event.TCP, uint16(1+p), time.Duration(i*perSource+p)*time.Millisecond))
			if v.Count != p+1 {
				t.Fatalf("source %d, probe %d: count %d, want %d", i, p+1, v.Count, p+1)
			}
		}
		if got := room(); got != e.hitRoom {
			t.Fatalf("after source %d: hitRoom %d, but the sources hold room for %d", i, e.hitRoom, got)
		}
		if e.hitRoom > maxHits {
			t.Fatalf("after source %d: room for %d hits, cap %d", i, e.hitRoom, maxHits)
		}
	}
	// The first sources were forgotten: they start over.
	if v := e.Observe(probe("10.9.1.0", event.TCP, 999, time.Hour/2)); v.Count != 1 {
		t.Errorf("oldest source count = %d, want 1 (forgotten)", v.Count)
	}
	if v := e.Observe(probe("10.9.1.49", event.TCP, 999, time.Hour/2)); v.Count != perSource+1 {
		t.Errorf("latest source count = %d, want %d (kept)", v.Count, perSource+1)
	}
	// A blocked source's room is given back.
	e.MarkBlocked(netip.MustParseAddr("10.9.1.49"))
	if got := room(); got != e.hitRoom {
		t.Errorf("after MarkBlocked: hitRoom %d, but the sources hold room for %d", e.hitRoom, got)
	}
}

// TestReconfigureWindow: a reload keeps the hits and judges them by the
// new window from the next probe on.
func TestReconfigureWindow(t *testing.T) {
	opts := Options{Trigger: 3, Window: time.Hour, Response: blockBoth()}
	e := New(opts)
	runTimed(t, e, []hitAt{
		{0, event.TCP, 1, Counted, 1},
		{10 * time.Minute, event.TCP, 2, Counted, 2},
	})
	opts.Window = 5 * time.Minute
	e.Reconfigure(opts)
	runTimed(t, e, []hitAt{{12 * time.Minute, event.TCP, 3, Counted, 2}}) // port 1 is out
	opts.Window = 0
	e.Reconfigure(opts)
	runTimed(t, e, []hitAt{{48 * time.Hour, event.TCP, 4, Respond, 3}})
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

// FuzzEngine drives the engine with arbitrary sequences of probes to a few
// ports over time, Done calls, blocks, unblocks and reloads over a small
// address space and small caps, and checks every verdict against a plain
// model: distinct (protocol, port) pairs per source, each kept with the
// time of its latest probe and never forgotten but by the window.
//
// trigger chooses SCAN_TRIGGER (0-5) and BLOCK_TCP/BLOCK_UDP; clock
// chooses the window (bits 0-1: none, 10, 20 or 30 s) and the step the
// clock takes before a probe that asks for one (bits 2-7: 0-63 s). An op
// is, by its top two bits: 0 or 1, a probe (bits 0-2 the source, bit 3
// the protocol, bits 4-5 the port 1-4, bit 6 a clock step first); 2, the
// response to the source finished (bit 5: blocked); 3 with bit 5, block the
// source by hand; 3 without bit 5 and bit 4, unblock it; 3 with bit 4 only,
// a reload with SCAN_TRIGGER bits 0-1 and the window bits 2-3.
func FuzzEngine(f *testing.F) {
	f.Add(uint8(0), uint8(0), []byte{0, 1, 2, 3, 4, 5, 6, 7})
	f.Add(uint8(3), uint8(0), []byte{0x10, 0x10, 0x10, 0x90, 0x10, 0x20, 0x30})
	f.Add(uint8(2), uint8(0), []byte{0x01, 0x41, 0x81, 0xC1, 0x02, 0x42, 0x82, 0xC2, 0x03})
	// Blocked by hand while its response is under way: blocked wins.
	f.Add(uint8(6), uint8(0), []byte{0x00, 0xE0, 0x00, 0xA0, 0x00})
	// SCAN_TRIGGER 3, both protocols block (27): a slow scan, 15 s a
	// probe, in a 30 s window, responded to at its third port...
	f.Add(uint8(27), uint8(15<<2|3), []byte{0x42, 0x52, 0x62, 0x72})
	// ...stray probes 63 s apart in a 10 s window never are...
	f.Add(uint8(27), uint8(63<<2|1), []byte{0x42, 0x52, 0x62, 0x72, 0x4A})
	// ...retransmissions count once...
	f.Add(uint8(27), uint8(1<<2|2), []byte{0x02, 0x02, 0x42, 0x42, 0x12, 0x0A, 0x22, 0x82})
	// ...a port probed again stays in the window, in log-only mode too.
	f.Add(uint8(3), uint8(8<<2|2), []byte{0x03, 0x43, 0x53, 0x43, 0x63, 0x73, 0x4B, 0x4B, 0x5B})
	// Reloads: the window changes under a source, the trigger drops, then
	// rises again (from then on the count may be short of the model's).
	f.Add(uint8(5+18), uint8(4<<2|3), []byte{0x02, 0x52, 0x62, 0xDB, 0x42, 0x72, 0xD1, 0x42, 0xD3, 0x52, 0x62})
	f.Fuzz(func(t *testing.T, trigger, clock uint8, ops []byte) {
		const maxSources, maxBlocked = 4, 3
		addrs := []netip.Addr{
			netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("::ffff:192.0.2.1"),
			netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3"),
			netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"),
			netip.MustParseAddr("10.0.0.1"), // ignored
			netip.MustParseAddr("10.0.0.2"),
		}
		ignored := netip.MustParseAddr("10.0.0.1")
		windows := [4]time.Duration{0, 10 * time.Second, 20 * time.Second, 30 * time.Second}
		step := time.Duration(clock>>2) * time.Second
		opts := Options{
			Trigger:    int(trigger % 6),
			Window:     windows[clock&3],
			Response:   [2]Response{Response(trigger / 6 % 3), Response(trigger / 18 % 3)},
			Ignore:     func(a netip.Addr) bool { return a == ignored },
			MaxSources: maxSources,
			MaxBlocked: maxBlocked,
		}
		e := New(opts)
		now := t0

		// The model of what the engine remembers of a source.
		type record struct {
			hits     map[uint32]time.Time // every pair, at its latest probe
			reported [2]bool
			// short: a reload raised the trigger, and the engine had kept
			// only as many pairs as the lower one needed.
			short bool
		}
		records := map[netip.Addr]*record{}
		var lru []netip.Addr // least recently counted first
		forget := func(u netip.Addr) {
			delete(records, u)
			lru = slices.DeleteFunc(lru, func(a netip.Addr) bool { return a == u })
		}
		pending := map[netip.Addr]bool{}

		for _, op := range ops {
			a := addrs[op&7]
			u := a.Unmap()
			switch {
			case op>>6 <= 1: // a probe
				proto := event.Proto(op >> 3 & 1)
				port := uint16(1 + op>>4&3)
				if op&0x40 != 0 {
					now = now.Add(step)
				}
				wasBlocked := e.IsBlocked(u)
				v := e.Observe(event.Event{Time: now, Src: a, Port: port, Proto: proto, Kind: event.SYN})

				want := Verdict{Response: opts.Response[proto]}
				switch {
				case u == ignored:
					want.Action = Ignored
				case wasBlocked: // even while a response is under way
					want.Action = AlreadyBlocked
				case pending[u]:
					want.Action = Pending
				default:
					r := records[u]
					if r == nil {
						r = &record{hits: map[uint32]time.Time{}}
						records[u] = r
						if len(lru) == maxSources {
							forget(lru[0])
						}
					}
					lru = slices.DeleteFunc(lru, func(x netip.Addr) bool { return x == u })
					lru = append(lru, u)
					maps.DeleteFunc(r.hits, func(_ uint32, at time.Time) bool {
						return opts.Window > 0 && now.Sub(at) > opts.Window
					})
					r.hits[uint32(proto)<<16|uint32(port)] = now
					limit := max(opts.Trigger, 1)
					want.Count = min(len(r.hits), limit)
					if r.short && v.Count >= 1 && v.Count <= want.Count {
						want.Count = v.Count
					}
					switch {
					case want.Count < opts.Trigger:
						want.Action = Counted
					case want.Response != LogOnly:
						want.Action = Respond
						pending[u] = true
					case r.reported[proto]:
						want.Action = AlreadyReported
					default:
						want.Action = Report
						r.reported[proto] = true
					}
				}
				if diff := cmp.Diff(want, v); diff != "" {
					t.Fatalf("%v %v %d at +%v: verdict (-want +got):\n%s", a, proto, port, now.Sub(t0), diff)
				}
			case op>>6 == 2: // the response finished
				if pending[u] {
					ok := op&0x20 != 0
					e.Done(a, ok)
					delete(pending, u)
					// Done(false) may leave a host blocked that was also
					// marked by hand meanwhile; Done(true) always blocks.
					if ok && !e.IsBlocked(u) {
						t.Fatalf("%v: Done(true) but not blocked", a)
					}
					if ok {
						forget(u)
					}
				}
			case op&0x20 != 0:
				e.MarkBlocked(a)
				forget(u)
				if !e.IsBlocked(u) {
					t.Fatalf("%v: MarkBlocked did not block", a)
				}
			case op&0x10 == 0:
				e.Unblock(a)
				if e.IsBlocked(u) {
					t.Fatalf("%v: still blocked after Unblock", a)
				}
			default: // a reload
				old := max(opts.Trigger, 1)
				opts.Trigger = int(op & 3)
				opts.Window = windows[op>>2&3]
				e.Reconfigure(opts)
				if max(opts.Trigger, 1) > old {
					for _, r := range records {
						r.short = true
					}
				}
			}
			s, p, b := e.Stats()
			if s != len(lru) || b > maxBlocked || p != len(pending) {
				t.Fatalf("Stats() = %d, %d, %d; want %d sources, at most %d blocked, %d pending", s, p, b, len(lru), maxBlocked, len(pending))
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
		InUse: func(ev event.Event) bool {
			asked = append(asked, ev.Port)
			return inUse[ev.Port]
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

// With Options.Key every address of a /64 is one source: counted together
// and blocked together; whether an address is ignored is still its own.
func TestKeyGroupsSources(t *testing.T) {
	per64 := func(a netip.Addr) netip.Addr {
		if a.Is6() {
			return netip.PrefixFrom(a, 64).Masked().Addr()
		}
		return a
	}
	admin := netip.MustParseAddr("2001:db8::a")
	e := New(Options{Trigger: 2, Key: per64, Response: [2]Response{Block, Block},
		Ignore: func(a netip.Addr) bool { return a == admin }})
	t0 := time.Unix(1_000_000, 0)
	probe := func(src string, port uint16) Verdict {
		return e.Observe(event.Event{Time: t0, Src: netip.MustParseAddr(src), Port: port, Proto: event.TCP, Kind: event.SYN, Mode: event.ModeSTCP})
	}
	if v := probe("2001:db8::1", 22); v.Action != Counted {
		t.Fatalf("first probe: %v, want counted", v.Action)
	}
	if v := probe("2001:db8::a", 23); v.Action != Ignored {
		t.Fatalf("an ignored address inside the /64: %v, want ignored", v.Action)
	}
	if v := probe("2001:db8::2", 23); v.Action != Respond {
		t.Fatalf("second port from the same /64: %v, want respond", v.Action)
	}
	e.Done(netip.MustParseAddr("2001:db8::3"), true)
	if !e.IsBlocked(netip.MustParseAddr("2001:db8::ffff")) {
		t.Error("the /64 is not blocked after its response")
	}
	if v := probe("2001:db8:0:1::1", 22); v.Action != Counted {
		t.Errorf("the next /64: %v, want counted", v.Action)
	}
	if v := probe("192.0.2.1", 22); v.Action != Counted || e.IsBlocked(netip.MustParseAddr("192.0.2.2")) {
		t.Errorf("IPv4: %v, want counted, and its neighbour not blocked", v.Action)
	}
}
