package capture

import (
	"encoding/binary"
	"net/netip"
)

// Hand-built packets as an AF_PACKET SOCK_DGRAM socket delivers them, from
// the IP header on. Checksums are left zero: the sensor sees packets before
// the kernel checks them, and packet.Decode does not look.

func tcpHdr(sport, dport uint16, flags uint8) []byte {
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	h[12] = 5 << 4
	h[13] = flags
	binary.BigEndian.PutUint16(h[14:], 1024)
	return h
}

func udpHdr(sport, dport uint16) []byte {
	h := make([]byte, 8)
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	binary.BigEndian.PutUint16(h[4:], 8)
	return h
}

// ip builds an IPv4 or IPv6 packet from src to dst around an L4 header.
func ip(src, dst netip.Addr, proto uint8, l4 []byte) []byte {
	if src.Is4() {
		b := make([]byte, 20, 20+len(l4))
		b[0] = 0x45
		b[8] = 64
		b[9] = proto
		copy(b[12:], src.AsSlice())
		copy(b[16:], dst.AsSlice())
		b = append(b, l4...)
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		return b
	}
	b := make([]byte, 40, 40+len(l4))
	b[0] = 0x60
	b[6] = proto
	b[7] = 64
	copy(b[8:], src.AsSlice())
	copy(b[24:], dst.AsSlice())
	b = append(b, l4...)
	binary.BigEndian.PutUint16(b[4:], uint16(len(l4)))
	return b
}

func tcpPacket(src, dst netip.Addr, sport, dport uint16, flags uint8) []byte {
	return ip(src, dst, 6, tcpHdr(sport, dport, flags))
}

func udpPacket(src, dst netip.Addr, sport, dport uint16) []byte {
	return ip(src, dst, 17, udpHdr(sport, dport))
}
