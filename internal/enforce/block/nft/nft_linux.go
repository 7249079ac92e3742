package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/portsentry-go/portsentry/internal/enforce/block"
)

// Blocker bans addresses through nftables. It is safe for concurrent use.
type Blocker struct {
	// mu serializes the operations that talk to the kernel and guards c,
	// allow and updates. Add and Delete never take it: a List of 100 000
	// bans takes the kernel half a second, and the daemon's decisions must
	// not wait for it.
	mu sync.Mutex
	c  conn
	// dial replaces c after a batch could not be queued whole, so that
	// half a batch is never sent with the next one.
	dial func() (conn, error)
	l    *layout
	// bufs is what the batch about to be sent needs, for kernelConn's
	// socket options; nil with a fake connection.
	bufs  *atomic.Pointer[bufSizes]
	allow allowList

	// qmu guards queue, index and closed (written with mu held too, so
	// either lock lets it be read).
	qmu sync.Mutex
	// queue holds what Add and Delete asked for since the last Commit,
	// one entry per address (index finds it), the last word winning.
	queue  []op
	index  map[netip.Addr]int
	closed bool
	// updates is true when the kernel replaces an element's timeout when
	// the element is added again (see probeUpdates).
	updates bool
	// link is this host's IPv6 networks (SetLink), where bans are of
	// single addresses even with Options.Prefix6; guarded by qmu.
	link []netip.Prefix
}

// key is what the ban sets keep a ban of addr under: addr, or with
// Options.Prefix6 the first address of its prefix, unless addr is on one
// of this host's own networks. Called with qmu held.
func (b *Blocker) key(addr netip.Addr) netip.Addr {
	if !addr.Is6() || b.l.prefix6 >= 128 {
		return addr
	}
	for _, p := range b.link {
		if p.Contains(addr) {
			return addr
		}
	}
	return netip.PrefixFrom(addr, b.l.prefix6).Masked().Addr()
}

// SetLink replaces the list of this host's IPv6 networks (link6): a
// source there is banned alone, never with its whole prefix, so that a
// scanner on the LAN does not take the LAN with it. Only of use with
// Options.Prefix6; IPv4 prefixes are ignored.
func (b *Blocker) SetLink(prefixes []netip.Prefix) error {
	var v6 []netip.Prefix
	for _, p := range prefixes {
		if p.IsValid() && p.Addr().Is6() && !p.Addr().Is4In6() {
			v6 = append(v6, p.Masked())
		}
	}
	al := newAllowList(v6)
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 2*len(al.v6) + 2
	err := b.batch("set link", 32*n+64*1024, n/chunk+4, func(c conn) error {
		c.FlushSet(b.l.link6)
		return addIntervals(c, b.l.link6, intervals(al.spans(false)))
	})
	if err != nil {
		return err
	}
	b.qmu.Lock()
	b.link = v6
	b.qmu.Unlock()
	return nil
}

// op is the queued intent for one address: banned for ttl, or not banned.
type op struct {
	addr netip.Addr
	ban  bool
	ttl  time.Duration
}

var _ block.Trapper = (*Blocker)(nil)

// errClosed is returned by every method called after Close.
var errClosed = fmt.Errorf("nft: blocker is closed: %w", net.ErrClosed)

// New connects to nftables and creates, idempotently and in one batch, the
// table described in the package documentation. A table left by an earlier
// run keeps its bans and its never-ban list; its chains are rebuilt, so the
// trap is off until SetTrap.
//
// When nftables cannot be used here (no nf_tables or netlink support in the
// kernel, a missing expression such as fib), the error wraps
// block.ErrUnavailable, so that detection can try the next mechanism.
// Without CAP_NET_ADMIN the error wraps os.ErrPermission instead.
func New(o Options) (*Blocker, error) {
	return newIn(o, 0)
}

