// Package packet decodes just enough of an IPv4 or IPv6 packet to tell a
// port probe from other traffic, and builds the kernel filter that keeps all
// but candidate probes from ever reaching user space.
//
// The decoder is hand-written rather than built on a general packet library
// because it runs once per captured packet on the hot path of a sensor that
// must keep up with a fast scan: it allocates nothing, copies nothing and
// reads only the header fields the classifier needs.
package packet

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/portsentry-go/portsentry/internal/event"
)

// Decode errors. Callers branch on them with errors.Is; each names the
// component so a wrapped error still says where it came from.
var (
	// ErrTruncated means the buffer ends before a header the decoder needs.
	// With a capture snap length it can also mean the snap length is too
	// small for a long IPv6 extension-header chain.
	ErrTruncated = errors.New("packet: truncated")
	// ErrNotIP means the buffer does not start with an IPv4 or IPv6 header.
	ErrNotIP = errors.New("packet: not an IPv4 or IPv6 packet")
	// ErrMalformed means a header contradicts itself (an IPv4 header length
	// below 20 bytes, a total length shorter than the header, a TCP data
	// offset below 20 bytes). The kernel drops such packets, so they can
	// never be probes of a real port.
	ErrMalformed = errors.New("packet: malformed header")
	// ErrFragment means a non-first fragment: its payload is the middle of
	// a datagram, and reading it as a TCP or UDP header would invent ports
	// and flags an attacker chose freely.
	ErrFragment = errors.New("packet: non-first fragment")
	// ErrNotTCPUDP means the transport protocol is neither TCP nor UDP, or
	// is hidden behind something the decoder does not walk (ESP, an
	// unknown or too long IPv6 extension-header chain).
	ErrNotTCPUDP = errors.New("packet: not TCP or UDP")
)

// IP protocol numbers and IPv6 extension headers the decoder knows.
const (
	protoHopByHop = 0
	protoTCP      = 6
	protoUDP      = 17
	protoRouting  = 43
	protoFragment = 44
	protoAH       = 51
	protoDstOpts  = 60
)

// maxExtHeaders bounds the IPv6 extension-header walk. A legitimate packet
// carries at most a handful; the bound keeps a crafted chain from costing
// more than a few dozen byte reads.
const maxExtHeaders = 8

// Packet is the decoded summary of one TCP or UDP packet: what the scan
// classifier and the engine need, and nothing else. Decode fills it in place
// so a capture loop can reuse one value for every packet.
type Packet struct {
	Src, Dst         netip.Addr   // 4-byte addresses for IPv4, 16-byte for IPv6
	Proto            event.Proto  // TCP or UDP
	SrcPort, DstPort uint16       // transport ports
	Flags            uint8        // TCP flags byte as on the wire (event.Flag* plus ECE 0x40, CWR 0x80); 0 for UDP
	IPOpts           event.IPOpts // IPv4: set or not set; IPv6: unknown
	// TTL is the IPv4 TTL or IPv6 hop limit as the packet arrived: what
	// is left of the sender's initial value after the routers on its way,
	// so a sender's hop count shows in it (see enforce's peers).
	TTL uint8
}

// Decode reads the network-layer packet b — as an AF_PACKET SOCK_DGRAM
// socket delivers it, starting at the IPv4 or IPv6 header with no link
// header — into p. It never allocates and never panics, whatever b holds.
//
// b may be cut short by a capture snap length: the IP length fields bound the
// packet, the buffer bounds what can be read, and only the headers up to the
// TCP or UDP ports and flags must be present.
//
// On error p is left unchanged and the error is one of the package's
// sentinels.
func Decode(b []byte, p *Packet) error {
	if len(b) == 0 {
		return ErrTruncated
	}
	switch b[0] >> 4 {
	case 4:
		return decode4(b, p)
	case 6:
		return decode6(b, p)
	}
	return ErrNotIP
}

