// Package ignore holds the hosts PortSentry must never act on: the
// IGNORE_FILE list (Debian builds it from portsentry.ignore.static plus the
// host's own addresses) and this host's interface addresses.
//
// It fixes the flaws of PortSentry 2.x's reader: entries with host bits set
// (10.1.2.3/8) match their whole network instead of nothing; CRLF, blanks
// and upper-case hex are accepted; the last line counts even without a final
// newline. A bare address is a single host, so Debian's "0.0.0.0" line
// ignores only 0.0.0.0, never everyone.
package ignore

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
)

// List is a set of address prefixes. It is immutable once built, so one
// List may be read by many goroutines (every sensor, the engine) without
// locks; reloading builds a new List. The nil *List is a valid empty list.
type List struct {
	// prefixes is the canonical form: masked, IPv4-mapped entries turned
	// into IPv4, sorted, and without prefixes covered by another one. The
	// last rule makes the entries disjoint, which is what nftables interval
	// sets demand.
	prefixes []netip.Prefix
	// v4 and v6 are the same prefixes as sorted, disjoint address ranges,
	// so Contains is a binary search rather than a scan of every entry.
	v4, v6 []span
}

// span is the inclusive address range of one prefix.
type span struct{ lo, hi netip.Addr }

// Error reports a bad line of an ignore file, or a file that could not be
// read (Line 0).
type Error struct {
	// File is the name given to Parse or the path given to Load.
	File string
	// Line is the 1-based line number, 0 for I/O errors.
	Line int
	// Text is the entry as written, comment and blanks removed.
	Text string
	// Err is the reason.
	Err error
}

// Error returns `FILE:LINE: bad entry "TEXT": reason`.
func (e *Error) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %v", e.File, e.Err)
	}
	return fmt.Sprintf("%s:%d: bad entry %q: %v", e.File, e.Line, e.Text, e.Err)
}

// Unwrap returns the reason, for errors.Is and errors.As.
func (e *Error) Unwrap() error { return e.Err }

// New builds a List from prefixes. Host bits are masked off, IPv4-mapped
// IPv6 prefixes of /96 or longer become IPv4 prefixes, zones are dropped,
// and invalid (zero) prefixes are skipped.
//
// An IPv6 prefix shorter than /96 that spans ::ffff:0:0/96 (::/0, say) does
// not match IPv4 addresses: a mapped address is an IPv4 host that reached us
// over a dual-stack socket, and "ignore all IPv6" should not ignore it.
func New(prefixes ...netip.Prefix) *List {
	ps := make([]netip.Prefix, 0, len(prefixes))
	for _, p := range prefixes {
		if p, ok := normalize(p); ok {
			ps = append(ps, p)
		}
	}
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Bits(), b.Bits())
	})
	l := &List{}
	for _, p := range ps {
		// Sorted by start then length, a covering prefix comes before
		// what it covers, and kept prefixes are disjoint, so only the last
		// kept one can cover p.
		if n := len(l.prefixes); n > 0 && l.prefixes[n-1].Overlaps(p) {
			continue
		}
		l.prefixes = append(l.prefixes, p)
		s := span{p.Addr(), lastAddr(p)}
		if p.Addr().Is4() {
			l.v4 = append(l.v4, s)
		} else {
			l.v6 = append(l.v6, s)
		}
	}
	return l
}

// normalize returns p in canonical form, or false if p is invalid.
func normalize(p netip.Prefix) (netip.Prefix, bool) {
	if !p.IsValid() {
		return netip.Prefix{}, false
	}
	a, bits := p.Addr().WithZone(""), p.Bits()
	if a.Is4In6() && bits >= 96 {
		a, bits = a.Unmap(), bits-96
	}
	return netip.PrefixFrom(a, bits).Masked(), true
}

// lastAddr returns the highest address in p (p masked).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As16()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96 // As16 puts IPv4 in the last four bytes
	}
	for i := bits; i < 128; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a := netip.AddrFrom16(b)
	if p.Addr().Is4() {
		a = a.Unmap()
	}
	return a
}

