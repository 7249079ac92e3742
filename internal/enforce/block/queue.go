package block

import (
	"net/netip"
	"sync"
)

// Queue collects Add and Delete calls for blockers whose mechanism has no
// batch of its own to build (iptables, routes) until Commit takes them.
// For each address the last call wins. Its methods are safe for concurrent
// use; the zero value is ready.
type Queue struct {
	mu      sync.Mutex
	pending map[netip.Addr]bool // true: add, false: delete
	invalid int                 // invalid addresses queued since the last Take
}

// Put queues a ban (add) or its removal of addr. An IPv4-mapped address
// counts as IPv4, a zone is dropped. An invalid address is only counted:
// Add and Delete have no error result, so Commit reports it.
func (q *Queue) Put(addr netip.Addr, add bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	a := addr.Unmap().WithZone("")
	if !a.IsValid() {
		q.invalid++
		return
	}
	if q.pending == nil {
		q.pending = make(map[netip.Addr]bool)
	}
	q.pending[a] = add
}

// Take empties the queue, returning what was in it (address → add) and how
// many invalid addresses were queued.
func (q *Queue) Take() (pending map[netip.Addr]bool, invalid int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	pending, invalid = q.pending, q.invalid
	q.pending, q.invalid = nil, 0
	return pending, invalid
}
