package enforce

import (
	"hash/maphash"
	"net/netip"
	"time"

	"github.com/portsentry-go/portsentry/internal/event"
)

// firstPorts remembers, for the sources of a flood under way, the one port
// each has probed, so that a second distinct port singles out a scanner in
// the crowd. Under a random-source flood every packet is a new source, so
// this is the daemon's hottest table: a fixed array of slots holding no
// pointers, allocated once (no allocation, map growth or deletion per
// source, nothing for the garbage collector to scan), at 16 bytes a slot.
//
// Slots are grouped in buckets of firstWays; a source lives in the bucket
// its address hashes to, and a new source takes the bucket's free or least
// recent slot. A source is then forgotten once firstWays newer sources
// fell in its bucket: after len(slots)/4 newer sources about one in 60 is,
// after len(slots)/2 one in 7, after len(slots) about half (an eighth, a
// quarter and half a second at 65 536 new sources a second; measured by
// TestFirstPortsBounded's forgotten). The hash is seeded at
// random for each daemon, so a forger cannot aim its sources at the bucket
// of a scanner it wants hidden; it can only flood faster than a scanner's
// probes follow each other, which makes that scanner count as several
// single probes (summarized, and trapped by the kernel all the same).
type firstPorts struct {
	seed  maphash.Seed
	slots []firstPort
	mask  uint64    // len(slots)/firstWays - 1
	epoch time.Time // the table's clock starts here
}

// firstWays is the slots of a bucket: one cache line.
const firstWays = 4

// firstPort is one source: 16 bytes, so that the table (512 KiB) stays in
// the processor's caches under a flood.
type firstPort struct {
	// tag is the source's address hashed (the table's seed), never 0 (0:
	// a free slot). Two sources of a bucket share a tag once in 2^50 pairs
	// or so, and a forger cannot aim at one (it does not know the seed):
	// at worst their probes count as one source's.
	tag  uint64
	at   uint32 // the source's last probe, in milliseconds of the table's clock
	port uint32 // protocol<<16 | port of its first probe, | scannerMark
}

// scannerMark marks a slot whose source probed a second port: every probe
// of it is then a scanner's, to handle one by one.
const scannerMark = 1 << 31

// newFirstPorts returns a table of at least n slots (a power of two
// buckets).
func newFirstPorts(n int) *firstPorts {
	buckets := 1
	for buckets*firstWays < n {
		buckets *= 2
	}
	return &firstPorts{
		seed:  maphash.MakeSeed(),
		slots: make([]firstPort, buckets*firstWays),
		mask:  uint64(buckets - 1),
		epoch: time.Now(),
	}
}

// reset empties the table and starts its clock at now: at the start of
// each flood, so that the slots of one weeks before cannot look young
// (their clock wrapped) and crowd out the new flood's sources.
func (f *firstPorts) reset(now time.Time) {
	clear(f.slots)
	f.epoch = now
}

// probe records src's probe of (proto, port) at t. second reports that src
// has probed another port than its first within floodInterval: a scanner,
// this probe and its next ones. fresh reports a source not seen within
// floodInterval.
func (f *firstPorts) probe(src netip.Addr, proto event.Proto, port uint16, t time.Time) (second, fresh bool) {
	addr := src.As16()
	h := maphash.Bytes(f.seed, addr[:])
	tag := h | 1
	key := uint32(proto&1)<<16 | uint32(port)
	// Milliseconds on the table's clock, modulo 2^32 (49 days): ages are
	// taken as int32 differences, so a late probe (a negative age) is
	// live. The table is emptied when a flood begins (reset), so no slot
	// is old enough for its age to wrap (24 days) but in a flood that long.
	now := uint32(t.Sub(f.epoch) / time.Millisecond)
	b := int(h&f.mask) * firstWays
	bucket := f.slots[b : b+firstWays : b+firstWays]
	victim, oldest := 0, int32(-1<<31)
	for i := range bucket {
		s := &bucket[i]
		age := int32(now - s.at)
		if s.tag == tag {
			live := age <= int32(floodInterval/time.Millisecond)
			switch {
			case !live:
				s.port = key
			case s.port != key:
				s.port |= scannerMark
				second = true
			}
			// A probe that arrives late never makes the slot older.
			if age > 0 {
				s.at = now
			}
			return second, !live
		}
		if s.tag == 0 {
			age = 1<<31 - 1 // free: the first choice
		}
		if age > oldest {
			victim, oldest = i, age
		}
	}
	bucket[victim] = firstPort{tag: tag, at: now, port: key}
	return false, true
}
