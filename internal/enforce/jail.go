package enforce

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/portsentry-go/portsentry/internal/enforce/bans"
	"github.com/portsentry-go/portsentry/internal/enforce/block"
	"github.com/portsentry-go/portsentry/internal/enforce/block/detect"
	"github.com/portsentry-go/portsentry/internal/enforce/block/iptables"
	"github.com/portsentry-go/portsentry/internal/enforce/block/nft"
	"github.com/portsentry-go/portsentry/internal/enforce/block/route"
	"github.com/portsentry-go/portsentry/internal/report/logline"
)

// Jail keeps the bans: their record (with lifetime, persisted), the native
// blocker that applies them, and, with a Trapper, the kernel's own
// never-ban list and trap. With BLOCKER="command" there is no native
// blocker: KILL_ROUTE blocks and UNKILL_ROUTE lifts. Its methods are safe
// for concurrent use.
type Jail struct {
	log     *slog.Logger
	store   *bans.Store
	asked   string        // BLOCKER as configured ("auto", …)
	kind    string        // "nftables", "iptables", "route", or "command"
	blocker block.Blocker // nil with "command"
	trapper block.Trapper // blocker, when it traps; else nil
	// mu makes each Add/Delete + Commit one batch: responders and the
	// event loop both change bans.
	mu      sync.Mutex
	allowed []netip.Prefix // what the kernel's never-ban list holds now
	// prefix6 is how long an IPv6 ban's prefix is: 128 (an address)
	// unless the blocker bans prefixes (nftables, BAN_PREFIX6).
	prefix6 int
	// onLink reports addresses on this host's own networks, banned alone
	// whatever prefix6 says (set by the enforcer from its guard).
	onLink func(netip.Addr) bool
	// linker is the blocker, when it keeps this host's networks (nft).
	linker interface{ SetLink([]netip.Prefix) error }
}

// JailOptions choose the ban record and the blocker.
type JailOptions struct {
	Blocker string      // BLOCKER: "auto", "nftables", "iptables", "route" or "command"
	BanFile string      // BAN_FILE; "" keeps bans in memory only
	Policy  bans.Policy // BAN_TIME, BAN_TIME_MAX
	// Prefix6 is BAN_PREFIX6: an IPv6 ban covers this prefix, with
	// nftables (the other blockers ban single addresses).
	Prefix6 int
	// InputOnly is BAN_FORWARD="0": native bans cover traffic for this
	// host's own sockets only, not what it forwards (routes always
	// cover both).
	InputOnly bool
}

// openers are the native blockers, by kind.
func openers(o JailOptions) map[detect.Kind]func() (block.Blocker, error) {
	return map[detect.Kind]func() (block.Blocker, error){
		detect.NFTables: func() (block.Blocker, error) {
			return nft.New(nft.Options{Prefix6: o.Prefix6, InputOnly: o.InputOnly})
		},
		detect.IPTables: func() (block.Blocker, error) { return iptables.New(iptables.Options{InputOnly: o.InputOnly}) },
		detect.Route:    func() (block.Blocker, error) { return route.New(route.Options{}) },
	}
}

// OpenJail opens the ban file and the blocker o asks for ("auto": the
// first that works of nftables, iptables and routes).
func OpenJail(o JailOptions, log *slog.Logger) (*Jail, error) {
	store, err := bans.OpenOptions(o.BanFile, bans.Options{Policy: o.Policy})
	var corrupt *bans.CorruptError
	if errors.As(err, &corrupt) && store != nil {
		// Damaged lines are reported; the bans that could be read stand.
		log.Warn(logline.Warning(err.Error()))
	} else if err != nil {
		return nil, fmt.Errorf("ban file: %w", err)
	}
	if o.Blocker == "command" {
		return NewJail(store, "command", nil, log), nil
	}
	order := detect.DefaultOrder
	if o.Blocker != "auto" {
		order = []detect.Kind{detect.Kind(o.Blocker)}
	}
	b, kind, err := detect.Choose(order, openers(o))
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("BLOCKER=%q: %w", o.Blocker, err)
	}
	j := NewJail(store, string(kind), b, log)
	j.asked = o.Blocker
	if kind == detect.NFTables {
		j.setPrefix6(o.Prefix6)
	}
	return j, nil
}

