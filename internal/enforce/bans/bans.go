// Package bans is the daemon's record of the hosts it has banned: each ban
// with its reason and lifetime, repeat offenders banned for longer, kept on
// disk so that a restart (or a crash, or a reboot) neither forgets a ban nor
// lengthens one.
//
// The Store is the record, not the firewall: the daemon applies what the
// Store decides to its blockers (and reconciles the two at start).
//
// # Lifetime
//
// A Policy gives the length of automatic bans. The n-th ban of an address
// lasts Base·2^(n-1), capped at Max: with Base 1h and Max 24h, 1h, 2h, 4h …
// 24h, 24h. Base 0 makes every automatic ban permanent. A manual ban
// (BanFor) has the length the operator gave.
//
// An address whose ban expired is remembered for Options.Remember (30 days
// by default) after the expiry, so that it is treated as a repeat offender
// if it comes back; after that it starts again from the first ban. An
// operator's Unban forgets that history too: an unban says the ban was a
// mistake, and a mistake must not make the next ban longer.
//
// # Persistence
//
// The file is a journal of JSON lines: each change appends one line. Changes
// are kept in memory; Sync writes them in one write and fsyncs the file. So
// the process killed (kill -9, OOM), a power loss or a kernel crash loses
// the changes since the last Sync. The daemon calls Sync after each batch
// of bans (after the blockers' Commit) and every second, so the window is
// one batch. A line cut short by a crash in the middle of a write is
// dropped silently at the next load; a damaged complete line is reported
// (*CorruptError) and the others are kept.
//
// The Store's lock is never held during a write or an fsync: Sync copies
// what it writes under the lock and writes it without, so a slow or failing
// disk never makes Ban, Get or Active wait (a second Sync waits for the
// first).
//
// After a write error (a full disk) the file may miss changes or end in a
// torn line: Sync then rewrites it whole from memory, at once, and after
// each failure waits longer before trying again (1 s, doubled each time, at
// most 5 min), so a full disk costs one snapshot every five minutes, not
// every second. Sync returns the error that begins a run of failures, once,
// and nil until the file is whole again (Err tells the state meanwhile), so
// that the failure is logged once per run. Close tries once more, whatever
// the wait.
//
// When the journal has grown beyond the state it describes, Sync compacts
// it: the current state is written to a temporary file in the same
// directory, fsynced, and renamed over the journal (then the directory is
// fsynced). A crash at any instant leaves either the old journal or the new
// snapshot, both complete. Open compacts too when the file holds anything
// redundant, damaged or cut short, so appends always follow a whole line.
// A file PATH.lock beside the journal is locked (flock) while a Store has it
// open, so that two daemons never write one journal.
//
// # File format
//
// One JSON object per line, applied in order. A snapshot is the same
// format: a format line, then one record per address known.
//
//	{"op":"format","v":1}
//	{"op":"ban","addr":"192.0.2.7","reason":"TCP SYN/Normal scan","port":143,"proto":"TCP","since":"2026-11-22T01:40:36Z","expires":"2026-11-22T02:40:36Z","count":1}
//	{"op":"ban","addr":"2001:db8::7","reason":"manual","since":"2026-11-22T01:41:00Z","count":1}
//	{"op":"ban","addr":"203.0.113.4","reason":"crowdsecurity/ssh-bf","origin":"crowdsec","since":"2026-11-22T01:42:00Z","expires":"2026-11-22T05:42:00Z","count":1}
//	{"op":"past","addr":"198.51.100.9","expires":"2026-11-20T10:00:00Z","count":3}
//	{"op":"unban","prefix":"10.0.0.0/8"}
//
// "ban" sets the address's ban whole (no "expires": permanent); "past" says
// the address is no longer banned but was, "count" times, the last ban
// having ended at "expires" (kept for repeat offenders, and written when a
// full record drops a ban); "unban" forgets every address inside the
// prefix, bans and history. "origin" is absent for this host's own bans
// (files written before it existed read as such). Times are RFC 3339 in UTC. Each record is whole
// by itself, so a torn last line loses that one change and nothing else.
// A "format" line with a version other than 1 makes Open refuse the file
// and leave it alone: a newer portsentry wrote it.
//
// # Bounds
//
// At most Options.MaxBans bans are kept (1 000 000 by default, about 200
// bytes of memory each, so 200 MB at worst). When a new address is banned and the record is
// full, the ban that expires soonest is dropped from the record (permanent
// bans last): it is the one that matters least, and the firewall still
// holds it until its own timeout. The history of expired bans is bounded
// by the same number; when full, the address whose ban expired longest ago
// is forgotten first.
package bans

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/portsentry-go/portsentry/internal/config"
)

