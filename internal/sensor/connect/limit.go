package connect

import (
	"net/netip"
	"sync"
	"time"
)

const (
	// bannerWindow is how long a source that was sent the UDP banner gets
	// no other. A UDP source address is whatever the datagram claims, so
	// a banner for every datagram would make this host a reflector: a
	// flood forged from a victim's address would have the banner sent to
	// the victim, once per datagram.
	bannerWindow = 60 * time.Second

	// bannerSources bounds the sources remembered as recently answered.
	// When every one of them was answered within bannerWindow, a new
	// source gets no banner: a random-source flood draws at most
	// bannerSources banners per window, and memory does not grow.
	bannerSources = 4096
)

// A replyLimiter says whether a UDP source may be answered: once per
// window per address, for at most size addresses per window. It is safe for
// concurrent use; its memory is fixed at creation.
type replyLimiter struct {
	window time.Duration
	now    func() time.Time

	mu sync.Mutex
	// ring holds the addresses answered, oldest first from head, with the
	// time each was answered; since answers are recorded as they happen,
	// times never decrease along the ring. Every address in ring is in
	// seen, and the other way round.
	ring []answered
	head int // index of the oldest entry
	n    int // entries in use
	seen map[netip.Addr]struct{}
}

type answered struct {
	addr netip.Addr
	at   time.Time
}

func newReplyLimiter(size int, window time.Duration) *replyLimiter {
	size = max(size, 1)
	return &replyLimiter{
		window: window,
		now:    time.Now,
		ring:   make([]answered, size),
		seen:   make(map[netip.Addr]struct{}, size),
	}
}

// allow reports whether a reply may go to addr now, and if so records it.
// addr should be unmapped and without zone, so that one host has one key.
func (l *replyLimiter) allow(addr netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	// Forget, oldest first, the sources answered a window ago or more.
	for l.n > 0 {
		e := &l.ring[l.head]
		if now.Sub(e.at) < l.window {
			break
		}
		delete(l.seen, e.addr)
		*e = answered{}
		l.head = (l.head + 1) % len(l.ring)
		l.n--
	}
	if _, ok := l.seen[addr]; ok {
		return false // answered within the window
	}
	if l.n == len(l.ring) {
		return false // every entry is recent: no reply rather than more memory
	}
	l.ring[(l.head+l.n)%len(l.ring)] = answered{addr: addr, at: now}
	l.n++
	l.seen[addr] = struct{}{}
	return true
}
