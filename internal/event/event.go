// Package event defines the small value every sensor emits and every later
// stage (engine, responders, log lines) consumes. It has no dependencies so
// that data can only flow one way: sensors → engine → responders.
package event

import (
	"fmt"
	"net/netip"
	"time"
)

// Proto is the transport protocol of a probe.
type Proto uint8

// Transport protocols.
const (
	TCP Proto = iota
	UDP
)

// String returns "TCP" or "UDP", as PortSentry writes them.
func (p Proto) String() string {
	if p == UDP {
		return "UDP"
	}
	return "TCP"
}

// Kind is what a probe looked like, named as PortSentry names it.
type Kind uint8

// Probe kinds.
const (
	Connect  Kind = iota // a full TCP handshake on a trap socket (connect mode)
	SYN                  // SYN alone
	FIN                  // FIN alone
	NULL                 // no flags
	XMAS                 // FIN+URG+PSH
	OddTCP               // any other flag combination without ACK or RST
	UDPProbe             // any UDP datagram to a watched port
)

// NumKinds is the number of probe kinds: every Kind is below it, so a table
// can be indexed by Kind.
const NumKinds = int(UDPProbe) + 1

var kindNames = [NumKinds]string{
	Connect:  "connect",
	SYN:      "syn",
	FIN:      "fin",
	NULL:     "null",
	XMAS:     "xmas",
	OddTCP:   "odd",
	UDPProbe: "udp",
}

// Name returns the kind's short lowercase name, as the JSON event stream
// and the metrics' "kind" label write it: "connect", "syn", "fin", "null",
// "xmas", "odd" or "udp"; "unknown" for a value that is no Kind.
func (k Kind) Name() string {
	if int(k) < NumKinds {
		return kindNames[k]
	}
	return "unknown"
}

// Mode is a PortSentry 1.2 mode name; it is what $MODE$ expands to.
type Mode uint8

// Modes, in 1.2's spelling.
const (
	ModeTCP  Mode = iota // -tcp: connect mode, TCP
	ModeUDP              // -udp: connect mode, UDP
	ModeSTCP             // -stcp: stealth, TCP
	ModeSUDP             // -sudp: stealth, UDP
	ModeATCP             // -atcp: advanced, TCP
	ModeAUDP             // -audp: advanced, UDP
)

var modeNames = [...]string{"tcp", "udp", "stcp", "sudp", "atcp", "audp"}

// String returns the 1.2 name: tcp, udp, stcp, sudp, atcp or audp.
func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("mode(%d)", m)
}

// Passive reports whether the mode watches by packet capture (stealth and
// advanced modes) rather than by binding trap sockets (connect mode).
func (m Mode) Passive() bool { return m != ModeTCP && m != ModeUDP }

// Style2x returns the 2.x name of the mode, what $MODE$ expands to after a
// 2.x flag: "connect" or "stealth". It is a name, never a test of behaviour
// (that is Passive).
func (m Mode) Style2x() string {
	if m.Passive() {
		return "stealth"
	}
	return "connect"
}

// Proto returns the protocol a mode watches.
func (m Mode) Proto() Proto {
	if m == ModeUDP || m == ModeSUDP || m == ModeAUDP {
		return UDP
	}
	return TCP
}

// ParseMode reads a 1.2 mode name ("tcp", "atcp", …).
func ParseMode(s string) (Mode, bool) {
	for i, n := range modeNames {
		if n == s {
			return Mode(i), true
		}
	}
	return 0, false
}

// Traceroute's UDP probes go to ports 33434 and up, one port per probe
// (30 hops × 3 probes by default; mtr in UDP mode the same), with TTLs
// counted up from 1: those that reach the host arrive with what is left,
// 1 for the probe whose TTL was exactly the hop count, a little more for
// the ones sent with it in parallel. Ordinary traffic arrives with most of
// its initial 64, 128 or 255 left.
const (
	TracerouteFirstPort = 33434
	TracerouteLastPort  = 33534
	TracerouteMaxTTL    = 30
)

