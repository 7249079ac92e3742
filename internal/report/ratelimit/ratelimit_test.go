package ratelimit

import (
	"net/netip"
	"testing"
	"time"
)

func TestAllow(t *testing.T) {
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("2001:db8::1")
	t0 := time.Unix(1_800_000_000, 0)
	l := New(10*time.Second, 2, 100)
	steps := []struct {
		src        netip.Addr
		at         time.Duration
		ok         bool
		suppressed int
	}{
		{a, 0, true, 0}, // a burst of two gets through
		{a, time.Second, true, 0},
		{a, 2 * time.Second, false, 0}, // then lines are counted
		{a, 3 * time.Second, false, 0},
		{b, 3 * time.Second, true, 0},  // sources are independent
		{a, 10 * time.Second, true, 2}, // a new window reports what was held back
		{a, 11 * time.Second, true, 0},
		{a, 12 * time.Second, false, 0},
		{a, 25 * time.Second, true, 1},
	}
	for i, s := range steps {
		ok, n := l.Allow(s.src, t0.Add(s.at))
		if ok != s.ok || n != s.suppressed {
			t.Errorf("step %d: Allow(%v, +%v) = %v, %d; want %v, %d", i, s.src, s.at, ok, n, s.ok, s.suppressed)
		}
	}
}

func TestBounded(t *testing.T) {
	l := New(time.Hour, 1, 16)
	now := time.Unix(1_800_000_000, 0)
	for i := range 10_000 {
		l.Allow(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), now)
		if len(l.seen) > 16 {
			t.Fatalf("after %d sources the table holds %d, want at most 16", i+1, len(l.seen))
		}
	}
}
