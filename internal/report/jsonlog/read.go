package jsonlog

// Reading the stream back, for `portsentry report`: the same line type as
// the writer, so the two cannot disagree on a key.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"time"

	"github.com/portsentry-go/portsentry/internal/config"
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

// maxLine bounds a line read back: a line is a few hundred bytes, so a
// longer one is damage, skipped without holding it in memory.
const maxLine = 64 << 10

// MaxBad is how many damaged lines ReadFile returns one by one; the rest
// are counted in one last error.
const MaxBad = 20

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
	var nbad int
	for _, p := range []string{path + ".1", path} {
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return bad, fmt.Errorf("jsonlog: %w", err)
		}
		err = read(f, p, fn, func(e error) {
			if nbad++; nbad <= MaxBad {
				bad = append(bad, e)
			}
		})
		f.Close()
		if err != nil {
			return bad, err
		}
	}
	if nbad > MaxBad {
		bad = append(bad, fmt.Errorf("%s: %d more damaged lines", path, nbad-MaxBad))
	}
	return bad, nil
}

func read(r io.Reader, name string, fn func(Entry), badLine func(error)) error {
	br := bufio.NewReaderSize(r, maxLine)
	for n := 1; ; n++ {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			badLine(&config.Error{File: name, Line: n, Err: errors.New("line too long")})
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return fmt.Errorf("jsonlog: %s: %w", name, err)
			}
			continue
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("jsonlog: %s: %w", name, err)
		}
		if b := bytes.TrimSpace(line); len(b) > 0 {
			e, perr := ParseLine(b)
			if perr != nil {
				badLine(&config.Error{File: name, Line: n, Err: perr})
			} else {
				fn(e)
			}
		}
		if err == io.EOF {
			return nil
		}
	}
}
