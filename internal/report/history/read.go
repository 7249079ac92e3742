package history

// Reading the history file back, for `portsentry report`: both formats,
// as this daemon writes them and as PortSentry 1.2 and 2.x wrote them
// (2.x before 2.0.5 has no "blocked:" field), in one file if need be (a
// HISTORY_FORMAT changed along the way).

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/portsentry-go/portsentry/internal/report/linefile"
)

// Entry is one line of a history file.
type Entry struct {
	Time  time.Time
	Addr  netip.Addr
	Name  string // the host name written beside the address; "" when it is the address
	Port  uint16
	Proto string // "TCP" or "UDP"
	// Kind is the probe's kind as the event stream names it ("syn",
	// "connect", "udp", …); "" when the line does not say (1.2 records).
	Kind string
	// Format is "1.2" (a block record) or "2.x" (a "Scan from" event).
	Format string
	// Ignored says a 2.x event came from an ignored host; Blocked that the
	// source was blocked (always true for 1.2 records, which are blocks).
	Ignored, Blocked bool
}

// MaxBad is how many damaged lines ReadFile returns one by one.
const MaxBad = linefile.MaxBad

// ParseLine reads one history line of either format:
//
//	1795311636 - 11/22/2026 01:40:36 Host: name/10.99.0.1 Port: 143 TCP Blocked
//	2026-11-22T01:42:52.875+0000 Scan from: [10.0.0.5] (name) protocol: [TCP] port: [143] type: [TCP SYN/Normal scan] IP opts: [not set] ignored: [false] triggered: [true] noblock: [false] blocked: [true]
//
// A 1.2 record's time is its epoch (the local date beside it is for
// humans, and a time-zone change makes it lie).
func ParseLine(line string) (Entry, error) {
	line = strings.TrimSpace(line)
	if i := strings.Index(line, "Scan from: ["); i >= 0 {
		return parse2x(line[:i], line[i+len("Scan from: ["):])
	}
	epoch, _, ok := strings.Cut(line, " ")
	if !ok {
		return Entry{}, errors.New(`neither a 1.2 record ("EPOCH - DATE Host: …") nor a 2.x "Scan from" line`)
	}
	sec, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil || sec < 0 || sec > 1<<40 {
		return Entry{}, fmt.Errorf("%q: not a time in seconds since 1970", epoch)
	}
	r, err := ParseRecord(line)
	if err != nil {
		return Entry{}, err
	}
	e := Entry{Time: time.Unix(sec, 0), Addr: r.Addr, Port: r.Port, Proto: r.Proto, Format: "1.2", Blocked: true}
	// The name is what stands between "Host: " and the last slash.
	if _, rest, ok := strings.Cut(line, " Host: "); ok {
		if host, _, ok := strings.Cut(rest, " Port: "); ok {
			e.Name = name(host[:max(strings.LastIndexByte(host, '/'), 0)], r.Addr)
		}
	}
	return e, nil
}

// timestamps2x are the time prefixes 2.x writes: with milliseconds (2.0.x,
// and this daemon), and without.
var timestamps2x = []string{"2006-01-02T15:04:05.000-0700", "2006-01-02T15:04:05-0700", time.RFC3339Nano}

func parse2x(stamp, rest string) (Entry, error) {
	var e Entry
	stamp = strings.TrimSpace(stamp)
	var err error
	for _, layout := range timestamps2x {
		if e.Time, err = time.Parse(layout, stamp); err == nil {
			break
		}
	}
	if err != nil {
		return e, fmt.Errorf("time %q: want 2006-01-02T15:04:05.000-0700", stamp)
	}
	addr, rest, ok := strings.Cut(rest, "] (")
	if !ok {
		return e, errors.New(`no "] (" after the address`)
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return e, fmt.Errorf("bad address: %w", err)
	}
	e.Addr = a.Unmap().WithZone("")
	// The name ends at the first ") protocol: [": 2.x wrote any name
	// its resolver returned, brackets and parentheses included.
	host, rest, ok := strings.Cut(rest, ") protocol: [")
	if !ok {
		return e, errors.New(`no "protocol:" field`)
	}
	e.Name = name(host, e.Addr)
	fields := bracketFields("protocol: [" + rest)
	switch e.Proto = fields["protocol"]; e.Proto {
	case "TCP", "UDP":
	default:
		return e, fmt.Errorf("protocol %q: want TCP or UDP", e.Proto)
	}
	port, err := strconv.ParseUint(fields["port"], 10, 16)
	if err != nil {
		return e, fmt.Errorf("bad port %q", fields["port"])
	}
	e.Port = uint16(port)
	e.Kind = kindOf(fields["type"], e.Proto)
	e.Format = "2.x"
	e.Ignored = fields["ignored"] == "true"
	e.Blocked = fields["blocked"] == "true"
	return e, nil
}

// bracketFields reads "key: [value] key: [value] …" into a map. Values
// hold no "]" (2.x's types and flags never do).
func bracketFields(s string) map[string]string {
	m := make(map[string]string, 10)
	for {
		key, rest, ok := strings.Cut(s, ": [")
		if !ok {
			return m
		}
		val, rest, ok := strings.Cut(rest, "]")
		if !ok {
			return m
		}
		m[strings.TrimSpace(key)] = val
		s = rest
	}
}

// kindOf names a 2.x "type" as the event stream does.
func kindOf(typ, proto string) string {
	switch {
	case typ == "Connect":
		return "connect"
	case typ == "TCP SYN/Normal scan":
		return "syn"
	case typ == "TCP FIN scan":
		return "fin"
	case typ == "TCP NULL scan":
		return "null"
	case typ == "TCP XMAS scan":
		return "xmas"
	case strings.HasPrefix(typ, "Unknown Type"):
		return "odd"
	case typ == "UDP" || proto == "UDP":
		return "udp"
	}
	return ""
}

// name returns the host name written beside addr, or "" when it is the
// address itself (not resolved).
func name(host string, addr netip.Addr) string {
	if a, err := netip.ParseAddr(host); err == nil && a.Unmap().WithZone("") == addr {
		return ""
	}
	return host
}

// ReadFile reads a history file: the copy logrotate keeps beside it
// (path+".1", when not compressed) first, then path, so entries come
// oldest first. fn is called for each entry. A missing file is an empty
// one. Lines of neither format are skipped and returned as *config.Error
// values ("FILE:LINE: problem"), at most MaxBad of them and then one
// error counting the others; err is a file that could not be read.
func ReadFile(path string, fn func(Entry)) (bad []error, err error) {
	bad, err = linefile.Read(path, func(line []byte) error {
		s := strings.TrimSpace(string(line))
		if s == "" || s[0] == '#' {
			return nil
		}
		e, err := ParseLine(s)
		if err == nil {
			fn(e)
		}
		return err
	})
	if err != nil {
		err = fmt.Errorf("history: %w", err)
	}
	return bad, err
}
