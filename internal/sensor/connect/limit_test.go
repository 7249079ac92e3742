package connect

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// fakeClock is a replyLimiter clock moved by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func limiterWithClock(size int, window time.Duration) (*replyLimiter, *fakeClock) {
	c := newFakeClock()
	l := newReplyLimiter(size, window)
	l.now = c.now
	return l, c
}

func addr4(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

// held is how many sources l remembers; it checks that the ring and the map
// agree.
func held(t *testing.T, l *replyLimiter) int {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n != len(l.seen) {
		t.Fatalf("ring holds %d sources, map %d", l.n, len(l.seen))
	}
	return l.n
}

func TestReplyLimiterOncePerWindow(t *testing.T) {
	l, c := limiterWithClock(8, time.Minute)
	a, b := addr4(1), netip.MustParseAddr("2001:db8::1")
	if !l.allow(a) {
		t.Fatal("first reply to a refused")
	}
	if !l.allow(b) {
		t.Fatal("first reply to b refused")
	}
	c.advance(time.Minute - time.Nanosecond)
	if l.allow(a) || l.allow(b) {
		t.Fatal("second reply within the window allowed")
	}
	c.advance(time.Nanosecond)
	if !l.allow(a) {
		t.Fatal("reply a window later refused")
	}
	if l.allow(a) {
		t.Fatal("second reply in the new window allowed")
	}
}

// TestReplyLimiterBound: however many sources, the limiter holds at most its
// size, answers at most size of them per window (refusing rather than
// growing when every entry is recent), and forgets the oldest first.
func TestReplyLimiterBound(t *testing.T) {
	const size, window = bannerSources, time.Minute
	l, c := limiterWithClock(size, window)

	// A random-source flood: 100 000 sources, 1000 a second.
	allowed := 0
	for i := range 100_000 {
		if i%1000 == 0 && i > 0 {
			c.advance(time.Second)
		}
		if l.allow(addr4(i)) {
			allowed++
		}
		if n := held(t, l); n > size {
			t.Fatalf("after %d sources the limiter holds %d, cap %d", i+1, n, size)
		}
	}
	// 100 s of flood: the first window answers size sources, the second
	// (starting once the first entries expire) at most size more.
	if allowed > 2*size {
		t.Errorf("answered %d sources in 100 s, want at most %d", allowed, 2*size)
	}
	if allowed < size {
		t.Errorf("answered %d sources, want at least %d", allowed, size)
	}
	if got := len(l.ring); got != size {
		t.Errorf("ring grew to %d, want %d", got, size)
	}

	// Full of recent entries: a new source is refused.
	l, c = limiterWithClock(3, window)
	for i := range 3 {
		if !l.allow(addr4(i)) {
			t.Fatalf("source %d refused with room left", i)
		}
		c.advance(10 * time.Second)
	}
	if l.allow(addr4(3)) {
		t.Error("a new source was answered while every entry is recent")
	}
	if n := held(t, l); n != 3 {
		t.Errorf("holds %d, want 3", n)
	}
	// 60 s after the first answer, only the oldest is forgotten.
	c.advance(30 * time.Second)
	if !l.allow(addr4(3)) {
		t.Error("a new source was refused after the oldest entry expired")
	}
	if l.allow(addr4(4)) {
		t.Error("a second new source was answered with one slot freed")
	}
	if l.allow(addr4(1)) {
		t.Error("source 1, answered 50 s ago, was answered again")
	}
	// Source 0 is forgotten, but the table is full of recent entries.
	if l.allow(addr4(0)) {
		t.Error("source 0 answered while every entry is recent")
	}
	c.advance(10 * time.Second) // source 1's entry expires
	if !l.allow(addr4(0)) {
		t.Error("source 0 refused after a slot expired")
	}
	if n := held(t, l); n != 3 {
		t.Errorf("holds %d, want 3", n)
	}
}

// TestUDPBannerOncePerSource sends real datagrams over loopback: a source
// sending many gets one banner per window, another source gets its own.
func TestUDPBannerOncePerSource(t *testing.T) {
	const banner = "go away"
	p := freePorts(t, 1)[0]
	s := open(t, Config{UDP: set(p), Banner: banner}, nil)
	c := newFakeClock()
	s.replies.now = c.now
	events, _ := run(t, s)
	trap4 := netip.AddrPortFrom(lo4, p)

	// listen opens a client socket on a, any port.
	listen := func(a netip.Addr) *net.UDPConn {
		t.Helper()
		pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		return pc
	}
	// probe sends one datagram from pc and waits for its event.
	probe := func(pc *net.UDPConn, to netip.AddrPort) {
		t.Helper()
		if _, err := pc.WriteToUDPAddrPort([]byte("probe"), to); err != nil {
			t.Fatal(err)
		}
		want := pc.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
		if e := next(t, events); e.Src != want || e.Port != p {
			t.Fatalf("event %+v, want a probe from %v on %d", e, want, p)
		}
	}
	// replies counts the banners waiting at pc. A trap answers in the
	// order datagrams came, so once a later source has its answer every
	// earlier answer is queued already.
	replies := func(pc *net.UDPConn) int {
		t.Helper()
		n := 0
		buf := make([]byte, 1500)
		for {
			pc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			m, err := pc.Read(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					return n
				}
				t.Fatal(err)
			}
			if got := string(buf[:m]); got != banner {
				t.Fatalf("reply %q, want %q", got, banner)
			}
			n++
		}
	}
	// answered sends one datagram from pc and waits for the banner.
	answered := func(pc *net.UDPConn, to netip.AddrPort) {
		t.Helper()
		probe(pc, to)
		pc.SetReadDeadline(time.Now().Add(wait))
		buf := make([]byte, 1500)
		m, err := pc.Read(buf)
		if err != nil {
			t.Fatalf("no banner for %v: %v", pc.LocalAddr(), err)
		}
		if got := string(buf[:m]); got != banner {
			t.Fatalf("reply %q, want %q", got, banner)
		}
	}

	a := listen(lo4)
	for range 5 {
		probe(a, trap4)
	}
	// A second source gets a banner of its own; once it has it, every
	// datagram of a has been answered or not.
	b := listen(lo6)
	answered(b, netip.AddrPortFrom(lo6, p))
	if n := replies(a); n != 1 {
		t.Errorf("5 datagrams from one source drew %d banners, want 1", n)
	}

	// The same address from another port is the same source.
	a2 := listen(lo4)
	probe(a2, trap4)
	probe(b, netip.AddrPortFrom(lo6, p))
	// A third source, as a marker that everything before was handled.
	answered(listen(netip.MustParseAddr("127.0.0.2")), trap4)
	if n := replies(a2); n != 0 {
		t.Errorf("another port of the same address drew %d banners, want 0", n)
	}
	if n := replies(b); n != 0 {
		t.Errorf("the second source's second datagram drew %d banners, want 0", n)
	}

	// A window later the source is answered again, once.
	c.advance(bannerWindow)
	probe(a, trap4)
	probe(a, trap4)
	answered(listen(netip.MustParseAddr("127.0.0.3")), trap4)
	if n := replies(a); n != 1 {
		t.Errorf("a window later 2 datagrams drew %d banners, want 1", n)
	}
}
