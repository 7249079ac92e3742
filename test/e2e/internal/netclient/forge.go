package main

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"
)

// forge sends one TCP SYN (proto "tcp") or UDP datagram ("udp") to each
// port from first to last of dst, with the source address src, which need
// not be this host's, and the given TTL (IPv6: hop limit): the forger of
// the end-to-end tests. A raw socket with the IP header included lets the
// source be anything; checksums are computed so that nothing but the
// source tells the packets from real ones.
func forge(proto string, src, dst netip.Addr, first, last uint16, ttl uint8) error {
	if src.Is4() != dst.Is4() {
		return fmt.Errorf("forge: %v and %v are of different families", src, dst)
	}
	family := unix.AF_INET
	if dst.Is6() {
		family = unix.AF_INET6
	}
	// IPPROTO_RAW: the packet starts with its IP header, for IPv6 too.
	fd, err := unix.Socket(family, unix.SOCK_RAW, unix.IPPROTO_RAW)
	if err != nil {
		return fmt.Errorf("forge: raw socket: %w", err)
	}
	defer unix.Close(fd)
	var to unix.Sockaddr
	if dst.Is4() {
		to = &unix.SockaddrInet4{Addr: dst.As4()}
	} else {
		to = &unix.SockaddrInet6{Addr: dst.As16()}
	}
	for port := int(first); port <= int(last); port++ {
		b, err := forgedPacket(proto, src, dst, uint16(port), ttl)
		if err != nil {
			return err
		}
		if err := unix.Sendto(fd, b, 0, to); err != nil {
			return fmt.Errorf("forge: send to port %d: %w", port, err)
		}
	}
	return nil
}

// forgedPacket builds the packet, from its IP header on.
func forgedPacket(proto string, src, dst netip.Addr, port uint16, ttl uint8) ([]byte, error) {
	var ip gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	next := layers.IPProtocolTCP
	if proto == "udp" {
		next = layers.IPProtocolUDP
	}
	if src.Is4() {
		v4 := &layers.IPv4{Version: 4, TTL: ttl, Protocol: next, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
		ip, nl = v4, v4
	} else {
		v6 := &layers.IPv6{Version: 6, HopLimit: ttl, NextHeader: next, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
		ip, nl = v6, v6
	}
	var l4 gopacket.SerializableLayer
	switch proto {
	case "tcp":
		tcp := &layers.TCP{SrcPort: 40000, DstPort: layers.TCPPort(port), Seq: 1, SYN: true, Window: 1024}
		if err := tcp.SetNetworkLayerForChecksum(nl); err != nil {
			return nil, err
		}
		l4 = tcp
	case "udp":
		udp := &layers.UDP{SrcPort: 40000, DstPort: layers.UDPPort(port)}
		if err := udp.SetNetworkLayerForChecksum(nl); err != nil {
			return nil, err
		}
		l4 = udp
	default:
		return nil, fmt.Errorf("forge: protocol %q, want tcp or udp", proto)
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ip, l4, gopacket.Payload("pse2e")); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// forgeMain reads -forge's flags and forges.
func forgeMain(proto, src, addr, ports string, ttl uint) error {
	from, err := netip.ParseAddr(src)
	if err != nil {
		return fmt.Errorf("-forge: %w", err)
	}
	to, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("-addr: %w", err)
	}
	var first, last uint16
	if _, err := fmt.Sscanf(ports, "%d-%d", &first, &last); err != nil || first > last {
		return fmt.Errorf("-ports %q: want FIRST-LAST", ports)
	}
	if ttl < 1 || ttl > 255 {
		return fmt.Errorf("-ttl %d: want 1-255", ttl)
	}
	return forge(proto, from.Unmap(), to.Addr().Unmap(), first, last, uint8(ttl))
}
