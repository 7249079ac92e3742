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

// A source is remembered while fewer new sources than the table has slots
// came after it, and a full table forgets the least recent first.
func TestFirstPortsBounded(t *testing.T) {
	f := newFirstPorts(floodSources)
	if len(f.slots) != floodSources {
		t.Fatalf("%d slots, want %d", len(f.slots), floodSources)
	}
	t0 := time.Now()
	scan := netip.MustParseAddr("198.51.100.99")
	f.probe(scan, event.TCP, 22, t0)
	for i := range floodSources / 16 {
		f.probe(fromFlood(i), event.TCP, 8080, t0.Add(time.Duration(i+1)*time.Microsecond))
	}
	if second, _ := f.probe(scan, event.TCP, 23, t0.Add(time.Second)); !second {
		t.Errorf("a scanner's second port after %d flood sources was not told apart", floodSources/16)
	}
	// 16 times the table: every slot taken over many times.
	for i := range 16 * floodSources {
		f.probe(fromFlood(i), event.TCP, 8080, t0.Add(2*time.Second+time.Duration(i)*time.Nanosecond))
	}
	if second, fresh := f.probe(scan, event.TCP, 24, t0.Add(3*time.Second)); second || !fresh {
		t.Errorf("after %d newer sources the scanner is still remembered (second %v, fresh %v)", 16*floodSources, second, fresh)
	}
	if len(f.slots) != floodSources {
		t.Errorf("the table grew to %d slots", len(f.slots))
	}
}
