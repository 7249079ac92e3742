package jsonlog

// Reading the stream back, for `portsentry report`: the same line type as
// the writer, so the two cannot disagree on a key.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/portsentry-go/portsentry/internal/report/linefile"
)

// Entry is one line read back. Strings are as written ("tcp", "syn",
// "blocked"); absent (null) values are zero.
type Entry struct {
	Time       time.Time
	Hostname   string
	Src, Dst   netip.Addr
	Port       uint16
	Proto      string
	Kind       string
	Type       string
	Mode       string
	Action     string
	Hits       int
	Host       string
	Blocker    string
	BanExpires time.Time
	BanCount   int
	// Origin is where a ban was decided ("fleet:web1"); "" here.
	Origin string
}

// MaxBad is how many damaged lines ReadFile returns one by one; the rest
// are counted in one last error. A line longer than linefile.MaxLine is
// damage too, skipped without holding it in memory.
const MaxBad = linefile.MaxBad

// ParseLine reads one line (without its newline). time, src, port, proto,
// kind and action must be there and valid; the other keys may be missing
// or null, and keys this version does not know are ignored, so a newer
// writer's lines still read.
func ParseLine(b []byte) (Entry, error) {
	var l struct {
		line
		// Required keys, as pointers so that a missing one is told
		// from a zero one.
		Time   *string `json:"time"`
		Src    *string `json:"src"`
		Port   *uint16 `json:"port"`
		Proto  *string `json:"proto"`
		Kind   *string `json:"kind"`
		Action *string `json:"action"`
	}
	var e Entry
	if err := json.Unmarshal(b, &l); err != nil {
		return e, fmt.Errorf("not a JSON event: %w", err)
	}
	for _, f := range []struct {
		key string
		ok  bool
	}{{"time", l.Time != nil}, {"src", l.Src != nil}, {"port", l.Port != nil}, {"proto", l.Proto != nil}, {"kind", l.Kind != nil}, {"action", l.Action != nil}} {
		if !f.ok {
			return e, fmt.Errorf("no %q", f.key)
		}
	}
	t, err := time.Parse(time.RFC3339Nano, *l.Time)
	if err != nil {
		return e, fmt.Errorf("time %q: not RFC 3339", *l.Time)
	}
	src, err := netip.ParseAddr(*l.Src)
	if err != nil {
		return e, fmt.Errorf("src %q: not an address", *l.Src)
	}
	// A ban from elsewhere (action imported) has no probe, so no proto.
	if *l.Proto != "tcp" && *l.Proto != "udp" && !(*l.Proto == "" && l.Action != nil && *l.Action == Imported) {
		return e, fmt.Errorf("proto %q: want tcp or udp", *l.Proto)
	}
	if *l.Action == "" {
		return e, errors.New("empty action")
	}
	e = Entry{
		Time: t, Hostname: l.Hostname, Src: src.Unmap().WithZone(""), Port: *l.Port,
		Proto: *l.Proto, Kind: *l.Kind, Type: l.line.Type, Mode: l.Mode, Action: *l.Action,
		Hits: l.Hits, BanCount: l.BanCount,
	}
	if l.Dst != nil {
		if d, err := netip.ParseAddr(*l.Dst); err == nil {
			e.Dst = d.Unmap().WithZone("")
		}
	}
	if l.Host != nil {
		e.Host = *l.Host
	}
	if l.Blocker != nil {
		e.Blocker = *l.Blocker
	}
	if l.Origin != nil {
		e.Origin = *l.Origin
	}
	if l.BanExpires != nil {
		if x, err := time.Parse(time.RFC3339Nano, *l.BanExpires); err == nil {
			e.BanExpires = x
		}
	}
	return e, nil
}

// ReadFile reads the stream at path: the copy its rotation keeps
// (path+".1") first, then path, so entries come oldest first. fn is called
// for each entry. A missing file is an empty one. Damaged lines (a crash in
// the middle of a write, an edit) are skipped and returned as
// *config.Error values ("FILE:LINE: problem"), at most MaxBad of them and
// then one error counting the others; err is a file that could not be
// read.
func ReadFile(path string, fn func(Entry)) (bad []error, err error) {
	bad, err = linefile.Read(path, func(line []byte) error {
		b := bytes.TrimSpace(line)
		if len(b) == 0 {
			return nil
		}
		e, err := ParseLine(b)
		if err == nil {
			fn(e)
		}
		return err
	})
	if err != nil {
		err = fmt.Errorf("jsonlog: %w", err)
	}
	return bad, err
}
