package history

import (
	"github.com/portsentry-go/portsentry/internal/report/linefile"

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
	"github.com/portsentry-go/portsentry/internal/event"
	"github.com/portsentry-go/portsentry/internal/report/logline"
)

var timeEqual = cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })
var addrEqual = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func TestParseLine(t *testing.T) {
	at := time.Date(2026, 11, 22, 1, 42, 52, 875e6, time.UTC)
	v4 := netip.MustParseAddr("10.0.0.5")
	tests := []struct {
		name, line string
		want       Entry
		err        string
	}{
		{"1.2 record", "1795311636 - 11/22/2026 01:40:36 Host: 10.99.0.1/10.99.0.1 Port: 143 TCP Blocked",
			Entry{Time: time.Unix(1795311636, 0), Addr: netip.MustParseAddr("10.99.0.1"), Port: 143, Proto: "TCP", Format: "1.2", Blocked: true}, ""},
		{"1.2 record with a name, UDP", "1795311637 - 11/22/2026 01:40:37 Host: scanner.example.net/10.99.0.2 Port: 7 UDP Blocked",
			Entry{Time: time.Unix(1795311637, 0), Addr: netip.MustParseAddr("10.99.0.2"), Name: "scanner.example.net", Port: 7, Proto: "UDP", Format: "1.2", Blocked: true}, ""},
		{"1.2 record, IPv6, CRLF and spaces", "  1795311639 - 11/22/2026 01:40:39 Host: 2001:db8::1/2001:db8::1 Port: 22 TCP Blocked \r",
			Entry{Time: time.Unix(1795311639, 0), Addr: netip.MustParseAddr("2001:db8::1"), Port: 22, Proto: "TCP", Format: "1.2", Blocked: true}, ""},
		{"2.x event, 2.0.5 and later", "2026-11-22T01:42:52.875+0000 Scan from: [10.0.0.5] (10.0.0.5) protocol: [TCP] port: [143] type: [TCP SYN/Normal scan] IP opts: [not set] ignored: [false] triggered: [true] noblock: [false] blocked: [true]",
			Entry{Time: at, Addr: v4, Port: 143, Proto: "TCP", Kind: "syn", Format: "2.x", Blocked: true}, ""},
		{"2.x event before 2.0.5: no blocked field", "2026-11-22T02:42:52.875+0100 Scan from: [10.0.0.5] (scanner.example.net) protocol: [UDP] port: [53] type: [UDP] IP opts: [unknown] ignored: [true] triggered: [false] noblock: [false]",
			Entry{Time: at, Addr: v4, Name: "scanner.example.net", Port: 53, Proto: "UDP", Kind: "udp", Format: "2.x", Ignored: true}, ""},
		{"2.x odd flags, name with parentheses", "2026-11-22T01:42:52+0000 Scan from: [2001:db8::9] (a(b)] c) protocol: [TCP] port: [1] type: [Unknown Type: TCP Packet Flags: SYN: 1 FIN: 1 ACK: 0 PSH: 0 URG: 0 RST: 0] IP opts: [unknown] ignored: [false] triggered: [unset] noblock: [unset] blocked: [unset]",
			Entry{Time: at.Truncate(time.Second), Addr: netip.MustParseAddr("2001:db8::9"), Name: "a(b)] c", Port: 1, Proto: "TCP", Kind: "odd", Format: "2.x"}, ""},
		{"2.x connect", "2026-11-22T01:42:52.875+0000 Scan from: [10.0.0.5] (10.0.0.5) protocol: [TCP] port: [23] type: [Connect] IP opts: [unknown] ignored: [false] triggered: [false] noblock: [false] blocked: [false]",
			Entry{Time: at, Addr: v4, Port: 23, Proto: "TCP", Kind: "connect", Format: "2.x"}, ""},
		{"2.x bad time", "yesterday Scan from: [10.0.0.5] (x) protocol: [TCP] port: [1] type: [Connect]", Entry{}, "time"},
		{"2.x bad address", "2026-11-22T01:42:52.875+0000 Scan from: [10.0.0.500] (x) protocol: [TCP] port: [1] type: [Connect]", Entry{}, "bad address"},
		{"2.x bad protocol", "2026-11-22T01:42:52.875+0000 Scan from: [10.0.0.5] (x) protocol: [ICMP] port: [1] type: [Connect]", Entry{}, "want TCP or UDP"},
		{"2.x bad port", "2026-11-22T01:42:52.875+0000 Scan from: [10.0.0.5] (x) protocol: [TCP] port: [70000] type: [Connect]", Entry{}, "bad port"},
		{"2.x cut short", "2026-11-22T01:42:52.875+0000 Scan from: [10.0.0.5] (x) proto", Entry{}, "protocol"},
		{"1.2 without epoch", "Host: 10.99.0.1/10.99.0.1 Port: 143 TCP Blocked", Entry{}, "not a time"},
		{"1.2 bad port", "1795311638 - 11/22/2026 01:40:38 Host: 10.99.0.3/10.99.0.3 Port: 99999 TCP Blocked", Entry{}, "bad port"},
		{"garbage", "garbage that a crash left behind", Entry{}, "not a time"},
		{"one word", "garbage", Entry{}, "neither"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLine(tt.line)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseLine: error %v, want one with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, timeEqual, addrEqual); diff != "" {
				t.Errorf("ParseLine mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseLineReadsWhatDaemonWrites: the lines logline writes for every
// kind, in both formats, read back as the same probe.
func TestParseLineReadsWhatDaemonWrites(t *testing.T) {
	at := time.Date(2026, 11, 22, 1, 40, 36, 123e6, time.FixedZone("CET", 3600))
	for k := event.Kind(0); int(k) < event.NumKinds; k++ {
		proto := event.TCP
		if k == event.UDPProbe {
			proto = event.UDP
		}
		ev := event.Event{Src: netip.MustParseAddr("2001:db8::7"), Port: 1234, Proto: proto, Kind: k, Flags: event.FlagSYN | event.FlagFIN}
		for _, line := range []string{
			logline.History12(at, "host.example", ev),
			logline.History2x(at, logline.ScanFrom(ev, "host.example", logline.Outcome{Triggered: logline.True, Blocked: logline.True})),
		} {
			e, err := ParseLine(line)
			if err != nil {
				t.Fatalf("ParseLine(%q): %v", line, err)
			}
			if !e.Time.Equal(at.Truncate(time.Second)) && !e.Time.Equal(at) {
				t.Errorf("%q: time %v, want %v", line, e.Time, at)
			}
			if e.Addr != ev.Src || e.Port != ev.Port || e.Proto != ev.Proto.String() || e.Name != "host.example" || !e.Blocked {
				t.Errorf("%q: read %+v", line, e)
			}
			if e.Format == "2.x" && e.Kind != k.Name() {
				t.Errorf("%q: kind %q, want %q", line, e.Kind, k.Name())
			}
		}
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "portsentry.history")
	if err := os.WriteFile(p+".1", []byte("1795311636 - 11/22/2026 01:40:36 Host: 10.99.0.1/10.99.0.1 Port: 143 TCP Blocked\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cur := "# comment\n\n" +
		"2026-11-22T01:42:52.875+0000 Scan from: [10.0.0.5] (10.0.0.5) protocol: [TCP] port: [80] type: [Connect] IP opts: [unknown] ignored: [false] triggered: [true] noblock: [false] blocked: [true]\n" +
		"garbage that a crash left behind\n" +
		strings.Repeat("y", linefile.MaxLine+1) + "\n" +
		"1795311640 - 11/22/2026 01:40:40 Host: 10.99.0.4/10.99.0.4 Port: 1 TCP Blocked" // no final newline
	if err := os.WriteFile(p, []byte(cur), 0o600); err != nil {
		t.Fatal(err)
	}
	var ports []uint16
	bad, err := ReadFile(p, func(e Entry) { ports = append(ports, e.Port) })
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uint16{143, 80, 1}, ports); diff != "" {
		t.Errorf("ports read (-want +got):\n%s", diff)
	}
	var where []string
	for _, b := range bad {
		var ce *config.Error
		if !errors.As(b, &ce) {
			t.Fatalf("error %v is no *config.Error", b)
		}
		where = append(where, fmt.Sprintf("%s:%d", filepath.Base(ce.File), ce.Line))
	}
	if diff := cmp.Diff([]string{"portsentry.history:4", "portsentry.history:5"}, where); diff != "" {
		t.Errorf("lines reported (-want +got):\n%s", diff)
	}

	if err := os.WriteFile(p, []byte(strings.Repeat("junk line\n", 50)), 0o600); err != nil {
		t.Fatal(err)
	}
	bad, err = ReadFile(p, func(Entry) {})
	if err != nil || len(bad) != MaxBad+1 || !strings.Contains(bad[MaxBad].Error(), "30 more damaged lines") {
		t.Errorf("50 junk lines: %d errors (%v), %v; want %d, the last counting 30 more", len(bad), bad[len(bad)-1], err, MaxBad+1)
	}
	if bad, err := ReadFile(filepath.Join(dir, "missing"), func(Entry) { t.Error("entry from a missing file") }); err != nil || len(bad) > 0 {
		t.Errorf("missing file: %v %v", bad, err)
	}
	if _, err := ReadFile(dir, func(Entry) {}); err == nil {
		t.Error("a directory read without error")
	}
}

// FuzzParseLine: no line panics, and an accepted one is usable.
func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		"1795311636 - 11/22/2026 01:40:36 Host: 10.99.0.1/10.99.0.1 Port: 143 TCP Blocked",
		"2026-11-22T01:42:52.875+0000 Scan from: [10.0.0.5] (10.0.0.5) protocol: [TCP] port: [143] type: [TCP SYN/Normal scan] IP opts: [not set] ignored: [false] triggered: [true] noblock: [false] blocked: [true]",
		"2026-11-22T01:42:52+0000 Scan from: [::ffff:1.2.3.4] (]) protocol: [) protocol: [UDP] port: [0]",
		"Scan from: [",
		"-1 Host: / Port: 1 TCP Blocked",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		e, err := ParseLine(line)
		if err != nil {
			return
		}
		if !e.Addr.IsValid() || e.Addr.Is4In6() || e.Addr.Zone() != "" {
			t.Errorf("ParseLine(%q): address %v", line, e.Addr)
		}
		if (e.Proto != "TCP" && e.Proto != "UDP") || (e.Format != "1.2" && e.Format != "2.x") {
			t.Errorf("ParseLine(%q) = %+v", line, e)
		}
	})
}
