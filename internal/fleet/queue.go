package fleet

import (
	"sync"

	"github.com/nats-io/nuid"
)

// outgoing is one ban or lift to publish.
type outgoing struct {
	subj string
	data []byte
	// msgID lets JetStream store a publish retried after a lost
	// acknowledgement only once.
	msgID string
}

func (o outgoing) id() string { return o.msgID }

// queue holds what waits to be published, in order, at most maxQueued:
// past that the oldest is dropped (a ban shared late matters less than
// one shared now, and the fleet catches each member's own ban again when
// it re-bans). Safe for concurrent use.
type queue struct {
	mu      sync.Mutex
	items   []outgoing
	head    int
	dropped uint64
	warned  bool // the current run of drops was logged
}

// push adds o; it reports true when a run of drops begins (log it once).
func (q *queue) push(o outgoing) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	o.msgID = nuid.Next()
	begins := false
	if len(q.items)-q.head >= maxQueued {
		q.head++
		q.dropped++
		begins = !q.warned
		q.warned = true
	}
	q.items = append(q.items, o)
	if q.head > 1024 && q.head*2 > len(q.items) {
		q.items = append(q.items[:0:0], q.items[q.head:]...)
		q.head = 0
	}
	return begins
}

// peek returns the oldest item without removing it.
func (q *queue) peek() (outgoing, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.items) {
		return outgoing{}, false
	}
	return q.items[q.head], true
}

// pop removes o, if it is still the oldest (a drop may have removed it).
func (q *queue) pop(o outgoing) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head < len(q.items) && q.items[q.head].msgID == o.msgID {
		q.items[q.head] = outgoing{}
		q.head++
	}
	if q.head == len(q.items) {
		q.items, q.head, q.warned = q.items[:0], 0, false
	}
}

// len is how many wait, and how many were dropped since start.
func (q *queue) len() (int, uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) - q.head, q.dropped
}
