package packet

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/net/bpf"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

// env is what the kernel's ancillary loads would yield for one packet.
type env struct {
	ifindex uint32
	ether   uint32 // SKF_AD_PROTOCOL, host order
	pkttype uint32
}

var (
	host4 = env{ifindex: 2, ether: etherIPv4, pkttype: pktHost}
	host6 = env{ifindex: 2, ether: etherIPv6, pkttype: pktHost}
	out4  = env{ifindex: 2, ether: etherIPv4, pkttype: pktOutgoing}
	out6  = env{ifindex: 2, ether: etherIPv6, pkttype: pktOutgoing}
)

// hostEnv guesses the ethertype the kernel would report from the version
// nibble, as a NIC delivering a well-formed IP packet would.
func hostEnv(b []byte) env {
	if len(b) > 0 && b[0]>>4 == 6 {
		return host6
	}
	return host4
}

// runFilter runs the whole program Filter(o) returns in bpf.VM. bpf.VM
// cannot execute Linux ancillary loads, so each one is replaced by a
// constant load of the value the kernel would produce: one instruction for
// one, which keeps every jump offset intact and so tests the prefix too.
func runFilter(t *testing.T, o FilterOptions, e env, b []byte) int {
	t.Helper()
	raw, err := Filter(o)
	if err != nil {
		t.Fatal(err)
	}
	prog, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("Filter() returned instructions bpf.Disassemble does not know")
	}
	for i, ins := range prog {
		le, ok := ins.(bpf.LoadExtension)
		if !ok {
			continue
		}
		var v uint32
		switch le.Num {
		case bpf.ExtInterfaceIndex:
			v = e.ifindex
		case bpf.ExtProto:
			v = e.ether
		case bpf.ExtType:
			v = e.pkttype
		default:
			t.Fatalf("instruction %d: unexpected extension %v", i, le)
		}
		prog[i] = bpf.LoadConstant{Dst: bpf.RegA, Val: v}
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	n, err := vm.Run(b)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestFilter(t *testing.T) {
	v4opts := func(flags uint8) []byte { return ipv4(6, 0, optNOP4, tcpHdr(40000, 143, flags)) }
	arp := []byte{0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 192, 0, 2, 7, 0, 0, 0, 0, 0, 0, 198, 51, 100, 9}
	tests := []struct {
		name string
		o    FilterOptions
		e    env
		b    []byte
		want int
	}{
		{"v4 SYN", FilterOptions{}, host4, ipv4(6, 0, nil, tcpHdr(40000, 143, syn)), snapHeaders},
		{"v4 FIN", FilterOptions{}, host4, ipv4(6, 0, nil, tcpHdr(40000, 143, fin)), snapHeaders},
		{"v4 NULL", FilterOptions{}, host4, ipv4(6, 0, nil, tcpHdr(40000, 143, 0)), snapHeaders},
		{"v4 XMAS", FilterOptions{}, host4, ipv4(6, 0, nil, tcpHdr(40000, 143, fin|urg|psh)), snapHeaders},
		{"v4 SYN ECE CWR", FilterOptions{}, host4, ipv4(6, 0, nil, tcpHdr(40000, 143, syn|ece|cwr)), snapHeaders},
		{"v4 ACK", FilterOptions{}, host4, ipv4(6, 0, nil, tcpHdr(40000, 143, ack)), 0},
		{"v4 SYN ACK", FilterOptions{}, host4, ipv4(6, 0, nil, tcpHdr(40000, 143, syn|ack)), 0},
		{"v4 RST", FilterOptions{}, host4, ipv4(6, 0, nil, tcpHdr(40000, 143, rst)), 0},
		// With options the TCP header moves: only ldxb 4*([0]&0xf)
		// finds the flags.
		{"v4 options SYN", FilterOptions{}, host4, v4opts(syn), snapHeaders},
		{"v4 options ACK", FilterOptions{}, host4, v4opts(ack), 0},
		{"v4 options RST", FilterOptions{}, host4, v4opts(rst | fin), 0},
		{"v4 UDP", FilterOptions{}, host4, ipv4(17, 0, nil, udpHdr(5353, 31337, 0)), snapHeaders},
		{"v4 first fragment SYN", FilterOptions{}, host4, ipv4(6, mf, nil, tcpHdr(40000, 143, syn)), snapHeaders},
		{"v4 non-first fragment", FilterOptions{}, host4, ipv4(6, 1, nil, tcpHdr(40000, 143, syn)), 0},
		{"v4 non-first fragment UDP", FilterOptions{}, host4, ipv4(17, mf|7, nil, udpHdr(5353, 31337, 0)), 0},
		{"v4 ICMP", FilterOptions{}, host4, ipv4(1, 0, nil, []byte{8, 0, 0, 0, 0, 1, 0, 1}), 0},
		{"v4 short TCP", FilterOptions{}, host4, ipv4(6, 0, nil, []byte{1, 2, 3, 4}), 0},
		{"v6 SYN", FilterOptions{}, host6, ipv6(6, tcpHdr(40000, 143, syn)), snapHeaders},
		{"v6 NULL", FilterOptions{}, host6, ipv6(6, tcpHdr(40000, 143, 0)), snapHeaders},
		{"v6 ACK", FilterOptions{}, host6, ipv6(6, tcpHdr(40000, 143, ack)), 0},
		{"v6 RST", FilterOptions{}, host6, ipv6(6, tcpHdr(40000, 143, rst)), 0},
		{"v6 UDP", FilterOptions{}, host6, ipv6(17, udpHdr(5353, 31337, 0)), snapHeaders},
		{"v6 HBH ACK", FilterOptions{}, host6, ipv6(0, extHdr(6, 1), tcpHdr(40000, 143, ack)), snapExtHeaders},
		{"v6 Fragment", FilterOptions{}, host6, ipv6(44, fragHdr(6, 1, false), tcpHdr(40000, 143, syn)), snapExtHeaders},
		{"v6 Routing", FilterOptions{}, host6, ipv6(43, extHdr(17, 1), udpHdr(5353, 31337, 0)), snapExtHeaders},
		{"v6 DstOpts", FilterOptions{}, host6, ipv6(60, extHdr(6, 1), tcpHdr(40000, 143, syn)), snapExtHeaders},
		{"v6 AH", FilterOptions{}, host6, ipv6(51, ahHdr(6), tcpHdr(40000, 143, syn)), snapExtHeaders},
		{"v6 ICMPv6", FilterOptions{}, host6, ipv6(58, []byte{135, 0, 0, 0}), 0},
		{"v6 ESP", FilterOptions{}, host6, ipv6(50, make([]byte, 16)), 0},
		{"v6 No Next Header", FilterOptions{}, host6, ipv6(59), 0},
		{"ARP", FilterOptions{}, env{ifindex: 2, ether: 0x0806}, arp, 0},
		{"ARP bytes claiming IPv4", FilterOptions{}, host4, arp, 0},
		{"IPv4 bytes under another ethertype", FilterOptions{}, env{ifindex: 2, ether: 0x8847}, ipv4(6, 0, nil, tcpHdr(1, 2, syn)), 0},
		{"v6 bytes under IPv4 ethertype", FilterOptions{}, host4, ipv6(6, tcpHdr(40000, 143, syn)), snapHeaders},
		{"empty", FilterOptions{}, host4, nil, 0},

		// Packet types other than "to this host".
		{"broadcast UDP", FilterOptions{Outgoing: true}, env{ifindex: 2, ether: etherIPv4, pkttype: 1}, ipv4(17, 0, nil, udpHdr(68, 67, 0)), 0},
		{"multicast UDP", FilterOptions{Outgoing: true}, env{ifindex: 2, ether: etherIPv6, pkttype: 2}, ipv6(17, udpHdr(5353, 5353, 0)), 0},
		{"other host SYN", FilterOptions{Outgoing: true}, env{ifindex: 2, ether: etherIPv4, pkttype: 3}, ipv4(6, 0, nil, tcpHdr(1, 2, syn)), 0},
		{"outgoing UDP, not asked for", FilterOptions{}, out4, ipv4(17, 0, nil, udpHdr(40000, 53, 0)), 0},
		{"outgoing v4 UDP", FilterOptions{Outgoing: true}, out4, ipv4(17, 0, nil, udpHdr(40000, 53, 0)), snapHeaders},
		{"outgoing v6 UDP", FilterOptions{Outgoing: true}, out6, ipv6(17, udpHdr(40000, 53, 0)), snapHeaders},
		{"outgoing v4 SYN", FilterOptions{Outgoing: true}, out4, ipv4(6, 0, nil, tcpHdr(40000, 443, syn)), 0},
		{"outgoing v6 SYN", FilterOptions{Outgoing: true}, out6, ipv6(6, tcpHdr(40000, 443, syn)), 0},
		{"outgoing v4 UDP non-first fragment", FilterOptions{Outgoing: true}, out4, ipv4(17, 100, nil, udpHdr(40000, 53, 0)), 0},
		{"outgoing v6 HBH UDP", FilterOptions{Outgoing: true}, out6, ipv6(0, extHdr(17, 1), udpHdr(40000, 53, 0)), 0},
		{"outgoing garbage", FilterOptions{Outgoing: true}, out4, []byte{0x50, 0, 0, 0}, 0},
		{"host SYN with Outgoing", FilterOptions{Outgoing: true}, host4, ipv4(6, 0, nil, tcpHdr(40000, 143, syn)), snapHeaders},

		// Excluded interfaces.
		{"excluded interface", FilterOptions{ExcludeIfindex: []int{1, 2}}, host4, ipv4(6, 0, nil, tcpHdr(40000, 143, syn)), 0},
		{"excluded interface outgoing", FilterOptions{ExcludeIfindex: []int{2}, Outgoing: true}, out4, ipv4(17, 0, nil, udpHdr(40000, 53, 0)), 0},
		{"other interface", FilterOptions{ExcludeIfindex: []int{1, 3, 4, 5, 6, 7, 8, 9}}, host6, ipv6(6, tcpHdr(40000, 143, syn)), snapHeaders},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := runFilter(t, tt.o, tt.e, tt.b); got != tt.want {
				t.Errorf("filter returns %d, want %d", got, tt.want)
			}
		})
	}
}

