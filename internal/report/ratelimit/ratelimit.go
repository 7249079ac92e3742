// Package ratelimit limits how often the same thing is logged. A scanner that
// keeps probing after its block (masscan sends 100 000 probes a second)
// would otherwise flood the log with "is already blocked" lines, while an
// ordinary scan of a few ports should still be logged port by port.
package ratelimit

import (
	"net/netip"
	"time"
)

// Limiter lets up to burst lines per source through in each window and
// counts the rest. Its memory is bounded: at most max sources are tracked,
// and the table is emptied when full (a forgotten source starts afresh).
// It is not safe for concurrent use.
type Limiter struct {
	window time.Duration
	burst  int
	max    int
	seen   map[netip.Addr]*entry
}

type entry struct {
	start      time.Time // of the current window
	lines      int       // allowed in the current window
	suppressed int       // held back since the last allowed line
}

// New returns a limiter letting burst lines per source through per window.
func New(window time.Duration, burst, max int) *Limiter {
	return &Limiter{window: window, burst: burst, max: max, seen: make(map[netip.Addr]*entry)}
}

// Allow reports whether a line about src may be logged at now. When it
// may, suppressed is how many lines about src were held back since the
// last allowed one, for a summary.
func (l *Limiter) Allow(src netip.Addr, now time.Time) (ok bool, suppressed int) {
	e, found := l.seen[src]
	if !found {
		if len(l.seen) >= l.max {
			clear(l.seen)
		}
		e = &entry{start: now}
		l.seen[src] = e
	}
	if now.Sub(e.start) >= l.window {
		e.start, e.lines = now, 0
	}
	if e.lines >= l.burst {
		e.suppressed++
		return false, 0
	}
	e.lines++
	suppressed, e.suppressed = e.suppressed, 0
	return true, suppressed
}