// Ban is one ban as the Store records it.
type Ban struct {
	// Addr is the banned address: IPv4 addresses are never IPv4-mapped, and
	// zones are removed.
	Addr netip.Addr
	// Reason says why: the scan type ("TCP SYN/Normal scan") or "manual".
	Reason string
	// Port and Proto are the probe that triggered the ban ("TCP", "UDP");
	// 0 and "" for a manual ban.
	Port  uint16
	Proto string
	// Since is when the ban began; extending a ban does not change it.
	Since time.Time
	// Expires is when the ban ends; the zero Time means never.
	Expires time.Time
	// Count is how many times the address has been banned, this ban
	// included, within the memory of the Store (Options.Remember).
	Count int
	// Origin says where the ban came from: "" for this host's own
	// detection or operator, "crowdsec" for a CrowdSec decision,
	// "fleet:<member>" for another member of the fleet (see Import).
	Origin string
	// Bits, when above 0, says the ban covers the prefix Addr/Bits (an
	// IPv6 /64 with BAN_PREFIX6) rather than Addr alone. The Store keeps
	// bans by address and never sets it: the jail, which knows the
	// prefix, does for the operator commands.
	Bits int
}

// Target is what the ban covers, as the operator commands print it: the
// address, or the prefix when Bits is set.
func (b Ban) Target() string {
	if b.Bits > 0 {
		return netip.PrefixFrom(b.Addr, b.Bits).String()
	}
	return b.Addr.String()
}

// Sources of a local ban, as Source gives them.
const (
	// OriginDetected: the daemon banned the address for a probe (or the
	// kernel trap did, and the daemon recorded it).
	OriginDetected = "detected"
	// OriginManual: an operator banned it (portsentry block).
	OriginManual = "manual"
)

// Source says where the ban came from, as the operator commands show it:
// Origin for a ban from elsewhere ("crowdsec", "fleet:<member>"); for this
// host's own, OriginManual for a ban without a triggering probe (Proto is
// "" only for those), else OriginDetected.
func (b Ban) Source() string {
	switch {
	case b.Origin != "":
		return b.Origin
	case b.Proto == "":
		return OriginManual
	}
	return OriginDetected
}

// Permanent reports whether the ban never expires.
func (b Ban) Permanent() bool { return b.Expires.IsZero() }

// Remaining is the time left at now as block.Entry counts it: 0 for a
// permanent ban, and never less than 1ns for a timed one (even past its
// end), so that a ban about to end is never mistaken for a permanent one.
func (b Ban) Remaining(now time.Time) time.Duration {
	if b.Permanent() {
		return 0
	}
	return max(b.Expires.Sub(now), time.Nanosecond)
}

// Policy gives the length of automatic bans.
type Policy struct {
	// Base is the length of an address's first ban; 0 makes bans permanent.
	Base time.Duration
	// Max caps the doubling of repeat offenders' bans. 0 means no cap of
	// its own, but no ban is longer than MaxDuration.
	Max time.Duration
}

// MaxDuration is the longest ban the Store computes or accepts, however
// large the Policy or the operator's request: a year is long enough to be
// "until further notice" and keeps every expiry time far from overflow.
// Ask for a permanent ban for longer.
const MaxDuration = 365 * 24 * time.Hour