// NewJail is a jail over store, applied by b (nil: commands apply bans).
// IPv6 bans are of single addresses until setPrefix6.
func NewJail(store *bans.Store, kind string, b block.Blocker, log *slog.Logger) *Jail {
	j := &Jail{log: log, store: store, asked: kind, kind: kind, blocker: b, prefix6: 128}
	j.trapper, _ = b.(block.Trapper)
	j.linker, _ = b.(interface{ SetLink([]netip.Prefix) error })
	return j
}

// setPrefix6 makes IPv6 bans cover prefixes of n bits (0 or 128: single
// addresses); the blocker must mask the same way.
func (j *Jail) setPrefix6(n int) {
	if n <= 0 || n > 128 {
		n = 128
	}
	j.prefix6 = n
}

// Key is the address a ban of addr is kept under: addr itself, or for
// IPv6 with prefix bans the first address of its prefix. The record, the
// blocker and the engine all use it, so a /64 is one source and one ban.
func (j *Jail) Key(addr netip.Addr) netip.Addr { return j.Cover(addr).Addr() }

// Cover is the prefix a ban of addr covers: addr alone, or its /64 (its
// BAN_PREFIX6 prefix) when Key keeps it under the prefix.
func (j *Jail) Cover(addr netip.Addr) netip.Prefix {
	addr = addr.Unmap()
	if addr.Is6() && j.prefix6 < 128 && (j.onLink == nil || !j.onLink(addr)) {
		return netip.PrefixFrom(addr, j.prefix6).Masked()
	}
	return netip.PrefixFrom(addr, addr.BitLen())
}

// SetLinks tells the blocker this host's IPv6 networks, where bans are of
// single addresses (the kernel trap keys its bans the same way as Key).
func (j *Jail) SetLinks(prefixes []netip.Prefix) error {
	if j.linker == nil || j.prefix6 >= 128 {
		return nil
	}
	return j.linker.SetLink(prefixes)
}

// widen makes p cover at least the bans it touches: an IPv6 prefix longer
// than the ban prefix (an address inside a banned /64) becomes that /64.
func (j *Jail) widen(p netip.Prefix) netip.Prefix {
	if p.Addr().Is6() && p.Bits() > j.prefix6 && (j.onLink == nil || !j.onLink(p.Addr())) {
		return netip.PrefixFrom(p.Addr(), j.prefix6).Masked()
	}
	return p
}

// Kind names what applies bans: "nftables", "iptables", "route" or "command".
func (j *Jail) Kind() string { return j.kind }

// Native reports whether a native blocker applies bans.
func (j *Jail) Native() bool { return j.blocker != nil }

// Ban records a ban of addr and applies it natively: the Native step of a
// response. A ban the firewall refused is taken back from the record.
func (j *Jail) Ban(addr netip.Addr, reason string, port uint16, proto string) (string, error) {
	addr = j.Key(addr)
	b := j.store.Ban(addr, reason, port, proto)
	if err := j.apply(addr, b.Remaining(time.Now())); err != nil {
		j.store.Unban(netip.PrefixFrom(b.Addr, b.Addr.BitLen()))
		return "", err
	}
	// On disk before the log says blocked: a kill -9 right after must not
	// lose it.
	j.Sync()
	return Describe(b), nil
}

// Record records a ban that a command (KILL_ROUTE) applied: the record
// gives it its lifetime (UNKILL_ROUTE lifts it) and lists it.
func (j *Jail) Record(addr netip.Addr, reason string, port uint16, proto string) {
	j.store.Ban(j.Key(addr), reason, port, proto)
}

// Import records a ban from elsewhere (bans.Store.Import) and applies it
// natively when it is new or ends later than the ban in force; fresh
// tells a new ban. A new ban the firewall refused is taken back from the
// record. The ban file is written at the next Sync (within a second):
// the origin still holds the ban after a crash, and sends it again.
func (j *Jail) Import(addr netip.Addr, d time.Duration, reason, origin string) (b bans.Ban, fresh bool, err error) {
	addr = j.Key(addr)
	_, held := j.store.Get(addr)
	b, changed := j.store.Import(addr, d, reason, origin)
	if !changed {
		return b, false, nil
	}
	if err := j.apply(addr, b.Remaining(time.Now())); err != nil {
		if !held {
			j.store.Unban(netip.PrefixFrom(b.Addr, b.Addr.BitLen()))
		}
		return bans.Ban{}, false, err
	}
	return j.withPrefix([]bans.Ban{b})[0], !held, nil
}

