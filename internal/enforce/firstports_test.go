package enforce

import (
	"net/netip"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/event"
)

func TestFirstPorts(t *testing.T) {
	a := netip.MustParseAddr("198.51.100.7")
	b := netip.MustParseAddr("2001:db8::7")
	t0 := time.Now()
	type probe struct {
		src           netip.Addr
		proto         event.Proto
		port          uint16
		after         time.Duration
		second, fresh bool
	}
	for _, tc := range []struct {
		name   string
		probes []probe
	}{
		{"a new source", []probe{{a, event.TCP, 80, 0, false, true}}},
		{"the same port again is still one port", []probe{
			{a, event.TCP, 80, 0, false, true},
			{a, event.TCP, 80, time.Second, false, false},
		}},
		{"a second port is a scanner's", []probe{
			{a, event.TCP, 80, 0, false, true},
			{a, event.TCP, 81, time.Millisecond, true, false},
		}},
		{"the same number in UDP is another port", []probe{
			{a, event.TCP, 53, 0, false, true},
			{a, event.UDP, 53, time.Millisecond, true, false},
		}},
		{"a scanner stays one, its first port included", []probe{
			{a, event.TCP, 80, 0, false, true},
			{a, event.TCP, 81, time.Millisecond, true, false},
			{a, event.TCP, 80, 2 * time.Millisecond, true, false},
		}},
		{"a source is forgotten after the interval", []probe{
			{a, event.TCP, 80, 0, false, true},
			{a, event.TCP, 81, floodInterval + time.Second, false, true},
			{a, event.TCP, 82, floodInterval + 2*time.Second, true, false},
		}},
		{"sources are apart, in both families", []probe{
			{a, event.TCP, 80, 0, false, true},
			{b, event.TCP, 81, 0, false, true},
			{netip.AddrFrom16(a.As16()), event.TCP, 82, 0, true, false}, // a, mapped: the same 16 bytes
		}},
		{"a late probe is counted, and makes the source no older", []probe{
			{a, event.TCP, 80, 5 * time.Second, false, true},
			{a, event.TCP, 80, 0, false, false},
			{a, event.TCP, 81, 5*time.Second + floodInterval, true, false},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFirstPorts(1024)
			for i, p := range tc.probes {
				second, fresh := f.probe(p.src, p.proto, p.port, t0.Add(p.after))
				if second != p.second || fresh != p.fresh {
					t.Errorf("probe %d (%v %d/%d at +%v): second %v fresh %v, want %v %v", i, p.src, p.port, p.proto, p.after, second, fresh, p.second, p.fresh)
				}
			}
		})
	}
}

// forgotten counts, of scanners each probing once and followed by after
// new sources, those whose second port is no longer told apart.
func forgotten(f *firstPorts, t0 time.Time, scanners, after int) int {
	n, src := 0, 0
	at := func() time.Time { src++; return t0.Add(time.Duration(src) * time.Microsecond) }
	for i := range scanners {
		scan := netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})
		f.probe(scan, event.TCP, 22, at())
		for range after {
			f.probe(fromFlood(src), event.TCP, 8080, at())
		}
		if second, _ := f.probe(scan, event.TCP, 23, at()); !second {
			n++
		}
	}
	return n
}

// A scanner's second port is told apart while a quarter of the table's
// slots in new sources came after its first (an eighth of a second at
// 65 536 new sources a second), and the table never grows: a full table
// forgets the least recent first.
func TestFirstPortsBounded(t *testing.T) {
	f := newFirstPorts(floodSources)
	if len(f.slots) != floodSources {
		t.Fatalf("%d slots, want %d", len(f.slots), floodSources)
	}
	t0 := time.Now()
	// About 1 in 60 is expected (3.5 of 200); over 16 is a table that
	// keeps less than it should.
	if n := forgotten(f, t0, 200, floodSources/4); n > 16 {
		t.Errorf("%d of 200 scanners forgotten after %d newer sources each", n, floodSources/4)
	}
	// 16 times the table: every slot taken over many times.
	scan := netip.MustParseAddr("192.0.2.1")
	f.probe(scan, event.TCP, 22, t0.Add(time.Second))
	for i := range 16 * floodSources {
		f.probe(fromFlood(i), event.TCP, 8080, t0.Add(time.Second+time.Duration(i+1)*time.Nanosecond))
	}
	if second, fresh := f.probe(scan, event.TCP, 24, t0.Add(2*time.Second)); second || !fresh {
		t.Errorf("after %d newer sources the scanner is still remembered (second %v, fresh %v)", 16*floodSources, second, fresh)
	}
	if len(f.slots) != floodSources {
		t.Errorf("the table grew to %d slots", len(f.slots))
	}
}

// A flood weeks after the last: its table was emptied when it began, so
// the last flood's slots, whose clock has wrapped, do not crowd it out.
func TestFirstPortsNextFlood(t *testing.T) {
	fl := newFlood(func(netip.Addr) bool { return false }, func(a netip.Addr) netip.Addr { return a })
	t0 := time.Now()
	start := func(at time.Time) {
		for i := range floodRate {
			fl.acted(at.Add(time.Duration(i) * time.Millisecond))
		}
		if !fl.active.Load() {
			t.Fatal("no flood after floodRate sources in a second")
		}
	}
	start(t0)
	for i := range 4 * floodSources {
		fl.single(event.Event{Src: fromFlood(i), Port: 8080, Proto: event.TCP, Time: t0.Add(time.Duration(i) * time.Microsecond)})
	}
	fl.active.Store(false) // the flood ended
	later := t0.Add(30 * 24 * time.Hour)
	start(later)
	if n := forgotten(fl.first, later.Add(time.Second), 200, floodSources/4); n > 16 {
		t.Errorf("30 days later: %d of 200 scanners forgotten after %d newer sources each", n, floodSources/4)
	}
}