// Duration is the length of the n-th ban (n ≥ 1) of an address: 0 for a
// permanent one.
func (p Policy) Duration(n int) time.Duration {
	if p.Base <= 0 {
		return 0
	}
	limit := MaxDuration
	if p.Max > 0 && p.Max < limit {
		limit = p.Max
	}
	d := p.Base
	for i := 1; i < n && d < limit; i++ {
		d *= 2 // cannot overflow: d < limit ≤ a year before doubling
	}
	return min(d, limit)
}

// Options configure a Store beyond its Policy. The zero value of each
// field picks the default.
type Options struct {
	Policy Policy
	// Now is the clock; time.Now by default.
	Now func() time.Time
	// MaxBans caps the bans kept, and separately the expired bans
	// remembered (default 1 000 000).
	MaxBans int
	// Remember is how long after its ban expired an address still counts as
	// a repeat offender (default 30 days; negative: not at all).
	Remember time.Duration
	// CompactAfter is how many records may be appended to the journal
	// before Sync considers compacting it (default 4096). Sync compacts
	// when more records were appended than the state holds, so the file
	// stays within about twice the size of its snapshot.
	CompactAfter int
}

// Defaults for Options.
const (
	DefaultMaxBans      = 1_000_000
	DefaultRemember     = 30 * 24 * time.Hour
	DefaultCompactAfter = 4096
)

// Errors the Store wraps.
var (
	// ErrLocked is returned by Open when another Store (another daemon)
	// has the file open.
	ErrLocked = errors.New("bans: file in use by another process")
	// ErrFormat is returned by Open for a file written by a newer version
	// (left untouched).
	ErrFormat = errors.New("bans: unsupported file format")
	// ErrClosed is returned by Sync and Compact after Close.
	ErrClosed = errors.New("bans: store closed")
)

// entry is one address the Store knows: banned (active) or remembered
// after its ban expired (past). Times are Unix nanoseconds, smaller than
// time.Time, which matters at a million entries.
type entry struct {
	addr   netip.Addr
	reason string
	proto  string
	origin string
	port   uint16
	active bool
	count  int32
	since  int64
	// expires is, for an active ban, when it ends (0: never); for a past
	// one, when it ended.
	expires int64
	idx     int // position in the active or past heap
}

func (e *entry) ban() Ban {
	b := Ban{
		Addr:   e.addr,
		Reason: e.reason,
		Port:   e.port,
		Proto:  e.proto,
		Origin: e.origin,
		Since:  time.Unix(0, e.since),
		Count:  int(e.count),
	}
	if e.expires != 0 {
		b.Expires = time.Unix(0, e.expires)
	}
	return b
}

// Store is the record of bans. It is safe for concurrent use.
//
// mu guards the state and the journal's in-memory part; the journal's own
// io lock serializes its file I/O and is always taken before mu, never
// while holding it.
type Store struct {
	mu      sync.Mutex
	opts    Options
	byAddr  map[netip.Addr]*entry
	active  entryHeap // soonest expiry first; permanent last
	past    entryHeap // longest expired first
	evicted uint64
	j       *journal // nil: in memory only, or closed
	closed  bool     // Close has released the file
}

// Open loads the ban file at path and returns the Store, with bans ending
// at p's lengths and time read from now (nil: time.Now). A path of ""
// keeps the bans in memory only. A missing file is an empty record; its
// directory is created (0750) when missing.
//
// Bans already expired at load are dropped (their count kept as history).
//
// When some lines of the file could not be read, Open returns the usable
// Store together with a *CorruptError naming each file:line; the damaged
// file is kept beside the new one as path+".corrupt". Any other error
// comes with a nil Store.
func Open(path string, p Policy, now func() time.Time) (*Store, error) {
	return OpenOptions(path, Options{Policy: p, Now: now})
}