// Merge returns a new List holding the entries of both l and o. Neither is
// changed.
func (l *List) Merge(o *List) *List {
	return New(append(slices.Clone(l.Prefixes()), o.Prefixes()...)...)
}

// Contains reports whether a is covered by an entry. IPv4-mapped IPv6
// addresses are looked up as IPv4 and zones are ignored, so an attacker
// seen through a dual-stack socket matches its IPv4 entry.
func (l *List) Contains(a netip.Addr) bool {
	if l == nil || !a.IsValid() {
		return false
	}
	a = a.Unmap().WithZone("")
	spans := l.v6
	if a.Is4() {
		spans = l.v4
	}
	// First span starting after a; the one before it is the only candidate.
	i, _ := slices.BinarySearchFunc(spans, a, func(s span, a netip.Addr) int {
		if s.lo.Compare(a) <= 0 {
			return -1
		}
		return 1
	})
	return i > 0 && spans[i-1].hi.Compare(a) >= 0
}

// Len returns the number of entries in canonical form (see Prefixes).
func (l *List) Len() int {
	if l == nil {
		return 0
	}
	return len(l.prefixes)
}

// Prefixes returns the entries in canonical form: host bits masked,
// IPv4-mapped entries as IPv4, sorted, and without entries covered by
// another (10.1.0.0/16 disappears next to 10.0.0.0/8). The caller may
// modify the returned slice.
func (l *List) Prefixes() []netip.Prefix {
	if l == nil {
		return nil
	}
	return slices.Clone(l.prefixes)
}

// Parse reads an ignore file: one address or address/prefix per line, IPv4
// or IPv6. "#" starts a comment anywhere on a line; blank lines, CRLF,
// surrounding blanks and a missing final newline are fine. A bare address
// is one host (/32 or /128). PortSentry 1.2's dotted netmasks
// ("192.168.0.0/255.255.0.0") are accepted when contiguous. name is used
// in errors. The first bad line is returned as an *Error: a typo in an
// ignore list would otherwise let the daemon block a host the user meant to
// protect.
func Parse(r io.Reader, name string) (*List, error) {
	ps, err := parse(r, name)
	if err != nil {
		return nil, err
	}
	return New(ps...), nil
}

func parse(r io.Reader, name string) ([]netip.Prefix, error) {
	var ps []netip.Prefix
	br := bufio.NewReader(r)
	for num := 1; ; num++ {
		text, rerr := br.ReadString('\n')
		if rerr != nil && rerr != io.EOF {
			return nil, &Error{File: name, Err: rerr}
		}
		if text == "" && rerr == io.EOF {
			return ps, nil
		}
		text, _, _ = strings.Cut(text, "#")
		text = strings.TrimSpace(text)
		if text != "" {
			p, err := parseEntry(text)
			if err != nil {
				return nil, &Error{File: name, Line: num, Text: text, Err: err}
			}
			ps = append(ps, p)
		}
		if rerr == io.EOF {
			return ps, nil
		}
	}
}

// parseEntry parses one entry, comment and blanks already removed.
func parseEntry(text string) (netip.Prefix, error) {
	if strings.ContainsAny(text, " \t\v\f") {
		return netip.Prefix{}, errors.New("one address or address/prefix per line")
	}
	addrText, maskText, hasMask := strings.Cut(text, "/")
	a, err := netip.ParseAddr(addrText)
	if err != nil {
		return netip.Prefix{}, err
	}
	// A zone (fe80::1%eth0) cannot be matched against a packet's source
	// and a sensor reports none; dropping it keeps the entry useful.
	a = a.WithZone("")
	bits := a.BitLen()
	if hasMask {
		if bits, err = parseMask(a, maskText); err != nil {
			return netip.Prefix{}, err
		}
	}
	return netip.PrefixFrom(a, bits), nil
}

