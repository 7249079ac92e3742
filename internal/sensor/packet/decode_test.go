package packet

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portsentry-go/portsentry/internal/event"
)

const (
	fin = event.FlagFIN
	syn = event.FlagSYN
	rst = event.FlagRST
	psh = event.FlagPSH
	ack = event.FlagACK
	urg = event.FlagURG
	ece = 0x40
	cwr = 0x80
)

// mf is the IPv4 More Fragments flag in the flags+offset field.
const mf = 0x2000

var (
	optNOP4 = []byte{1, 1, 1, 0}                          // three NOPs and End of Options
	optRR   = []byte{7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0, 1} // Record Route, 2 slots, padded
)

func tcp4(flags uint8) Packet {
	return Packet{Src: src4, Dst: dst4, Proto: event.TCP, SrcPort: 40000, DstPort: 143, Flags: flags, IPOpts: event.IPOptsNotSet, TTL: 64}
}

func tcp6(flags uint8) Packet {
	return Packet{Src: src6, Dst: dst6, Proto: event.TCP, SrcPort: 40000, DstPort: 143, Flags: flags, IPOpts: event.IPOptsUnknown, TTL: 64}
}

func udp4() Packet {
	return Packet{Src: src4, Dst: dst4, Proto: event.UDP, SrcPort: 5353, DstPort: 31337, IPOpts: event.IPOptsNotSet, TTL: 64}
}

func udp6() Packet {
	return Packet{Src: src6, Dst: dst6, Proto: event.UDP, SrcPort: 5353, DstPort: 31337, IPOpts: event.IPOptsUnknown, TTL: 64}
}

func withOpts(p Packet) Packet { p.IPOpts = event.IPOptsSet; return p }

func ttl(p Packet, v uint8) Packet { p.TTL = v; return p }

// withTTL sets the TTL or hop-limit byte at off (8 in IPv4, 7 in IPv6).
// Neither is covered by a checksum the decoder reads.
func withTTL(b []byte, off int, v uint8) []byte { b[off] = v; return b }

type decodeCase struct {
	name string
	b    []byte
	want Packet
	err  error
	// hdr is how many leading bytes Decode needs; every shorter prefix of
	// b must fail with ErrTruncated and every longer one decode as want.
	// 0 means len(b).
	hdr int
}