// BanFor is a ban made by hand (portsentry block), for d (0: permanent).
func (j *Jail) BanFor(addr netip.Addr, d time.Duration, reason string) (bans.Ban, error) {
	addr = j.Key(addr)
	b := j.store.BanFor(addr, d, reason)
	if j.Native() {
		if err := j.apply(addr, b.Remaining(time.Now())); err != nil {
			j.store.Unban(netip.PrefixFrom(b.Addr, b.Addr.BitLen()))
			return bans.Ban{}, err
		}
	}
	return j.withPrefix([]bans.Ban{b})[0], nil
}

func (j *Jail) apply(addr netip.Addr, ttl time.Duration) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.blocker.Add(addr, ttl)
	return j.blocker.Commit()
}

// Over reports whether addr's ban ended by t: its record still holds it
// until the next Expire.
func (j *Jail) Over(addr netip.Addr, t time.Time) bool {
	b, ok := j.store.Get(j.Key(addr))
	return ok && !b.Permanent() && !t.Before(b.Expires)
}

// Get returns addr's ban in force, with Bits set when it covers a prefix.
func (j *Jail) Get(addr netip.Addr) (bans.Ban, bool) {
	b, ok := j.store.Get(j.Key(addr))
	if !ok {
		return b, false
	}
	return j.withPrefix([]bans.Ban{b})[0], true
}

// Active lists the bans in force.
func (j *Jail) Active() []bans.Ban { return j.withPrefix(j.store.Active()) }

// withPrefix sets Bits on IPv6 bans that cover a prefix.
func (j *Jail) withPrefix(bs []bans.Ban) []bans.Ban {
	if j.prefix6 >= 128 {
		return bs
	}
	for i := range bs {
		if a := bs[i].Addr; a.Is6() && (j.onLink == nil || !j.onLink(a)) {
			bs[i].Bits = j.prefix6
		}
	}
	return bs
}

// Len is the number of bans in force.
func (j *Jail) Len() int { return j.store.Len() }

// NextExpiry is when the next ban ends.
func (j *Jail) NextExpiry() (time.Time, bool) { return j.store.NextExpiry() }

// Expire takes the bans whose time has come out of the record.
func (j *Jail) Expire() []bans.Ban { return j.store.Expire() }

// Unban takes every ban inside p out of the record and returns them.
func (j *Jail) Unban(p netip.Prefix) []bans.Ban { return j.withPrefix(j.store.Unban(j.widen(p))) }

// KernelOnly is the reason unblock's reply gives for a ban that only the
// native blocker held: the kernel trap banned the address in the packet
// path, and the daemon never recorded it (the probe's event was lost).
const KernelOnly = "kernel only: banned by the kernel trap, never recorded by the daemon"

// Held lists the bans the native blocker holds inside p (none without a
// native blocker). It reads the kernel's sets whole, so callers keep it
// off the event loop.
func (j *Jail) Held(p netip.Prefix) ([]block.Entry, error) {
	if !j.Native() {
		return nil, nil
	}
	all, err := j.blocker.List()
	if err != nil {
		return nil, err
	}
	p = j.widen(p)
	var in []block.Entry
	for _, e := range all {
		if p.Contains(e.Addr.Unmap()) {
			in = append(in, e)
		}
	}
	return in, nil
}

// Unrecorded returns, as bans with reason KernelOnly, the entries of held
// that neither the record nor lifted (bans just taken out of it) knows.
// Lift then removes them from the blocker like any other ban.
func (j *Jail) Unrecorded(held []block.Entry, lifted []bans.Ban) []bans.Ban {
	known := make(map[netip.Addr]bool, len(lifted))
	for _, b := range lifted {
		known[b.Addr] = true
	}
	now := time.Now()
	var out []bans.Ban
	for _, e := range held {
		a := e.Addr.Unmap()
		if known[a] {
			continue
		}
		if _, ok := j.store.Get(a); ok {
			continue
		}
		known[a] = true
		b := bans.Ban{Addr: a, Reason: KernelOnly}
		if e.TTL > 0 {
			b.Expires = now.Add(e.TTL)
		}
		out = append(out, b)
	}
	return j.withPrefix(out)
}

// Sync makes the ban file durable; a failure is logged (the bans hold in
// the firewall whatever the file says).
func (j *Jail) Sync() {
	if err := j.store.Sync(); err != nil {
		j.log.Error(logline.Error("writing the ban file: " + err.Error()))
	}
}

