package bans

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"
	"unicode/utf8"
)

const (
	opFormat = "format"
	opBan    = "ban"
	opPast   = "past"
	opUnban  = "unban"
)

// record is one line of the file, checked.
type record struct {
	op      string
	v       int
	addr    netip.Addr
	prefix  netip.Prefix
	reason  string
	proto   string
	origin  string
	port    uint16
	since   int64
	expires int64
	count   int32
}

// rawRecord is a line's fields before checking. The byte slices point
// into the line (scanRecord) or at encoding/json's strings.
type rawRecord struct {
	op, addr, prefix, reason, proto, origin, since, expires []byte
	v, count                                                int64
	port                                                    uint16
}

// wireRecord is a line for encoding/json.
type wireRecord struct {
	Op      string `json:"op"`
	V       int64  `json:"v"`
	Addr    string `json:"addr"`
	Prefix  string `json:"prefix"`
	Reason  string `json:"reason"`
	Port    uint16 `json:"port"`
	Proto   string `json:"proto"`
	Origin  string `json:"origin"`
	Since   string `json:"since"`
	Expires string `json:"expires"`
	Count   int64  `json:"count"`
}

// Times outside these years are damage (and would overflow Unix
// nanoseconds).
var (
	minTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// decodeRecord reads and checks one line (without its newline). str makes
// the reason and protocol strings (nil: a plain conversion); the loader
// interns them.
func decodeRecord(line []byte, str func([]byte) string) (record, error) {
	if str == nil {
		str = func(b []byte) string { return string(b) }
	}
	var w rawRecord
	if !scanRecord(line, &w) {
		var j wireRecord
		if err := json.Unmarshal(line, &j); err != nil {
			return record{}, err
		}
		w = rawRecord{
			op: []byte(j.Op), addr: []byte(j.Addr), prefix: []byte(j.Prefix),
			reason: []byte(j.Reason), proto: []byte(j.Proto), origin: []byte(j.Origin),
			since: []byte(j.Since), expires: []byte(j.Expires),
			v: j.V, count: j.Count, port: j.Port,
		}
	}
	r := record{port: w.port}
	switch string(w.op) {
	case opFormat:
		r.op = opFormat
		r.v = int(min(max(w.v, -1), 1<<20))
		return r, nil
	case opUnban:
		r.op = opUnban
		p, err := netip.ParsePrefix(string(w.prefix))
		if err != nil {
			return r, fmt.Errorf("unban: %w", err)
		}
		r.prefix = normalizePrefix(p)
		return r, nil
	case opBan:
		r.op = opBan
	case opPast:
		r.op = opPast
	default:
		return r, fmt.Errorf("unknown record %q", w.op)
	}
	a, err := netip.ParseAddr(string(w.addr))
	if err != nil {
		return r, fmt.Errorf("%s: %w", r.op, err)
	}
	r.addr = normalize(a)
	if w.count < 1 || w.count > 1<<30 {
		return r, fmt.Errorf("%s: bad count %d", r.op, w.count)
	}
	r.count = int32(w.count)
	if len(w.expires) > 0 {
		if r.expires, err = parseTime(w.expires); err != nil {
			return r, fmt.Errorf("%s: expires: %w", r.op, err)
		}
	}
	if r.op == opPast {
		if len(w.expires) == 0 {
			return r, errors.New(`past: no "expires"`)
		}
		r.port = 0
		return r, nil
	}
	if r.since, err = parseTime(w.since); err != nil {
		return r, fmt.Errorf("ban: since: %w", err)
	}
	if len(w.proto) > maxProto {
		return r, errors.New("ban: proto too long")
	}
	if len(w.reason) > maxReason {
		return r, errors.New("ban: reason too long")
	}
	if len(w.origin) > maxOrigin {
		return r, errors.New("ban: origin too long")
	}
	r.reason, r.proto, r.origin = str(w.reason), str(w.proto), str(w.origin)
	return r, nil
}

func parseTime(b []byte) (int64, error) {
	t, ok := scanTime(b)
	if !ok {
		var err error
		if t, err = time.Parse(time.RFC3339Nano, string(b)); err != nil {
			return 0, err
		}
	}
	if t.Before(minTime) || !t.Before(maxTime) {
		return 0, fmt.Errorf("time %s out of range", b)
	}
	return t.UnixNano(), nil
}

// scanTime reads the times this package writes, "2026-11-22T01:40:36Z"
// with an optional fraction of 1 to 9 digits, without allocating; false
// for anything else, which time.Parse then reads (FuzzScanTime checks
// that the two agree).
func scanTime(b []byte) (time.Time, bool) {
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' || b[len(b)-1] != 'Z' {
		return time.Time{}, false
	}
	num := func(i, n int) (int, bool) {
		v := 0
		for _, c := range b[i : i+n] {
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		return v, true
	}
	year, ok1 := num(0, 4)
	month, ok2 := num(5, 2)
	day, ok3 := num(8, 2)
	hour, ok4 := num(11, 2)
	minute, ok5 := num(14, 2)
	sec, ok6 := num(17, 2)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return time.Time{}, false
	}
	if month < 1 || month > 12 || day < 1 || day > daysIn(year, month) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	nsec := 0
	if frac := b[19 : len(b)-1]; len(frac) > 0 {
		if len(frac) < 2 || len(frac) > 10 || frac[0] != '.' {
			return time.Time{}, false
		}
		f, ok := num(20, len(frac)-1)
		if !ok {
			return time.Time{}, false
		}
		for range 10 - len(frac) {
			f *= 10
		}
		nsec = f
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC), true
}