// newIn is New in the network namespace netnsFD (0: the caller's own); the
// real-kernel tests use it to stay out of the host's ruleset.
func newIn(o Options, netnsFD int) (*Blocker, error) {
	bufs := new(atomic.Pointer[bufSizes])
	dial := func() (conn, error) { return kernelConn(netnsFD, bufs) }
	c, err := dial()
	if err != nil {
		return nil, classify("connect", err, true)
	}
	return open(o, c, dial, bufs)
}

// open does New's work on a given connection.
func open(o Options, c conn, dial func() (conn, error), bufs *atomic.Pointer[bufSizes]) (*Blocker, error) {
	o = o.withDefaults()
	// NFT_NAME_MAXLEN is 256 with the NUL; the kernel would say EINVAL.
	if len(o.Table) > 255 || strings.IndexByte(o.Table, 0) >= 0 {
		return nil, fmt.Errorf("nft: bad table name %q", o.Table)
	}
	if o.Priority < math.MinInt32 || o.Priority > math.MaxInt32 {
		return nil, fmt.Errorf("nft: priority %d out of range", o.Priority)
	}
	if o.MaxBans > math.MaxUint32 {
		return nil, fmt.Errorf("nft: MaxBans %d out of range", o.MaxBans)
	}
	if o.MaxPeers > math.MaxUint32 {
		return nil, fmt.Errorf("nft: MaxPeers %d out of range", o.MaxPeers)
	}
	b := &Blocker{c: c, dial: dial, l: newLayout(o), bufs: bufs}
	// The kernel cannot move a base chain to another hook or priority
	// (EOPNOTSUPP), so a base chain left by a run with another Priority
	// is deleted and created anew, in the same batch; a forward chain
	// left by a run without InputOnly is deleted when InputOnly is set.
	fwd := &nftables.Chain{Table: b.l.table, Name: chainForward}
	recreateIn, _ := stale(c, b.l.input)
	recreateFwd, oldFwd := stale(c, b.l.forward)
	recreatePub, _ := stale(c, b.l.publish)
	if b.l.forward == nil {
		_, err := c.ListChain(b.l.table, chainForward)
		oldFwd = err == nil
	}
	err := b.batch("create table", 0, 0, func(c conn) error {
		l := b.l
		c.AddTable(l.table)
		for _, s := range l.sets() {
			if err := c.AddSet(s, nil); err != nil {
				return err
			}
		}
		if recreateIn {
			c.FlushChain(l.input)
			c.DelChain(l.input)
		}
		if oldFwd && (recreateFwd || l.forward == nil) {
			c.FlushChain(fwd)
			c.DelChain(fwd)
		}
		if recreatePub {
			c.FlushChain(l.publish)
			c.DelChain(l.publish)
		}
		c.AddChain(l.input)
		c.AddChain(l.trap)
		c.AddChain(l.publish)
		if l.forward != nil {
			c.AddChain(l.forward)
			c.FlushChain(l.forward)
		}
		// Rebuild the rules rather than append to an old run's: flushing
		// and refilling in the same batch leaves no moment without them.
		c.FlushChain(l.input)
		c.FlushChain(l.trap)
		c.FlushChain(l.publish)
		for _, s := range []*nftables.Set{l.trapTCP, l.trapUDP, l.trapIfs} {
			c.FlushSet(s)
		}
		for _, r := range l.baseRules() {
			c.AddRule(r)
		}
		if l.forward != nil {
			for _, r := range l.forwardRules() {
				c.AddRule(r)
			}
		}
		for _, r := range l.publishRules(publishTTL(nil)) {
			c.AddRule(r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if b.updates, err = b.probeUpdates(); err != nil {
		return nil, err
	}
	return b, nil
}

// stale reports whether the kernel holds a chain named as want (exists),
// and whether it must be deleted and created anew to become want: it is
// hooked elsewhere or at another priority. A nil want is never stale.
func stale(c conn, want *nftables.Chain) (recreate, exists bool) {
	if want == nil {
		return false, false
	}
	old, err := c.ListChain(want.Table, want.Name)
	if err != nil {
		return false, false
	}
	return old.Hooknum == nil || old.Priority == nil || old.Type != want.Type ||
		*old.Hooknum != *want.Hooknum || *old.Priority != *want.Priority, true
}

// Paths says which ways into this host the bans cover: always "input"
// (traffic for this host's own sockets), and "forward" (traffic it
// forwards: routed, or for a container published by DNAT) unless
// Options.InputOnly.
func (b *Blocker) Paths() block.Paths {
	return block.Paths{Input: true, Forward: b.l.forward != nil}
}

// probeSet is a scratch set that probeUpdates creates and deletes.
const probeSet = "probe"

// probeUpdates finds out whether adding an element that is already in a
// timeout set replaces its timeout and restarts its clock, permanent
// included (recent kernels do; older ones keep the old element as it
// was). Then Commit can ban or
// re-ban an address with one element operation instead of three, which is
// what keeps restoring 100 000 bans under a second.
//
// It asks the kernel rather than its version: the behaviour is what
// matters, and distribution kernels backport. It works on a set of its
// own, so the real bans are never touched.
func (b *Blocker) probeUpdates() (bool, error) {
	s := &nftables.Set{Table: b.l.table, ID: 8, Name: probeSet, KeyType: nftables.TypeIPAddr, HasTimeout: true}
	k1, k2 := []byte{192, 0, 2, 1}, []byte{192, 0, 2, 2}
	err := b.batch("probe", 0, 0, func(c conn) error {
		if err := c.AddSet(s, nil); err != nil {
			return err
		}
		c.FlushSet(s) // an earlier run may have died before deleting it
		return c.SetAddElements(s, []nftables.SetElement{{Key: k1, Timeout: time.Hour}, {Key: k2, Timeout: time.Hour}})
	})
	if err != nil {
		return false, err
	}
	err = b.batch("probe", 0, 0, func(c conn) error {
		return c.SetAddElements(s, []nftables.SetElement{{Key: k1, Timeout: 2 * time.Hour}, {Key: k2}})
	})
	if err != nil {
		return false, err
	}
	elems, err := b.c.GetSetElements(s)
	if err != nil {
		return false, classify("probe", err, false)
	}
	updated := 0
	for _, e := range elems {
		switch {
		case slices.Equal(e.Key, k1) && e.Timeout == 2*time.Hour && e.Expires > time.Hour:
			updated++
		case slices.Equal(e.Key, k2) && e.Timeout == 0 && e.Expires == 0:
			updated++
		}
	}
	err = b.batch("probe", 0, 0, func(c conn) error {
		c.DelSet(s)
		return nil
	})
	return updated == 2, err
}

// Add queues a ban of addr for ttl (0: permanent, in the same timeout set,
// as an element without a timeout). Adding a banned address again replaces
// its TTL. A negative ttl is a ban that is already over: it is queued as a
// Delete. An IPv4-mapped address is banned as IPv4; an invalid address is
// ignored.
//
// An address inside an allowed prefix (SetAllowed) is never banned: Commit
// drops it silently, as the daemon's ignore list would have, so a bad
// restore file cannot lock out a host the admin trusts.
func (b *Blocker) Add(addr netip.Addr, ttl time.Duration) {
	if ttl < 0 {
		b.Delete(addr)
		return
	}
	b.enqueue(op{addr: addr, ban: true, ttl: ttl})
}

// Delete queues the removal of addr's ban; removing an address that is not
// banned is not an error.
func (b *Blocker) Delete(addr netip.Addr) {
	b.enqueue(op{addr: addr})
}

func (b *Blocker) enqueue(o op) {
	if !o.addr.IsValid() {
		return
	}
	o.addr = o.addr.Unmap().WithZone("")
	b.qmu.Lock()
	o.addr = b.key(o.addr)
	defer b.qmu.Unlock()
	if b.closed {
		return
	}
	if i, ok := b.index[o.addr]; ok {
		b.queue[i] = o
		return
	}
	if b.index == nil {
		b.index = make(map[netip.Addr]int)
	}
	b.index[o.addr] = len(b.queue)
	b.queue = append(b.queue, o)
}

// chunk bounds the elements of one netlink message: a message's element
// list is one netlink attribute, whose length field is 16 bits. 1024 IPv6
// elements with timeouts take 40 KiB, safely under 64 KiB.
const chunk = 1024

// Commit applies the queued bans and removals in one netlink batch: the
// kernel applies all of it or none of it. The queue is emptied either way.
//
// Deleting an element that is not there fails the whole batch, so a
// removal is two operations in the batch: add the element (a no-op when it
// is there), then delete it. A ban is one operation, an add with the TTL,
// where the kernel replaces the timeout of an element that is added again
// (probeUpdates); elsewhere it is three: add, delete, add with the TTL.
// Either way it is one transaction.
func (b *Blocker) Commit() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.qmu.Lock()
	q := b.queue
	b.queue, b.index = nil, nil
	b.qmu.Unlock()
	if b.closed {
		return errClosed
	}
	// touch: added then deleted; ban: added with the TTL.
	var touch4, touch6, ban4, ban6 []nftables.SetElement
	for _, o := range q {
		if o.ban && b.allow.contains(o.addr) {
			continue
		}
		key := o.addr.AsSlice()
		touch, ban := &touch6, &ban6
		if o.addr.Is4() {
			touch, ban = &touch4, &ban4
		}
		if !o.ban || !b.updates {
			*touch = append(*touch, nftables.SetElement{Key: key})
		}
		if o.ban {
			*ban = append(*ban, nftables.SetElement{Key: key, Timeout: kernelTTL(o.ttl)})
		}
	}
	nt, nb := len(touch4)+len(touch6), len(ban4)+len(ban6)
	if nt+nb == 0 {
		return nil
	}
	// Netlink bytes per element: at most 40 (IPv6 with a timeout); the
	// rest is per-message overhead.
	size := 40*(2*nt+nb) + 64*1024
	msgs := (2*nt+nb)/chunk + 6
	l := b.l
	return b.batch("commit", size, msgs, func(c conn) error {
		steps := []struct {
			f     func(*nftables.Set, []nftables.SetElement) error
			set   *nftables.Set
			elems []nftables.SetElement
		}{
			{c.SetAddElements, l.ban4, touch4},
			{c.SetAddElements, l.ban6, touch6},
			{c.SetDeleteElements, l.ban4, touch4},
			{c.SetDeleteElements, l.ban6, touch6},
			{c.SetAddElements, l.ban4, ban4},
			{c.SetAddElements, l.ban6, ban6},
		}
		for _, s := range steps {
			for e := range slices.Chunk(s.elems, chunk) {
				if err := s.f(s.set, e); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// List reports the bans the kernel holds now, IPv4 first, each family
// sorted, with their remaining time; elements the trap added are included.
// A ban whose remaining time rounds to nothing is reported with 1 ms rather
// than 0, which would read as permanent.
//
// The kernel lists a set in pieces, walking its hash table again for each
// piece and skipping what it already sent; if the table is resized in
// between (it grows in the background after a large Commit), the pieces
// overlap and as many bans are missed as are repeated. List reads the set
// again when it sees a repeat, up to listTries times, and otherwise
// returns what it got without the repeats.
func (b *Blocker) List() ([]block.Entry, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errClosed
	}
	if b.bufs != nil {
		b.bufs.Store(&bufSizes{bigDump: true})
		defer b.bufs.Store(nil)
	}
	var out []block.Entry
	for _, s := range []*nftables.Set{b.l.ban4, b.l.ban6} {
		var part []block.Entry
		for try := 1; ; try++ {
			elems, err := b.c.GetSetElements(s)
			if err != nil {
				return nil, classify("list "+s.Name, err, false)
			}
			var repeats bool
			part, repeats = entriesOf(elems)
			if !repeats || try == listTries {
				break
			}
		}
		out = append(out, part...)
	}
	return out, nil
}

// listTries bounds List's reads of one set.
const listTries = 4

// entriesOf converts set elements to sorted entries without repeats, and
// says whether there were repeats.
func entriesOf(elems []nftables.SetElement) ([]block.Entry, bool) {
	out := make([]block.Entry, 0, len(elems))
	for _, e := range elems {
		a, ok := netip.AddrFromSlice(e.Key)
		if !ok {
			continue
		}
		ttl := e.Expires
		if ttl <= 0 && e.Timeout > 0 {
			ttl = time.Millisecond
		}
		out = append(out, block.Entry{Addr: a.Unmap(), TTL: ttl})
	}
	slices.SortFunc(out, func(x, y block.Entry) int { return x.Addr.Compare(y.Addr) })
	n := len(out)
	out = slices.CompactFunc(out, func(x, y block.Entry) bool { return x.Addr == y.Addr })
	return out, len(out) != n
}

// Close releases the blocker. The table, its bans, its never-ban list and
// its trap stay in the kernel: bans outlive the daemon. Queued changes
// that were not committed are dropped.
func (b *Blocker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.qmu.Lock()
	defer b.qmu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	b.queue, b.index = nil, nil
	return b.c.CloseLasting()
}

// SetAllowed replaces the never-ban list, in the kernel (allow4 and allow6,
// flushed and refilled in one batch) and for Add. Sources in it are never
// dropped nor trapped: the allow rules come before the ban rules, so even a
// ban already in the kernel stops applying at once. Prefixes may overlap;
// they are normalized as the daemon's ignore list does (host bits masked
// off, IPv4-mapped prefixes turned into IPv4) and merged, because the
// kernel refuses overlapping intervals.
func (b *Blocker) SetAllowed(prefixes []netip.Prefix) error {
	al := newAllowList(prefixes)
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 2*(len(al.v4)+len(al.v6)) + 2
	err := b.batch("set allowed", 32*n+64*1024, n/chunk+4, func(c conn) error {
		for _, x := range []struct {
			set   *nftables.Set
			spans []span
		}{{b.l.allow4, al.spans(true)}, {b.l.allow6, al.spans(false)}} {
			c.FlushSet(x.set)
			if err := addIntervals(c, x.set, intervals(x.spans)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	b.allow = al
	return nil
}

func addIntervals(c conn, s *nftables.Set, ivs []interval) error {
	elems := make([]nftables.SetElement, len(ivs))
	for i, iv := range ivs {
		elems[i] = nftables.SetElement{Key: iv.key, IntervalEnd: iv.end}
	}
	for e := range slices.Chunk(elems, chunk) {
		if err := c.SetAddElements(s, e); err != nil {
			return err
		}
	}
	return nil
}

// SetTrap installs t as the in-kernel trap, replacing the previous one in
// one batch (rules and port sets together, so no packet meets half of
// each); nil removes it. A trap with no TCP and no UDP port is no trap.
//
// If the kernel lacks the socket expression (nft_socket), the error wraps
// block.ErrUnavailable: the daemon can then trap from user space instead.
func (b *Blocker) SetTrap(t *Trap) error {
	if t != nil {
		if t.TTL < 0 {
			return fmt.Errorf("nft: set trap: negative TTL %v", t.TTL)
		}
		for _, n := range t.Interfaces {
			// IFNAMSIZ is 16 with the NUL.
			if n == "" || len(n) >= unix.IFNAMSIZ || strings.IndexByte(n, 0) >= 0 {
				return fmt.Errorf("nft: set trap: bad interface name %q", n)
			}
		}
		if t.TCP.Len() == 0 && t.UDP.Len() == 0 {
			t = nil
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.l
	err := b.batch("set trap", 0, 0, func(c conn) error {
		c.FlushChain(l.trap)
		for _, s := range []*nftables.Set{l.trapTCP, l.trapUDP, l.trapIfs} {
			c.FlushSet(s)
		}
		// Published ports are remembered for the trap's grace.
		c.FlushChain(l.publish)
		for _, r := range l.publishRules(publishTTL(t)) {
			c.AddRule(r)
		}
		if t == nil {
			return nil
		}
		if err := addIntervals(c, l.trapTCP, intervals(portSpans(&t.TCP))); err != nil {
			return err
		}
		if err := addIntervals(c, l.trapUDP, intervals(portSpans(&t.UDP))); err != nil {
			return err
		}
		var names []nftables.SetElement
		seen := map[string]bool{}
		for _, n := range t.Interfaces {
			if !seen[n] {
				seen[n] = true
				names = append(names, nftables.SetElement{Key: ifname(n)})
			}
		}
		if len(names) > 0 {
			if err := c.SetAddElements(l.trapIfs, names); err != nil {
				return err
			}
		}
		for _, r := range l.trapRules(t) {
			c.AddRule(r)
		}
		return nil
	})
	if err != nil && errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%w (is nft_socket in the kernel?): %w", block.ErrUnavailable, err)
	}
	return err
}

// Stats reads the kernel's counters: packets dropped by the ban rules and
// probes caught by the trap rules.
func (b *Blocker) Stats() (Stats, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return Stats{}, errClosed
	}
	var st Stats
	for _, ch := range []*nftables.Chain{b.l.input, b.l.trap, b.l.forward} {
		if ch == nil {
			continue
		}
		rules, err := b.c.GetRules(b.l.table, ch)
		if err != nil {
			return Stats{}, classify("stats", err, false)
		}
		for _, r := range rules {
			// Rules are told apart by what they do, not by position or
			// comment: a counter next to a dynset is a trap rule, next to
			// a lookup in a ban set a ban rule, in a peer set the forged
			// rule, in a served set a grace rule, in a port set without a
			// dynset the trap's rule for a full ban set; a fib lookup of
			// the output interface is the reverse-path check.
			var cnt *expr.Counter
			trap, ban, forged, ports, served, fib := false, false, false, false, false, false
			for _, e := range r.Exprs {
				switch e := e.(type) {
				case *expr.Counter:
					cnt = e
				case *expr.Dynset:
					trap = true
				case *expr.Fib:
					fib = fib || e.ResultOIF
				case *expr.Lookup:
					switch e.SetName {
					case setBan4, setBan6:
						ban = true
					case setPeer4, setPeer6:
						forged = true
					case setTrapTCP, setTrapUDP:
						ports = true
					case setServedTCP, setServedUDP:
						served = true
					}
				}
			}
			var c *Counter
			switch {
			case cnt == nil:
			case trap:
				c = &st.Trapped
			case ban:
				c = &st.Banned
			case forged:
				c = &st.Forged
			case served:
				c = &st.Served
			case fib:
				c = &st.Unrouted
			case ports:
				c = &st.Unbanned
			}
			if c != nil {
				c.Packets += cnt.Packets
				c.Bytes += cnt.Bytes
			}
			if c == &st.Banned && ch == b.l.forward {
				st.BannedForward.Packets += cnt.Packets
				st.BannedForward.Bytes += cnt.Bytes
			}
		}
	}
	return st, nil
}

// Peers lists the trap's peers (Trap.Peers) with the hop counts their
// packets arrived with, from the kernel's hop sets, sorted by address.
func (b *Blocker) Peers() ([]block.Peer, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errClosed
	}
	var out []block.Peer
	for _, s := range []*nftables.Set{b.l.hop4, b.l.hop6} {
		elems, err := b.c.GetSetElements(s)
		if err != nil {
			return nil, classify("list "+s.Name, err, false)
		}
		out = append(out, peersOf(elems)...)
	}
	return out, nil
}

// Served lists the served sets (Trap.Grace).
func (b *Blocker) Served() ([]block.Served, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errClosed
	}
	var out []block.Served
	for _, s := range []*nftables.Set{b.l.servedTCP, b.l.servedUDP} {
		elems, err := b.c.GetSetElements(s)
		if err != nil {
			return nil, classify("list "+s.Name, err, false)
		}
		out = append(out, servedOf(elems, s == b.l.servedUDP)...)
	}
	return out, nil
}

// servedOf turns served-set elements (a port, big-endian) into ports.
func servedOf(elems []nftables.SetElement, udp bool) []block.Served {
	out := make([]block.Served, 0, len(elems))
	for _, e := range elems {
		if len(e.Key) != 2 {
			continue
		}
		out = append(out, block.Served{UDP: udp, Port: binary.BigEndian.Uint16(e.Key), Left: e.Expires})
	}
	slices.SortFunc(out, func(x, y block.Served) int { return int(x.Port) - int(y.Port) })
	return out
}

// peersOf turns hop-set elements (address, then the hop count in the
// first byte of a 4-byte word) into peers, one per address.
func peersOf(elems []nftables.SetElement) []block.Peer {
	byAddr := map[netip.Addr][]uint8{}
	for _, e := range elems {
		n := len(e.Key) - 4
		if n != 4 && n != 16 {
			continue
		}
		a, _ := netip.AddrFromSlice(e.Key[:n])
		a = a.Unmap()
		if !slices.Contains(byAddr[a], e.Key[n]) {
			byAddr[a] = append(byAddr[a], e.Key[n])
		}
	}
	out := make([]block.Peer, 0, len(byAddr))
	for a, hops := range byAddr {
		slices.Sort(hops)
		out = append(out, block.Peer{Addr: a, Hops: hops})
	}
	slices.SortFunc(out, func(x, y block.Peer) int { return x.Addr.Compare(y.Addr) })
	return out
}

// batch queues one batch with fill and sends it. Called with b.mu held.
// size is the batch's approximate size in bytes and msgs its number of
// messages (0: small).
func (b *Blocker) batch(what string, size, msgs int, fill func(c conn) error) error {
	if b.closed {
		return errClosed
	}
	if err := fill(b.c); err != nil {
		// Part of the batch may sit in the connection's queue: drop the
		// connection so the next batch does not carry it.
		b.redial()
		return fmt.Errorf("nft: %s: %w", what, err)
	}
	if b.bufs != nil && (size > 0 || msgs > 0) {
		// An acknowledgement takes about 1 KiB of receive buffer (the
		// kernel counts the buffer's true size, not the 36-byte message).
		b.bufs.Store(&bufSizes{snd: size, rcv: 2048 * msgs})
		defer b.bufs.Store(nil)
	}
	err := b.c.Flush()
	if err != nil {
		// The library keeps an encoding error for good once it has one;
		// a new connection object starts clean.
		b.redial()
	}
	return classify(what, err, what == "create table")
}

// redial replaces the connection; on failure the old one stays, and the
// next operation reports what is wrong.
func (b *Blocker) redial() {
	if c, err := b.dial(); err == nil {
		b.c = c
	}
}

// classify wraps err with the operation's name, and with
// block.ErrUnavailable when it says nftables cannot work on this host.
// inNew widens that to ENOENT, which while creating the table means the
// kernel lacks an expression type (fib, ct) rather than a missing object.
func classify(what string, err error, inNew bool) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, unix.EPROTONOSUPPORT), errors.Is(err, unix.EAFNOSUPPORT),
		errors.Is(err, unix.EOPNOTSUPP), inNew && errors.Is(err, unix.ENOENT):
		return fmt.Errorf("nft: %s: %w: %w", what, block.ErrUnavailable, err)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("nft: %s: needs CAP_NET_ADMIN (run as root): %w", what, err)
	case errors.Is(err, unix.ENFILE):
		return fmt.Errorf("nft: %s: ban set full (Options.MaxBans): %w", what, err)
	}
	return fmt.Errorf("nft: %s: %w", what, err)
}