// TestFilterKeepsProbes runs every decode case through the filter: a packet
// the filter drops must not be one Decode would report as a probe, and an
// accepted packet cut to the snap length must decode as the whole one.
func TestFilterKeepsProbes(t *testing.T) {
	for _, o := range []FilterOptions{{}, {Outgoing: true}} {
		for _, tc := range decodeCases() {
			var whole Packet
			err := Decode(tc.b, &whole)
			probe := false
			if err == nil {
				_, probe = whole.Probe()
			}
			n := runFilter(t, o, hostEnv(tc.b), tc.b)
			if n == 0 {
				if probe {
					t.Errorf("%s: filter drops probe %+v", tc.name, whole)
				}
				continue
			}
			if err != nil {
				continue
			}
			var cut Packet
			if err := Decode(tc.b[:min(n, len(tc.b))], &cut); err != nil || cut != whole {
				t.Errorf("%s: cut to %d bytes decodes as %+v, %v; whole: %+v", tc.name, n, cut, err, whole)
			}
		}
	}
}

// TestFilterBody runs the content part alone, as the brief for this package
// promised bpf.VM could: it needs nothing but the packet type in A.
func TestFilterBody(t *testing.T) {
	body, err := filterBody(false)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := bpf.NewVM(append([]bpf.Instruction{bpf.LoadConstant{Dst: bpf.RegA, Val: pktHost}}, body...))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		b    []byte
		want int
	}{
		{ipv4(6, 0, nil, tcpHdr(1, 2, syn)), snapHeaders},
		{ipv4(6, 0, nil, tcpHdr(1, 2, ack)), 0},
	} {
		if n, err := vm.Run(c.b); err != nil || n != c.want {
			t.Errorf("Run() = %d, %v; want %d", n, err, c.want)
		}
	}
}

