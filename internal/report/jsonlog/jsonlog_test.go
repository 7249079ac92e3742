package jsonlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portsentry-go/portsentry/internal/event"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.jsonl")

var t0 = time.Date(2026, 11, 22, 1, 40, 36, 123456789, time.FixedZone("CET", 3600))

func testWriter(out *bytes.Buffer) *Writer {
	return &Writer{out: out, hostname: "sensor1", version: "2.0.0-test",
		now: func() time.Time { return time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC) }}
}

// records cover every kind, both protocols, every null field, IPv6, a
// mapped source, and a zero time.
func records() []Record {
	v4 := netip.MustParseAddr("10.99.0.1")
	dst := netip.MustParseAddr("10.99.0.2")
	v6 := netip.MustParseAddr("2001:db8::5")
	return []Record{
		{Event: event.Event{Time: t0, Src: v4, Dst: dst, Port: 143, Proto: event.TCP, Kind: event.SYN, Flags: event.FlagSYN, IPOpts: event.IPOptsNotSet, Mode: event.ModeATCP},
			Action: Blocked, Hits: 1, Host: "scanner.example.net", Blocker: "nftables", BanExpires: t0.Add(time.Hour), BanCount: 1},
		{Event: event.Event{Time: t0, Src: v4, Dst: dst, Port: 144, Proto: event.TCP, Kind: event.SYN, IPOpts: event.IPOptsSet, Mode: event.ModeATCP},
			Action: AlreadyBlocked, Blocker: "nftables", BanCount: 1},
		{Event: event.Event{Time: t0, Src: v6, Port: 7, Proto: event.UDP, Kind: event.UDPProbe, Mode: event.ModeAUDP},
			Action: Counted, Hits: 1},
		{Event: event.Event{Time: t0, Src: netip.MustParseAddr("::ffff:192.0.2.9"), Dst: netip.MustParseAddr("fe80::1%eth0"), Port: 23, Proto: event.TCP, Kind: event.Connect, Mode: event.ModeTCP},
			Action: Ignored},
		{Event: event.Event{Time: t0, Src: v4, Port: 1, Proto: event.TCP, Kind: event.FIN, IPOpts: event.IPOptsNotSet, Mode: event.ModeSTCP},
			Action: Reported, Hits: 3},
		{Event: event.Event{Time: t0, Src: v4, Port: 2, Proto: event.TCP, Kind: event.NULL, Mode: event.ModeSTCP},
			Action: BlockFailed, Hits: 3, Blocker: "iptables"},
		{Event: event.Event{Time: t0, Src: v4, Port: 3, Proto: event.TCP, Kind: event.XMAS, Mode: event.ModeSTCP},
			Action: Blocked, Hits: 3, Blocker: "route", BanCount: 4}, // permanent: ban_expires null
		{Event: event.Event{Src: v4, Port: 4, Proto: event.TCP, Kind: event.OddTCP, Flags: event.FlagSYN | event.FlagFIN, Mode: event.ModeSTCP},
			Action: Service},
		{Event: event.Event{Time: t0, Src: netip.MustParseAddr("192.0.2.8")}, Type: "TCP SYN/Normal scan",
			Action: Imported, Blocker: "nftables", BanExpires: t0.Add(time.Hour), BanCount: 1, Origin: "fleet:web1"},
	}
}

func TestGolden(t *testing.T) {
	var buf bytes.Buffer
	w := testWriter(&buf)
	for _, r := range records() {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	golden := filepath.Join("testdata", "records.golden.jsonl")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), buf.String()); diff != "" {
		t.Errorf("lines differ from %s (-want +got; go test -update to accept):\n%s", golden, diff)
	}
}

var allKeys = []string{"action", "ban_count", "ban_expires", "blocker", "dst", "hits", "host", "hostname",
	"ip_opts", "kind", "mode", "origin", "port", "proto", "src", "time", "type", "version"}

