// Package infra finds the host's own infrastructure, the addresses a ban
// must never cut it off from: the name servers of /etc/resolv.conf, the
// default gateways, and the addresses administrators are logged in from
// (utmp). Anyone can forge a probe from these addresses; banning them would
// turn the forger's one packet into an outage, so they are never blocked
// (PROTECT_INFRASTRUCTURE="1", the default).
//
// Every reader takes what it can and skips what it cannot parse: a damaged
// file protects fewer addresses, it never stops the daemon.
package infra

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Default paths.
const (
	ResolvConf = "/etc/resolv.conf"
	Route4     = "/proc/net/route"
	Route6     = "/proc/net/ipv6_route"
	Utmp       = "/run/utmp"
)

// Infra is what Discover found, by kind, each sorted.
type Infra struct {
	NameServers []netip.Addr
	Gateways    []netip.Addr
	Sessions    []netip.Addr // where administrators are logged in from
}

// Prefixes is every address of i as a host prefix.
func (i Infra) Prefixes() []netip.Prefix {
	var ps []netip.Prefix
	for _, list := range [][]netip.Addr{i.NameServers, i.Gateways, i.Sessions} {
		for _, a := range list {
			ps = append(ps, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return ps
}

// Paths are the files Discover reads; a zero field means its default.
type Paths struct {
	ResolvConf, Route4, Route6, Utmp string
}

// Discover reads every source. A missing file is no error (no utmp on a
// container, no IPv6); the first other error is returned beside what the
// other sources found.
func Discover(p Paths) (Infra, error) {
	or := func(s, def string) string {
		if s == "" {
			return def
		}
		return s
	}
	var errs []error
	read := func(path string, parse func(io.Reader) []netip.Addr) []netip.Addr {
		f, err := os.Open(path)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			return nil
		}
		defer f.Close()
		r := &errReader{r: io.LimitReader(f, 1<<20)}
		out := parse(r)
		if r.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, r.err))
		}
		return out
	}
	i := Infra{
		NameServers: read(or(p.ResolvConf, ResolvConf), ParseResolvConf),
		Gateways: append(read(or(p.Route4, Route4), ParseRoute4),
			read(or(p.Route6, Route6), ParseRoute6)...),
		Sessions: read(or(p.Utmp, Utmp), ParseUtmp),
	}
	for _, list := range []*[]netip.Addr{&i.NameServers, &i.Gateways, &i.Sessions} {
		slices.SortFunc(*list, netip.Addr.Compare)
		*list = slices.Compact(*list)
	}
	return i, errors.Join(errs...)
}

// errReader remembers the first read error other than EOF: the parsers
// stop at any error, and Discover reports it.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// usable keeps the addresses a ban could land on: unicast, not the
// unspecified address; IPv4-mapped IPv6 is read as IPv4, zones dropped.
func usable(a netip.Addr) (netip.Addr, bool) {
	a = a.Unmap().WithZone("")
	return a, a.IsValid() && !a.IsUnspecified() && !a.IsMulticast()
}

// ParseResolvConf reads resolv.conf(5)'s "nameserver ADDRESS" lines.
func ParseResolvConf(r io.Reader) []netip.Addr {
	var out []netip.Addr
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		if a, err := netip.ParseAddr(f[1]); err == nil {
			if a, ok := usable(a); ok {
				out = append(out, a)
			}
		}
	}
	return out
}

// ParseRoute4 reads /proc/net/route: the gateways of default routes
// (destination and mask 0, RTF_GATEWAY set). Addresses are hex in the
// kernel's byte order (little-endian on every Linux this runs on).
func ParseRoute4(r io.Reader) []netip.Addr {
	const rtfGateway = 0x2
	var out []netip.Addr
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[1] != "00000000" || f[7] != "00000000" {
			continue
		}
		flags, err := strconv.ParseUint(f[3], 16, 16)
		if err != nil || flags&rtfGateway == 0 {
			continue
		}
		b, err := hex.DecodeString(f[2])
		if err != nil || len(b) != 4 {
			continue
		}
		var a4 [4]byte
		binary.BigEndian.PutUint32(a4[:], binary.LittleEndian.Uint32(b))
		if a, ok := usable(netip.AddrFrom4(a4)); ok {
			out = append(out, a)
		}
	}
	return out
}

// ParseRoute6 reads /proc/net/ipv6_route: the next hops of default routes
// (destination ::/0). Addresses are 32 hex digits in network order.
func ParseRoute6(r io.Reader) []netip.Addr {
	var out []netip.Addr
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 || f[0] != strings.Repeat("0", 32) || f[1] != "00" {
			continue
		}
		b, err := hex.DecodeString(f[4])
		if err != nil || len(b) != 16 {
			continue
		}
		if a, ok := usable(netip.AddrFrom16([16]byte(b))); ok {
			out = append(out, a)
		}
	}
	return out
}

// utmp(5) on Linux: 384-byte records; what is read of them.
const (
	utmpSize        = 384
	utmpTypeOff     = 0   // ut_type, int16
	utmpAddrOff     = 348 // ut_addr_v6, 4 × int32 in network order
	utmpUserProcess = 7   // USER_PROCESS: a logged-in user
)

// ParseUtmp reads utmp records: the remote addresses of logged-in users
// (a local login has none). A trailing partial record is ignored.
func ParseUtmp(r io.Reader) []netip.Addr {
	var out []netip.Addr
	rec := make([]byte, utmpSize)
	for {
		if _, err := io.ReadFull(r, rec); err != nil {
			return out
		}
		if binary.LittleEndian.Uint16(rec[utmpTypeOff:]) != utmpUserProcess {
			continue
		}
		raw := [16]byte(rec[utmpAddrOff : utmpAddrOff+16])
		var a netip.Addr
		if [12]byte(raw[4:]) == ([12]byte{}) {
			// Only the first word set: glibc stores IPv4 there.
			a = netip.AddrFrom4([4]byte(raw[:4]))
		} else {
			a = netip.AddrFrom16(raw)
		}
		if a, ok := usable(a); ok {
			out = append(out, a)
		}
	}
}