// OpenOptions is Open with every option.
func OpenOptions(path string, o Options) (*Store, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxBans <= 0 {
		o.MaxBans = DefaultMaxBans
	}
	if o.Remember == 0 {
		o.Remember = DefaultRemember
	}
	if o.CompactAfter <= 0 {
		o.CompactAfter = DefaultCompactAfter
	}
	s := &Store{opts: o, byAddr: make(map[netip.Addr]*entry)}
	s.active.less = activeLess
	s.past.less = pastLess
	if path == "" {
		return s, nil
	}
	j, corrupt, err := openJournal(path, s)
	if err != nil {
		return nil, err
	}
	s.j = j
	if corrupt != nil {
		return s, corrupt
	}
	return s, nil
}

func activeLess(a, b *entry) bool {
	// Permanent bans (expires 0) sort after every timed one.
	switch {
	case a.expires == 0:
		return false
	case b.expires == 0:
		return true
	}
	return a.expires < b.expires
}

func pastLess(a, b *entry) bool { return a.expires < b.expires }

func (s *Store) now() int64 { return s.opts.Now().UnixNano() }

func normalize(a netip.Addr) netip.Addr { return a.Unmap().WithZone("") }

// Ban records a ban of addr for the probe described, with the length the
// Policy gives this address's next ban. An address already banned keeps
// its ban (reason, start, count), extended if the Policy now gives a
// later end: the same episode is not counted twice. The ban is returned.
func (s *Store) Ban(addr netip.Addr, reason string, port uint16, proto string) Ban {
	s.mu.Lock()
	defer s.mu.Unlock()
	addr = normalize(addr)
	now := s.now()
	s.collect(addr, now)
	if e := s.byAddr[addr]; e != nil && e.active {
		if e.expires != 0 {
			d := s.opts.Policy.Duration(int(e.count))
			if end := expiry(now, d); end == 0 || end > e.expires {
				e.expires = end
				s.active.fix(e.idx)
				s.journalBan(e)
			}
		}
		return e.ban()
	}
	e := s.start(addr, now)
	e.reason, e.port, e.proto = clean(reason, maxReason), port, clean(proto, maxProto)
	e.expires = expiry(now, s.opts.Policy.Duration(int(e.count)))
	s.activate(e)
	return e.ban()
}

// BanFor records a manual ban of addr for d (0: permanent; longer than
// MaxDuration: MaxDuration). An address already banned gets this ban
// instead, ending exactly d from now, shorter or longer: the operator's
// word wins. Negative durations count as 0.
func (s *Store) BanFor(addr netip.Addr, d time.Duration, reason string) Ban {
	s.mu.Lock()
	defer s.mu.Unlock()
	addr = normalize(addr)
	now := s.now()
	d = min(max(d, 0), MaxDuration)
	reason = clean(reason, maxReason)
	s.collect(addr, now)
	e := s.byAddr[addr]
	if e != nil && e.active {
		e.reason, e.port, e.proto, e.origin = reason, 0, "", ""
		e.expires = expiry(now, d)
		s.active.fix(e.idx)
		s.journalBan(e)
		return e.ban()
	}
	e = s.start(addr, now)
	e.reason, e.port, e.proto = reason, 0, ""
	e.expires = expiry(now, d)
	s.activate(e)
	return e.ban()
}

