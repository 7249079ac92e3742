package enforce

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/event"
)

// TestReversePathReusesAnswer: a burst of probes from one source through
// one interface asks the kernel once a second; another source, another
// interface, or a failed lookup asks again.
func TestReversePathReusesAnswer(t *testing.T) {
	var asked int
	var fail error
	routed := map[netip.Addr]bool{scanner: true}
	r := reversePath{route: func(a netip.Addr, arrival int) (bool, error) {
		asked++
		return routed[a] && arrival == 2, fail
	}, answers: make(map[routeQuestion]routeAnswer)}
	at := time.Unix(1_700_000_000, 0)
	check := func(src netip.Addr, ifindex int, after time.Duration, wantFails bool, wantAsked int) {
		t.Helper()
		ev := event.Event{Time: at.Add(after), Src: src, Ifindex: ifindex}
		if got := r.fails(ev); got != wantFails || asked != wantAsked {
			t.Errorf("fails(%s on %d at +%v) = %v after %d lookups, want %v after %d", src, ifindex, after, got, asked, wantFails, wantAsked)
		}
	}
	check(scanner, 2, 0, false, 1)
	check(scanner, 2, 10*time.Millisecond, false, 1)
	check(scanner, 2, 900*time.Millisecond, false, 1)
	check(scanner, 3, 900*time.Millisecond, true, 2) // another interface
	check(ignored, 3, 900*time.Millisecond, true, 3) // another source
	check(ignored, 3, 950*time.Millisecond, true, 3)
	check(scanner, 2, 950*time.Millisecond, false, 3) // both kept
	check(ignored, 3, 2*time.Second, true, 4)         // the answer is too old
	fail = errors.New("netlink: broken")
	check(local, 2, 2*time.Second, false, 5) // a failed lookup passes
	check(local, 2, 2*time.Second, false, 6) // and is not kept
	check(local, 0, 2*time.Second, false, 6) // no interface: no check

	fail = nil
	for i := range 3 * routeAnswersMax {
		r.fails(event.Event{Time: at, Src: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), Ifindex: 2})
		if len(r.answers) > routeAnswersMax {
			t.Fatalf("%d answers kept, want at most %d", len(r.answers), routeAnswersMax)
		}
	}
}