// Lift removes bans that the record no longer holds from the native
// blocker. Expired bans are left to a Trapper, whose kernel expires them
// itself: by the time the daemon's tick sees the expiry, the trap may
// already have banned the same scanner anew, and a Delete would lift that
// new ban.
func (j *Jail) Lift(bs []bans.Ban, expired bool) error {
	if !j.Native() || len(bs) == 0 || (expired && j.trapper != nil) {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, b := range bs {
		j.blocker.Delete(b.Addr)
	}
	return j.blocker.Commit()
}

// Restore puts every unexpired ban back in the firewall in one batch, and
// reconciles what the firewall holds with the record: a ban missing or with
// a stale lifetime is fixed, one the record does not know is removed (it
// was lifted while the daemon was down, or expired).
func (j *Jail) Restore() (restored, removed int, err error) {
	if !j.Native() {
		return 0, 0, nil
	}
	held, err := j.blocker.List()
	if err != nil {
		return 0, 0, err
	}
	now := time.Now()
	want := make(map[netip.Addr]time.Duration)
	for _, b := range j.store.Active() {
		// Keyed as the blocker keeps it: a ban recorded by address
		// before BAN_PREFIX6 covers its prefix now.
		k, ttl := j.Key(b.Addr), b.Remaining(now)
		if old, ok := want[k]; ok && (old == 0 || (ttl != 0 && old > ttl)) {
			ttl = old
		}
		want[k] = ttl
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	have := make(map[netip.Addr]time.Duration, len(held))
	for _, h := range held {
		have[h.Addr] = h.TTL
		if _, ok := want[h.Addr]; !ok {
			j.blocker.Delete(h.Addr)
			removed++
		}
	}
	for addr, ttl := range want {
		got, ok := have[addr]
		// The kernel reports whole seconds, and a timed element never
		// reads as permanent: a second of slack, permanence must match.
		if ok && (got == 0) == (ttl == 0) && (ttl == 0 || (got-ttl).Abs() < 2*time.Second) {
			continue
		}
		j.blocker.Add(addr, ttl)
		restored++
	}
	return restored, removed, j.blocker.Commit()
}

// SetNeverBan keeps the kernel's never-ban list equal to prefixes (a
// Trapper only; the others ban nothing by themselves).
func (j *Jail) SetNeverBan(prefixes []netip.Prefix) error {
	if j.trapper == nil {
		return nil
	}
	prefixes = slices.Clone(prefixes)
	slices.SortFunc(prefixes, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	prefixes = slices.Compact(prefixes)
	j.mu.Lock()
	defer j.mu.Unlock()
	if slices.Equal(prefixes, j.allowed) {
		return nil
	}
	if err := j.trapper.SetAllowed(prefixes); err != nil {
		return err
	}
	j.allowed = prefixes
	return nil
}

// SetTrap installs t (nil removes the trap) when the blocker traps, and
// reports whether it did.
func (j *Jail) SetTrap(t *block.Trap) (bool, error) {
	if j.trapper == nil {
		return false, nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return t != nil, j.trapper.SetTrap(t)
}

// Paths says which ways into this host the bans cover; false when
// commands apply them (KILL_ROUTE reaches what the command does).
func (j *Jail) Paths() (block.Paths, bool) {
	c, ok := j.blocker.(block.Coverer)
	if !ok {
		return block.Paths{}, false
	}
	return c.Paths(), true
}

// Traps reports whether the blocker has a kernel trap.
func (j *Jail) Traps() bool { return j.trapper != nil }

// Trapped is how many probes the kernel trap has caught since it was set;
// 0 without a trap.
func (j *Jail) Trapped() uint64 {
	if j.trapper == nil {
		return 0
	}
	st, err := j.trapper.Stats()
	if err != nil {
		return 0
	}
	return st.Trapped.Packets
}

// TrapStats reads the kernel trap's counters; false without a trap or
// when they cannot be read.
func (j *Jail) TrapStats() (block.Stats, bool) {
	if j.trapper == nil {
		return block.Stats{}, false
	}
	st, err := j.trapper.Stats()
	return st, err == nil
}

// Close closes the ban file and the blocker. The bans stay in force.
func (j *Jail) Close() {
	if err := j.store.Close(); err != nil {
		j.log.Error(logline.Error("closing the ban file: " + err.Error()))
	}
	if j.blocker != nil {
		j.blocker.Close()
	}
}

// Describe tells a ban's length for the log line.
func Describe(b bans.Ban) string {
	if b.Permanent() {
		return "permanently"
	}
	d := b.Expires.Sub(b.Since).Round(time.Second)
	return fmt.Sprintf("for %v (until %s)", d, b.Expires.Format(time.RFC3339))
}