func daysIn(year, month int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// scanRecord decodes the lines this package writes, many times faster
// than encoding/json and without allocating: a flat object of known keys
// whose values are strings without escapes or plain integers. It reports
// false for anything else (escapes, unknown or differently cased keys,
// numbers with a fraction, nested values, bad syntax), and decodeRecord
// then asks encoding/json, so the two always agree (FuzzScanRecord checks
// it).
func scanRecord(line []byte, w *rawRecord) bool {
	i := skipSpace(line, 0)
	if i >= len(line) || line[i] != '{' {
		return false
	}
	i = skipSpace(line, i+1)
	if i < len(line) && line[i] == '}' {
		return skipSpace(line, i+1) == len(line)
	}
	for {
		key, j, ok := scanString(line, i)
		if !ok {
			return false
		}
		i = skipSpace(line, j)
		if i >= len(line) || line[i] != ':' {
			return false
		}
		i = skipSpace(line, i+1)
		if i >= len(line) {
			return false
		}
		if line[i] == '"' {
			val, j, ok := scanString(line, i)
			if !ok {
				return false
			}
			i = j
			switch string(key) {
			case "op":
				w.op = val
			case "addr":
				w.addr = val
			case "prefix":
				w.prefix = val
			case "reason":
				w.reason = val
			case "proto":
				w.proto = val
			case "origin":
				w.origin = val
			case "since":
				w.since = val
			case "expires":
				w.expires = val
			default:
				return false
			}
		} else {
			n, j, ok := scanInt(line, i)
			if !ok {
				return false
			}
			i = j
			switch string(key) {
			case "v":
				w.v = n
			case "count":
				w.count = n
			case "port":
				if n > 0xffff {
					return false
				}
				w.port = uint16(n)
			default:
				return false
			}
		}
		i = skipSpace(line, i)
		if i >= len(line) {
			return false
		}
		switch line[i] {
		case ',':
			i = skipSpace(line, i+1)
		case '}':
			return skipSpace(line, i+1) == len(line)
		default:
			return false
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// scanString returns the contents of the string starting at b[i] (a
// quote) and the index after it; false for escapes, control characters
// or invalid UTF-8, which encoding/json handles.
func scanString(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	end := bytes.IndexByte(b[i+1:], '"')
	if end < 0 {
		return nil, 0, false
	}
	s := b[i+1 : i+1+end]
	ascii := true
	for _, c := range s {
		if c < 0x20 || c == '\\' {
			return nil, 0, false
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
	}
	if !ascii && !utf8.Valid(s) {
		return nil, 0, false
	}
	return s, i + 2 + end, true
}

// scanInt reads a non-negative JSON integer of at most 18 digits.
func scanInt(b []byte, i int) (int64, int, bool) {
	start := i
	var n int64
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		n = n*10 + int64(b[i]-'0')
		i++
	}
	digits := i - start
	if digits == 0 || digits > 18 || (digits > 1 && b[start] == '0') {
		return 0, 0, false
	}
	if i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E') {
		return 0, 0, false
	}
	return n, i, true
}
