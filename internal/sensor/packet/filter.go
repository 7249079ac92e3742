package packet

import (
	"errors"
	"fmt"

	"golang.org/x/net/bpf"
)

// MaxExcludedInterfaces bounds FilterOptions.ExcludeIfindex. Each excluded
// interface costs one instruction on every packet the socket sees; a host
// that wants to skip more interfaces should watch the few it wants instead.
const MaxExcludedInterfaces = 8

// Linux packet types (SKF_AD_PKTTYPE, linux/if_packet.h).
const (
	pktHost     = 0 // PACKET_HOST: addressed to this host
	pktOutgoing = 4 // PACKET_OUTGOING: sent by this host
)

// Ethertypes, as the SKF_AD_PROTOCOL ancillary load yields them: the kernel
// converts skb->protocol to host order before the comparison.
const (
	etherIPv4 = 0x0800
	etherIPv6 = 0x86dd
)

// Snap lengths returned by the accepting instructions. Only headers are
// read, so copying whole packets to user space would waste socket buffer.
const (
	// snapHeaders covers a maximal IPv4 header (60) plus the TCP header
	// up to its flags, or an IPv6 header plus TCP.
	snapHeaders = 128
	// snapExtHeaders leaves room for an IPv6 extension-header chain that
	// user space walks (Decode reports ErrTruncated if it is longer).
	snapExtHeaders = 256
)

// tcpNotProbe are the TCP flags (ACK, RST) that mark a packet as part of a
// conversation; the kernel drops those so user space only wakes for probes.
const tcpNotProbe = 0x14

// FilterOptions choose what the capture socket lets through.
type FilterOptions struct {
	// ExcludeIfindex lists interfaces whose packets are dropped, typically
	// loopback's index when loopback is not watched (at most
	// MaxExcludedInterfaces). Filtering in the kernel keeps local traffic,
	// often the busiest, from costing a copy and a wake-up.
	ExcludeIfindex []int
	// Outgoing also passes UDP packets the host sends, so that user space
	// can remember its own UDP flows and not mistake their replies (a late
	// DNS answer, say) for probes.
	Outgoing bool
}

// Filter returns the classic BPF program to attach (SO_ATTACH_FILTER) to an
// AF_PACKET SOCK_DGRAM socket, whose packets start at the IP header.
//
// It passes packets addressed to this host that may be probes — IPv4 or IPv6
// TCP with neither ACK nor RST, UDP, and IPv6 packets with an extension
// header that user space must walk — and, with o.Outgoing, the host's own
// outgoing UDP. Everything else, including IPv4 non-first fragments, is
// dropped in the kernel. Accepted packets are cut to their headers.
func Filter(o FilterOptions) ([]bpf.RawInstruction, error) {
	if len(o.ExcludeIfindex) > MaxExcludedInterfaces {
		return nil, fmt.Errorf("packet: filter: %d excluded interfaces, at most %d", len(o.ExcludeIfindex), MaxExcludedInterfaces)
	}
	// The Linux-specific ancillary loads live in this short prefix because
	// bpf.VM cannot run them; filterBody, which the tests run in bpf.VM,
	// starts with the packet type in A.
	var a asm
	for _, idx := range o.ExcludeIfindex {
		if idx <= 0 {
			return nil, fmt.Errorf("packet: filter: bad interface index %d", idx)
		}
		a.add(bpf.LoadExtension{Num: bpf.ExtInterfaceIndex})
		a.jump(bpf.JumpEqual, uint32(idx), "drop", "")
	}
	// SOCK_DGRAM hides the link header; the ethertype is the only sure
	// sign that byte 0 is an IP header and not ARP or something else whose
	// first nibble happens to be 4 or 6.
	a.add(bpf.LoadExtension{Num: bpf.ExtProto})
	a.jump(bpf.JumpEqual, etherIPv4, "ip", "")
	a.jump(bpf.JumpEqual, etherIPv6, "ip", "drop")
	a.label("drop")
	a.add(bpf.RetConstant{Val: 0})
	a.label("ip")
	a.add(bpf.LoadExtension{Num: bpf.ExtType})
	prefix, err := a.assemble()
	if err != nil {
		return nil, err
	}
	body, err := filterBody(o.Outgoing)
	if err != nil {
		return nil, err
	}
	prog, err := bpf.Assemble(append(prefix, body...))
	if err != nil {
		return nil, fmt.Errorf("packet: filter: %w", err)
	}
	return prog, nil
}