// Import records a ban that came from elsewhere (origin: "crowdsec",
// "fleet:<member>"), for d (at most MaxDuration; 0 or less records
// nothing). An address already banned keeps its ban, reason and origin,
// extended to end d from now if that is later: the longest ban wins, and
// a ban of this host's own is never relabelled as someone else's. It
// returns the ban in force and whether Import changed it (a new ban or a
// later end), which is when the firewall must be told.
func (s *Store) Import(addr netip.Addr, d time.Duration, reason, origin string) (Ban, bool) {
	if d <= 0 {
		return Ban{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	addr = normalize(addr)
	now := s.now()
	d = min(d, MaxDuration)
	s.collect(addr, now)
	if e := s.byAddr[addr]; e != nil && e.active {
		if end := expiry(now, d); e.expires != 0 && end > e.expires {
			e.expires = end
			s.active.fix(e.idx)
			s.journalBan(e)
			return e.ban(), true
		}
		return e.ban(), false
	}
	e := s.start(addr, now)
	e.reason, e.origin = clean(reason, maxReason), clean(origin, maxOrigin)
	e.expires = expiry(now, d)
	s.activate(e)
	return e.ban(), true
}

// clean makes s what the file can hold: valid UTF-8 (each invalid byte
// replaced by U+FFFD) of at most n bytes, cut at a character boundary, so
// that a ban reads back from the file as it was recorded.
func clean(s string, n int) string {
	if utf8.ValidString(s) && len(s) <= n {
		return s
	}
	var b strings.Builder
	for _, r := range s { // yields U+FFFD for each invalid byte
		if b.Len()+utf8.RuneLen(r) > n {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

func expiry(now int64, d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return now + int64(d)
}

// collect retires addr's ban if it has expired but Expire has not
// collected it yet: banning the address again is then a new ban, counted.
func (s *Store) collect(addr netip.Addr, now int64) {
	if e := s.byAddr[addr]; e != nil && e.active && e.expires != 0 && e.expires <= now {
		s.active.remove(e.idx)
		s.retire(e, e.expires)
	}
}

// start returns a new active entry for addr, counting its past bans; the
// caller fills it and calls activate.
func (s *Store) start(addr netip.Addr, now int64) *entry {
	var count int32 = 1
	if old := s.byAddr[addr]; old != nil { // past
		s.past.remove(old.idx)
		delete(s.byAddr, addr)
		if old.count < 1<<30 {
			count = old.count + 1
		} else {
			count = old.count
		}
	}
	return &entry{addr: addr, active: true, count: count, since: now}
}

// activate adds e to the active bans, dropping the one that expires
// soonest if the record is full, and journals it.
func (s *Store) activate(e *entry) {
	if s.active.len() >= s.opts.MaxBans {
		old := s.active.pop()
		s.evicted++
		end := old.expires
		if end == 0 || end > e.since {
			end = e.since // a dropped ban ends now, as far as the record knows
		}
		s.retire(old, end)
		if s.byAddr[old.addr] == old {
			s.journalPast(old)
		} else {
			s.journalUnban(netip.PrefixFrom(old.addr, old.addr.BitLen()))
		}
	}
	s.byAddr[e.addr] = e
	s.active.push(e)
	s.journalBan(e)
}

// retire turns e, already out of the active heap, into a past entry that
// ended at end, or forgets it when addresses are not remembered.
func (s *Store) retire(e *entry, end int64) {
	if s.opts.Remember < 0 {
		delete(s.byAddr, e.addr)
		return
	}
	e.active = false
	e.expires = end
	e.reason, e.proto, e.origin, e.port, e.since = "", "", "", 0, 0
	if s.past.len() >= s.opts.MaxBans {
		old := s.past.pop()
		delete(s.byAddr, old.addr)
	}
	s.past.push(e)
}

// Unban removes every ban inside prefix (a single address is a /32 or a
// /128; an IPv4-mapped prefix counts as the IPv4 one) and forgets those
// addresses' history. It returns the bans removed, sorted by Since.
func (s *Store) Unban(prefix netip.Prefix) []Ban {
	s.mu.Lock()
	defer s.mu.Unlock()
	prefix = normalizePrefix(prefix)
	if !prefix.IsValid() {
		return nil
	}
	removed, n := s.unban(prefix)
	if n > 0 {
		s.journalUnban(prefix)
	}
	sortBans(removed)
	return removed
}

func normalizePrefix(p netip.Prefix) netip.Prefix {
	a := p.Addr()
	if a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked()
	}
	return netip.PrefixFrom(a.WithZone(""), p.Bits()).Masked()
}

// unban drops every entry inside prefix; it returns the bans among them
// and how many entries, bans and history, it dropped.
func (s *Store) unban(prefix netip.Prefix) ([]Ban, int) {
	var removed []Ban
	n := 0
	drop := func(e *entry) {
		n++
		if e.active {
			removed = append(removed, e.ban())
			s.active.remove(e.idx)
		} else {
			s.past.remove(e.idx)
		}
		delete(s.byAddr, e.addr)
	}
	if prefix.IsSingleIP() {
		if e := s.byAddr[prefix.Addr()]; e != nil {
			drop(e)
		}
		return removed, n
	}
	for a, e := range s.byAddr {
		if prefix.Contains(a) {
			drop(e)
		}
	}
	return removed, n
}

// Get returns addr's ban, if it is banned. A ban past its expiry but not
// yet collected by Expire is still returned.
func (s *Store) Get(addr netip.Addr) (Ban, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.byAddr[normalize(addr)]
	if e == nil || !e.active {
		return Ban{}, false
	}
	return e.ban(), true
}

// Active returns the bans not yet expired, sorted by Since (then address).
func (s *Store) Active() []Ban {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	out := make([]Ban, 0, s.active.len())
	for _, e := range s.active.items {
		if e.expires == 0 || e.expires > now {
			out = append(out, e.ban())
		}
	}
	sortBans(out)
	return out
}

func sortBans(bs []Ban) {
	slices.SortFunc(bs, func(a, b Ban) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		return a.Addr.Compare(b.Addr)
	})
}

// Expire removes and returns the bans whose time has come, soonest first.
// The daemon calls it on a timer (see NextExpiry) and lifts these bans
// from blockers whose kernel does not expire them itself. It also forgets
// the history of addresses past Options.Remember. Expiry is not journaled:
// loading drops expired bans by their time.
func (s *Store) Expire() []Ban {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var out []Ban
	for s.active.len() > 0 {
		e := s.active.items[0]
		if e.expires == 0 || e.expires > now {
			break
		}
		s.active.pop()
		out = append(out, e.ban())
		s.retire(e, e.expires)
	}
	s.forget(now)
	return out
}

// forget drops the history of addresses whose ban ended more than
// Remember ago.
func (s *Store) forget(now int64) {
	for s.past.len() > 0 {
		e := s.past.items[0]
		if e.expires+int64(s.opts.Remember) > now {
			break
		}
		s.past.pop()
		delete(s.byAddr, e.addr)
	}
}

// NextExpiry returns when the next ban expires; false when none will.
func (s *Store) NextExpiry() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active.len() == 0 || s.active.items[0].expires == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, s.active.items[0].expires), true
}

// Len returns the number of bans recorded (including any past their
// expiry that Expire has not collected yet).
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active.len()
}

