package connect

import (
	"net/netip"
	"syscall"
	"testing"
	"unsafe"
)

// cmsg builds one control message as the kernel lays it out.
func cmsg(level, typ int32, data []byte) []byte {
	b := make([]byte, syscall.CmsgSpace(len(data)))
	h := (*syscall.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(syscall.CmsgLen(len(data)))
	copy(b[syscall.CmsgLen(0):], data)
	return b
}

func in6Pktinfo(a netip.Addr) []byte {
	b := make([]byte, syscall.SizeofInet6Pktinfo)
	a16 := a.As16()
	copy(b, a16[:])
	b[16] = 1 // ifindex
	return b
}

func inPktinfo(specDst, dst netip.Addr) []byte {
	b := make([]byte, syscall.SizeofInet4Pktinfo)
	b[0] = 1 // ifindex
	s, d := specDst.As4(), dst.As4()
	copy(b[4:], s[:])
	copy(b[8:], d[:])
	return b
}

func TestPacketDst(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.7")
	v6 := netip.MustParseAddr("2001:db8::7")
	other := netip.MustParseAddr("198.51.100.1")
	ip6 := func(d []byte) []byte { return cmsg(syscall.IPPROTO_IPV6, syscall.IPV6_PKTINFO, d) }
	ip4 := func(d []byte) []byte { return cmsg(syscall.IPPROTO_IP, syscall.IP_PKTINFO, d) }
	tests := []struct {
		name string
		oob  []byte
		want netip.Addr
	}{
		{"none", nil, netip.Addr{}},
		{"IPv6", ip6(in6Pktinfo(v6)), v6},
		{"IPv4 mapped in IPV6_PKTINFO", ip6(in6Pktinfo(netip.AddrFrom16(v4.As16()))), v4},
		// ipi_spec_dst is the local address routing would pick, not
		// the destination the probe was sent to.
		{"IP_PKTINFO reads ipi_addr", ip4(inPktinfo(other, v4)), v4},
		{"short IPV6_PKTINFO", ip6(in6Pktinfo(v6)[:12]), netip.Addr{}},
		{"short IP_PKTINFO", ip4(inPktinfo(other, v4)[:8]), netip.Addr{}},
		{"other message first", append(cmsg(syscall.SOL_SOCKET, syscall.SCM_TIMESTAMP, make([]byte, 16)), ip6(in6Pktinfo(v6))...), v6},
		{"truncated header", ip6(in6Pktinfo(v6))[:8], netip.Addr{}},
		{"length past end", ip6(in6Pktinfo(v6))[:20], netip.Addr{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := packetDst(tt.oob); got != tt.want {
				t.Errorf("packetDst = %v, want %v", got, tt.want)
			}
		})
	}
}

func FuzzPacketDst(f *testing.F) {
	f.Add([]byte{})
	f.Add(cmsg(syscall.IPPROTO_IPV6, syscall.IPV6_PKTINFO, in6Pktinfo(netip.MustParseAddr("::ffff:10.0.0.1"))))
	f.Add(cmsg(syscall.IPPROTO_IP, syscall.IP_PKTINFO, make([]byte, syscall.SizeofInet4Pktinfo)))
	f.Fuzz(func(t *testing.T, oob []byte) {
		if a := packetDst(oob); a.Is4In6() {
			t.Errorf("packetDst = %v, mapped", a)
		}
	})
}
