package enforce

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/portsentry-go/portsentry/internal/event"
	"github.com/portsentry-go/portsentry/internal/report"
)

// A flood is many sources, each sending a probe or two: a random-source
// SYN flood, where every packet carries a new forged address. Handled one
// source at a time it costs a ban, a history line, a ban-file entry and log
// lines per packet: CPU without limit and a full disk within hours, for
// addresses that sent nothing. So from floodRate new sources in a second
// the enforcer stops responding to single probes and sums them up instead,
// one report per floodInterval; a source that probes floodPorts distinct
// ports is a scanner in the crowd and is handled as always, so a real scan
// during a flood is still blocked and recorded. The kernel trap bans every
// source in the packet path meanwhile (up to its set's size, and drops
// their probes beyond it), so the summarized sources learn nothing either.
const (
	floodRate     = 100
	floodInterval = 10 * time.Second
	floodPorts    = 2
	// floodSources bounds the sources remembered while counting to
	// floodPorts. Under a flood each is forgotten within a second, long
	// after a real scanner's second probe (nmap sends them milliseconds
	// apart); a scanner slower than that is summarized with the flood.
	floodSources = 32768
)

// flood detects floods and sums them up. Event loop only, but for active.
type flood struct {
	sec    time.Time // start of the current second
	perSec int       // sources acted on one by one in it
	active atomic.Bool
	sum    report.Flood // the current interval
	ports  [2]*portBits // ports probed in it, TCP and UDP
	first  *firstPorts  // each source's first port, to tell a second one
	// ignored and key are the guard's and the jail's: an ignored source
	// is summarized but not counted; a source is what the jail bans (an
	// IPv6 prefix with BAN_PREFIX6).
	ignored func(netip.Addr) bool
	key     func(netip.Addr) netip.Addr
}

// portBits is a set of ports.
type portBits [65536 / 64]uint64

// add adds p and reports whether it was new.
func (b *portBits) add(p uint16) bool {
	w, m := p/64, uint64(1)<<(p%64)
	if b[w]&m != 0 {
		return false
	}
	b[w] |= m
	return true
}

func newFlood(ignored func(netip.Addr) bool, key func(netip.Addr) netip.Addr) *flood {
	return &flood{first: newFirstPorts(floodSources), ignored: ignored, key: key}
}

// acted counts a source the enforcer acts on one by one (a response or a
// report), and says whether a flood begins with it.
func (f *flood) acted(now time.Time) bool {
	if now.Sub(f.sec) >= time.Second || now.Before(f.sec) {
		f.sec, f.perSec = now, 0
	}
	f.perSec++
	if f.perSec < floodRate || f.active.Load() {
		return false
	}
	f.active.Store(true)
	f.first.reset(now)
	f.restart(now)
	return true
}

// restart begins a summary interval.
func (f *flood) restart(now time.Time) {
	f.sum = report.Flood{Start: now}
	f.ports = [2]*portBits{new(portBits), new(portBits)}
}

// single reports whether ev is a single probe of a flood under way, and
// counts it if so. A source's probe of a second distinct port is not: it
// is a scanner, to handle as always.
func (f *flood) single(ev event.Event) bool {
	if !f.active.Load() {
		return false
	}
	// An ignored source's single probe is summarized too (not counted as
	// a source): a random-source flood covers loopback and the ignore
	// list's ranges as well, and those would otherwise be logged one by one.
	if src := ev.Src.Unmap(); !f.ignored(src) {
		second, fresh := f.first.probe(f.key(src), ev.Proto, ev.Port, ev.Time)
		if second {
			return false
		}
		if fresh {
			f.sum.Sources++
		}
	}
	f.sum.Probes++
	if f.ports[ev.Proto&1].add(ev.Port) {
		f.sum.Ports[ev.Proto&1]++
	}
	return true
}

// tick closes the summary interval when it is over and returns it, with
// Ended set when the flood has died down (fewer single probes in the whole
// interval than floodRate makes in a second). ok is false when there is
// nothing to report.
func (f *flood) tick(now time.Time) (sum report.Flood, ok bool) {
	if !f.active.Load() || now.Sub(f.sum.Start) < floodInterval {
		return report.Flood{}, false
	}
	sum = f.sum
	sum.End = now
	sum.Ended = sum.Probes < floodRate
	if sum.Ended {
		f.active.Store(false)
	}
	f.restart(now)
	return sum, true
}