// parseMask reads a prefix length, or for IPv4 a dotted netmask as
// PortSentry 1.2 wrote them.
func parseMask(a netip.Addr, s string) (int, error) {
	if strings.Contains(s, ".") {
		if !a.Is4() {
			return 0, fmt.Errorf("dotted netmask %q needs an IPv4 address", s)
		}
		m, err := netip.ParseAddr(s)
		if err != nil || !m.Is4() {
			return 0, fmt.Errorf("bad netmask %q", s)
		}
		b := m.As4()
		v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		ones := 0
		for ones < 32 && v&(1<<(31-ones)) != 0 {
			ones++
		}
		// Contiguous iff nothing is set after the leading ones.
		if ones < 32 && v<<ones != 0 {
			return 0, fmt.Errorf("netmask %q is not contiguous", s)
		}
		return ones, nil
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' || n > a.BitLen() {
			return 0, fmt.Errorf("bad prefix length %q (want 0-%d)", s, a.BitLen())
		}
		n = n*10 + int(s[i]-'0')
	}
	if s == "" || n > a.BitLen() {
		return 0, fmt.Errorf("bad prefix length %q (want 0-%d)", s, a.BitLen())
	}
	return n, nil
}

// Load reads and unites the given ignore files. A path that does not exist
// is skipped silently, so callers can pass IGNORE_FILE and
// IGNORE_FILE+".static" whether or not the system has them; any other
// failure is an *Error. With no readable file the List is empty.
func Load(paths ...string) (*List, error) {
	var all []netip.Prefix
	for _, path := range paths {
		f, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, &Error{File: path, Err: err}
		}
		ps, err := parse(f, path)
		f.Close()
		if err != nil {
			return nil, err
		}
		all = append(all, ps...)
	}
	return New(all...), nil
}

// LinkPrefixes returns this host's IPv6 networks: the subnet of every
// IPv6 interface address, and fe80::/10, sorted and without duplicates.
// Neighbours there are reached directly, so a ban by IPv6 prefix
// (BAN_PREFIX6) must not cover them all for one of them.
func LinkPrefixes() ([]netip.Prefix, error) {
	ps := []netip.Prefix{netip.MustParsePrefix("fe80::/10")}
	addrs, err := interfaceAddrs()
	if err != nil {
		return ps, fmt.Errorf("ignore: listing interface addresses: %w", err)
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		addr, ok := netip.AddrFromSlice(n.IP)
		bits, size := n.Mask.Size()
		if !ok || addr.Is4In6() || !addr.Is6() || size != 128 {
			continue
		}
		ps = append(ps, netip.PrefixFrom(addr, bits).Masked())
	}
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(ps), nil
}

// interfaceAddrs is net.InterfaceAddrs, replaceable in tests.
var interfaceAddrs = net.InterfaceAddrs

// LocalPrefixes returns every address of this host's interfaces as a /32 or
// /128, plus 127.0.0.0/8 and ::1/128, sorted and without duplicates: a
// host must never block itself (Debian's init script adds the interface
// addresses to portsentry.ignore for the same reason). Only the addresses,
// not their subnets: neighbours on the LAN can scan too. If the interfaces
// cannot be listed, the loopback prefixes are still returned, with the
// error.
func LocalPrefixes() ([]netip.Prefix, error) {
	ps := []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("::1/128"),
	}
	addrs, err := interfaceAddrs()
	if err != nil {
		return ps, fmt.Errorf("ignore: listing interface addresses: %w", err)
	}
	for _, a := range addrs {
		var ip net.IP
		switch v := a.(type) {
		case *net.IPNet:
			ip = v.IP
		case *net.IPAddr:
			ip = v.IP
		default:
			continue
		}
		addr, ok := netip.AddrFromSlice(ip)
		if !ok {
			continue
		}
		addr = addr.Unmap()
		ps = append(ps, netip.PrefixFrom(addr, addr.BitLen()))
	}
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Bits(), b.Bits())
	})
	return slices.Compact(ps), nil
}
