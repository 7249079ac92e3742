package nft

import (
	"net/netip"
	"slices"

	"github.com/portsentry-go/portsentry/internal/portset"
)

// This file is portable: it turns prefixes and port sets into the disjoint
// ranges that nftables interval sets hold, and answers "is this address
// allowed?" without the kernel.

// span is an inclusive range of keys of one width (4 or 16 bytes for
// addresses, 2 for ports), in network byte order, so that byte-wise
// comparison is numeric comparison.
type span struct{ lo, hi []byte }

// addrSpan is an inclusive address range of one family.
type addrSpan struct{ lo, hi netip.Addr }

// allowList is the never-ban list as sorted, disjoint, non-adjacent ranges
// per family: the form interval sets demand (the kernel refuses overlapping
// intervals) and the form a binary search needs.
type allowList struct{ v4, v6 []addrSpan }

// newAllowList normalizes prefixes the way the daemon's ignore list does:
// host bits masked off, zones dropped, IPv4-mapped prefixes (/96 or longer)
// turned into IPv4, invalid prefixes skipped. Overlapping and adjacent
// ranges are merged.
func newAllowList(prefixes []netip.Prefix) allowList {
	var l allowList
	for _, p := range prefixes {
		p, ok := normalizePrefix(p)
		if !ok {
			continue
		}
		s := addrSpan{p.Addr(), lastAddr(p)}
		if p.Addr().Is4() {
			l.v4 = append(l.v4, s)
		} else {
			l.v6 = append(l.v6, s)
		}
	}
	return allowList{mergeSpans(l.v4), mergeSpans(l.v6)}
}

// normalizePrefix returns the canonical form of p, or false for a prefix
// that cannot be represented (the zero Prefix).
func normalizePrefix(p netip.Prefix) (netip.Prefix, bool) {
	if !p.IsValid() {
		return netip.Prefix{}, false
	}
	a := p.Addr().WithZone("")
	bits := p.Bits()
	if a.Is4In6() {
		if bits < 96 {
			// Spans more than the mapped range: keep it IPv6, as written.
			return netip.PrefixFrom(a, bits).Masked(), true
		}
		a, bits = a.Unmap(), bits-96
	}
	return netip.PrefixFrom(a, bits).Masked(), true
}

// lastAddr returns the highest address of a masked prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// mergeSpans sorts spans and merges those that overlap or touch.
func mergeSpans(s []addrSpan) []addrSpan {
	if len(s) == 0 {
		return nil
	}
	slices.SortFunc(s, func(a, b addrSpan) int { return a.lo.Compare(b.lo) })
	out := s[:1]
	for _, r := range s[1:] {
		last := &out[len(out)-1]
		// r starts inside last, or right after it (last.hi+1 == r.lo).
		if r.lo.Compare(last.hi) <= 0 || (last.hi.Next().IsValid() && last.hi.Next() == r.lo) {
			if r.hi.Compare(last.hi) > 0 {
				last.hi = r.hi
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// contains reports whether a (unmapped, no zone) falls in the list.
func (l *allowList) contains(a netip.Addr) bool {
	s := l.v6
	if a.Is4() {
		s = l.v4
	}
	// The last span starting at or before a is the only candidate.
	i, found := slices.BinarySearchFunc(s, a, func(r addrSpan, a netip.Addr) int { return r.lo.Compare(a) })
	if found {
		return true
	}
	return i > 0 && a.Compare(s[i-1].hi) <= 0
}

// spans converts address ranges to byte spans for the interval encoder.
func (l *allowList) spans(v4 bool) []span {
	s := l.v6
	if v4 {
		s = l.v4
	}
	out := make([]span, len(s))
	for i, r := range s {
		out[i] = span{r.lo.AsSlice(), r.hi.AsSlice()}
	}
	return out
}

// portSpans returns the runs of consecutive ports of s as 2-byte
// big-endian spans (inet_service is network byte order).
func portSpans(s *portset.Set) []span {
	var out []span
	ports := s.Ports()
	for i := 0; i < len(ports); {
		j := i
		for j+1 < len(ports) && ports[j+1] == ports[j]+1 {
			j++
		}
		out = append(out, span{be16(ports[i]), be16(ports[j])})
		i = j + 1
	}
	return out
}

func be16(p uint16) []byte { return []byte{byte(p >> 8), byte(p)} }

// interval is one element of an interval set as the kernel stores it: a
// key that opens a range, or (end) the first key after a range.
type interval struct {
	key []byte
	end bool
}

// intervals encodes sorted, disjoint, non-adjacent spans the way the nft
// tool does, which is what the kernel's interval set expects: an "end"
// element at key 0 when the first range does not start at 0, then each
// range as its start key plus an "end" element at hi+1. A range that
// reaches the top of the key space (port 65535, 255.255.255.255) has no end
// element: hi+1 would wrap to 0.
func intervals(spans []span) []interval {
	if len(spans) == 0 {
		return nil
	}
	out := make([]interval, 0, 2*len(spans)+1)
	if !isZero(spans[0].lo) {
		out = append(out, interval{key: make([]byte, len(spans[0].lo)), end: true})
	}
	for _, s := range spans {
		out = append(out, interval{key: s.lo})
		if next, ok := increment(s.hi); ok {
			out = append(out, interval{key: next, end: true})
		}
	}
	return out
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// increment returns b+1 as a big-endian number, or false when b is all
// ones (the result would wrap).
func increment(b []byte) ([]byte, bool) {
	out := slices.Clone(b)
	for i := len(out) - 1; i >= 0; i-- {
		out[i]++
		if out[i] != 0 {
			return out, true
		}
	}
	return nil, false
}
