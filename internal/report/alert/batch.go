package alert

import (
	"math/bits"
	"net/netip"
	"slices"
	"time"
)

// Caps on what one batch remembers besides its ports: enough to tell an
// administrator what happened, bounded whatever an attacker sends.
const (
	listPorts  = 64 // distinct ports kept as a list before switching to the bit set
	maxKinds   = 8  // "Unknown Type: …" has 64 spellings
	maxActions = 4
)

// entry is one source in the worker's table.
type entry struct {
	src  netip.Addr
	host string
	// quiet: an alert was sent; notifications are gathered for the summary
	// due at the end of the window.
	quiet    bool
	due      time.Time
	lastSent time.Time
	b        batch
}

// batch is what was gathered about a source since its last message.
type batch struct {
	n           int // notifications merged
	probes      int
	first, last time.Time
	ports       portSet
	kinds       []string
	moreKinds   int
	actions     []string
	banExpires  time.Time
}

func (b *batch) merge(al Alert) {
	b.n++
	if b.first.IsZero() || al.Time.Before(b.first) {
		b.first = al.Time
	}
	if al.Time.After(b.last) {
		b.last = al.Time
	}
	for _, p := range al.Ports {
		b.ports.add(p)
	}
	b.probes += max(len(al.Ports), 1)
	for _, k := range al.Kinds {
		k = cleanLine(k[:min(len(k), 200)])
		switch {
		case slices.Contains(b.kinds, k):
		case len(b.kinds) < maxKinds:
			b.kinds = append(b.kinds, k)
		default:
			b.moreKinds++
		}
	}
	if al.Action != "" && !slices.Contains(b.actions, al.Action) {
		if len(b.actions) == maxActions {
			b.actions = slices.Delete(b.actions, 0, 1) // keep the latest
		}
		b.actions = append(b.actions, al.Action)
	}
	if al.BanExpires.After(b.banExpires) {
		b.banExpires = al.BanExpires
	}
}

// portSet holds distinct ports: a short list while there are few, all
// 65 536 bits once there are many. A handful of ports costs a few bytes; a
// full scan costs 8 KiB, never more.
type portSet struct {
	list []uint16
	bits *[1024]uint64
	n    int
}

func (s *portSet) add(p uint16) {
	if s.bits != nil {
		w, m := p>>6, uint64(1)<<(p&63)
		if s.bits[w]&m == 0 {
			s.bits[w] |= m
			s.n++
		}
		return
	}
	if slices.Contains(s.list, p) {
		return
	}
	s.n++
	if len(s.list) < listPorts {
		s.list = append(s.list, p)
		return
	}
	s.bits = new([1024]uint64)
	for _, q := range append(s.list, p) {
		s.bits[q>>6] |= 1 << (q & 63)
	}
	s.list = nil
}

// lowest returns up to limit ports, in ascending order.
func (s *portSet) lowest(limit int) []uint16 {
	if s.bits == nil {
		out := slices.Clone(s.list)
		slices.Sort(out)
		return out[:min(len(out), limit)]
	}
	out := make([]uint16, 0, min(s.n, limit))
	for w, word := range s.bits {
		for word != 0 && len(out) < limit {
			out = append(out, uint16(w<<6+bits.TrailingZeros64(word)))
			word &= word - 1
		}
		if len(out) == limit {
			break
		}
	}
	return out
}

// rateLimit allows at most max events in any hour: a ring of the times
// of the last max events allowed (a sliding log). max < 0 allows all.
type rateLimit struct {
	times []time.Time
	next  int
	off   bool
}

func newRateLimit(max int) rateLimit {
	if max < 0 {
		return rateLimit{off: true}
	}
	return rateLimit{times: make([]time.Time, max)}
}

func (r *rateLimit) allow(now time.Time) bool {
	if r.off {
		return true
	}
	if len(r.times) == 0 {
		return false
	}
	oldest := r.times[r.next]
	if !oldest.IsZero() && now.Sub(oldest) < time.Hour {
		return false
	}
	r.times[r.next] = now
	r.next = (r.next + 1) % len(r.times)
	return true
}
