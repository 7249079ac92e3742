// Package quiet limits how often the same thing is logged. A scanner that
// keeps probing after its block (masscan sends 100 000 probes a second)
// would otherwise flood the log with "is already blocked" lines.
package quiet

import (
	"net/netip"
	"time"
)

// Limiter lets one line per source through per interval and counts the
// rest. Its memory is bounded: at most max sources are tracked, and the
// table is emptied when full (a forgotten source is logged once more).
// It is not safe for concurrent use.
type Limiter struct {
	every time.Duration
	max   int
	seen  map[netip.Addr]*entry
}

type entry struct {
	last       time.Time
	suppressed int
}

// New returns a limiter letting one line per source through every interval.
func New(every time.Duration, max int) *Limiter {
	return &Limiter{every: every, max: max, seen: make(map[netip.Addr]*entry)}
}

// Allow reports whether a line about src may be logged at now. When it
// may, suppressed is how many lines about src were held back since the
// last one that was allowed.
func (l *Limiter) Allow(src netip.Addr, now time.Time) (ok bool, suppressed int) {
	e, found := l.seen[src]
	if !found {
		if len(l.seen) >= l.max {
			clear(l.seen)
		}
		l.seen[src] = &entry{last: now}
		return true, 0
	}
	if now.Sub(e.last) < l.every {
		e.suppressed++
		return false, 0
	}
	suppressed = e.suppressed
	e.last, e.suppressed = now, 0
	return true, suppressed
}