// decodeCases is shared by the decode, truncation, gopacket, filter and
// fuzz-seed tests.
func decodeCases() []decodeCase {
	return []decodeCase{
		// IPv4 TCP, every stealth-scan flag combination and two non-probes.
		{name: "v4 SYN", b: ipv4(6, 0, nil, tcpHdr(40000, 143, syn)), want: tcp4(syn)},
		{name: "v4 SYN DF", b: ipv4(6, 0x4000, nil, tcpHdr(40000, 143, syn)), want: tcp4(syn)},
		{name: "v4 FIN", b: ipv4(6, 0, nil, tcpHdr(40000, 143, fin)), want: tcp4(fin)},
		{name: "v4 NULL", b: ipv4(6, 0, nil, tcpHdr(40000, 143, 0)), want: tcp4(0)},
		{name: "v4 XMAS", b: ipv4(6, 0, nil, tcpHdr(40000, 143, fin|urg|psh)), want: tcp4(fin | urg | psh)},
		{name: "v4 SYN ECE CWR", b: ipv4(6, 0, nil, tcpHdr(40000, 143, syn|ece|cwr)), want: tcp4(syn | ece | cwr)},
		{name: "v4 ACK", b: ipv4(6, 0, nil, tcpHdr(40000, 143, ack)), want: tcp4(ack)},
		{name: "v4 RST", b: ipv4(6, 0, nil, tcpHdr(40000, 143, rst)), want: tcp4(rst)},
		{name: "v4 SYN payload", b: ipv4(6, 0, nil, tcpHdr(40000, 143, syn), []byte("hello")), want: tcp4(syn), hdr: 40},
		{
			name: "v4 SYN TCP options",
			b:    ipv4(6, 0, nil, func() []byte { h := append(tcpHdr(40000, 143, syn), 2, 4, 5, 0xb4); h[12] = 6 << 4; return h }()),
			want: tcp4(syn), hdr: 40,
		},
		{name: "v4 options NOP", b: ipv4(6, 0, optNOP4, tcpHdr(40000, 143, syn)), want: withOpts(tcp4(syn))},
		{name: "v4 options RR", b: ipv4(6, 0, optRR, tcpHdr(40000, 143, fin)), want: withOpts(tcp4(fin))},
		{name: "v4 options max", b: ipv4(6, 0, make([]byte, 40), tcpHdr(40000, 143, 0)), want: withOpts(tcp4(0))},
		{name: "v4 UDP", b: ipv4(17, 0, nil, udpHdr(5353, 31337, 0)), want: udp4()},
		{name: "v4 UDP payload", b: ipv4(17, 0, nil, udpHdr(5353, 31337, 3), []byte("abc")), want: udp4(), hdr: 28},
		{name: "v4 UDP options", b: ipv4(17, 0, optNOP4, udpHdr(5353, 31337, 0)), want: withOpts(udp4())},
		// The arriving TTL / hop limit is kept as it is: the last probe of
		// a traceroute arrives with 1.
		{name: "v4 UDP TTL 1", b: withTTL(ipv4(17, 0, nil, udpHdr(5353, 31337, 0)), 8, 1), want: ttl(udp4(), 1)},
		{name: "v6 UDP hop limit 1", b: withTTL(ipv6(17, udpHdr(5353, 31337, 0)), 7, 1), want: ttl(udp6(), 1)},
		{name: "v4 SYN TTL 255", b: withTTL(ipv4(6, 0, nil, tcpHdr(40000, 143, syn)), 8, 255), want: ttl(tcp4(syn), 255)},

		// IPv4 fragments: the first is decoded, later ones never are.
		{name: "v4 first fragment TCP", b: ipv4(6, mf, nil, tcpHdr(40000, 143, syn)), want: tcp4(syn)},
		{name: "v4 first fragment UDP", b: ipv4(17, mf, nil, udpHdr(5353, 31337, 100)), want: udp4()},
		{name: "v4 first fragment too short", b: ipv4(6, mf, nil, tcpHdr(40000, 143, syn)[:8]), err: ErrTruncated},
		{name: "v4 non-first fragment", b: ipv4(6, 1, nil, tcpHdr(40000, 143, syn)), err: ErrFragment},
		{name: "v4 middle fragment", b: ipv4(6, mf|185, nil, tcpHdr(40000, 143, syn)), err: ErrFragment},
		{name: "v4 last fragment UDP", b: ipv4(17, 3, nil, udpHdr(5353, 31337, 0)), err: ErrFragment},

		// IPv4 length fields.
		{
			name: "v4 total length cuts TCP header", // trailing bytes are link padding
			b: func() []byte {
				b := ipv4(6, 0, nil, tcpHdr(40000, 143, syn))
				binary.BigEndian.PutUint16(b[2:], 30)
				return b
			}(),
			err: ErrTruncated,
		},
		{
			name: "v4 snapped", // total length beyond the buffer: a snap length cut it
			b: func() []byte {
				b := ipv4(6, 0, nil, tcpHdr(40000, 143, syn))
				binary.BigEndian.PutUint16(b[2:], 1500)
				return b
			}(),
			want: tcp4(syn),
		},
		{
			name: "v4 total length below header",
			b: func() []byte {
				b := ipv4(6, 0, nil, tcpHdr(40000, 143, syn))
				binary.BigEndian.PutUint16(b[2:], 19)
				return b
			}(),
			err: ErrMalformed,
		},
		{
			name: "v4 total length zero",
			b: func() []byte {
				b := ipv4(6, 0, nil, tcpHdr(40000, 143, syn))
				binary.BigEndian.PutUint16(b[2:], 0)
				return b
			}(),
			err: ErrMalformed,
		},
		{
			name: "v4 IHL 4",
			b:    func() []byte { b := ipv4(6, 0, nil, tcpHdr(40000, 143, syn)); b[0] = 0x44; return b }(),
			err:  ErrMalformed,
		},
		{
			name: "v4 IHL beyond buffer",
			b:    func() []byte { b := ipv4(6, 0, nil, tcpHdr(40000, 143, syn)[:4]); b[0] = 0x4f; return b }(),
			err:  ErrTruncated,
		},
		{
			name: "v4 TCP data offset 4",
			b:    func() []byte { b := ipv4(6, 0, nil, tcpHdr(40000, 143, syn)); b[32] = 4 << 4; return b }(),
			err:  ErrMalformed,
		},
		{name: "v4 ICMP", b: ipv4(1, 0, nil, []byte{8, 0, 0, 0, 0, 1, 0, 1}), err: ErrNotTCPUDP},
		{name: "v4 SCTP", b: ipv4(132, 0, nil, make([]byte, 12)), err: ErrNotTCPUDP},

		// IPv6, plain and behind extension-header chains.
		{name: "v6 SYN", b: ipv6(6, tcpHdr(40000, 143, syn)), want: tcp6(syn)},
		{name: "v6 XMAS", b: ipv6(6, tcpHdr(40000, 143, fin|urg|psh)), want: tcp6(fin | urg | psh)},
		{name: "v6 ACK", b: ipv6(6, tcpHdr(40000, 143, ack|psh)), want: tcp6(ack | psh)},
		{name: "v6 UDP", b: ipv6(17, udpHdr(5353, 31337, 0)), want: udp6()},
		{name: "v6 UDP payload", b: ipv6(17, udpHdr(5353, 31337, 4), []byte("abcd")), want: udp6(), hdr: 48},
		{name: "v6 HBH SYN", b: ipv6(0, extHdr(6, 1), tcpHdr(40000, 143, syn)), want: tcp6(syn)},
		{
			name: "v6 HBH DstOpts Fragment SYN",
			b:    ipv6(0, extHdr(60, 1), extHdr(44, 2), fragHdr(6, 0, true), tcpHdr(40000, 143, syn)),
			want: tcp6(syn),
		},
		{
			name: "v6 HBH Routing DstOpts UDP",
			b:    ipv6(0, extHdr(43, 1), extHdr(60, 3), extHdr(17, 1), udpHdr(5353, 31337, 0)),
			want: udp6(),
		},
		{name: "v6 atomic fragment UDP", b: ipv6(44, fragHdr(17, 0, false), udpHdr(5353, 31337, 0)), want: udp6()},
		{name: "v6 AH SYN", b: ipv6(51, ahHdr(6), tcpHdr(40000, 143, syn)), want: tcp6(syn)},
		{name: "v6 DstOpts AH FIN", b: ipv6(60, extHdr(51, 1), ahHdr(6), tcpHdr(40000, 143, fin)), want: tcp6(fin)},
		{name: "v6 non-first fragment", b: ipv6(44, fragHdr(6, 1, true), tcpHdr(40000, 143, syn)), err: ErrFragment},
		{name: "v6 last fragment", b: ipv6(0, extHdr(44, 1), fragHdr(17, 200, false), udpHdr(5353, 31337, 0)), err: ErrFragment},
		{name: "v6 ESP", b: ipv6(50, make([]byte, 16)), err: ErrNotTCPUDP},
		{name: "v6 No Next Header", b: ipv6(59), err: ErrNotTCPUDP},
		{name: "v6 DstOpts No Next Header", b: ipv6(60, extHdr(59, 1)), err: ErrNotTCPUDP},
		{name: "v6 ICMPv6", b: ipv6(58, []byte{128, 0, 0, 0, 0, 1, 0, 1}), err: ErrNotTCPUDP},
		{name: "v6 HBH not first", b: ipv6(60, extHdr(0, 1), extHdr(6, 1), tcpHdr(40000, 143, syn)), err: ErrNotTCPUDP},
		{
			name: "v6 eight DstOpts then TCP", // the walk's bound, reached exactly
			b: ipv6(60, extHdr(60, 1), extHdr(60, 1), extHdr(60, 1), extHdr(60, 1),
				extHdr(60, 1), extHdr(60, 1), extHdr(60, 1), extHdr(6, 1), tcpHdr(40000, 143, syn)),
			want: tcp6(syn),
		},
		{
			name: "v6 nine DstOpts then TCP", // one past the bound
			b: ipv6(60, extHdr(60, 1), extHdr(60, 1), extHdr(60, 1), extHdr(60, 1),
				extHdr(60, 1), extHdr(60, 1), extHdr(60, 1), extHdr(60, 1), extHdr(6, 1), tcpHdr(40000, 143, syn)),
			err: ErrNotTCPUDP,
		},
		{
			name: "v6 payload length cuts TCP header",
			b:    func() []byte { b := ipv6(6, tcpHdr(40000, 143, syn)); binary.BigEndian.PutUint16(b[4:], 19); return b }(),
			err:  ErrTruncated,
		},
		{
			name: "v6 payload length zero", // empty payload or jumbogram: no probe either way
			b:    func() []byte { b := ipv6(6, tcpHdr(40000, 143, syn)); binary.BigEndian.PutUint16(b[4:], 0); return b }(),
			err:  ErrTruncated,
		},
		{
			name: "v6 extension header beyond packet",
			b:    func() []byte { b := ipv6(60, extHdr(6, 1), tcpHdr(40000, 143, syn)); b[41] = 200; return b }(),
			err:  ErrTruncated,
		},
		{
			name: "v6 snapped",
			b: func() []byte {
				b := ipv6(6, tcpHdr(40000, 143, syn))
				binary.BigEndian.PutUint16(b[4:], 1460)
				return b
			}(),
			want: tcp6(syn),
		},
		{
			name: "v6 TCP data offset 0",
			b:    func() []byte { b := ipv6(6, tcpHdr(40000, 143, syn)); b[52] = 0; return b }(),
			err:  ErrMalformed,
		},

		// Not IP at all.
		{name: "empty", b: []byte{}, err: ErrTruncated},
		{name: "version 0 (ARP-like)", b: []byte{0, 1, 8, 0, 6, 4, 0, 1, 0, 0, 0, 0}, err: ErrNotIP},
		{name: "version 5", b: append([]byte{0x55}, make([]byte, 39)...), err: ErrNotIP},
		{name: "v4 short", b: []byte{0x45, 0, 0, 40}, err: ErrTruncated},
		{name: "v6 short", b: []byte{0x60, 0, 0, 0}, err: ErrTruncated},
	}
}