func decode4(b []byte, p *Packet) error {
	if len(b) < 20 {
		return ErrTruncated
	}
	hlen := int(b[0]&0x0f) * 4
	if hlen < 20 {
		return ErrMalformed
	}
	if hlen > len(b) {
		return ErrTruncated
	}
	// The kernel drops a packet whose total length is shorter than its
	// header (ip_rcv_core), so such a packet never reaches a socket. A
	// total length of 0 is also what GRO "BIG TCP" super-packets carry;
	// those are aggregated data segments with ACK set, never probes.
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if total < hlen {
		return ErrMalformed
	}
	end := min(total, len(b))
	// Only the first fragment holds the transport header; a later one's
	// payload would read as attacker-chosen ports and flags.
	if binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 {
		return ErrFragment
	}
	var q Packet
	if err := transport(b[:end], hlen, b[9], &q); err != nil {
		return err
	}
	q.Src = netip.AddrFrom4([4]byte(b[12:16]))
	q.Dst = netip.AddrFrom4([4]byte(b[16:20]))
	q.TTL = b[8]
	q.IPOpts = event.IPOptsNotSet
	if hlen > 20 {
		q.IPOpts = event.IPOptsSet
	}
	*p = q
	return nil
}

func decode6(b []byte, p *Packet) error {
	if len(b) < 40 {
		return ErrTruncated
	}
	// A payload length of 0 means either an empty payload or a jumbogram
	// (GRO "BIG TCP"); both leave no room for a probe's transport header
	// within the declared length, and big aggregated segments carry ACK.
	end := min(40+int(binary.BigEndian.Uint16(b[4:6])), len(b))
	b = b[:end]
	off, next := 40, b[6]
	for i := 0; ; i++ {
		if next == protoTCP || next == protoUDP {
			break
		}
		if i == maxExtHeaders {
			return ErrNotTCPUDP
		}
		switch next {
		case protoHopByHop, protoRouting, protoDstOpts, protoFragment, protoAH:
		default:
			// ESP (50) hides what follows; No Next Header (59), ICMPv6
			// and the rest are not probes of a TCP or UDP port.
			return ErrNotTCPUDP
		}
		// RFC 8200 §4.1: Hop-by-Hop must come first; the kernel rejects it
		// anywhere else, so such a packet never reaches TCP or UDP.
		if next == protoHopByHop && i != 0 {
			return ErrNotTCPUDP
		}
		if off+8 > len(b) { // every extension header is at least 8 bytes
			return ErrTruncated
		}
		var n int
		switch next {
		case protoFragment:
			if binary.BigEndian.Uint16(b[off+2:off+4])>>3 != 0 {
				return ErrFragment
			}
			n = 8
		case protoAH:
			n = (int(b[off+1]) + 2) * 4
		default: // Hop-by-Hop, Routing, Destination Options
			n = (int(b[off+1]) + 1) * 8
		}
		next = b[off]
		off += n
	}
	var q Packet
	if err := transport(b, off, next, &q); err != nil {
		return err
	}
	q.Src = netip.AddrFrom16([16]byte(b[8:24]))
	q.Dst = netip.AddrFrom16([16]byte(b[24:40]))
	q.TTL = b[7]
	q.IPOpts = event.IPOptsUnknown
	*p = q
	return nil
}

// transport reads the TCP or UDP header at b[off:] into q. b ends where the
// IP packet (or the captured part of it) ends.
func transport(b []byte, off int, proto uint8, q *Packet) error {
	switch proto {
	case protoTCP:
		// The full minimum header, not just the 14 bytes up to the flags:
		// a segment too short to be TCP never reaches a TCP socket.
		if off > len(b) || len(b)-off < 20 {
			return ErrTruncated
		}
		h := b[off : off+20]
		if h[12]>>4 < 5 {
			return ErrMalformed
		}
		q.Proto = event.TCP
		q.Flags = h[13]
		q.SrcPort = binary.BigEndian.Uint16(h[0:2])
		q.DstPort = binary.BigEndian.Uint16(h[2:4])
	case protoUDP:
		if off > len(b) || len(b)-off < 8 {
			return ErrTruncated
		}
		h := b[off : off+8]
		q.Proto = event.UDP
		q.Flags = 0
		q.SrcPort = binary.BigEndian.Uint16(h[0:2])
		q.DstPort = binary.BigEndian.Uint16(h[2:4])
	default:
		return ErrNotTCPUDP
	}
	return nil
}

// Probe classifies the packet as PortSentry's stealth modes do. It reports
// false for TCP packets that belong to a conversation (ACK or RST set), which
// are never probes; every UDP datagram is a probe candidate, since UDP has no
// handshake to tell a scan from a first datagram.
func (p *Packet) Probe() (event.Kind, bool) {
	if p.Proto == event.UDP {
		return event.UDPProbe, true
	}
	return event.ClassifyTCP(p.Flags)
}
