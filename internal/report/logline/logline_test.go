package logline

import (
	"errors"
	"net/netip"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portsentry-go/portsentry/internal/event"
)

func ev(src string, proto event.Proto, port uint16, kind event.Kind, flags uint8, opts event.IPOpts) event.Event {
	return event.Event{Src: netip.MustParseAddr(src), Port: port, Proto: proto, Kind: kind, Flags: flags, IPOpts: opts}
}

// The reference lines (compatibility contract §4 and §5) are copied here
// verbatim: any change of wording breaks a user's filter and must fail.
func TestScanFromGolden(t *testing.T) {
	tests := []struct {
		name string
		ev   event.Event
		host string
		o    Outcome
		want string
	}{
		{
			"reference line",
			ev("10.0.0.5", event.TCP, 143, event.SYN, event.FlagSYN, event.IPOptsNotSet),
			"10.0.0.5",
			Outcome{Ignored: False, Triggered: True, NoBlock: False, Blocked: True},
			"Scan from: [10.0.0.5] (10.0.0.5) protocol: [TCP] port: [143] type: [TCP SYN/Normal scan] IP opts: [not set] ignored: [false] triggered: [true] noblock: [false] blocked: [true]",
		},
		{
			"ignored, rest unset, resolved name",
			ev("10.0.0.5", event.TCP, 1, event.FIN, event.FlagFIN, event.IPOptsSet),
			"scanner.example.net",
			Outcome{Ignored: True},
			"Scan from: [10.0.0.5] (scanner.example.net) protocol: [TCP] port: [1] type: [TCP FIN scan] IP opts: [set] ignored: [true] triggered: [unset] noblock: [unset] blocked: [unset]",
		},
		{
			"udp ipv6",
			ev("2001:db8::5", event.UDP, 65535, event.UDPProbe, 0, event.IPOptsUnknown),
			"2001:db8::5",
			Outcome{Ignored: False, Triggered: False},
			"Scan from: [2001:db8::5] (2001:db8::5) protocol: [UDP] port: [65535] type: [UDP] IP opts: [unknown] ignored: [false] triggered: [false] noblock: [unset] blocked: [unset]",
		},
		{
			"connect, log-only",
			ev("192.0.2.1", event.TCP, 23, event.Connect, 0, event.IPOptsUnknown),
			"192.0.2.1",
			Outcome{Ignored: False, Triggered: True, NoBlock: True, Blocked: False},
			"Scan from: [192.0.2.1] (192.0.2.1) protocol: [TCP] port: [23] type: [Connect] IP opts: [unknown] ignored: [false] triggered: [true] noblock: [true] blocked: [false]",
		},
		{
			"odd flags",
			ev("192.0.2.1", event.TCP, 80, event.OddTCP, event.FlagSYN|event.FlagFIN, event.IPOptsNotSet),
			"192.0.2.1",
			Outcome{Ignored: False, Triggered: True, NoBlock: False, Blocked: True},
			"Scan from: [192.0.2.1] (192.0.2.1) protocol: [TCP] port: [80] type: [Unknown Type: TCP Packet Flags: SYN: 1 FIN: 1 ACK: 0 PSH: 0 URG: 0 RST: 0] IP opts: [not set] ignored: [false] triggered: [true] noblock: [false] blocked: [true]",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, ScanFrom(tt.ev, tt.host, tt.o)); diff != "" {
				t.Errorf("ScanFrom mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// The 2.x fail2ban filter reads "^[^ ]* Scan from: \[<HOST>\]" from the
// stdout log: the bracketed field must be the address even when resolved.
func TestScanFromMatches2xFilter(t *testing.T) {
	re := regexp.MustCompile(`^[^ ]* Scan from: \[(?P<host>[0-9.]+|[0-9a-fA-F:]+)\]`)
	for _, src := range []string{"10.0.0.5", "2001:db8::dead:beef"} {
		e := ev(src, event.TCP, 22, event.SYN, event.FlagSYN, event.IPOptsNotSet)
		line := History2x(time.Unix(1795311772, 0).UTC(), ScanFrom(e, "evil.example.com", Outcome{}))
		m := re.FindStringSubmatch(line)
		if m == nil || m[1] != src {
			t.Errorf("2.x filter on %q: got %q, want host %s", line, m, src)
		}
	}
}

func TestAttackGolden(t *testing.T) {
	tests := []struct {
		name string
		ev   event.Event
		host string
		want string
	}{
		{
			"syn (reference)",
			ev("10.99.0.1", event.TCP, 143, event.SYN, event.FlagSYN, event.IPOptsNotSet), "10.99.0.1",
			"attackalert: TCP SYN/Normal scan from host: 10.99.0.1/10.99.0.1 to TCP port: 143",
		},
		{
			"connect",
			ev("10.99.0.1", event.TCP, 143, event.Connect, 0, event.IPOptsUnknown), "10.99.0.1",
			"attackalert: Connect from host: 10.99.0.1/10.99.0.1 to TCP port: 143",
		},
		{
			"udp says UDP scan",
			ev("10.99.0.1", event.UDP, 7, event.UDPProbe, 0, event.IPOptsNotSet), "10.99.0.1",
			"attackalert: UDP scan from host: 10.99.0.1/10.99.0.1 to UDP port: 7",
		},
		{
			"xmas, resolved name",
			ev("10.99.0.1", event.TCP, 1, event.XMAS, event.FlagFIN|event.FlagURG|event.FlagPSH, event.IPOptsNotSet), "scanner.example.net",
			"attackalert: TCP XMAS scan from host: scanner.example.net/10.99.0.1 to TCP port: 1",
		},
		{
			"null ipv6",
			ev("2001:db8::1", event.TCP, 79, event.NULL, 0, event.IPOptsUnknown), "2001:db8::1",
			"attackalert: TCP NULL scan from host: 2001:db8::1/2001:db8::1 to TCP port: 79",
		},
		{
			"odd",
			ev("10.99.0.1", event.TCP, 80, event.OddTCP, event.FlagPSH, event.IPOptsNotSet), "10.99.0.1",
			"attackalert: Unknown Type: TCP Packet Flags: SYN: 0 FIN: 0 ACK: 0 PSH: 1 URG: 0 RST: 0 from host: 10.99.0.1/10.99.0.1 to TCP port: 80",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Attack(tt.ev, tt.host)); diff != "" {
				t.Errorf("Attack mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestActionLinesGolden(t *testing.T) {
	tests := []struct {
		name, got, want string
	}{
		{
			"wrappers (reference)",
			BlockedWrappers("10.99.0.1", "ALL: 10.99.0.1 : DENY"),
			`attackalert: Host 10.99.0.1 has been blocked via wrappers with string: "ALL: 10.99.0.1 : DENY"`,
		},
		{
			"route (reference)",
			BlockedRoute("10.99.0.1", "/usr/sbin/iptables -I INPUT -s 10.99.0.1 -j DROP"),
			`attackalert: Host 10.99.0.1 has been blocked via dropped route using command: "/usr/sbin/iptables -I INPUT -s 10.99.0.1 -j DROP"`,
		},
		{
			"already blocked (reference)",
			AlreadyBlocked("10.99.0.1", "10.99.0.1"),
			"attackalert: Host: 10.99.0.1/10.99.0.1 is already blocked Ignoring",
		},
		{
			"already blocked, resolved",
			AlreadyBlocked("scanner.example.net", "2001:db8::1"),
			"attackalert: Host: scanner.example.net/2001:db8::1 is already blocked Ignoring",
		},
		{
			"route ipv6",
			BlockedRoute("2001:db8::1", "/usr/sbin/ip6tables -I INPUT -s 2001:db8::1 -j DROP"),
			`attackalert: Host 2001:db8::1 has been blocked via dropped route using command: "/usr/sbin/ip6tables -I INPUT -s 2001:db8::1 -j DROP"`,
		},
		{
			"run command",
			RanCommand("10.99.0.1", "/usr/local/bin/alert 10.99.0.1 143"),
			`attackalert: External command run for host: 10.99.0.1 using command: "/usr/local/bin/alert 10.99.0.1 143"`,
		},
		{
			"failure",
			ActionFailed("10.99.0.1", `KILL_ROUTE command "/sbin/route add 10.99.0.1 reject"`, errors.New("exit status 7")),
			`attackalert: ERROR: KILL_ROUTE command "/sbin/route add 10.99.0.1 reject" for host 10.99.0.1 failed: exit status 7`,
		},
		{
			"active (reference)",
			Active,
			"adminalert: PortSentry is now active and listening.",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.got); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHistory12Golden(t *testing.T) {
	at := time.Unix(1795311636, 0)
	tests := []struct {
		name string
		t    time.Time
		host string
		ev   event.Event
		want string
	}{
		{
			"reference line, UTC",
			at.UTC(), "10.99.0.1",
			ev("10.99.0.1", event.TCP, 143, event.SYN, event.FlagSYN, event.IPOptsNotSet),
			"1795311636 - 11/22/2026 01:40:36 Host: 10.99.0.1/10.99.0.1 Port: 143 TCP Blocked",
		},
		{
			// 1.2 writes local time; the epoch does not move with the zone.
			"fixed zone east of UTC",
			at.In(time.FixedZone("CET", 3600)), "10.99.0.1",
			ev("10.99.0.1", event.TCP, 143, event.SYN, event.FlagSYN, event.IPOptsNotSet),
			"1795311636 - 11/22/2026 02:40:36 Host: 10.99.0.1/10.99.0.1 Port: 143 TCP Blocked",
		},
		{
			"fixed zone west of UTC crosses the date",
			at.In(time.FixedZone("EST", -5*3600)), "10.99.0.1",
			ev("10.99.0.1", event.TCP, 143, event.SYN, event.FlagSYN, event.IPOptsNotSet),
			"1795311636 - 11/21/2026 20:40:36 Host: 10.99.0.1/10.99.0.1 Port: 143 TCP Blocked",
		},
		{
			"udp, resolved name",
			at.UTC(), "scanner.example.net",
			ev("10.99.0.1", event.UDP, 7, event.UDPProbe, 0, event.IPOptsNotSet),
			"1795311636 - 11/22/2026 01:40:36 Host: scanner.example.net/10.99.0.1 Port: 7 UDP Blocked",
		},
		{
			"ipv6, single-digit fields padded",
			time.Date(2027, 3, 4, 5, 6, 7, 999e6, time.UTC), "2001:db8::1",
			ev("2001:db8::1", event.TCP, 1, event.NULL, 0, event.IPOptsUnknown),
			"1804136767 - 03/04/2027 05:06:07 Host: 2001:db8::1/2001:db8::1 Port: 1 TCP Blocked",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, History12(tt.t, tt.host, tt.ev)); diff != "" {
				t.Errorf("History12 mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// fail2banHost stands in for fail2ban's <HOST> tag: an IPv4 or IPv6 address.
const fail2banHost = `(?P<host>(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9a-fA-F:]*:[0-9a-fA-F:.]*)`

// stockFilter is Debian's fail2ban filter.d/portsentry.conf failregex, with
// <HOST> substituted; fail2ban searches it (unanchored at the start).
var stockFilter = regexp.MustCompile(`\/` + fail2banHost + ` Port\: [0-9]+ (TCP|UDP) Blocked$`)

// epochPrefix is the filter's datepattern, {^LN-BEG}Epoch.
var epochPrefix = regexp.MustCompile(`^([0-9]+) `)

func TestHistory12MatchesFail2banFilter(t *testing.T) {
	at := time.Date(2026, 11, 22, 1, 40, 36, 0, time.UTC)
	tests := []struct {
		src, name string
		proto     event.Proto
		port      uint16
	}{
		{"10.99.0.1", "10.99.0.1", event.TCP, 143},
		{"10.99.0.1", "host-1.example.net", event.UDP, 7},
		{"255.255.255.255", "255.255.255.255", event.TCP, 65535},
		{"2001:db8::1", "2001:db8::1", event.TCP, 22},
		{"2001:db8:0:1:2:3:4:5", "v6.example.net", event.UDP, 53},
		{"fe80::1", "fe80::1", event.TCP, 1},
		{"::1", "::1", event.TCP, 0},
	}
	for _, tt := range tests {
		t.Run(tt.src+"/"+tt.name, func(t *testing.T) {
			kind := event.SYN
			if tt.proto == event.UDP {
				kind = event.UDPProbe
			}
			line := History12(at, tt.name, ev(tt.src, tt.proto, tt.port, kind, 0, event.IPOptsNotSet))
			m := stockFilter.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("stock fail2ban filter does not match %q", line)
			}
			got, err := netip.ParseAddr(m[1])
			if err != nil || got != netip.MustParseAddr(tt.src) {
				t.Errorf("filter took host %q from %q, want %s", m[1], line, tt.src)
			}
			if m[2] != tt.proto.String() {
				t.Errorf("filter took protocol %q, want %s", m[2], tt.proto)
			}
			e := epochPrefix.FindStringSubmatch(line)
			if e == nil || e[1] != strconv.FormatInt(at.Unix(), 10) {
				t.Errorf("line %q does not start with the epoch %d", line, at.Unix())
			}
		})
	}
}

func TestHistory2x(t *testing.T) {
	scan := "Scan from: [10.0.0.5] (10.0.0.5) protocol: [TCP] port: [143] type: [TCP SYN/Normal scan] IP opts: [not set] ignored: [false] triggered: [true] noblock: [false] blocked: [true]"
	tests := []struct {
		name string
		t    time.Time
		want string
	}{
		{"reference", time.Date(2026, 11, 22, 1, 42, 52, 875e6, time.UTC), "2026-11-22T01:42:52.875+0000 "},
		{"milliseconds truncated, not rounded", time.Date(2026, 11, 22, 1, 42, 52, 875999999, time.UTC), "2026-11-22T01:42:52.875+0000 "},
		{"zero milliseconds kept", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), "2026-01-02T03:04:05.000+0000 "},
		{"zone west", time.Date(2026, 11, 21, 20, 42, 52, 5e6, time.FixedZone("EST", -5*3600)), "2026-11-21T20:42:52.005-0500 "},
		{"half-hour zone", time.Date(2026, 11, 22, 7, 12, 52, 875e6, time.FixedZone("IST", 5*3600+1800)), "2026-11-22T07:12:52.875+0530 "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want+scan, History2x(tt.t, scan)); diff != "" {
				t.Errorf("History2x mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTri(t *testing.T) {
	tests := []struct {
		tri  Tri
		want string
	}{{Unset, "unset"}, {False, "false"}, {True, "true"}, {Of(true), "true"}, {Of(false), "false"}, {Tri(9), "unset"}}
	for _, tt := range tests {
		if got := tt.tri.String(); got != tt.want {
			t.Errorf("Tri(%d).String() = %q, want %q", tt.tri, got, tt.want)
		}
	}
}

func TestStatus(t *testing.T) {
	at := time.Date(2026, 12, 7, 14, 2, 11, 0, time.Local)
	syn := ev("10.0.0.5", event.TCP, 143, event.SYN, event.FlagSYN, event.IPOptsUnknown)
	syn.Time = at
	udp := ev("fd00::5", event.UDP, 7, event.UDPProbe, 0, event.IPOptsUnknown)
	udp.Time = at.AddDate(0, 0, 3)
	tests := []struct {
		name  string
		watch []Watch
		bans  int
		last  event.Event
		want  string
	}{
		{"advanced, nothing yet", []Watch{{event.ModeATCP, 1023}, {event.ModeAUDP, 1023}}, 0, event.Event{},
			"atcp on 1023 TCP ports, audp on 1023 UDP ports; 0 bans active; no detection yet"},
		{"one ban", []Watch{{event.ModeTCP, 5}}, 1, syn,
			"tcp on 5 TCP ports; 1 ban active; last detection Dec 7 14:02:11: TCP SYN/Normal scan from 10.0.0.5 to TCP port 143"},
		{"IPv6 UDP", []Watch{{event.ModeSTCP, 3}, {event.ModeSUDP, 1}}, 14385, udp,
			"stcp on 3 TCP ports, sudp on 1 UDP port; 14385 bans active; last detection Dec 10 14:02:11: UDP from fd00::5 to UDP port 7"},
		{"no mode", nil, 2, event.Event{}, "no mode; 2 bans active; no detection yet"},
	}
	for _, tt := range tests {
		if got := Status(tt.watch, tt.bans, tt.last); got != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, got, tt.want)
		}
	}
}
