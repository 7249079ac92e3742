package enforce

import (
	"errors"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/portsentry-go/portsentry/internal/enforce/block"
)

// fakeBlocker is a block.Trapper in memory: it applies a batch at Commit,
// as the kernel would, and remembers what it was told.
type fakeBlocker struct {
	mu      sync.Mutex
	held    map[netip.Addr]time.Duration
	queue   []func()
	deletes []netip.Addr // every Delete committed, in order
	commits int
	fail    error // Commit's error, when set
	allowed []netip.Prefix
	trap    *block.Trap
	traps   bool // false: a plain Blocker (iptables, routes)
	peers   []block.Peer
	served  []block.Served
	// peerGate, when set, holds every Peers call until it is closed.
	peerGate chan struct{}
	reads    int // calls of Peers
	// servedReads counts calls of Served.
	servedReads int
}

func newFake(traps bool) *fakeBlocker {
	return &fakeBlocker{held: map[netip.Addr]time.Duration{}, traps: traps}
}

func (f *fakeBlocker) Add(a netip.Addr, ttl time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queue = append(f.queue, func() { f.held[a] = ttl })
}

func (f *fakeBlocker) Delete(a netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queue = append(f.queue, func() { delete(f.held, a); f.deletes = append(f.deletes, a) })
}

func (f *fakeBlocker) Commit() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := f.queue
	f.queue = nil
	if f.fail != nil {
		return f.fail
	}
	for _, op := range q {
		op()
	}
	f.commits++
	return nil
}

func (f *fakeBlocker) List() ([]block.Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var es []block.Entry
	for a, ttl := range f.held {
		es = append(es, block.Entry{Addr: a, TTL: ttl})
	}
	return es, nil
}

func (f *fakeBlocker) Close() error { return nil }

func (f *fakeBlocker) SetAllowed(p []netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.allowed = slices.Clone(p)
	return nil
}

func (f *fakeBlocker) SetTrap(t *block.Trap) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.trap = t
	return nil
}

func (f *fakeBlocker) Stats() (block.Stats, error) {
	return block.Stats{}, errors.New("fake: no counters")
}

func (f *fakeBlocker) Peers() ([]block.Peer, error) {
	f.mu.Lock()
	gate := f.peerGate
	f.mu.Unlock()
	if gate != nil {
		<-gate // a slow kernel
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	return slices.Clone(f.peers), nil
}

func (f *fakeBlocker) Served() ([]block.Served, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.servedReads++
	return slices.Clone(f.served), nil
}

// publish makes the kernel remember ports as served from now on, as it
// does for the ports it DNATs.
func (f *fakeBlocker) publish(ss ...block.Served) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.served = ss
}

// setPeers makes the kernel know these peers from now on.
func (f *fakeBlocker) setPeers(ps ...block.Peer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.peers = ps
}

// ttl reports whether a is held, and for how long.
func (f *fakeBlocker) ttl(a netip.Addr) (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ttl, ok := f.held[a]
	return ttl, ok
}

// plain hides the trap methods: a blocker like iptables or routes.
type plain struct{ f *fakeBlocker }

func (p plain) Add(a netip.Addr, ttl time.Duration) { p.f.Add(a, ttl) }
func (p plain) Delete(a netip.Addr)                 { p.f.Delete(a) }
func (p plain) Commit() error                       { return p.f.Commit() }
func (p plain) List() ([]block.Entry, error)        { return p.f.List() }
func (p plain) Close() error                        { return nil }

// asBlocker is f as the jail sees it: a Trapper, or only a Blocker.
func (f *fakeBlocker) asBlocker() block.Blocker {
	if f.traps {
		return f
	}
	return plain{f}
}

var errFake = errors.New("fake: refused")
