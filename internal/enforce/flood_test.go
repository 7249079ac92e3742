package enforce

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/enforce/block"
	"github.com/portsentry-go/portsentry/internal/event"
	"github.com/portsentry-go/portsentry/internal/portset"
)

// fromFlood is the n-th address of a random-source flood.
func fromFlood(n int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
}

// A flood of single probes from new sources: the first floodRate in a
// second are handled one by one, then single probes are summarized, while
// a source that probes a second port is still blocked; each interval is
// summed up in one line, and the flood's end is said.
func TestFloodSummarized(t *testing.T) {
	trap := &block.Trap{TCP: portset.Below(1024), TTL: time.Hour}
	r := newRig(t, rigOptions{traps: true, settings: Settings{Trap: trap}})
	t0 := time.Now()
	const n = 3 * floodRate
	for i := range n {
		r.probeAt(fromFlood(i), 8080, 64, t0.Add(time.Duration(i)*time.Millisecond))
	}
	r.waitLog("attackalert: Flood: 100 or more new sources in a second")
	// The kernel trap stops filling the ban sets with the flood's sources.
	r.fake.mu.Lock()
	noBan := r.fake.trap != nil && r.fake.trap.NoBan
	r.fake.mu.Unlock()
	if !noBan {
		t.Error("the kernel trap still bans during the flood")
	}
	// A scanner among them: its second port singles it out.
	scan := netip.MustParseAddr("198.51.100.99")
	r.probeAt(scan, 22, 64, t0.Add(400*time.Millisecond))
	r.probeAt(scan, 23, 64, t0.Add(401*time.Millisecond))
	r.waitLog("attackalert: Host 198.51.100.99 has been blocked via nftables")
	r.settle()

	banned := 0
	for i := range n {
		if _, ok := r.fake.ttl(fromFlood(i)); ok {
			banned++
		}
	}
	if banned != floodRate {
		t.Errorf("%d flood sources banned one by one, want the first %d", banned, floodRate)
	}
	if got := strings.Count(r.log.String(), "has been blocked"); got != floodRate+1 {
		t.Errorf("%d block lines, want %d", got, floodRate+1)
	}

	// The flood began at its 100th source, 99 ms in.
	r.do(func() { r.e.Tick(t0.Add(floodInterval + 100*time.Millisecond)) })
	// The scanner's first probe, to port 22, was one of them.
	r.waitLog(fmt.Sprintf("attackalert: Flood: %d probes from %d sources to 2 TCP and 0 UDP ports in 10s, each source a single port: summarized, not blocked one by one", n-floodRate+1, n-floodRate+1))
	if !r.e.Flooding() {
		t.Error("the flood ended while probes still came")
	}
	r.do(func() { r.e.Tick(t0.Add(2*floodInterval + 200*time.Millisecond)) })
	r.waitLog("in 10s, each source a single port: summarized, not blocked one by one; the flood is over")
	if r.e.Flooding() {
		t.Error("the flood did not end")
	}
	r.fake.mu.Lock()
	banning := r.fake.trap != nil && !r.fake.trap.NoBan
	r.fake.mu.Unlock()
	if !banning {
		t.Error("the kernel trap did not go back to banning after the flood")
	}
	// Over: a new source is handled one by one again.
	r.probeAt(fromFlood(n+1), 8080, 64, t0.Add(30*time.Second))
	r.waitLog("attackalert: Host " + fromFlood(n+1).String() + " has been blocked via nftables")
}

// BenchmarkFloodSingle is the enforcer's cost per probe of a random-source
// flood under way: each probe from a new source, none repeated.
func BenchmarkFloodSingle(b *testing.B) {
	f := newFlood(func(netip.Addr) bool { return false }, func(a netip.Addr) netip.Addr { return a })
	t0 := time.Now()
	f.active.Store(true)
	f.restart(t0)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ev := event.Event{Src: fromFlood(i), Port: 8080, Proto: event.TCP, Time: t0.Add(time.Duration(i) * time.Microsecond)}
		if !f.single(ev) {
			b.Fatal("a new source's single probe not summarized")
		}
	}
}
