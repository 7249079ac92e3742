// Package portset holds sets of TCP or UDP port numbers, as written in
// PortSentry's TCP_PORTS, UDP_PORTS and ADVANCED_EXCLUDE_* keys
// ("1,7,9,512-515").
//
// A Set is a fixed 8 KiB bitmap rather than a map or a sorted slice: sensors
// ask Has for every captured packet, so the lookup must be one shift and one
// mask with no allocation, and advanced mode routinely holds a thousand ports
// or more.
package portset

import (
	"math/bits"
	"strconv"
	"strings"
)

// Set is a set of ports 1..65535. The zero value is the empty set, ready to
// use. Port 0 is never a member: it cannot be the destination of a real probe
// and PortSentry has never accepted it in a port list.
//
// Set is comparable with ==. It is 8 KiB, so pass *Set where copying matters.
type Set struct{ bits [1024]uint64 }

// ParseError reports a bad item in a port list. It names the item so that
// config errors can point at the exact token in a long TCP_PORTS line.
type ParseError struct {
	// Item is the offending item as written, without surrounding blanks.
	// It is "" for an empty item (two commas in a row, a trailing comma).
	Item string
	// Msg is the whole message, item included.
	Msg string
}

// Error returns Msg, e.g. `bad port "70000" (must be 1-65535)`.
func (e *ParseError) Error() string { return e.Msg }

// Parse reads a comma-separated list of ports and inclusive ranges "a-b",
// each 1..65535, e.g. "1,7,9,512-515". Blanks around items and around the
// "-" of a range are tolerated, because hand-edited configs have them. An
// empty or all-blank string is the empty set (PortSentry's `UDP_PORTS=""`).
// Any other problem (an empty item, a number out of range, a reversed range,
// a stray sign) is a *ParseError: PortSentry 2.x skips bad entries silently,
// which leaves the user believing a port is watched when it is not.
func Parse(s string) (Set, error) {
	var set Set
	if strings.TrimSpace(s) == "" {
		return set, nil
	}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return Set{}, &ParseError{Msg: "empty item"}
		}
		lo, hi, isRange := strings.Cut(item, "-")
		if !isRange {
			p, ok := parsePort(item)
			if !ok {
				return Set{}, badPort(item, item)
			}
			set.Add(p)
			continue
		}
		lo, hi = strings.TrimSpace(lo), strings.TrimSpace(hi)
		a, ok := parsePort(lo)
		if !ok {
			return Set{}, badPort(item, lo)
		}
		b, ok := parsePort(hi)
		if !ok {
			return Set{}, badPort(item, hi)
		}
		if a > b {
			return Set{}, &ParseError{Item: item, Msg: "bad range " + strconv.Quote(item) + " (start is after end)"}
		}
		set.addRange(int(a), int(b))
	}
	return set, nil
}

// badPort builds the error for a bad port number; inside a range it names the
// range too, so the user can find it in the list.
func badPort(item, port string) *ParseError {
	msg := "bad port " + strconv.Quote(port) + " (must be 1-65535)"
	if item != port {
		msg = "bad range " + strconv.Quote(item) + ": " + msg
	}
	return &ParseError{Item: item, Msg: msg}
}

// parsePort accepts only plain decimal digits: strconv.Atoi would also take
// "+7", which no PortSentry ever did. Leading zeros are harmless ("080" is
// 80); the loop stops as soon as the value passes 65535, so a very long
// string costs nothing.
func parsePort(s string) (uint16, bool) {
	if s == "" {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
		if n > 65535 {
			return 0, false
		}
	}
	if n == 0 {
		return 0, false
	}
	return uint16(n), true
}

// Below returns the ports 1..n-1: PortSentry 1.2's advanced mode watches
// "every port below ADVANCED_PORTS_*". n <= 1 gives the empty set; n above
// 65536 is treated as 65536 (every port).
func Below(n int) Set {
	var s Set
	if n > 65536 {
		n = 65536
	}
	if n > 1 {
		s.addRange(1, n-1)
	}
	return s
}

// addRange adds lo..hi inclusive, 1 <= lo <= hi <= 65535, a word at a time
// so that Below(65536) does not loop 65535 times.
func (s *Set) addRange(lo, hi int) {
	for lo <= hi {
		w, b := lo>>6, uint(lo&63)
		n := min(hi-lo+1, 64-int(b)) // bits to set in this word
		mask := ^uint64(0)
		if n < 64 {
			mask = (uint64(1)<<uint(n) - 1)
		}
		s.bits[w] |= mask << b
		lo += n
	}
}

// Has reports whether p is in the set. It never allocates.
func (s *Set) Has(p uint16) bool {
	return s.bits[p>>6]&(1<<(p&63)) != 0
}

// Add adds p to the set. Adding 0 does nothing (port 0 is never a member).
func (s *Set) Add(p uint16) {
	if p != 0 {
		s.bits[p>>6] |= 1 << (p & 63)
	}
}

// Remove removes p from the set.
func (s *Set) Remove(p uint16) {
	s.bits[p>>6] &^= 1 << (p & 63)
}

// AddSet adds every port of o to s (union).
func (s *Set) AddSet(o *Set) {
	for i := range s.bits {
		s.bits[i] |= o.bits[i]
	}
}

// RemoveSet removes every port of o from s (difference), as advanced mode
// removes ADVANCED_EXCLUDE_* and ports in use.
func (s *Set) RemoveSet(o *Set) {
	for i := range s.bits {
		s.bits[i] &^= o.bits[i]
	}
}

// Len returns the number of ports in the set.
func (s *Set) Len() int {
	n := 0
	for _, w := range s.bits {
		n += bits.OnesCount64(w)
	}
	return n
}

// Ports returns the members in ascending order. The result is never nil, so
// callers (and tests) need not tell "no ports" from "unset".
func (s *Set) Ports() []uint16 {
	out := make([]uint16, 0, s.Len())
	for i, w := range s.bits {
		for w != 0 {
			b := bits.TrailingZeros64(w)
			out = append(out, uint16(i<<6|b))
			w &= w - 1
		}
	}
	return out
}

// String returns the canonical compact form: ascending, runs of two or more
// consecutive ports written as "a-b", e.g. "1,7,9,512-515"; "" for the empty
// set. Parse(s.String()) == s, so String is safe to write back into a config
// file or a log line.
func (s Set) String() string {
	var b strings.Builder
	ports := s.Ports()
	for i := 0; i < len(ports); {
		j := i
		for j+1 < len(ports) && ports[j+1] == ports[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(ports[i])))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(int(ports[j])))
		}
		i = j + 1
	}
	return b.String()
}