// filterBody is the part of the filter that reads only packet bytes, so that
// bpf.VM can run it. It expects the packet type (SKF_AD_PKTTYPE) in A.
func filterBody(outgoing bool) ([]bpf.Instruction, error) {
	var a asm
	a.jump(bpf.JumpEqual, pktHost, "host", "")
	if outgoing {
		a.jump(bpf.JumpEqual, pktOutgoing, "out", "drop")
	} else {
		a.goTo("drop")
	}

	// Packets addressed to this host.
	a.label("host")
	a.add(bpf.LoadAbsolute{Off: 0, Size: 1})
	a.add(bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4})
	a.jump(bpf.JumpEqual, 4, "v4", "")
	a.jump(bpf.JumpEqual, 6, "v6", "drop")

	a.label("v4")
	a.add(bpf.LoadAbsolute{Off: 6, Size: 2})
	a.jump(bpf.JumpBitsSet, 0x1fff, "drop", "") // non-first fragment: no ports
	a.add(bpf.LoadAbsolute{Off: 9, Size: 1})
	a.jump(bpf.JumpEqual, protoUDP, "accept", "")
	a.jump(bpf.JumpEqual, protoTCP, "", "drop")
	a.add(bpf.LoadMemShift{Off: 0}) // X = IPv4 header length
	a.add(bpf.LoadIndirect{Off: 13, Size: 1})
	a.jump(bpf.JumpBitsSet, tcpNotProbe, "drop", "accept")

	a.label("v6")
	a.add(bpf.LoadAbsolute{Off: 6, Size: 1})
	a.jump(bpf.JumpEqual, protoUDP, "accept", "")
	a.jump(bpf.JumpEqual, protoTCP, "", "v6ext")
	a.add(bpf.LoadAbsolute{Off: 40 + 13, Size: 1})
	a.jump(bpf.JumpBitsSet, tcpNotProbe, "drop", "accept")
	// Only the extension headers Decode walks: anything else (ICMPv6 with
	// its steady neighbour discovery, ESP, No Next Header) could never be
	// decoded as a probe, so copying it out would be wasted work.
	a.label("v6ext")
	a.jump(bpf.JumpEqual, protoHopByHop, "acceptext", "")
	a.jump(bpf.JumpEqual, protoRouting, "acceptext", "")
	a.jump(bpf.JumpEqual, protoFragment, "acceptext", "")
	a.jump(bpf.JumpEqual, protoDstOpts, "acceptext", "")
	a.jump(bpf.JumpEqual, protoAH, "acceptext", "drop")

	if outgoing {
		// Packets this host sends: UDP only, to remember its own flows.
		a.label("out")
		a.add(bpf.LoadAbsolute{Off: 0, Size: 1})
		a.add(bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4})
		a.jump(bpf.JumpEqual, 4, "", "out6")
		a.add(bpf.LoadAbsolute{Off: 6, Size: 2})
		a.jump(bpf.JumpBitsSet, 0x1fff, "drop", "")
		a.add(bpf.LoadAbsolute{Off: 9, Size: 1})
		a.jump(bpf.JumpEqual, protoUDP, "accept", "drop")
		a.label("out6")
		a.jump(bpf.JumpEqual, 6, "", "drop")
		a.add(bpf.LoadAbsolute{Off: 6, Size: 1})
		a.jump(bpf.JumpEqual, protoUDP, "accept", "drop")
	}

	a.label("drop")
	a.add(bpf.RetConstant{Val: 0})
	a.label("accept")
	a.add(bpf.RetConstant{Val: snapHeaders})
	a.label("acceptext")
	a.add(bpf.RetConstant{Val: snapExtHeaders})
	return a.assemble()
}

// asm is a tiny assembler with named labels, so that the filter reads as a
// flow chart instead of hand-counted skip offsets. Classic BPF only jumps
// forward, by at most 255 instructions for a conditional jump; assemble
// reports a program that breaks either rule.
type asm struct {
	ins    []bpf.Instruction
	labels map[string]int
	fixups []fixup
}

// fixup is a jump whose targets are resolved once all labels are known.
// An empty label means the next instruction.
type fixup struct {
	at      int
	always  bool // unconditional: bpf.Jump to onTrue
	cond    bpf.JumpTest
	val     uint32
	onTrue  string
	onFalse string
}

func (a *asm) add(i bpf.Instruction) { a.ins = append(a.ins, i) }

func (a *asm) label(name string) {
	if a.labels == nil {
		a.labels = make(map[string]int)
	}
	a.labels[name] = len(a.ins)
}

// jump adds a conditional jump to label t if A cond val holds, else to f.
func (a *asm) jump(cond bpf.JumpTest, val uint32, t, f string) {
	a.fixups = append(a.fixups, fixup{at: len(a.ins), cond: cond, val: val, onTrue: t, onFalse: f})
	a.add(nil) // placeholder, replaced by assemble
}

// goTo adds an unconditional jump to label t.
func (a *asm) goTo(t string) {
	a.fixups = append(a.fixups, fixup{at: len(a.ins), always: true, onTrue: t})
	a.add(nil)
}

func (a *asm) assemble() ([]bpf.Instruction, error) {
	skip := func(from int, name string) (uint32, error) {
		if name == "" {
			return 0, nil
		}
		to, ok := a.labels[name]
		if !ok {
			return 0, fmt.Errorf("packet: filter: undefined label %q", name)
		}
		if to <= from {
			return 0, fmt.Errorf("packet: filter: backward jump to %q", name)
		}
		return uint32(to - from - 1), nil
	}
	out := append([]bpf.Instruction(nil), a.ins...)
	for _, f := range a.fixups {
		t, err := skip(f.at, f.onTrue)
		if err != nil {
			return nil, err
		}
		if f.always {
			out[f.at] = bpf.Jump{Skip: t}
			continue
		}
		e, err := skip(f.at, f.onFalse)
		if err != nil {
			return nil, err
		}
		if t > 255 || e > 255 {
			return nil, errors.New("packet: filter: conditional jump too long")
		}
		out[f.at] = bpf.JumpIf{Cond: f.cond, Val: f.val, SkipTrue: uint8(t), SkipFalse: uint8(e)}
	}
	return out, nil
}
