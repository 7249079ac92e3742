package packet

import (
	"encoding/binary"
	"net/netip"
)

// Hand-built packets: every byte the decoder reads is set here on purpose,
// so a test can put a bad value in exactly one field. The gopacket tests
// cross-check these builders against an independent decoder.

var (
	src4 = netip.MustParseAddr("192.0.2.7")
	dst4 = netip.MustParseAddr("198.51.100.9")
	src6 = netip.MustParseAddr("2001:db8::7")
	dst6 = netip.MustParseAddr("2001:db8:1::9")
)

// tcpHdr returns a 20-byte TCP header.
func tcpHdr(sport, dport uint16, flags uint8) []byte {
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	binary.BigEndian.PutUint32(h[4:], 0x01020304) // sequence number
	h[12] = 5 << 4                                // data offset: 5 words
	h[13] = flags
	binary.BigEndian.PutUint16(h[14:], 1024) // window
	return h
}

// udpHdr returns an 8-byte UDP header whose length covers payload bytes more.
func udpHdr(sport, dport uint16, payload int) []byte {
	h := make([]byte, 8)
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	binary.BigEndian.PutUint16(h[4:], uint16(8+payload))
	return h
}

// ipv4 returns an IPv4 packet; frag is the flags+fragment-offset field,
// opts (a multiple of 4 bytes) the options.
func ipv4(proto uint8, frag uint16, opts []byte, payload ...[]byte) []byte {
	hlen := 20 + len(opts)
	b := make([]byte, hlen)
	b[0] = 0x40 | uint8(hlen/4)
	binary.BigEndian.PutUint16(b[4:], 0xbeef) // identification
	binary.BigEndian.PutUint16(b[6:], frag)
	b[8] = 64
	b[9] = proto
	copy(b[12:], src4.AsSlice())
	copy(b[16:], dst4.AsSlice())
	copy(b[20:], opts)
	for _, p := range payload {
		b = append(b, p...)
	}
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	return b
}

// ipv6 returns an IPv6 packet whose first header after the fixed one is next.
func ipv6(next uint8, payload ...[]byte) []byte {
	b := make([]byte, 40)
	b[0] = 0x60
	b[6] = next
	b[7] = 64
	copy(b[8:], src6.AsSlice())
	copy(b[24:], dst6.AsSlice())
	for _, p := range payload {
		b = append(b, p...)
	}
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)-40))
	return b
}

// extHdr returns an 8*units-byte Hop-by-Hop, Routing or Destination Options
// header (PadN-filled, which every kind accepts as content here).
func extHdr(next uint8, units int) []byte {
	h := make([]byte, 8*units)
	h[0] = next
	h[1] = uint8(units - 1)
	h[2] = 1 // PadN
	h[3] = uint8(len(h) - 4)
	return h
}

// fragHdr returns an IPv6 Fragment header.
func fragHdr(next uint8, offset uint16, more bool) []byte {
	h := make([]byte, 8)
	h[0] = next
	v := offset << 3
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(h[2:], v)
	binary.BigEndian.PutUint32(h[4:], 0xcafe)
	return h
}

// ahHdr returns an Authentication Header with a 12-byte ICV (24 bytes).
func ahHdr(next uint8) []byte {
	h := make([]byte, 24)
	h[0] = next
	h[1] = 24/4 - 2
	binary.BigEndian.PutUint32(h[4:], 0x100) // SPI
	return h
}
