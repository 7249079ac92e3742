// Package jsonlog writes an optional machine-readable stream of events:
// one JSON object per line, every field present in every line, for a SIEM
// or a log shipper. The human log lines (package logline) stay as they are;
// this is a second, stable format beside them.
//
// A line looks like this (one line in the file; wrapped here):
//
//	{"time":"2026-11-22T01:40:36.123456789Z","hostname":"sensor1","version":"2.0.0",
//	 "src":"10.99.0.1","dst":"10.99.0.2","port":143,"proto":"tcp","kind":"syn",
//	 "type":"TCP SYN/Normal scan","mode":"atcp","ip_opts":false,"action":"blocked",
//	 "hits":1,"host":"scanner.example.net","blocker":"nftables",
//	 "ban_expires":"2026-11-22T02:40:36Z","ban_count":1}
//
// Absent values are null, never missing, so a consumer can rely on the
// keys: dst (the sensor could not tell), ip_opts (IPv6, connect mode), host
// (not resolved), blocker (no block), ban_expires (no ban, or a permanent
// one: action and blocker tell which).
//
// Writes happen on the caller's goroutine (the daemon's reporter), one
// write(2) per line: there is no queue inside to grow or to lose at exit,
// and lines from concurrent callers never interleave.
//
// The file rotates itself: a line that would take it past MaxSize (64 MiB)
// first moves it to FILE.1, replacing the one there. A flood from random
// sources, one line each, so costs at most twice MaxSize on disk.
package jsonlog

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/portsentry-go/portsentry/internal/event"
)

// Action values, as the "action" field writes them. They are the labels of
// portsentry_events_total (package metrics) spelled the same way, so a
// SIEM and a dashboard agree.
const (
	Ignored         = "ignored"
	Counted         = "counted"
	Service         = "service"
	Pending         = "pending"
	AlreadyBlocked  = "already_blocked"
	AlreadyReported = "already_reported"
	Reported        = "reported"
	Blocked         = "blocked"
	BlockFailed     = "block_failed"
	// Imported is a ban decided elsewhere (Origin) and applied here: src
	// is the address, type the ban's reason; the probe's fields are
	// empty.
	Imported = "imported"
)

// MaxSize is the size at which the file rotates to FILE.1.
const MaxSize = 64 << 20

// Record is one event and what the daemon did about it.
type Record struct {
	// Event is the probe. A zero Time is written as the time of the write.
	Event event.Event
	// Action is one of the Action constants (any string is written as is).
	Action string
	// Hits is the engine's count for this source so far, this event
	// included (0 when ignored or already blocked).
	Hits int
	// Host is the resolved name of the source; "" when not resolved.
	Host string
	// Blocker names what applied the ban ("nftables", "iptables", "route",
	// "hostsdeny", "command"); "" when nothing was blocked.
	Blocker string
	// BanExpires is when the ban ends; zero when there is no ban or it is
	// permanent.
	BanExpires time.Time
	// BanCount is how many times the source has been banned, this ban
	// included; 0 when not banned.
	BanCount int
	// Origin is where a ban was decided: "" here, "fleet:<member>",
	// "crowdsec".
	Origin string
	// Type, when set, replaces the event's description (an imported
	// ban's reason).
	Type string
}

// line is the JSON shape; the field order here is the order in the file.
// Pointers are the fields that can be null.
type line struct {
	Time       string  `json:"time"`
	Hostname   string  `json:"hostname"`
	Version    string  `json:"version"`
	Src        string  `json:"src"`
	Dst        *string `json:"dst"`
	Port       uint16  `json:"port"`
	Proto      string  `json:"proto"`
	Kind       string  `json:"kind"`
	Type       string  `json:"type"`
	Mode       string  `json:"mode"`
	IPOpts     *bool   `json:"ip_opts"`
	Action     string  `json:"action"`
	Hits       int     `json:"hits"`
	Host       *string `json:"host"`
	Blocker    *string `json:"blocker"`
	BanExpires *string `json:"ban_expires"`
	BanCount   int     `json:"ban_count"`
	Origin     *string `json:"origin"`
}

// Writer appends records to a file or to standard output. It is safe for
// concurrent use. A nil *Writer writes nothing, so the daemon calls it
// whether or not EVENT_LOG is set.
type Writer struct {
	path     string    // "" for out
	out      io.Writer // standard output, or a test's buffer
	hostname string
	version  string
	now      func() time.Time
	maxSize  int64 // MaxSize; tests make it smaller
	mu       sync.Mutex
	// rotateFailed says the last rotation failed: the next failures are
	// not reported again until one succeeds.
	rotateFailed bool
}

