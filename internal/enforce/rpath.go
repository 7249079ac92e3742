package enforce

import (
	"net/netip"

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
}

// fails reports whether ev's source fails the check: this host has no
// route back to it through the interface it arrived on. A probe whose
// interface is unknown (connect mode: the handshake proved the address),
// a link-local source (on-link by definition), or a failed lookup pass.
func (r reversePath) fails(ev event.Event) bool {
	if r.route == nil || ev.Ifindex == 0 || ev.Src.IsLinkLocalUnicast() {
		return false
	}
	ok, err := r.route(ev.Src, ev.Ifindex)
	return err == nil && !ok
}
