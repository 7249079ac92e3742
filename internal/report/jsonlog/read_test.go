package jsonlog

import (
	"github.com/portsentry-go/portsentry/internal/report/linefile"

	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portsentry-go/portsentry/internal/config"
)

func TestParseLine(t *testing.T) {
	full := `{"time":"2026-11-22T00:40:36.123456789Z","hostname":"sensor1","version":"2.0.0","src":"10.99.0.1","dst":"10.99.0.2","port":143,"proto":"tcp","kind":"syn","type":"TCP SYN/Normal scan","mode":"atcp","ip_opts":false,"action":"blocked","hits":1,"host":"scanner.example.net","blocker":"nftables","ban_expires":"2026-11-22T01:40:36Z","ban_count":1}`
	at := time.Date(2026, 11, 22, 0, 40, 36, 123456789, time.UTC)
	tests := []struct {
		name, line string
		want       Entry
		err        string // a substring of the error; "" for none
	}{
		{"every field", full, Entry{
			Time: at, Hostname: "sensor1", Src: netip.MustParseAddr("10.99.0.1"), Dst: netip.MustParseAddr("10.99.0.2"),
			Port: 143, Proto: "tcp", Kind: "syn", Type: "TCP SYN/Normal scan", Mode: "atcp", Action: "blocked", Hits: 1,
			Host: "scanner.example.net", Blocker: "nftables", BanExpires: at.Add(time.Hour).Truncate(time.Second), BanCount: 1,
		}, ""},
		{"nulls and IPv6", `{"time":"2026-11-22T00:40:36Z","src":"2001:db8::5","dst":null,"port":7,"proto":"udp","kind":"udp","action":"counted","host":null,"blocker":null,"ban_expires":null}`,
			Entry{Time: at.Truncate(time.Second), Src: netip.MustParseAddr("2001:db8::5"), Port: 7, Proto: "udp", Kind: "udp", Action: "counted"}, ""},
		{"mapped source unmapped, zone dropped", `{"time":"2026-11-22T00:40:36Z","src":"::ffff:192.0.2.9","dst":"fe80::1%eth0","port":0,"proto":"tcp","kind":"connect","action":"ignored"}`,
			Entry{Time: at.Truncate(time.Second), Src: netip.MustParseAddr("192.0.2.9"), Dst: netip.MustParseAddr("fe80::1"), Proto: "tcp", Kind: "connect", Action: "ignored"}, ""},
		{"unknown keys of a newer writer ignored", `{"time":"2026-11-22T00:40:36Z","src":"10.0.0.1","port":1,"proto":"tcp","kind":"syn","action":"blocked","verdict_v2":"peer-7"}`,
			Entry{Time: at.Truncate(time.Second), Src: netip.MustParseAddr("10.0.0.1"), Port: 1, Proto: "tcp", Kind: "syn", Action: "blocked"}, ""},
		{"bad optional values left zero", `{"time":"2026-11-22T00:40:36Z","src":"10.0.0.1","dst":"nowhere","port":1,"proto":"tcp","kind":"syn","action":"blocked","ban_expires":"soon"}`,
			Entry{Time: at.Truncate(time.Second), Src: netip.MustParseAddr("10.0.0.1"), Port: 1, Proto: "tcp", Kind: "syn", Action: "blocked"}, ""},
		{"no time", `{"src":"10.0.0.1","port":1,"proto":"tcp","kind":"syn","action":"blocked"}`, Entry{}, `no "time"`},
		{"no src", `{"time":"2026-11-22T00:40:36Z","port":1,"proto":"tcp","kind":"syn","action":"blocked"}`, Entry{}, `no "src"`},
		{"no port", `{"time":"2026-11-22T00:40:36Z","src":"10.0.0.1","proto":"tcp","kind":"syn","action":"blocked"}`, Entry{}, `no "port"`},
		{"no action", `{"time":"2026-11-22T00:40:36Z","src":"10.0.0.1","port":1,"proto":"tcp","kind":"syn"}`, Entry{}, `no "action"`},
		{"null src", `{"time":"2026-11-22T00:40:36Z","src":null,"port":1,"proto":"tcp","kind":"syn","action":"blocked"}`, Entry{}, `no "src"`},
		{"bad time", `{"time":"yesterday","src":"10.0.0.1","port":1,"proto":"tcp","kind":"syn","action":"blocked"}`, Entry{}, "not RFC 3339"},
		{"bad src", `{"time":"2026-11-22T00:40:36Z","src":"10.0.0.300","port":1,"proto":"tcp","kind":"syn","action":"blocked"}`, Entry{}, "not an address"},
		{"port out of range", `{"time":"2026-11-22T00:40:36Z","src":"10.0.0.1","port":65536,"proto":"tcp","kind":"syn","action":"blocked"}`, Entry{}, "not a JSON event"},
		{"bad proto", `{"time":"2026-11-22T00:40:36Z","src":"10.0.0.1","port":1,"proto":"icmp","kind":"syn","action":"blocked"}`, Entry{}, "want tcp or udp"},
		{"empty action", `{"time":"2026-11-22T00:40:36Z","src":"10.0.0.1","port":1,"proto":"tcp","kind":"syn","action":""}`, Entry{}, "empty action"},
		{"torn line", full[:100], Entry{}, "not a JSON event"},
		{"not JSON", "Scan from: [10.0.0.1]", Entry{}, "not a JSON event"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLine([]byte(tt.line))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseLine: error %v, want one with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) }), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("ParseLine mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestReadWhatWriterWrote: every record the writer writes reads back with
// the same values, the golden file included.
func TestReadWhatWriterWrote(t *testing.T) {
	var buf bytes.Buffer
	w := testWriter(&buf)
	recs := records()
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(t.TempDir(), "events.jsonl")
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	var got []Entry
	bad, err := ReadFile(p, func(e Entry) { got = append(got, e) })
	if err != nil || len(bad) > 0 {
		t.Fatalf("ReadFile: %v %v", bad, err)
	}
	if len(got) != len(recs) {
		t.Fatalf("read %d entries, want %d", len(got), len(recs))
	}
	for i, r := range recs {
		e, ev := got[i], r.Event
		wantTime := ev.Time
		if wantTime.IsZero() {
			wantTime = w.now()
		}
		if r.Action == Imported {
			// A ban from elsewhere: no probe fields, its reason and origin.
			if e.Src != ev.Src || e.Proto != "" || e.Kind != "" || e.Type != r.Type || e.Origin != r.Origin || e.Blocker != r.Blocker {
				t.Errorf("entry %d: %+v\nfrom record %+v", i, e, r)
			}
			continue
		}
		if !e.Time.Equal(wantTime) || e.Src != ev.Src.Unmap() || e.Port != ev.Port || e.Proto != strings.ToLower(ev.Proto.String()) ||
			e.Kind != ev.Kind.Name() || e.Type != ev.Describe() || e.Mode != ev.Mode.String() || e.Action != r.Action ||
			e.Hits != r.Hits || e.Host != r.Host || e.Blocker != r.Blocker || e.BanCount != r.BanCount ||
			!e.BanExpires.Equal(r.BanExpires.Truncate(time.Second)) || e.Hostname != "sensor1" {
			t.Errorf("entry %d: %+v\nfrom record %+v", i, e, r)
		}
	}
	golden, err := ReadFile("testdata/records.golden.jsonl", func(Entry) {})
	if err != nil || len(golden) > 0 {
		t.Errorf("golden file: %v %v", golden, err)
	}
}

// TestReadFileRotatedFirst: the rotated copy is read before the file, so
// entries come oldest first; damaged lines are reported by file and line
// and the others kept; a missing file is empty.
func TestReadFileRotatedFirst(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "events.jsonl")
	line := func(port int) string {
		return fmt.Sprintf(`{"time":"2026-11-22T00:40:%02dZ","src":"10.0.0.1","port":%d,"proto":"tcp","kind":"syn","action":"already_blocked"}`, port, port)
	}
	old := line(1) + "\n" + line(2) + "\n"
	cur := line(3) + "\n\n" + "garbage\n" + strings.Repeat("x", linefile.MaxLine+10) + "\n" + line(4) + "\n" + line(5)[:40]
	if err := os.WriteFile(p+".1", []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(cur), 0o600); err != nil {
		t.Fatal(err)
	}
	var ports []uint16
	bad, err := ReadFile(p, func(e Entry) { ports = append(ports, e.Port) })
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uint16{1, 2, 3, 4}, ports); diff != "" {
		t.Errorf("ports read (-want +got):\n%s", diff)
	}
	var lines []string
	for _, b := range bad {
		var ce *config.Error
		if !errors.As(b, &ce) || ce.File != p {
			t.Errorf("bad line error %v: want a *config.Error for %s", b, p)
			continue
		}
		lines = append(lines, fmt.Sprint(ce.Line))
	}
	if diff := cmp.Diff([]string{"3", "4", "6"}, lines); diff != "" {
		t.Errorf("damaged lines reported (-want +got):\n%s", diff)
	}

	n := 0
	bad, err = ReadFile(filepath.Join(dir, "missing"), func(Entry) { n++ })
	if err != nil || len(bad) > 0 || n > 0 {
		t.Errorf("missing file: %d entries, %v, %v; want none", n, bad, err)
	}
}