// Open returns a writer to path. "-" and "stdout" mean standard output.
// A file is created (0640, its directory 0750) when missing, and opened
// for each write with O_APPEND: a logrotate move, copytruncate or delete is
// followed at the next line with no signal, and nothing is lost in a
// rotation. The file rotates itself at MaxSize. It is opened once here so
// that a bad path is an error at start, not at the first event. version is
// written in every line.
func Open(path, version string) (*Writer, error) {
	if path == "" {
		return nil, errors.New("jsonlog: empty path")
	}
	host, err := os.Hostname()
	if err != nil {
		host = ""
	}
	w := &Writer{path: path, hostname: host, version: version, now: time.Now, maxSize: MaxSize}
	if path == "-" || path == "stdout" {
		w.path, w.out = "", os.Stdout
		return w, nil
	}
	f, err := w.openFile()
	if err != nil {
		return nil, err
	}
	f.Close()
	return w, nil
}

// Path returns the file written, or "" for standard output.
func (w *Writer) Path() string { return w.path }

// Write appends one record as one line. A rotation that fails is reported
// once (the line is written all the same), until one succeeds again.
func (w *Writer) Write(r Record) error {
	if w == nil {
		return nil
	}
	b, err := w.encode(r)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.out != nil {
		if _, err := w.out.Write(b); err != nil {
			return fmt.Errorf("jsonlog: %w", err)
		}
		return nil
	}
	f, err := w.openFile()
	if err != nil {
		return err
	}
	var rotErr error
	if w.maxSize > 0 {
		if f, rotErr = w.rotate(f, int64(len(b))); f == nil {
			return rotErr
		}
	}
	// One Write of the whole line: with O_APPEND the kernel places it
	// whole at the end, even beside another process appending.
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("jsonlog: %w", err)
	}
	return rotErr
}

// rotate moves the file to FILE.1 when n more bytes would take it past
// maxSize, and returns the file to write to: f itself, or the new file. A
// file of any size takes a first line. The error is a failed rotation, to
// report; the file returned is nil only when none could be opened.
func (w *Writer) rotate(f *os.File, n int64) (*os.File, error) {
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 || fi.Size()+n <= w.maxSize {
		return f, nil
	}
	// Only the file this writer has open is moved: if another writer
	// rotated it a moment ago, the new file is not moved over the old.
	if cur, err := os.Stat(w.path); err == nil && os.SameFile(fi, cur) {
		if err := os.Rename(w.path, w.path+".1"); err != nil {
			if w.rotateFailed {
				return f, nil
			}
			w.rotateFailed = true
			return f, fmt.Errorf("jsonlog: rotating %s: %w", w.path, err)
		}
	}
	w.rotateFailed = false
	f.Close()
	return w.openFile()
}

// Close releases the writer. Files are not held open between writes, so
// there is nothing to flush; Close exists so that callers need not know.
func (w *Writer) Close() error { return nil }

func (w *Writer) openFile() (*os.File, error) {
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if errors.Is(err, fs.ErrNotExist) {
		if mkErr := os.MkdirAll(filepath.Dir(w.path), 0o750); mkErr != nil {
			return nil, fmt.Errorf("jsonlog: %w", mkErr)
		}
		f, err = os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	}
	if err != nil {
		return nil, fmt.Errorf("jsonlog: %w", err)
	}
	return f, nil
}

// encode returns the record's line, newline included.
func (w *Writer) encode(r Record) ([]byte, error) {
	ev := r.Event
	t := ev.Time
	if t.IsZero() {
		t = w.now()
	}
	l := line{
		Time:     t.UTC().Format(time.RFC3339Nano),
		Hostname: w.hostname,
		Version:  w.version,
		Src:      addrString(ev.Src),
		Port:     ev.Port,
		Proto:    protoName(ev.Proto),
		Kind:     ev.Kind.Name(),
		Type:     ev.Describe(),
		Mode:     ev.Mode.String(),
		Action:   r.Action,
		Hits:     r.Hits,
		BanCount: r.BanCount,
	}
	if ev.Dst.IsValid() {
		s := addrString(ev.Dst)
		l.Dst = &s
	}
	switch ev.IPOpts {
	case event.IPOptsSet, event.IPOptsNotSet:
		b := ev.IPOpts == event.IPOptsSet
		l.IPOpts = &b
	}
	if r.Host != "" {
		l.Host = &r.Host
	}
	if r.Blocker != "" {
		l.Blocker = &r.Blocker
	}
	if !r.BanExpires.IsZero() {
		s := r.BanExpires.UTC().Format(time.RFC3339)
		l.BanExpires = &s
	}
	if r.Origin != "" {
		l.Origin = &r.Origin
	}
	if r.Action == Imported {
		l.Proto, l.Kind, l.Mode = "", "", ""
	}
	if r.Type != "" {
		l.Type = r.Type
	}
	b, err := json.Marshal(&l)
	if err != nil {
		return nil, fmt.Errorf("jsonlog: %w", err)
	}
	return append(b, '\n'), nil
}

// addrString writes an address without its zone, IPv4 never as mapped
// IPv6: the form the other logs and the firewall use.
func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.Unmap().WithZone("").String()
}

func protoName(p event.Proto) string {
	if p == event.UDP {
		return "udp"
	}
	return "tcp"
}
