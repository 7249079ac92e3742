package capture

import (
	"hash/maphash"
	"net/netip"
)

// The reply table remembers the UDP flows this host starts, so that a reply
// arriving after the local socket has gone (a late DNS answer, the second
// answer of a resolver that asked two servers) is not taken for a probe of
// the port the query left from. Conntrack would call such a datagram
// ESTABLISHED; this table is what the sensor has instead.
const (
	// flowWays is the associativity: a flow can live in any of the
	// flowWays slots of its bucket.
	flowWays = 4
	// flowBuckets × flowWays = 65536 flows, 1.5 MiB, allocated once.
	flowBuckets = 16384
	// flowTTL is how long a flow is remembered after its last packet, in
	// seconds: the UDP stream timeout nf_conntrack long used. A reply
	// later than that is one a stateful firewall would not pass either.
	flowTTL = 180
)

// flowEntry is one remembered flow. It holds no pointer, so the table is
// never scanned by the garbage collector.
type flowEntry struct {
	remote [16]byte // remote address, IPv4 as IPv4-mapped IPv6
	lport  uint16   // local port
	rport  uint16   // remote port
	seen   uint32   // flowTable clock at the last packet; 0 = empty slot
}

// flowTable is a fixed-size, set-associative table of UDP flows: no
// allocation after newFlowTable, no deletion, O(1) per packet.
//
// When all flowWays slots of a bucket are taken by live flows, a new flow
// replaces the one seen least recently in that bucket: an approximation of
// evicting the oldest flow of the whole table that needs no list. Only
// flows whose local port is watched are stored (see Sensor.handle), so
// heavy unrelated UDP traffic (QUIC, media) does not compete for slots;
// and the bucket hash is keyed by a per-table random seed, so nobody can
// aim flows at one bucket.
//
// A flowTable is used by one goroutine at a time.
type flowTable struct {
	seed    maphash.Seed
	buckets [][flowWays]flowEntry
	// rports are the remote ports of the flows remembered, in two
	// generations of at least flowTTL each (cur, then prev): a flow seen
	// less than flowTTL ago has its port in one of them. A datagram from a
	// port in neither answers no flow, and is known so without hashing or
	// touching the table (16 KiB where the table is 1.5 MiB): the common
	// case of a UDP flood, whose source ports are not the few this host's
	// own queries went to (53, 123).
	rports  [2]portBits
	rotated uint32 // the clock when cur began
}

// portBits is a set of ports.
type portBits [65536 / 64]uint64

func (b *portBits) has(p uint16) bool { return b[p/64]&(1<<(p%64)) != 0 }
func (b *portBits) add(p uint16)      { b[p/64] |= 1 << (p % 64) }

// rotate begins a new generation of remote ports when cur is flowTTL old.
func (t *flowTable) rotate(now uint32) {
	if now-t.rotated >= flowTTL {
		t.rports[1], t.rports[0] = t.rports[0], portBits{}
		t.rotated = now
	}
}

func newFlowTable(buckets int) *flowTable {
	if buckets&(buckets-1) != 0 || buckets <= 0 {
		panic("capture: flow table size must be a power of two")
	}
	return &flowTable{seed: maphash.MakeSeed(), buckets: make([][flowWays]flowEntry, buckets)}
}

// key returns the entry for a flow (seen unset) and its bucket.
func (t *flowTable) key(lport uint16, remote netip.Addr, rport uint16) (flowEntry, *[flowWays]flowEntry) {
	e := flowEntry{remote: remote.As16(), lport: lport, rport: rport}
	var b [20]byte
	copy(b[:16], e.remote[:])
	b[16], b[17] = byte(lport>>8), byte(lport)
	b[18], b[19] = byte(rport>>8), byte(rport)
	h := maphash.Bytes(t.seed, b[:])
	return e, &t.buckets[h&uint64(len(t.buckets)-1)]
}

// live reports whether a slot holds a flow seen less than flowTTL ago.
// now is never 0 (the clock starts at 1), and seen <= now.
func live(e *flowEntry, now uint32) bool {
	return e.seen != 0 && now-e.seen < flowTTL
}

// remember records an outgoing datagram from local port lport to
// remote:rport at clock now (seconds, starting at 1).
func (t *flowTable) remember(lport uint16, remote netip.Addr, rport uint16, now uint32) {
	t.rotate(now)
	t.rports[0].add(rport)
	k, bucket := t.key(lport, remote, rport)
	free, oldest := -1, 0
	for i := range bucket {
		e := &bucket[i]
		if e.same(&k) {
			e.seen = now // the same flow again, live or expired
			return
		}
		if !live(e, now) {
			if free < 0 {
				free = i
			}
			continue
		}
		if e.seen < bucket[oldest].seen {
			oldest = i
		}
	}
	if free < 0 {
		free = oldest // every slot live: evict the least recently seen
	}
	k.seen = now
	bucket[free] = k
}

func (e *flowEntry) same(k *flowEntry) bool {
	return e.remote == k.remote && e.lport == k.lport && e.rport == k.rport
}

// isReply reports whether a datagram from remote:rport to local port lport
// answers a flow seen less than flowTTL ago, and if so refreshes the flow,
// as conntrack refreshes a flow on every packet.
func (t *flowTable) isReply(lport uint16, remote netip.Addr, rport uint16, now uint32) bool {
	t.rotate(now)
	if !t.rports[0].has(rport) && !t.rports[1].has(rport) {
		return false
	}
	k, bucket := t.key(lport, remote, rport)
	for i := range bucket {
		e := &bucket[i]
		if e.same(&k) && live(e, now) {
			e.seen = now
			t.rports[0].add(rport)
			return true
		}
	}
	return false
}
