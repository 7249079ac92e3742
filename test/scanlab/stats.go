package main

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// scanStats is what the capture on T's interface shows of one scan.
type scanStats struct {
	probes       int       // packets S→T
	probesBefore int       // of which arrived before the block landed (all: never blocked)
	firstProbe   time.Time // zero when there were none
	lastProbe    time.Time
	replies      int       // packets T→S: everything the scanner learned from
	repliesAfter int       // of which left T after the block had landed
	lastReply    time.Time // the last of them; zero when there were none
	answered     int       // distinct ports (per protocol) T answered
	open         int       // of which looked open: SYN/ACK or a UDP answer
}

// portKey is a transport protocol and port.
type portKey struct {
	proto uint8
	port  uint16
}

// analyze counts the scan's packets. scanner and target are the addresses
// of S and T; block is when the block landed (zero: never). Neighbour
// discovery is address resolution, not a probe or an answer, and is skipped.
func analyze(pkts []packet, scanner, target []netip.Addr, block time.Time) scanStats {
	var st scanStats
	answered := map[portKey]bool{}
	open := map[portKey]bool{}
	for _, p := range pkts {
		if p.isNeighborDiscovery() {
			continue
		}
		switch {
		case slices.Contains(scanner, p.src) && slices.Contains(target, p.dst):
			st.probes++
			if block.IsZero() || !p.ts.After(block) {
				st.probesBefore++
			}
			if st.firstProbe.IsZero() || p.ts.Before(st.firstProbe) {
				st.firstProbe = p.ts
			}
			if p.ts.After(st.lastProbe) {
				st.lastProbe = p.ts
			}
		case slices.Contains(target, p.src) && slices.Contains(scanner, p.dst):
			st.replies++
			if p.ts.After(st.lastReply) {
				st.lastReply = p.ts
			}
			if !block.IsZero() && p.ts.After(block) {
				st.repliesAfter++
			}
			if !p.l4ok {
				continue
			}
			switch {
			case p.proto == protoTCP:
				k := portKey{protoTCP, p.sport}
				answered[k] = true
				if p.tcpFlags&(tcpSYN|tcpACK) == tcpSYN|tcpACK {
					open[k] = true
				}
			case p.proto == protoUDP:
				k := portKey{protoUDP, p.sport}
				answered[k] = true
				open[k] = true
			case p.quoted && (p.quotedProto == protoTCP || p.quotedProto == protoUDP):
				answered[portKey{p.quotedProto, p.quotedDport}] = true
			}
		}
	}
	st.answered, st.open = len(answered), len(open)
	return st
}

// describeReplies lists the first max packets T sent to the scanner, each
// with its time after first and what it was, and how many more there were.
func describeReplies(pkts []packet, scanner, target []netip.Addr, first time.Time, max int) (lines []string, more int) {
	for _, p := range pkts {
		if p.isNeighborDiscovery() || !slices.Contains(target, p.src) || !slices.Contains(scanner, p.dst) {
			continue
		}
		if len(lines) == max {
			more++
			continue
		}
		lines = append(lines, fmt.Sprintf("+%.3f ms %s", float64(p.ts.Sub(first))/float64(time.Millisecond), p.describe()))
	}
	return lines, more
}

// describe tells what a packet is, e.g. "TCP 80 → 41234 SYN/ACK",
// "ICMP 3/3 for UDP port 7".
func (p packet) describe() string {
	if !p.l4ok {
		return fmt.Sprintf("protocol %d (no transport header)", p.proto)
	}
	switch p.proto {
	case protoTCP:
		var fl []string
		for _, f := range []struct {
			bit  uint8
			name string
		}{{tcpSYN, "SYN"}, {tcpFIN, "FIN"}, {tcpRST, "RST"}, {tcpACK, "ACK"}} {
			if p.tcpFlags&f.bit != 0 {
				fl = append(fl, f.name)
			}
		}
		return fmt.Sprintf("TCP %d → %d %s", p.sport, p.dport, strings.Join(fl, "/"))
	case protoUDP:
		return fmt.Sprintf("UDP %d → %d", p.sport, p.dport)
	}
	name := "ICMP"
	if p.proto == protoICMPv6 {
		name = "ICMPv6"
	}
	s := fmt.Sprintf("%s %d/%d", name, p.icmpType, p.icmpCode)
	if p.quoted {
		proto := fmt.Sprintf("protocol %d", p.quotedProto)
		switch p.quotedProto {
		case protoTCP:
			proto = "TCP"
		case protoUDP:
			proto = "UDP"
		}
		s += fmt.Sprintf(" for %s port %d", proto, p.quotedDport)
	}
	return s
}

// lastFreshReply is when T last sent S a packet that is not a repeat of an
// earlier one (a SYN/ACK retransmitted after the block, which output
// rules do not stop); zero when T sent none. T answers every probe until
// a ban drops S's packets at input, and none after: the ban landed
// between this reply and S's next probe.
func lastFreshReply(pkts []packet, scanner, target []netip.Addr) time.Time {
	var last time.Time
	seen := map[string]bool{}
	for _, p := range pkts {
		if p.isNeighborDiscovery() || !slices.Contains(target, p.src) || !slices.Contains(scanner, p.dst) {
			continue
		}
		k := p.src.String() + " " + p.describe()
		if seen[k] {
			continue
		}
		seen[k] = true
		if p.ts.After(last) {
			last = p.ts
		}
	}
	return last
}
