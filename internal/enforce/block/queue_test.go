package block

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestQueue(t *testing.T) {
	var q Queue
	a := netip.MustParseAddr("192.0.2.1")
	q.Put(netip.MustParseAddr("::ffff:192.0.2.1"), true) // mapped: the IPv4 address
	q.Put(a, false)                                      // the last call wins
	q.Put(netip.MustParseAddr("fe80::1%eth0"), true)     // the zone is dropped
	q.Put(netip.Addr{}, true)                            // counted, not queued
	got, invalid := q.Take()
	want := map[netip.Addr]bool{a: false, netip.MustParseAddr("fe80::1"): true}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" || invalid != 1 {
		t.Errorf("Take() = %v, %d; want %v, 1 (-want +got):\n%s", got, invalid, want, diff)
	}
	if got, invalid := q.Take(); len(got) != 0 || invalid != 0 {
		t.Errorf("second Take() = %v, %d; want an empty queue", got, invalid)
	}
}
