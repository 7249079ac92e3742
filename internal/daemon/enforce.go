package daemon

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
	"github.com/portsentry-go/portsentry/internal/event"
)

// enforcer keeps the bans: their record (with lifetime, persisted), the
// native blocker that applies them, and, with nftables, the kernel's own
// never-ban list and trap. With BLOCKER="command" there is no native
// blocker: KILL_ROUTE blocks and UNKILL_ROUTE lifts, run by the daemon.
type enforcer struct {
	log   *slog.Logger
	store *bans.Store
	kind  string        // "nftables", "iptables", "route", or "command"
	block block.Blocker // nil with "command"
	nft   *nft.Blocker  // block, when it is nftables
	// mu makes each Add/Delete + Commit one batch: responders and the
	// event loop both change bans.
	mu      sync.Mutex
	allowed []netip.Prefix // what the kernel's never-ban sets hold now
}

// openEnforcer opens the ban store and the blocker the settings ask for.
func openEnforcer(s *Settings, log *slog.Logger) (*enforcer, error) {
	c := s.Conf
	store, err := bans.OpenOptions(c.BanFile, bans.Options{Policy: policyOf(s)})
	var corrupt *bans.CorruptError
	if errors.As(err, &corrupt) && store != nil {
		// Damaged lines are reported; the bans that could be read stand.
		log.Warn("adminalert: WARNING: " + err.Error())
	} else if err != nil {
		return nil, fmt.Errorf("daemon: ban file: %w", err)
	}
	e := &enforcer{log: log, store: store, kind: "command"}
	if c.Blocker == "command" {
		return e, nil
	}
	openers := map[detect.Kind]func() (block.Blocker, error){
		detect.NFTables: func() (block.Blocker, error) { return nft.New(nft.Options{}) },
		detect.IPTables: func() (block.Blocker, error) { return iptables.New(iptables.Options{}) },
		detect.Route:    func() (block.Blocker, error) { return route.New(route.Options{}) },
	}
	order := detect.DefaultOrder
	if c.Blocker != "auto" {
		order = []detect.Kind{detect.Kind(c.Blocker)}
	}
	b, kind, err := detect.Choose(order, openers)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("daemon: BLOCKER=%q: %w", c.Blocker, err)
	}
	e.block, e.kind = b, string(kind)
	e.nft, _ = b.(*nft.Blocker)
	return e, nil
}

func policyOf(s *Settings) bans.Policy {
	return bans.Policy{Base: s.Conf.BanTime, Max: s.Conf.BanTimeMax}
}

// native reports whether a native blocker applies bans.
func (e *enforcer) native() bool { return e.block != nil }

// ban records a ban of addr and applies it natively: the Native step of a
// response. A ban the firewall refused is taken back from the record.
func (e *enforcer) ban(addr netip.Addr, reason string, port uint16, proto string) (string, error) {
	b := e.store.Ban(addr, reason, port, proto)
	if err := e.apply(addr, b.Remaining(time.Now())); err != nil {
		e.store.Unban(netip.PrefixFrom(b.Addr, b.Addr.BitLen()))
		return "", err
	}
	// On disk before the log says blocked: a kill -9 right after must not
	// lose it.
	if err := e.store.Sync(); err != nil {
		e.log.Error("adminalert: ERROR: writing the ban file: " + err.Error())
	}
	return describeBan(b), nil
}

// banFor is a ban made by hand (portsentry block).
func (e *enforcer) banFor(addr netip.Addr, d time.Duration, reason string) (bans.Ban, error) {
	b := e.store.BanFor(addr, d, reason)
	if e.native() {
		if err := e.apply(addr, b.Remaining(time.Now())); err != nil {
			e.store.Unban(netip.PrefixFrom(b.Addr, b.Addr.BitLen()))
			return bans.Ban{}, err
		}
	}
	return b, nil
}

func (e *enforcer) apply(addr netip.Addr, ttl time.Duration) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.block.Add(addr, ttl)
	return e.block.Commit()
}