// Stats describes the Store for the daemon's status.
type Stats struct {
	Bans       int    // bans recorded
	Remembered int    // addresses remembered after their ban expired
	Evicted    uint64 // bans dropped because the record was full, since Open
}

// Stats returns the Store's counts.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Bans: s.active.len(), Remembered: s.past.len(), Evicted: s.evicted}
}

// Sync writes the changes made since the last Sync to the file and fsyncs
// it; then, if the journal has grown beyond the state, compacts it. After a
// failed write (a full disk) it rewrites the file whole from memory, so
// nothing is lost once the disk recovers; a rewrite that fails is tried
// again no sooner than 1 s later, the wait doubling at each failure up to
// 5 min.
//
// It returns an error once per run of failures: the first. While the run
// lasts it returns nil, as it does when every change so far is on disk;
// Err tells the two apart. So a caller that logs what Sync returns logs a
// full disk once, not every second. A Store in memory has nothing to do.
func (s *Store) Sync() error {
	j, err := s.journal()
	if j == nil {
		return err
	}
	clean, err := j.sync(s, syncAuto)
	return j.report(s, clean, err)
}

// Err returns the error that began the current run of write failures, nil
// when the last Sync left every change on disk (or the Store keeps its
// bans in memory only).
func (s *Store) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.j == nil {
		return nil
	}
	return s.j.failing
}

