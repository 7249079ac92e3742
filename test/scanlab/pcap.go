package main

// A small reader for the classic pcap files tcpdump writes, and a decoder
// for the few headers the benchmark needs (Ethernet, IPv4, IPv6, TCP, UDP,
// ICMP and the packet an ICMP error quotes).

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"
)

const (
	pcapMagicMicro = 0xa1b2c3d4
	pcapMagicNano  = 0xa1b23c4d
	linkEthernet   = 1

	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58

	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// packet is one decoded IP packet.
type packet struct {
	ts       time.Time
	src, dst netip.Addr
	proto    uint8 // transport protocol (after IPv6 extension headers)
	sport    uint16
	dport    uint16
	tcpFlags uint8
	icmpType uint8
	icmpCode uint8
	// For an ICMP error: the protocol and destination port of the packet
	// it quotes (the probe it answers).
	quoted      bool
	quotedProto uint8
	quotedDport uint16
	l4ok        bool // the transport header was present and decoded
}

// readPcap returns the IP packets of an Ethernet pcap file (others, such as
// ARP, are skipped).
func readPcap(path string) ([]packet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return decodePcap(bufio.NewReaderSize(f, 1<<20))
}

func decodePcap(r io.Reader) ([]packet, error) {
	var gh [24]byte
	if _, err := io.ReadFull(r, gh[:]); err != nil {
		return nil, fmt.Errorf("pcap header: %w", err)
	}
	var bo binary.ByteOrder
	var nano bool
	switch m := binary.LittleEndian.Uint32(gh[0:4]); m {
	case pcapMagicMicro, pcapMagicNano:
		bo, nano = binary.LittleEndian, m == pcapMagicNano
	default:
		switch m := binary.BigEndian.Uint32(gh[0:4]); m {
		case pcapMagicMicro, pcapMagicNano:
			bo, nano = binary.BigEndian, m == pcapMagicNano
		default:
			return nil, fmt.Errorf("not a pcap file (magic %#x)", m)
		}
	}
	if lt := bo.Uint32(gh[20:24]) & 0x0fffffff; lt != linkEthernet {
		return nil, fmt.Errorf("pcap link type %d, want Ethernet (1)", lt)
	}
	var pkts []packet
	var rh [16]byte
	buf := make([]byte, 0, 65536)
	for {
		if _, err := io.ReadFull(r, rh[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return pkts, nil
			}
			// tcpdump killed mid-write leaves a partial record: keep
			// what is complete.
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return pkts, nil
			}
			return pkts, err
		}
		sec, frac, incl := bo.Uint32(rh[0:4]), bo.Uint32(rh[4:8]), bo.Uint32(rh[8:12])
		if incl > 1<<18 {
			return pkts, fmt.Errorf("pcap record of %d bytes: corrupt file", incl)
		}
		buf = buf[:incl]
		if _, err := io.ReadFull(r, buf); err != nil {
			return pkts, nil
		}
		ns := int64(frac)
		if !nano {
			ns *= 1000
		}
		p, ok := decodeEthernet(buf)
		if !ok {
			continue
		}
		p.ts = time.Unix(int64(sec), ns)
		pkts = append(pkts, p)
	}
}

// decodeEthernet decodes an Ethernet frame carrying IPv4 or IPv6.
func decodeEthernet(b []byte) (packet, bool) {
	if len(b) < 14 {
		return packet{}, false
	}
	et := binary.BigEndian.Uint16(b[12:14])
	b = b[14:]
	if et == 0x8100 && len(b) >= 4 { // one VLAN tag
		et = binary.BigEndian.Uint16(b[2:4])
		b = b[4:]
	}
	var p packet
	var l4 []byte
	var ok bool
	switch et {
	case 0x0800:
		p, l4, ok = decodeIPv4(b)
	case 0x86dd:
		p, l4, ok = decodeIPv6(b)
	}
	if !ok {
		return packet{}, false
	}
	decodeL4(&p, l4)
	return p, true
}

// decodeIPv4 returns the packet's addresses and protocol, and its payload
// when it is a first (or only) fragment.
func decodeIPv4(b []byte) (packet, []byte, bool) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return packet{}, nil, false
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < 20 || len(b) < ihl {
		return packet{}, nil, false
	}
	p := packet{proto: b[9]}
	p.src = netip.AddrFrom4([4]byte(b[12:16]))
	p.dst = netip.AddrFrom4([4]byte(b[16:20]))
	if binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 { // a later fragment
		return p, nil, true
	}
	return p, b[ihl:], true
}

// decodeIPv6 returns the packet's addresses, its transport protocol (after
// hop-by-hop, routing, fragment and destination options headers) and the
// transport payload.
func decodeIPv6(b []byte) (packet, []byte, bool) {
	if len(b) < 40 || b[0]>>4 != 6 {
		return packet{}, nil, false
	}
	p := packet{}
	p.src = netip.AddrFrom16([16]byte(b[8:24]))
	p.dst = netip.AddrFrom16([16]byte(b[24:40]))
	next := b[6]
	b = b[40:]
headers:
	for range 8 {
		switch next {
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if len(b) < 8 || len(b) < (int(b[1])+1)*8 {
				p.proto = next
				return p, nil, true
			}
			next, b = b[0], b[(int(b[1])+1)*8:]
		case 44: // fragment
			if len(b) < 8 {
				p.proto = next
				return p, nil, true
			}
			off := binary.BigEndian.Uint16(b[2:4]) >> 3
			next, b = b[0], b[8:]
			if off != 0 {
				p.proto = next
				return p, nil, true
			}
		default:
			break headers
		}
	}
	p.proto = next
	return p, b, true
}

// decodeL4 fills in ports, TCP flags, ICMP type and code, and what an ICMP
// error quotes.
func decodeL4(p *packet, b []byte) {
	switch p.proto {
	case protoTCP:
		if len(b) >= 14 {
			p.sport = binary.BigEndian.Uint16(b[0:2])
			p.dport = binary.BigEndian.Uint16(b[2:4])
			p.tcpFlags = b[13]
			p.l4ok = true
		}
	case protoUDP:
		if len(b) >= 8 {
			p.sport = binary.BigEndian.Uint16(b[0:2])
			p.dport = binary.BigEndian.Uint16(b[2:4])
			p.l4ok = true
		}
	case protoICMP, protoICMPv6:
		if len(b) < 8 {
			return
		}
		p.icmpType, p.icmpCode = b[0], b[1]
		p.l4ok = true
		isErr := (p.proto == protoICMP && (b[0] == 3 || b[0] == 11 || b[0] == 12)) ||
			(p.proto == protoICMPv6 && b[0] < 128)
		if !isErr {
			return
		}
		var q packet
		var ql4 []byte
		var ok bool
		if p.proto == protoICMP {
			q, ql4, ok = decodeIPv4(b[8:])
		} else {
			q, ql4, ok = decodeIPv6(b[8:])
		}
		if !ok {
			return
		}
		p.quoted, p.quotedProto = true, q.proto
		if (q.proto == protoTCP || q.proto == protoUDP) && len(ql4) >= 4 {
			p.quotedDport = binary.BigEndian.Uint16(ql4[2:4])
		}
	}
}

// isNeighborDiscovery reports IPv6 router and neighbour discovery (ICMPv6
// types 133–137): address resolution, not scanning.
func (p packet) isNeighborDiscovery() bool {
	return p.proto == protoICMPv6 && p.l4ok && p.icmpType >= 133 && p.icmpType <= 137
}