// lift removes bans from the native blocker (the record no longer holds
// them). Expired bans are left to nftables, which expires them itself: by
// the time the daemon's tick sees the expiry, the kernel trap may already
// have banned the same scanner anew, and a Delete would lift that ban.
func (e *enforcer) lift(bs []bans.Ban, expired bool) error {
	if !e.native() || len(bs) == 0 || (expired && e.nft != nil) {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, b := range bs {
		e.block.Delete(b.Addr)
	}
	return e.block.Commit()
}

// restore puts every unexpired ban back in the firewall in one batch, and
// reconciles what the firewall holds with the record: a ban missing or with
// a stale lifetime is fixed, one the record does not know is removed (it
// was lifted while the daemon was down, or expired).
func (e *enforcer) restore() (restored, removed int, err error) {
	if !e.native() {
		return 0, 0, nil
	}
	active := e.store.Active()
	held, err := e.block.List()
	if err != nil {
		return 0, 0, err
	}
	now := time.Now()
	want := make(map[netip.Addr]time.Duration, len(active))
	for _, b := range active {
		want[b.Addr] = b.Remaining(now)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	have := make(map[netip.Addr]time.Duration, len(held))
	for _, h := range held {
		have[h.Addr] = h.TTL
		if _, ok := want[h.Addr]; !ok {
			e.block.Delete(h.Addr)
			removed++
		}
	}
	for addr, ttl := range want {
		got, ok := have[addr]
		// The kernel reports whole seconds, and a timed element never
		// reads as permanent: a second of slack, permanence must match.
		if ok && (got == 0) == (ttl == 0) && (ttl == 0 || absDur(got-ttl) < 2*time.Second) {
			continue
		}
		e.block.Add(addr, ttl)
		restored++
	}
	return restored, removed, e.block.Commit()
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// setAllowed keeps the kernel's never-ban sets equal to the ignore list
// plus this host's addresses (nftables only; the others have no trap).
func (e *enforcer) setAllowed(prefixes []netip.Prefix) error {
	if e.nft == nil {
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
	if slices.Equal(prefixes, e.allowed) {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.nft.SetAllowed(prefixes); err != nil {
		return err
	}
	e.allowed = prefixes
	return nil
}

// setTrap installs (or, with nil, removes) the in-kernel trap.
func (e *enforcer) setTrap(t *nft.Trap) error {
	if e.nft == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.nft.SetTrap(t)
}

func (e *enforcer) close() {
	if err := e.store.Close(); err != nil {
		e.log.Error("adminalert: ERROR: closing the ban file: " + err.Error())
	}
	if e.block != nil {
		e.block.Close()
	}
}

// describeBan tells a ban's length for the log line.
func describeBan(b bans.Ban) string {
	if b.Permanent() {
		return "permanently"
	}
	d := b.Expires.Sub(b.Since).Round(time.Second)
	return fmt.Sprintf("for %v (until %s)", d, b.Expires.Format(time.RFC3339))
}

// trap is the kernel trap these settings allow, or nil: it needs the
// nftables blocker, KERNEL_TRAP="1", a trigger that acts on the first
// probe, the service check (the kernel's is the same check), and a
// stealth or advanced mode whose protocol blocks (BLOCK_*="1").
func (s *Settings) trap(kind string, opts Options) *nft.Trap {
	c := s.Conf
	if kind != string(detect.NFTables) || !c.KernelTrap || c.ScanTrigger > 1 || opts.NoServiceCheck {
		return nil
	}
	t := &nft.Trap{TTL: policyOf(s).Duration(1)}
	for _, ifc := range opts.Interfaces {
		if ifc != "ALL" && ifc != "ALL_NLO" {
			t.Interfaces = append(t.Interfaces, ifc)
		}
	}
	for _, m := range s.Modes {
		if !m.Passive() {
			continue
		}
		switch {
		case m.Proto() == event.TCP && c.BlockTCP == 1:
			t.TCP = s.watched(m)
		case m.Proto() == event.UDP && c.BlockUDP == 1:
			t.UDP = s.watched(m)
		}
	}
	if t.TCP.Len() == 0 && t.UDP.Len() == 0 {
		return nil
	}
	return t
}