func TestReadFileBoundsErrors(t *testing.T) {
	p := filepath.Join(t.TempDir(), "events.jsonl")
	if err := os.WriteFile(p, []byte(strings.Repeat("garbage\n", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	bad, err := ReadFile(p, func(Entry) { t.Error("garbage read as an entry") })
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) != MaxBad+1 || !strings.Contains(bad[MaxBad].Error(), "980 more damaged lines") {
		t.Errorf("%d errors, last %v; want %d and a count of 980 more", len(bad), bad[len(bad)-1], MaxBad+1)
	}
}

func TestReadFileUnreadable(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadFile(dir, func(Entry) {}); err == nil {
		t.Error("ReadFile of a directory: no error")
	}
}

// FuzzParseLine: no input panics, and what is accepted is usable: a valid
// unmapped address without zone, tcp or udp (none only for a ban from
// elsewhere), a non-empty action.
func FuzzParseLine(f *testing.F) {
	data, err := os.ReadFile("testdata/records.golden.jsonl")
	if err != nil {
		f.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		f.Add([]byte(l))
	}
	f.Add([]byte(`{"time":"2026-11-22T00:40:36Z","src":"::ffff:1.2.3.4%x","port":1,"proto":"tcp","kind":"","action":"x"}`))
	f.Add([]byte(`{"time":null,"src":1,"port":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseLine(b)
		if err != nil {
			return
		}
		if !e.Src.IsValid() || e.Src.Is4In6() || e.Src.Zone() != "" {
			t.Errorf("ParseLine(%q): src %v", b, e.Src)
		}
		if (e.Proto != "tcp" && e.Proto != "udp" && !(e.Proto == "" && e.Action == Imported)) || e.Action == "" || e.Time.IsZero() && !strings.Contains(string(b), "0001-01-01") {
			t.Errorf("ParseLine(%q) = %+v", b, e)
		}
	})
}
