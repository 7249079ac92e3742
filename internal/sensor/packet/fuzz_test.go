package packet

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/portsentry-go/portsentry/internal/event"
)

// FuzzDecode feeds Decode arbitrary bytes. Properties: it never panics; an
// error is one of the sentinels and leaves the packet alone; a success agrees
// with the bytes where the header layout is fixed (IPv4, IPv6 without
// extension headers) and with gopacket wherever gopacket finds a transport
// header.
func FuzzDecode(f *testing.F) {
	for _, tc := range decodeCases() {
		f.Add(tc.b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sentinel := Packet{SrcPort: 1, DstPort: 2, Flags: 3}
		p := sentinel
		err := Decode(b, &p)
		if err != nil {
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrNotIP) && !errors.Is(err, ErrMalformed) &&
				!errors.Is(err, ErrFragment) && !errors.Is(err, ErrNotTCPUDP) {
				t.Fatalf("Decode() error %v is not a sentinel", err)
			}
			if p != sentinel {
				t.Fatalf("failed Decode() changed the packet to %+v", p)
			}
			return
		}

		var off int
		switch b[0] >> 4 {
		case 4:
			off = int(b[0]&0x0f) * 4
			wantOpts := event.IPOptsNotSet
			if off > 20 {
				wantOpts = event.IPOptsSet
			}
			if p.Src != netip.AddrFrom4([4]byte(b[12:16])) || p.Dst != netip.AddrFrom4([4]byte(b[16:20])) || p.IPOpts != wantOpts {
				t.Fatalf("IPv4 header fields wrong: %+v", p)
			}
			if binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 {
				t.Fatalf("non-first fragment decoded as %+v", p)
			}
			if want := protoOf(b[9]); p.Proto != want {
				t.Fatalf("Proto = %v, IP protocol byte %d", p.Proto, b[9])
			}
		case 6:
			if p.Src != netip.AddrFrom16([16]byte(b[8:24])) || p.Dst != netip.AddrFrom16([16]byte(b[24:40])) || p.IPOpts != event.IPOptsUnknown {
				t.Fatalf("IPv6 header fields wrong: %+v", p)
			}
			if b[6] == protoTCP || b[6] == protoUDP {
				off = 40
				if want := protoOf(b[6]); p.Proto != want {
					t.Fatalf("Proto = %v, next header %d", p.Proto, b[6])
				}
			}
		default:
			t.Fatalf("version %d decoded as %+v", b[0]>>4, p)
		}
		if off != 0 {
			if p.SrcPort != binary.BigEndian.Uint16(b[off:]) || p.DstPort != binary.BigEndian.Uint16(b[off+2:]) {
				t.Fatalf("ports %d→%d do not match the bytes at %d", p.SrcPort, p.DstPort, off)
			}
			if p.Proto == event.TCP && p.Flags != b[off+13] {
				t.Fatalf("flags %#x, byte %d is %#x", p.Flags, off+13, b[off+13])
			}
		}
		if p.Proto == event.UDP && p.Flags != 0 {
			t.Fatalf("UDP packet with flags %#x", p.Flags)
		}
		if g, ok := gopacketView(b); ok && g != p {
			t.Fatalf("Decode() = %+v, gopacket sees %+v", p, g)
		}
	})
}

func protoOf(n uint8) event.Proto {
	if n == protoUDP {
		return event.UDP
	}
	return event.TCP
}
