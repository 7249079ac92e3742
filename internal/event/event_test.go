package event

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Flag bits PortSentry ignores when naming a probe (RFC 3168).
const (
	flagECE uint8 = 0x40
	flagCWR uint8 = 0x80
)

func TestDescribe(t *testing.T) {
	tests := []struct {
		name string
		ev   Event
		want string
	}{
		{"connect", Event{Kind: Connect}, "Connect"},
		{"syn", Event{Kind: SYN, Flags: FlagSYN}, "TCP SYN/Normal scan"},
		{"fin", Event{Kind: FIN, Flags: FlagFIN}, "TCP FIN scan"},
		{"null", Event{Kind: NULL}, "TCP NULL scan"},
		{"xmas", Event{Kind: XMAS, Flags: FlagFIN | FlagURG | FlagPSH}, "TCP XMAS scan"},
		{"udp", Event{Kind: UDPProbe, Proto: UDP}, "UDP"},
		{
			"odd syn+fin",
			Event{Kind: OddTCP, Flags: FlagSYN | FlagFIN},
			"Unknown Type: TCP Packet Flags: SYN: 1 FIN: 1 ACK: 0 PSH: 0 URG: 0 RST: 0",
		},
		{
			"odd psh alone",
			Event{Kind: OddTCP, Flags: FlagPSH},
			"Unknown Type: TCP Packet Flags: SYN: 0 FIN: 0 ACK: 0 PSH: 1 URG: 0 RST: 0",
		},
		{
			"odd urg alone",
			Event{Kind: OddTCP, Flags: FlagURG},
			"Unknown Type: TCP Packet Flags: SYN: 0 FIN: 0 ACK: 0 PSH: 0 URG: 1 RST: 0",
		},
		{
			// Every flag a bit of its own field: catches a swapped column.
			"odd all six",
			Event{Kind: OddTCP, Flags: FlagSYN | FlagFIN | FlagACK | FlagPSH | FlagURG | FlagRST},
			"Unknown Type: TCP Packet Flags: SYN: 1 FIN: 1 ACK: 1 PSH: 1 URG: 1 RST: 1",
		},
		{
			"odd ack+rst only",
			Event{Kind: OddTCP, Flags: FlagACK | FlagRST},
			"Unknown Type: TCP Packet Flags: SYN: 0 FIN: 0 ACK: 1 PSH: 0 URG: 0 RST: 1",
		},
		{
			"odd ece and cwr are not printed",
			Event{Kind: OddTCP, Flags: FlagSYN | FlagURG | flagECE | flagCWR},
			"Unknown Type: TCP Packet Flags: SYN: 1 FIN: 0 ACK: 0 PSH: 0 URG: 1 RST: 0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.ev.Describe()); diff != "" {
				t.Errorf("Describe() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestClassifyTCP(t *testing.T) {
	type result struct {
		Kind  Kind
		Probe bool
	}
	tests := []struct {
		name  string
		flags uint8
		want  result
	}{
		{"null", 0, result{NULL, true}},
		{"syn", FlagSYN, result{SYN, true}},
		{"fin", FlagFIN, result{FIN, true}},
		{"xmas", FlagFIN | FlagURG | FlagPSH, result{XMAS, true}},

		// ECE and CWR do not change what a probe is (nmap and ECN-capable
		// stacks set them on SYNs).
		{"syn+ece+cwr", FlagSYN | flagECE | flagCWR, result{SYN, true}},
		{"syn+ece", FlagSYN | flagECE, result{SYN, true}},
		{"fin+cwr", FlagFIN | flagCWR, result{FIN, true}},
		{"ece alone is null", flagECE, result{NULL, true}},
		{"ece+cwr alone is null", flagECE | flagCWR, result{NULL, true}},
		{"xmas+ece", FlagFIN | FlagURG | FlagPSH | flagECE, result{XMAS, true}},

		// Odd combinations.
		{"syn+fin", FlagSYN | FlagFIN, result{OddTCP, true}},
		{"fin+urg", FlagFIN | FlagURG, result{OddTCP, true}},
		{"fin+psh", FlagFIN | FlagPSH, result{OddTCP, true}},
		{"psh", FlagPSH, result{OddTCP, true}},
		{"urg", FlagURG, result{OddTCP, true}},
		{"urg+psh", FlagURG | FlagPSH, result{OddTCP, true}},
		{"syn+psh", FlagSYN | FlagPSH, result{OddTCP, true}},
		{"xmas+syn", FlagFIN | FlagURG | FlagPSH | FlagSYN, result{OddTCP, true}},

		// ACK or RST: part of a conversation (or an ACK scan); never a probe.
		{"ack", FlagACK, result{0, false}},
		{"rst", FlagRST, result{0, false}},
		{"syn+ack", FlagSYN | FlagACK, result{0, false}},
		{"rst+ack", FlagRST | FlagACK, result{0, false}},
		{"fin+ack", FlagFIN | FlagACK, result{0, false}},
		{"psh+ack", FlagPSH | FlagACK, result{0, false}},
		{"syn+rst", FlagSYN | FlagRST, result{0, false}},
		{"xmas+ack", FlagFIN | FlagURG | FlagPSH | FlagACK, result{0, false}},
		{"all flags", 0xFF, result{0, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, ok := ClassifyTCP(tt.flags)
			got := result{k, ok}
			if !ok {
				got.Kind = 0 // the kind means nothing when it is not a probe
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ClassifyTCP(%#02x) mismatch (-want +got):\n%s", tt.flags, diff)
			}
		})
	}
}

// TestClassifyTCPAllFlags checks the rule over all 256 flag bytes: a packet
// is a probe exactly when neither ACK nor RST is set, and an odd probe's
// Describe() reports each of its six classic flags.
func TestClassifyTCPAllFlags(t *testing.T) {
	for f := 0; f < 256; f++ {
		flags := uint8(f)
		kind, probe := ClassifyTCP(flags)
		if want := flags&(FlagACK|FlagRST) == 0; probe != want {
			t.Errorf("ClassifyTCP(%#02x) probe = %v, want %v", flags, probe, want)
			continue
		}
		if !probe {
			continue
		}
		// Stripping ECE/CWR never changes the answer.
		if k2, _ := ClassifyTCP(flags &^ (flagECE | flagCWR)); k2 != kind {
			t.Errorf("ClassifyTCP(%#02x) = %v but without ECE/CWR = %v", flags, kind, k2)
		}
		if kind == Connect || kind == UDPProbe {
			t.Errorf("ClassifyTCP(%#02x) = %v, a kind no TCP packet has", flags, kind)
		}
	}
}

func TestProtoString(t *testing.T) {
	for _, tt := range []struct {
		p    Proto
		want string
	}{{TCP, "TCP"}, {UDP, "UDP"}} {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("Proto(%d).String() = %q, want %q", tt.p, got, tt.want)
		}
	}
}

func TestIPOptsString(t *testing.T) {
	for _, tt := range []struct {
		o    IPOpts
		want string
	}{{IPOptsUnknown, "unknown"}, {IPOptsNotSet, "not set"}, {IPOptsSet, "set"}} {
		if got := tt.o.String(); got != tt.want {
			t.Errorf("IPOpts(%d).String() = %q, want %q", tt.o, got, tt.want)
		}
	}
}

func TestModes(t *testing.T) {
	type info struct {
		Name    string
		Style2x string
		Passive bool
		Proto   Proto
	}
	tests := []struct {
		mode Mode
		want info
	}{
		{ModeTCP, info{"tcp", "connect", false, TCP}},
		{ModeUDP, info{"udp", "connect", false, UDP}},
		{ModeSTCP, info{"stcp", "stealth", true, TCP}},
		{ModeSUDP, info{"sudp", "stealth", true, UDP}},
		{ModeATCP, info{"atcp", "stealth", true, TCP}},
		{ModeAUDP, info{"audp", "stealth", true, UDP}},
	}
	for _, tt := range tests {
		t.Run(tt.want.Name, func(t *testing.T) {
			got := info{tt.mode.String(), tt.mode.Style2x(), tt.mode.Passive(), tt.mode.Proto()}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("mode %d mismatch (-want +got):\n%s", tt.mode, diff)
			}
			// The 1.2 name reads back as the same mode ($MODE$ and -atcp agree).
			back, ok := ParseMode(got.Name)
			if !ok || back != tt.mode {
				t.Errorf("ParseMode(%q) = %v, %v; want %v, true", got.Name, back, ok, tt.mode)
			}
		})
	}
	if got := Mode(42).String(); got != "mode(42)" {
		t.Errorf("Mode(42).String() = %q, want %q", got, "mode(42)")
	}
}

func TestParseMode(t *testing.T) {
	tests := []struct {
		in   string
		want Mode
		ok   bool
	}{
		{"tcp", ModeTCP, true},
		{"udp", ModeUDP, true},
		{"stcp", ModeSTCP, true},
		{"sudp", ModeSUDP, true},
		{"atcp", ModeATCP, true},
		{"audp", ModeAUDP, true},
		{"", 0, false},
		{"-tcp", 0, false}, // the flag spelling is the caller's to strip
		{"TCP", 0, false},
		{"atcp ", 0, false},
		{"connect", 0, false},
		{"stealth", 0, false},
		{"mode(2)", 0, false},
	}
	for _, tt := range tests {
		got, ok := ParseMode(tt.in)
		if ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("ParseMode(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzParseMode(f *testing.F) {
	for _, s := range []string{"tcp", "udp", "stcp", "sudp", "atcp", "audp", "", "Tcp", "mode(9)"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, ok := ParseMode(s)
		if !ok {
			return
		}
		// Only the exact 1.2 names are accepted, and they print back unchanged.
		if got := m.String(); got != s {
			t.Errorf("ParseMode(%q) = %v, which prints as %q", s, m, got)
		}
	})
}

func TestKindName(t *testing.T) {
	want := []string{"connect", "syn", "fin", "null", "xmas", "odd", "udp"}
	if len(want) != NumKinds {
		t.Fatalf("NumKinds = %d, want %d", NumKinds, len(want))
	}
	for k := Connect; k <= UDPProbe; k++ {
		if got := k.Name(); got != want[k] {
			t.Errorf("Kind(%d).Name() = %q, want %q", k, got, want[k])
		}
	}
	if got := Kind(NumKinds).Name(); got != "unknown" {
		t.Errorf("Kind(%d).Name() = %q, want unknown", NumKinds, got)
	}
}