// IsTraceroute reports whether a UDP datagram to port, arriving with TTL
// (or hop limit) ttl, looks like a traceroute probe: someone measuring the
// path to this host, not scanning it. The capture sensor does not report
// it, and the kernel trap lets it through, so that the port-unreachable
// reply ends the traceroute. A scanner can use this to learn that these
// 101 UDP ports are closed, and nothing else.
func IsTraceroute(port uint16, ttl uint8) bool {
	return port >= TracerouteFirstPort && port <= TracerouteLastPort && ttl <= TracerouteMaxTTL
}

// IPOpts says whether the IPv4 header carried options.
type IPOpts uint8

// IP option states, as the 2.x "IP opts: [...]" field writes them.
const (
	IPOptsUnknown IPOpts = iota // IPv6, or connect mode: nothing to tell
	IPOptsNotSet
	IPOptsSet
)

// String returns "unknown", "not set" or "set".
func (o IPOpts) String() string {
	switch o {
	case IPOptsNotSet:
		return "not set"
	case IPOptsSet:
		return "set"
	}
	return "unknown"
}

// TCP flag bits, as on the wire.
const (
	FlagFIN uint8 = 1 << iota
	FlagSYN
	FlagRST
	FlagPSH
	FlagACK
	FlagURG
)

// Event is one probe seen by a sensor.
type Event struct {
	Time   time.Time
	Src    netip.Addr // always unmapped: an IPv4-mapped IPv6 source is stored as IPv4
	Dst    netip.Addr // unmapped; may be invalid when the sensor cannot tell
	Port   uint16     // destination port
	Proto  Proto
	Kind   Kind
	Flags  uint8 // TCP flags (Flag* bits); meaningful for stealth TCP kinds
	IPOpts IPOpts
	Mode   Mode
	// TTL is the IPv4 TTL or IPv6 hop limit the probe arrived with; 0 when
	// the sensor cannot tell (connect mode).
	TTL uint8
	// Ifindex is the interface the probe arrived on; 0 when the sensor
	// cannot tell (connect mode).
	Ifindex int
	// SrcPort is the source port; 0 when the sensor cannot tell (connect
	// mode). With the addresses it names the connection a packet would
	// belong to, for the service check.
	SrcPort uint16
}

// Describe returns the scan type as PortSentry writes it in the "type: [...]"
// field and the attackalert line: "TCP SYN/Normal scan", "Connect", "UDP",
// "Unknown Type: TCP Packet Flags: SYN: 0 FIN: 1 …".
func (e Event) Describe() string {
	switch e.Kind {
	case Connect:
		return "Connect"
	case SYN:
		return "TCP SYN/Normal scan"
	case FIN:
		return "TCP FIN scan"
	case NULL:
		return "TCP NULL scan"
	case XMAS:
		return "TCP XMAS scan"
	case UDPProbe:
		return "UDP"
	}
	bit := func(f uint8) int {
		if e.Flags&f != 0 {
			return 1
		}
		return 0
	}
	return fmt.Sprintf("Unknown Type: TCP Packet Flags: SYN: %d FIN: %d ACK: %d PSH: %d URG: %d RST: %d",
		bit(FlagSYN), bit(FlagFIN), bit(FlagACK), bit(FlagPSH), bit(FlagURG), bit(FlagRST))
}

// ClassifyTCP names a TCP probe from its flags. It reports false for packets
// that are never probes: anything with ACK or RST set belongs to an existing
// conversation (or is an ACK scan, which PortSentry does not flag).
func ClassifyTCP(flags uint8) (Kind, bool) {
	if flags&(FlagACK|FlagRST) != 0 {
		return 0, false
	}
	switch flags &^ 0xC0 { // ECE and CWR do not change what a probe is
	case 0:
		return NULL, true
	case FlagFIN | FlagURG | FlagPSH:
		return XMAS, true
	case FlagFIN:
		return FIN, true
	case FlagSYN:
		return SYN, true
	}
	return OddTCP, true
}
