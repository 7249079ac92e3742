package main

import (
	"net/netip"
	"slices"
	"time"
)

// scanStats is what the capture on T's interface shows of one scan.
type scanStats struct {
	probes       int       // packets S→T
	probesBefore int       // of which arrived before the block landed (all: never blocked)
	firstProbe   time.Time // zero when there were none
	lastProbe    time.Time
	replies      int // packets T→S: everything the scanner learned from
	repliesAfter int // of which left T after the block had landed
	answered     int // distinct ports (per protocol) T answered
	open         int // of which looked open: SYN/ACK or a UDP answer
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
