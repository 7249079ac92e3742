package sockets

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portsentry-go/portsentry/internal/event"
)

// The files in testdata/procnet are real /proc/net tables, taken while a
// Python script held: a TCP listener on 127.0.0.1:38023 (0x9487) with one
// connection from port 45744 (0xB2B0), a TCP listener on [::1]:38022
// (0x9486) with one connection from port 40976 (0xA010), a UDP socket bound
// to 127.0.0.1:38053 (0x94A5), a connected UDP socket on port 54266
// (0xD3FA) and a UDP socket bound to [::]:38054 (0x94A6). The host also had
// sshd-like listener on 2024 (0x07E8) and five connections in TIME_WAIT.

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "procnet", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func scanAll(b []byte) ([]procEntry, error) {
	var got []procEntry
	err := scanProcNet(bytes.NewReader(b), func(e procEntry) bool {
		got = append(got, e)
		return true
	})
	return got, err
}

func TestScanProcNetFiles(t *testing.T) {
	tests := []struct {
		file string
		want []procEntry
	}{
		{"tcp", []procEntry{
			{2024, stateListen},
			{38023, stateListen},
			{46496, stateTimeWait}, {46508, stateTimeWait}, {46516, stateTimeWait},
			{46532, stateTimeWait}, {46534, stateTimeWait},
			{38023, stateEstablished},
			{45744, stateEstablished},
		}},
		{"tcp6", []procEntry{
			{38022, stateListen},
			{40976, stateEstablished},
			{38022, stateEstablished},
		}},
		{"udp", []procEntry{
			{54266, stateEstablished},
			{38053, stateClose},
		}},
		{"udp6", []procEntry{
			{38054, stateClose},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := scanAll(readTestdata(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("entries (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProcInUse(t *testing.T) {
	tests := []struct {
		file  string
		proto event.Proto
		port  uint16
		want  bool
	}{
		{"tcp", event.TCP, 38023, true},  // listener
		{"tcp", event.TCP, 45744, true},  // outgoing connection's port
		{"tcp", event.TCP, 46496, false}, // TIME_WAIT only
		{"tcp", event.TCP, 80, false},
		{"tcp6", event.TCP, 38022, true},
		{"tcp6", event.TCP, 40976, true},
		{"tcp6", event.TCP, 38023, false},
		{"udp", event.UDP, 38053, true},
		{"udp", event.UDP, 54266, true}, // connected: state 1
		{"udp", event.UDP, 53, false},
		{"udp6", event.UDP, 38054, true},
		// TIME_WAIT is a TCP notion: for UDP state 6 would still count.
		{"tcp", event.UDP, 46496, true},
	}
	for _, tt := range tests {
		got, err := procInUse(bytes.NewReader(readTestdata(t, tt.file)), tt.proto, tt.port)
		if err != nil {
			t.Fatalf("%s %v %d: %v", tt.file, tt.proto, tt.port, err)
		}
		if got != tt.want {
			t.Errorf("%s %v %d: got %v, want %v", tt.file, tt.proto, tt.port, got, tt.want)
		}
	}
}

func TestScanProcNetStops(t *testing.T) {
	n := 0
	err := scanProcNet(bytes.NewReader(readTestdata(t, "tcp")), func(procEntry) bool {
		n++
		return n < 2
	})
	if err != nil || n != 2 {
		t.Errorf("got %d calls, err %v; want 2, nil", n, err)
	}
}

func TestScanProcNetInline(t *testing.T) {
	const hdr = "  sl  local_address rem_address   st tx_queue\n"
	tests := []struct {
		name    string
		in      string
		want    []procEntry
		wantErr string // substring; "" = no error
	}{
		{"header only", hdr, nil, ""},
		{"no final newline", hdr + "   0: 0100007F:0016 00000000:0000 0A", []procEntry{{22, stateListen}}, ""},
		{"crlf", hdr + "   0: 0100007F:0016 00000000:0000 0A 00\r\n", []procEntry{{22, stateListen}}, ""},
		{"lower-case hex", hdr + "   0: 0100007f:ffff 00000000:0000 0a\n", []procEntry{{65535, stateListen}}, ""},
		{"tabs", hdr + "\t0:\t0100007F:0016\t00000000:0000\t0A\n", []procEntry{{22, stateListen}}, ""},
		{"blank lines", hdr + "\n   0: 0100007F:0016 00000000:0000 0A\n   \n", []procEntry{{22, stateListen}}, ""},
		{"empty", "", nil, "empty"},
		{"no header", "   0: 0100007F:0016 00000000:0000 0A\n", nil, `line 1: not a /proc/net socket table`},
		{"bad slot", hdr + "   x: 0100007F:0016 00000000:0000 0A\n", nil, `line 2: bad slot "x:"`},
		{"slot without colon", hdr + "   0 0100007F:0016 00000000:0000 0A\n", nil, `line 2: bad slot "0"`},
		{"short address", hdr + "   0: 100007F:0016 00000000:0000 0A\n", nil, "line 2: bad local address"},
		{"bad hex address", hdr + "   0: 0100007G:0016 00000000:0000 0A\n", nil, "line 2: bad local address"},
		{"five-digit port", hdr + "   0: 0100007F:00016 00000000:0000 0A\n", nil, "bad local address"},
		{"no colon", hdr + "   0: 0100007F00016 00000000:0000 0A\n", nil, "bad local address"},
		{"bad remote", hdr + "   0: 0100007F:0016 00000000-0000 0A\n", nil, "line 2: bad remote address"},
		{"missing state", hdr + "   0: 0100007F:0016 00000000:0000\n", nil, `line 2: bad state ""`},
		{"long state", hdr + "   0: 0100007F:0016 00000000:0000 0A0\n", nil, `bad state "0A0"`},
		{"truncated line", hdr + "   0: 0100007F:00", nil, "line 2: bad local address"},
		{"too long", hdr + strings.Repeat("x", maxProcLine+1) + "\n", nil, "line 2: longer than"},
		{"second line bad", hdr + "   0: 0100007F:0016 00000000:0000 0A\n   1: junk\n", []procEntry{{22, stateListen}}, "line 3:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := scanAll([]byte(tt.in))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("entries (-want +got):\n%s", diff)
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func FuzzScanProcNet(f *testing.F) {
	for _, name := range []string{"tcp", "tcp6", "udp", "udp6"} {
		f.Add(readTestdata(f, name))
	}
	f.Add([]byte("sl\n0: 00000000:0000 00000000:0000 00\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := scanAll(b)
		if err != nil {
			return
		}
		// Every non-blank line after the header is one entry.
		lines := bytes.Split(b, []byte("\n"))
		want := 0
		for _, l := range lines[1:] {
			if len(skipSpaces(l)) > 0 {
				want++
			}
		}
		if len(got) != want {
			t.Fatalf("%d entries from %d socket lines", len(got), want)
		}
		// Every entry's port is in use (for UDP, where no state is
		// excluded).
		for _, e := range got {
			if ok, err := procInUse(bytes.NewReader(b), event.UDP, e.Port); !ok || err != nil {
				t.Fatalf("port %d parsed but procInUse = %v, %v", e.Port, ok, err)
			}
		}
		// Stopping early never fails where a full scan succeeded.
		if len(got) > 0 {
			n := 0
			if err := scanProcNet(bytes.NewReader(b), func(procEntry) bool { n++; return false }); err != nil || n != 1 {
				t.Fatalf("early stop: %d calls, err %v", n, err)
			}
		}
	})
}