// Compact rewrites the file as a snapshot of the state now, whatever its
// size or the wait after a failure, and returns its error. Sync does it
// when needed; the daemon may also call it at shutdown.
func (s *Store) Compact() error {
	j, err := s.journal()
	if j == nil {
		return err
	}
	clean, err := j.sync(s, syncCompact)
	j.report(s, clean, err)
	return err
}

// Close syncs the file (a rewrite that failed is tried once more, with no
// wait) and releases it, and returns the error of that last sync. The Store
// keeps answering from memory afterwards, but records nothing more on disk.
func (s *Store) Close() error {
	s.mu.Lock()
	j := s.j
	s.mu.Unlock()
	if j == nil {
		return nil
	}
	err := j.close(s)
	s.mu.Lock()
	if s.j == j {
		s.j, s.closed = nil, true
	}
	s.mu.Unlock()
	return err
}

// journal returns the file's journal; nil, with ErrClosed after Close or
// nil for a Store in memory, when there is none.
func (s *Store) journal() (*journal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.j == nil {
		return nil, s.closedErr()
	}
	return s.j, nil
}

func (s *Store) closedErr() error {
	if s.closed {
		return ErrClosed
	}
	return nil
}

func (s *Store) journalBan(e *entry) {
	if s.j != nil {
		s.j.append(encodeBan(s.j.buf[:0], e))
	}
}

func (s *Store) journalPast(e *entry) {
	if s.j != nil {
		s.j.append(encodePast(s.j.buf[:0], e))
	}
}

func (s *Store) journalUnban(p netip.Prefix) {
	if s.j != nil {
		s.j.append(encodeUnban(s.j.buf[:0], p))
	}
}

// entries returns every entry, active ones first, each group in a stable
// order (start, then address), as a snapshot writes them.
func (s *Store) entries() []*entry {
	out := make([]*entry, 0, len(s.byAddr))
	out = append(out, s.active.items...)
	out = append(out, s.past.items...)
	slices.SortFunc(out, compareEntries)
	return out
}

// snapshot copies every entry (s.mu held), unsorted: what a snapshot
// writes, taken under the lock and written without it. A copy, not
// pointers: the entries change under the lock while the file is written.
func (s *Store) snapshot() []entry {
	out := make([]entry, 0, s.active.len()+s.past.len())
	for _, e := range s.active.items {
		out = append(out, *e)
	}
	for _, e := range s.past.items {
		out = append(out, *e)
	}
	return out
}

// compareEntries orders entries as snapshots write them: active ones
// first, then by start, expiry and address.
func compareEntries(a, b *entry) int {
	if a.active != b.active {
		if a.active {
			return -1
		}
		return 1
	}
	if c := cmp.Compare(a.since, b.since); c != 0 {
		return c
	}
	if c := cmp.Compare(a.expires, b.expires); c != 0 {
		return c
	}
	return a.addr.Compare(b.addr)
}

// CorruptError is returned by Open, beside a usable Store, when lines of
// the file could not be read. The lines read were loaded; the damaged file
// was kept as Kept (empty if it could not be).
type CorruptError struct {
	Lines []*config.Error // FILE:LINE: problem, one per line not read
	Kept  string
}

// Error names the first few lines.
func (e *CorruptError) Error() string {
	const show = 3
	msg := fmt.Sprintf("bans: %d unreadable lines", len(e.Lines))
	for i, l := range e.Lines {
		if i == show {
			msg += fmt.Sprintf("; and %d more", len(e.Lines)-show)
			break
		}
		msg += "; " + l.Error()
	}
	if e.Kept != "" {
		msg += " (damaged file kept as " + e.Kept + ")"
	}
	return msg
}

// Unwrap returns the line errors, for errors.As.
func (e *CorruptError) Unwrap() []error {
	out := make([]error, len(e.Lines))
	for i, l := range e.Lines {
		out[i] = l
	}
	return out
}