func TestDecode(t *testing.T) {
	for _, tc := range decodeCases() {
		t.Run(tc.name, func(t *testing.T) {
			var got Packet
			err := Decode(tc.b, &got)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Decode() error = %v, want %v", err, tc.err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("Decode() packet mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDecodeTruncated cuts every case at every length: Decode must never
// panic, a valid packet must fail with ErrTruncated until its headers are
// complete and decode identically from then on.
func TestDecodeTruncated(t *testing.T) {
	for _, tc := range decodeCases() {
		t.Run(tc.name, func(t *testing.T) {
			hdr := tc.hdr
			if hdr == 0 {
				hdr = len(tc.b)
			}
			for i := 0; i <= len(tc.b); i++ {
				var got Packet
				err := Decode(tc.b[:i], &got)
				switch {
				case tc.err != nil:
					// Only the absence of a panic is asserted, plus
					// one thing: a cut never turns an error into a
					// packet.
					if err == nil {
						t.Errorf("Decode(b[:%d]) = %+v, nil; the whole packet fails with %v", i, got, tc.err)
					}
				case i < hdr:
					if !errors.Is(err, ErrTruncated) {
						t.Errorf("Decode(b[:%d]) error = %v, want ErrTruncated", i, err)
					}
				default:
					if err != nil || got != tc.want {
						t.Errorf("Decode(b[:%d]) = %+v, %v; want %+v, nil", i, got, err, tc.want)
					}
				}
			}
		})
	}
}

// TestDecodeErrorLeavesPacket checks the promise that a failed Decode does not
// half-fill a reused Packet.
func TestDecodeErrorLeavesPacket(t *testing.T) {
	prev := tcp4(syn)
	for _, tc := range decodeCases() {
		if tc.err == nil {
			continue
		}
		p := prev
		if err := Decode(tc.b, &p); err == nil {
			t.Fatalf("%s: Decode() succeeded", tc.name)
		}
		if p != prev {
			t.Errorf("%s: failed Decode() changed the packet to %+v", tc.name, p)
		}
	}
}

func TestDecodeAllocs(t *testing.T) {
	for _, tc := range decodeCases() {
		var p Packet
		allocs := testing.AllocsPerRun(100, func() { _ = Decode(tc.b, &p) })
		if allocs != 0 {
			t.Errorf("%s: Decode() allocates %v times per call, want 0", tc.name, allocs)
		}
	}
}

func TestProbe(t *testing.T) {
	tests := []struct {
		name   string
		p      Packet
		want   event.Kind
		wantOK bool
	}{
		{"SYN", tcp4(syn), event.SYN, true},
		{"SYN ECE CWR", tcp6(syn | ece | cwr), event.SYN, true},
		{"FIN", tcp4(fin), event.FIN, true},
		{"NULL", tcp6(0), event.NULL, true},
		{"XMAS", tcp4(fin | urg | psh), event.XMAS, true},
		{"SYN FIN", tcp4(syn | fin), event.OddTCP, true},
		{"ACK", tcp4(ack), 0, false},
		{"SYN ACK", tcp4(syn | ack), 0, false},
		{"RST", tcp6(rst), 0, false},
		{"UDP", udp4(), event.UDPProbe, true},
		{"UDP v6", udp6(), event.UDPProbe, true},
	}
	for _, tt := range tests {
		got, ok := tt.p.Probe()
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("%s: Probe() = %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.wantOK)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	benches := []struct {
		name string
		pkt  []byte
	}{
		{"v4SYN", ipv4(6, 0x4000, nil, tcpHdr(40000, 143, syn))},
		{"v4UDP", ipv4(17, 0x4000, nil, udpHdr(5353, 53, 0))},
		{"v6SYN", ipv6(6, tcpHdr(40000, 143, syn))},
		{"v6SYNExt", ipv6(0, extHdr(60, 1), extHdr(44, 1), fragHdr(6, 0, false), tcpHdr(40000, 143, syn))},
	}
	for _, bb := range benches {
		b.Run(bb.name, func(b *testing.B) {
			var p Packet
			b.ReportAllocs()
			b.SetBytes(int64(len(bb.pkt)))
			for b.Loop() {
				if err := Decode(bb.pkt, &p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
