package enforce

import (
	"net/netip"
	"time"

	"github.com/portsentry-go/portsentry/internal/event"
)

// reversePath is the reverse-path check the kernel makes before a packet
// reaches a socket (rp_filter), made for the daemon's own decisions: the
// packet sensor reads probes before the kernel checks them, so a forged
// LAN address arriving from outside would otherwise be banned here though
// the kernel dropped it. The kernel trap makes the same check (fib saddr
// . iif oif missing).
type reversePath struct {
	// route returns the interface this host would send to addr through,
	// and whether arrival is a port of it (a bridge's member): the probe
	// then came in where an answer would go out.
	route func(addr netip.Addr, arrival int) (ok bool, err error)
	// answers are the recent answers, by source and interface: a scan is
	// a burst of probes from one source, and while its block is being
	// made each of them is checked (only a blocked source is not); a
	// service's clients come back again and again. nil: none kept. Event
	// loop only.
	answers map[routeQuestion]routeAnswer
}

// routeQuestion is what route is asked.
type routeQuestion struct {
	addr    netip.Addr
	arrival int
}

// routeAnswer is one answer of route, and when it was given.
type routeAnswer struct {
	at time.Time
	ok bool
}

const (
	// routeAnswerTTL is how long an answer is reused: far shorter than
	// any route change an administrator makes, far longer than a
	// scanner's burst.
	routeAnswerTTL = time.Second
	// routeAnswersMax bounds the answers kept; when full they are all
	// forgotten (a flood of sources would make a cache useless anyway).
	routeAnswersMax = 256
)

// fails reports whether ev's source fails the check: this host has no
// route back to it through the interface it arrived on. A probe whose
// interface is unknown (connect mode: the handshake proved the address),
// a link-local source (on-link by definition), or a failed lookup pass.
func (r reversePath) fails(ev event.Event) bool {
	if r.route == nil || ev.Ifindex == 0 || ev.Src.IsLinkLocalUnicast() {
		return false
	}
	q := routeQuestion{ev.Src, ev.Ifindex}
	if a, ok := r.answers[q]; ok {
		if age := ev.Time.Sub(a.at); age >= 0 && age < routeAnswerTTL {
			return !a.ok
		}
	}
	ok, err := r.route(ev.Src, ev.Ifindex)
	if err != nil {
		return false
	}
	if r.answers != nil {
		if len(r.answers) >= routeAnswersMax {
			clear(r.answers)
		}
		r.answers[q] = routeAnswer{at: ev.Time, ok: ok}
	}
	return !ok
}
