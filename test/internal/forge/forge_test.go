package forge

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// TestPacket decodes forged packets: the claimed source, the TTL, the
// port, and checksums a receiving kernel accepts.
func TestPacket(t *testing.T) {
	for _, tc := range []struct {
		proto    string
		src, dst string
	}{
		{"tcp", "10.235.1.2", "10.235.0.1"},
		{"udp", "10.235.1.2", "10.235.0.1"},
		{"tcp", "fd00:235:1::2", "fd00:235::1"},
		{"udp", "fd00:235:1::2", "fd00:235::1"},
	} {
		src, dst := netip.MustParseAddr(tc.src), netip.MustParseAddr(tc.dst)
		b, err := Packet(tc.proto, src, dst, 900, 50)
		if err != nil {
			t.Fatal(err)
		}
		first := layers.LayerTypeIPv4
		if src.Is6() {
			first = layers.LayerTypeIPv6
		}
		p := gopacket.NewPacket(b, first, gopacket.Default)
		var gotSrc netip.Addr
		var ttl uint8
		if ip, ok := p.NetworkLayer().(*layers.IPv4); ok {
			gotSrc, _ = netip.AddrFromSlice(ip.SrcIP)
			ttl = ip.TTL
		} else if ip, ok := p.NetworkLayer().(*layers.IPv6); ok {
			gotSrc, _ = netip.AddrFromSlice(ip.SrcIP)
			ttl = ip.HopLimit
		}
		if gotSrc != src || ttl != 50 {
			t.Errorf("%s %s: source %v TTL %d", tc.proto, tc.src, gotSrc, ttl)
		}
		switch l4 := p.TransportLayer().(type) {
		case *layers.TCP:
			if tc.proto != "tcp" || !l4.SYN || l4.ACK || l4.DstPort != 900 {
				t.Errorf("%s %s: %v", tc.proto, tc.src, l4)
			}
			if err := verify(l4, p.NetworkLayer()); err != nil {
				t.Errorf("%s %s: %v", tc.proto, tc.src, err)
			}
		case *layers.UDP:
			if tc.proto != "udp" || l4.DstPort != 900 {
				t.Errorf("%s %s: %v", tc.proto, tc.src, l4)
			}
		default:
			t.Errorf("%s %s: no transport layer: %v", tc.proto, tc.src, p)
		}
	}
	if _, err := Packet("tcp", netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1"), 1, 64); err == nil {
		t.Error("Packet mixed families")
	}
	if _, err := Packet("icmp", netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1, 64); err == nil {
		t.Error("Packet took protocol icmp")
	}
}

// verify recomputes the TCP checksum over the segment as sent, its own
// checksum included: 0 when the checksum is right.
func verify(tcp *layers.TCP, nl gopacket.NetworkLayer) error {
	if err := tcp.SetNetworkLayerForChecksum(nl); err != nil {
		return err
	}
	sum, err := tcp.ComputeChecksum()
	if err != nil {
		return err
	}
	if sum != 0 {
		return fmt.Errorf("TCP checksum off by %#04x", sum)
	}
	return nil
}

func TestPorts(t *testing.T) {
	for in, ok := range map[string]bool{"900-919": true, "5-5": true, "9-1": false, "900": false, "a-b": false, "1-2x": false, "1-70000": false} {
		f, l, err := Ports(in)
		if (err == nil) != ok {
			t.Errorf("Ports(%q) = %d, %d, %v", in, f, l, err)
		}
	}
}