func TestFilterOptionsErrors(t *testing.T) {
	for _, o := range []FilterOptions{
		{ExcludeIfindex: []int{1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{ExcludeIfindex: []int{0}},
		{ExcludeIfindex: []int{-1}},
	} {
		if _, err := Filter(o); err == nil {
			t.Errorf("Filter(%+v) succeeded", o)
		}
	}
}

// TestFilterGolden keeps the assembled program, disassembled, in testdata so
// a change to it shows up in review as a readable diff.
func TestFilterGolden(t *testing.T) {
	for _, tc := range []struct {
		file string
		o    FilterOptions
	}{
		{"filter.golden", FilterOptions{}},
		{"filter-lo-outgoing.golden", FilterOptions{ExcludeIfindex: []int{1}, Outgoing: true}},
	} {
		raw, err := Filter(tc.o)
		if err != nil {
			t.Fatal(err)
		}
		prog, _ := bpf.Disassemble(raw)
		var sb strings.Builder
		for i, ins := range prog {
			fmt.Fprintf(&sb, "(%03d) %v\n", i, ins)
		}
		path := filepath.Join("testdata", tc.file)
		if *update {
			if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update to create it)", err)
		}
		if got := sb.String(); got != string(want) {
			t.Errorf("%s differs (run with -update after checking):\n%s", tc.file, got)
		}
	}
}
