// Package forge sends packets with a source address that is not the
// sender's: the forger of the end-to-end tests (netclient -forge) and of
// the trust benchmark (trustlab). A raw socket with the IP header included
// lets the source be anything; checksums are computed so that nothing but
// the source (and the TTL the forger chose) tells the packets from real
// ones. Use it only inside a lab's network namespaces.
package forge

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"
)

// Send sends one TCP SYN (proto "tcp") or UDP datagram ("udp") to each port
// from first to last of dst, with the source address src and the given TTL
// (IPv6: hop limit).
func Send(proto string, src, dst netip.Addr, first, last uint16, ttl uint8) error {
	if src.Is4() != dst.Is4() {
		return fmt.Errorf("forge: %v and %v are of different families", src, dst)
	}
	if first > last {
		return fmt.Errorf("forge: ports %d-%d: first after last", first, last)
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
		b, err := Packet(proto, src, dst, uint16(port), ttl)
		if err != nil {
			return err
		}
		if err := unix.Sendto(fd, b, 0, to); err != nil {
			return fmt.Errorf("forge: send to port %d: %w", port, err)
		}
	}
	return nil
}

// Packet builds one forged packet, from its IP header on: a TCP SYN from
// port 40000 or a UDP datagram from port 40000, with a short payload.
func Packet(proto string, src, dst netip.Addr, port uint16, ttl uint8) ([]byte, error) {
	if src.Is4() != dst.Is4() {
		return nil, fmt.Errorf("forge: %v and %v are of different families", src, dst)
	}
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

// Ports reads "FIRST-LAST".
func Ports(s string) (first, last uint16, err error) {
	var a, b uint16
	var rest string
	n, _ := fmt.Sscanf(s+" end", "%d-%d %s", &a, &b, &rest)
	if n != 3 || rest != "end" || a > b {
		return 0, 0, fmt.Errorf("ports %q: want FIRST-LAST", s)
	}
	return a, b, nil
}
