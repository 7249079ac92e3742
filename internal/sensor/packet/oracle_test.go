package packet

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/portsentry-go/portsentry/internal/event"
)

// gopacketView decodes b with gopacket, an independent and much larger
// decoder, and reports what it found when it found a complete TCP or UDP
// header. It is the oracle for TestDecodeGopacket and FuzzDecode.
func gopacketView(b []byte) (Packet, bool) {
	first := layers.LayerTypeIPv4
	if len(b) > 0 && b[0]>>4 == 6 {
		first = layers.LayerTypeIPv6
	}
	pkt := gopacket.NewPacket(b, first, gopacket.DecodeOptions{NoCopy: true, Lazy: false})
	var p Packet
	switch n := pkt.NetworkLayer().(type) {
	case *layers.IPv4:
		p.Src, _ = netip.AddrFromSlice(n.SrcIP)
		p.Dst, _ = netip.AddrFromSlice(n.DstIP)
		p.TTL = n.TTL
		p.IPOpts = event.IPOptsNotSet
		if n.IHL > 5 {
			p.IPOpts = event.IPOptsSet
		}
	case *layers.IPv6:
		p.Src, _ = netip.AddrFromSlice(n.SrcIP)
		p.Dst, _ = netip.AddrFromSlice(n.DstIP)
		p.TTL = n.HopLimit
	default:
		return p, false
	}
	switch t := pkt.TransportLayer().(type) {
	case *layers.TCP:
		if len(t.Contents) < 20 {
			return p, false
		}
		p.Proto = event.TCP
		p.SrcPort, p.DstPort = uint16(t.SrcPort), uint16(t.DstPort)
		p.Flags = t.Contents[13]
	case *layers.UDP:
		if len(t.Contents) < 8 {
			return p, false
		}
		p.Proto = event.UDP
		p.SrcPort, p.DstPort = uint16(t.SrcPort), uint16(t.DstPort)
	default:
		return p, false
	}
	return p, true
}

// TestDecodeGopacket checks the hand-built cases against gopacket: where
// Decode succeeds gopacket must see the same packet, and where Decode reports
// a fragment gopacket must not find a transport header either.
func TestDecodeGopacket(t *testing.T) {
	for _, tc := range decodeCases() {
		if tc.err != nil && !errors.Is(tc.err, ErrFragment) {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			got, ok := gopacketView(tc.b)
			if errors.Is(tc.err, ErrFragment) {
				if ok {
					t.Errorf("gopacket found %+v in a non-first fragment", got)
				}
				return
			}
			// gopacket stops at the first fragment of a fragmented
			// datagram, and (decodeIPv6Fragment) at any IPv6 Fragment
			// header, even an atomic one; Decode reads on.
			if !ok && fragmented(tc.b) {
				return
			}
			if !ok || got != tc.want {
				t.Errorf("gopacket sees %+v (ok %v), Decode %+v", got, ok, tc.want)
			}
		})
	}
}

// fragmented reports whether b is an IPv4 first fragment (MF set) or an IPv6
// packet with a Fragment header.
func fragmented(b []byte) bool {
	if b[0]>>4 == 4 {
		return binary.BigEndian.Uint16(b[6:8])&mf != 0
	}
	for _, l := range gopacket.NewPacket(b, layers.LayerTypeIPv6, gopacket.Default).Layers() {
		if _, ok := l.(*layers.IPv6Fragment); ok {
			return true
		}
	}
	return false
}

// TestGopacketBuilt decodes packets that gopacket serialized, so the test
// builders' idea of the wire format is not the only one the decoder meets.
func TestGopacketBuilt(t *testing.T) {
	ip4 := func(opts ...layers.IPv4Option) *layers.IPv4 {
		return &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src4.AsSlice(), DstIP: dst4.AsSlice(), Options: opts}
	}
	ip6 := func(next layers.IPProtocol) *layers.IPv6 {
		return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: src6.AsSlice(), DstIP: dst6.AsSlice()}
	}
	tcp := func(f uint8) *layers.TCP {
		return &layers.TCP{SrcPort: 40000, DstPort: 143, Window: 1024,
			FIN: f&fin != 0, SYN: f&syn != 0, RST: f&rst != 0, PSH: f&psh != 0, ACK: f&ack != 0, URG: f&urg != 0,
			ECE: f&ece != 0, CWR: f&cwr != 0}
	}
	udp := &layers.UDP{SrcPort: 5353, DstPort: 31337}
	u4 := ip4()
	u4.Protocol = layers.IPProtocolUDP
	hbh := &layers.IPv6HopByHop{Options: []*layers.IPv6HopByHopOption{{OptionType: 1, OptionData: make([]byte, 4)}}}
	hbh.NextHeader = layers.IPProtocolIPv6Destination
	dopts := &layers.IPv6Destination{Options: []*layers.IPv6DestinationOption{{OptionType: 1, OptionData: make([]byte, 4)}}}
	dopts.NextHeader = layers.IPProtocolIPv6Fragment

	tests := []struct {
		name   string
		layers []gopacket.SerializableLayer
		want   Packet
	}{
		{"v4 SYN", []gopacket.SerializableLayer{ip4(), tcp(syn)}, tcp4(syn)},
		{"v4 XMAS ECE", []gopacket.SerializableLayer{ip4(), tcp(fin | urg | psh | ece)}, tcp4(fin | urg | psh | ece)},
		{"v4 options", []gopacket.SerializableLayer{ip4(layers.IPv4Option{OptionType: 1}, layers.IPv4Option{OptionType: 1}, layers.IPv4Option{OptionType: 1}, layers.IPv4Option{OptionType: 0}), tcp(0)}, withOpts(tcp4(0))},
		{"v4 UDP", []gopacket.SerializableLayer{u4, udp, gopacket.Payload("probe")}, udp4()},
		{"v6 SYN", []gopacket.SerializableLayer{ip6(layers.IPProtocolTCP), tcp(syn)}, tcp6(syn)},
		{"v6 UDP", []gopacket.SerializableLayer{ip6(layers.IPProtocolUDP), udp}, udp6()},
		{
			"v6 HBH DstOpts Fragment FIN",
			[]gopacket.SerializableLayer{ip6(layers.IPProtocolIPv6HopByHop), hbh, dopts,
				&layers.IPv6Fragment{NextHeader: layers.IPProtocolTCP, MoreFragments: true, Identification: 7}, tcp(fin)},
			tcp6(fin),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := gopacket.NewSerializeBuffer()
			if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, tt.layers...); err != nil {
				t.Fatal(err)
			}
			var got Packet
			if err := Decode(buf.Bytes(), &got); err != nil {
				t.Fatalf("Decode(% x): %v", buf.Bytes(), err)
			}
			if got != tt.want {
				t.Errorf("Decode() = %+v, want %+v", got, tt.want)
			}
		})
	}
}