func TestEveryFieldPresent(t *testing.T) {
	var buf bytes.Buffer
	w := testWriter(&buf)
	for _, r := range records() {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	sc := bufio.NewScanner(&buf)
	n := 0
	for sc.Scan() {
		n++
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %d: %v", n, err)
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if diff := cmp.Diff(allKeys, keys); diff != "" {
			t.Errorf("line %d keys (-want +got):\n%s", n, diff)
		}
	}
	if n != len(records()) {
		t.Errorf("%d lines, want %d", n, len(records()))
	}
}

// decoded is what a consumer reads back.
type decoded struct {
	Time       time.Time   `json:"time"`
	Hostname   string      `json:"hostname"`
	Version    string      `json:"version"`
	Src        netip.Addr  `json:"src"`
	Dst        *netip.Addr `json:"dst"`
	Port       uint16      `json:"port"`
	Proto      string      `json:"proto"`
	Kind       string      `json:"kind"`
	Type       string      `json:"type"`
	Mode       string      `json:"mode"`
	IPOpts     *bool       `json:"ip_opts"`
	Action     string      `json:"action"`
	Hits       int         `json:"hits"`
	Host       *string     `json:"host"`
	Blocker    *string     `json:"blocker"`
	BanExpires *time.Time  `json:"ban_expires"`
	BanCount   int         `json:"ban_count"`
	Origin     *string     `json:"origin"`
}

func TestRoundTrip(t *testing.T) {
	for i, r := range records() {
		var buf bytes.Buffer
		w := testWriter(&buf)
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
		if !bytes.HasSuffix(buf.Bytes(), []byte("\n")) || bytes.Count(buf.Bytes(), []byte("\n")) != 1 {
			t.Fatalf("record %d: not exactly one line: %q", i, buf.String())
		}
		var d decoded
		if err := json.Unmarshal(buf.Bytes(), &d); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		ev := r.Event
		wantTime := ev.Time
		if wantTime.IsZero() {
			wantTime = w.now()
		}
		if !d.Time.Equal(wantTime) || d.Time.Location() != time.UTC {
			t.Errorf("record %d: time %v, want %v in UTC", i, d.Time, wantTime)
		}
		if d.Src != ev.Src.Unmap() {
			t.Errorf("record %d: src %v, want %v", i, d.Src, ev.Src.Unmap())
		}
		if ev.Dst.IsValid() != (d.Dst != nil) || (d.Dst != nil && *d.Dst != ev.Dst.Unmap().WithZone("")) {
			t.Errorf("record %d: dst %v, want %v", i, d.Dst, ev.Dst)
		}
		if r.Action == Imported {
			if d.Type != r.Type || d.Proto != "" || d.Kind != "" || d.Mode != "" || d.Origin == nil || *d.Origin != r.Origin {
				t.Errorf("record %d: imported ban's fields %+v", i, d)
			}
		} else if d.Port != ev.Port || d.Proto != strings.ToLower(ev.Proto.String()) || d.Type != ev.Describe() ||
			d.Mode != ev.Mode.String() || d.Kind != ev.Kind.Name() || d.Origin != nil {
			t.Errorf("record %d: probe fields %+v", i, d)
		}
		if (ev.IPOpts == event.IPOptsUnknown) != (d.IPOpts == nil) || (d.IPOpts != nil && *d.IPOpts != (ev.IPOpts == event.IPOptsSet)) {
			t.Errorf("record %d: ip_opts %v for %v", i, d.IPOpts, ev.IPOpts)
		}
		if d.Action != r.Action || d.Hits != r.Hits || d.BanCount != r.BanCount || d.Hostname != "sensor1" || d.Version != "2.0.0-test" {
			t.Errorf("record %d: %+v", i, d)
		}
		if (r.Host == "") != (d.Host == nil) || (d.Host != nil && *d.Host != r.Host) {
			t.Errorf("record %d: host %v, want %q", i, d.Host, r.Host)
		}
		if (r.Blocker == "") != (d.Blocker == nil) || (d.Blocker != nil && *d.Blocker != r.Blocker) {
			t.Errorf("record %d: blocker %v, want %q", i, d.Blocker, r.Blocker)
		}
		if r.BanExpires.IsZero() != (d.BanExpires == nil) || (d.BanExpires != nil && !d.BanExpires.Equal(r.BanExpires.Truncate(time.Second))) {
			t.Errorf("record %d: ban_expires %v, want %v", i, d.BanExpires, r.BanExpires)
		}
	}
}

// TestConcurrentWritesNeverInterleave has many goroutines and two Writers
// (as two processes would) append long lines to one file.
func TestConcurrentWritesNeverInterleave(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	w1, err := Open(path, "v")
	if err != nil {
		t.Fatal(err)
	}
	w2, err := Open(path, "v")
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, each = 16, 200
	long := strings.Repeat("a", 200) + ".example.net" // lines well past 512 bytes
	var wg sync.WaitGroup
	for g := range goroutines {
		w := w1
		if g%2 == 1 {
			w = w2
		}
		wg.Go(func() {
			for i := range each {
				r := records()[i%len(records())]
				r.Host = fmt.Sprintf("g%d-i%d-%s", g, i, long)
				if err := w.Write(r); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != goroutines*each {
		t.Fatalf("%d lines, want %d", len(lines), goroutines*each)
	}
	seen := map[string]bool{}
	for i, l := range lines {
		var d decoded
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			t.Fatalf("line %d is not one JSON object (interleaved?): %v\n%q", i+1, err, l)
		}
		seen[*d.Host] = true
	}
	if len(seen) != goroutines*each {
		t.Errorf("%d distinct lines, want %d", len(seen), goroutines*each)
	}
}

// TestFollowsRotation: a logrotate move (or delete) is followed at the next
// write without a signal, and no line is lost.
func TestFollowsRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "events.jsonl") // directory created
	w, err := Open(path, "v")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("Open did not create the file 0640: %v %v", fi, err)
	}
	r := records()[0]
	if err := w.Write(r); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	r.Event.Port = 999
	if err := w.Write(r); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if bytes.Count(old, []byte("\n")) != 1 || !bytes.Contains(old, []byte(`"port":143`)) {
		t.Errorf("rotated file: %q", old)
	}
	if bytes.Count(cur, []byte("\n")) != 1 || !bytes.Contains(cur, []byte(`"port":999`)) {
		t.Errorf("new file: %q", cur)
	}
	if err := w.Close(); err != nil {
		t.Error(err)
	}
}

// TestRotatesAtMaxSize: a line that would take the file past its size
// first moves the file to FILE.1 (one old copy kept); no line is cut or
// lost across a rotation, and the newest lines are in the file itself.
func TestRotatesAtMaxSize(t *testing.T) {
	r := records()[0]
	r.Event.Port = 1000
	enc, err := testWriter(nil).encode(r)
	if err != nil {
		t.Fatal(err)
	}
	size := int64(len(enc)) // every line below has this length: only the port changes, 1000–1999
	tests := []struct {
		name         string
		max          int64
		n            int
		cur, rotated []int // the lines (ports - 1000) each file holds at the end
	}{
		{name: "below the size", max: 10 * size, n: 3, cur: []int{0, 1, 2}},
		{name: "exactly the size", max: 3 * size, n: 3, cur: []int{0, 1, 2}},
		{name: "one past", max: 3 * size, n: 4, cur: []int{3}, rotated: []int{0, 1, 2}},
		{name: "many rotations keep one copy", max: 3 * size, n: 11, cur: []int{9, 10}, rotated: []int{6, 7, 8}},
		{name: "a line longer than the size is still written", max: 10, n: 2, cur: []int{1}, rotated: []int{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.jsonl")
			w, err := Open(path, "2.0.0-test")
			if err != nil {
				t.Fatal(err)
			}
			w.hostname, w.maxSize = "sensor1", tt.max
			for i := range tt.n {
				r := records()[0]
				r.Event.Port = uint16(1000 + i)
				if err := w.Write(r); err != nil {
					t.Fatalf("Write %d: %v", i, err)
				}
			}
			ports := func(p string) []int {
				data, err := os.ReadFile(p)
				if err != nil && !os.IsNotExist(err) {
					t.Fatal(err)
				}
				var out []int
				for l := range strings.SplitSeq(strings.TrimSuffix(string(data), "\n"), "\n") {
					if l == "" {
						continue
					}
					var d decoded
					if err := json.Unmarshal([]byte(l), &d); err != nil {
						t.Fatalf("%s: line %q is not whole: %v", p, l, err)
					}
					out = append(out, int(d.Port)-1000)
				}
				return out
			}
			got := map[string][]int{"current": ports(path), "rotated": ports(path + ".1")}
			want := map[string][]int{"current": tt.cur, "rotated": tt.rotated}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRotateFailureReportedOnce: a rotation that cannot happen (FILE.1 is
// a directory) is reported once, not at every line, and every line is
// still written.
func TestRotateFailureReportedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	if err := os.MkdirAll(filepath.Join(path+".1", "sub"), 0o750); err != nil {
		t.Fatal(err)
	}
	w, err := Open(path, "v")
	if err != nil {
		t.Fatal(err)
	}
	w.maxSize = 10
	var errs []error
	for range 3 {
		if err := w.Write(records()[0]); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "jsonlog: rotating ") {
		t.Errorf("errors %v, want one rotation error", errs)
	}
	if data, _ := os.ReadFile(path); bytes.Count(data, []byte("\n")) != 3 {
		t.Errorf("file has %d lines, want 3", bytes.Count(data, []byte("\n")))
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open("", "v"); err == nil {
		t.Error("Open(\"\") succeeded")
	}
	file := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(filepath.Join(file, "events.jsonl"), "v") // parent is a file
	if err == nil || !strings.HasPrefix(err.Error(), "jsonlog: ") {
		t.Errorf("Open under a file = %v, want a jsonlog: error", err)
	}
}

func TestStdout(t *testing.T) {
	r, wp, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stdout
	os.Stdout = wp
	defer func() { os.Stdout = saved }()
	for _, name := range []string{"-", "stdout"} {
		w, err := Open(name, "v")
		if err != nil {
			t.Fatal(err)
		}
		if w.Path() != "" {
			t.Errorf("Open(%q).Path() = %q, want \"\"", name, w.Path())
		}
		if err := w.Write(records()[0]); err != nil {
			t.Fatal(err)
		}
	}
	wp.Close()
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		if !json.Valid(sc.Bytes()) {
			t.Errorf("stdout line %q", sc.Text())
		}
	}
	if n != 2 {
		t.Errorf("%d lines on stdout, want 2", n)
	}
}

func TestNilWriter(t *testing.T) {
	var w *Writer
	if err := w.Write(records()[0]); err != nil {
		t.Error(err)
	}
}

func BenchmarkWriteFile(b *testing.B) {
	w, err := Open(filepath.Join(b.TempDir(), "events.jsonl"), "v")
	if err != nil {
		b.Fatal(err)
	}
	r := records()[0]
	b.ReportAllocs()
	for b.Loop() {
		if err := w.Write(r); err != nil {
			b.Fatal(err)
		}
	}
}
