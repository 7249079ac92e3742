package enforce

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/portsentry-go/portsentry/internal/ignore"
	"github.com/portsentry-go/portsentry/internal/infra"
)

// Guard knows the addresses that are never blocked: the ignore list, this
// host's own addresses, and its infrastructure (name servers, default
// gateways, administrators' sessions; package infra). The first is the
// configuration's, swapped at reload; the others are re-read from the
// system, so an address gained by DHCP or a new SSH session is protected
// without a reload. Safe for concurrent use.
//
// What a forger can do against it: probes forged from a protected address
// are logged as ignored and ban nobody. What it cannot: make the daemon ban
// a protected address, whatever it sends.
type Guard struct {
	// allowLocal (-L) lets the engine act on this host's own addresses:
	// they are then reported, still never blocked.
	allowLocal bool
	ignore     atomic.Pointer[ignore.List]
	local      atomic.Pointer[ignore.List]
	infra      atomic.Pointer[guarded]
	protect    atomic.Bool // PROTECT_INFRASTRUCTURE
	// localAddrs lists this host's addresses (ignore.LocalPrefixes);
	// links its IPv6 networks (ignore.LinkPrefixes); discover its
	// infrastructure (infra.Discover).
	localAddrs func() ([]netip.Prefix, error)
	links      func() ([]netip.Prefix, error)
	discover   func() (infra.Infra, error)
	// link is this host's IPv6 networks, where bans by prefix
	// (BAN_PREFIX6) are of single addresses.
	link atomic.Pointer[ignore.List]
}

// guarded is the infrastructure found, and as a list for lookups.
type guarded struct {
	found infra.Infra
	list  *ignore.List
}

// NewGuard returns a guard with an empty ignore list, and no local
// addresses or infrastructure yet: call SetIgnore and Refresh.
func NewGuard(allowLocal bool, localAddrs, links func() ([]netip.Prefix, error), discover func() (infra.Infra, error)) *Guard {
	g := &Guard{allowLocal: allowLocal, localAddrs: localAddrs, links: links, discover: discover}
	g.ignore.Store(ignore.New())
	g.local.Store(ignore.New())
	g.link.Store(ignore.New())
	g.infra.Store(&guarded{list: ignore.New()})
	return g
}

// ProtectInfrastructure turns the infrastructure's protection on or off
// (PROTECT_INFRASTRUCTURE); Refresh then finds it.
func (g *Guard) ProtectInfrastructure(on bool) {
	g.protect.Store(on)
	if !on {
		g.infra.Store(&guarded{list: ignore.New()})
	}
}

// Infrastructure is what the guard protects beside the ignore list and
// this host's addresses, and whether that protection is on.
func (g *Guard) Infrastructure() (infra.Infra, bool) {
	return g.infra.Load().found, g.protect.Load()
}

// SetIgnore replaces the ignore list.
func (g *Guard) SetIgnore(l *ignore.List) { g.ignore.Store(l) }

// Refresh re-reads this host's addresses and, when protected, its
// infrastructure. On error the last good local list stays; infrastructure
// found in the sources that could be read is used.
func (g *Guard) Refresh() error {
	var errs []error
	if prefixes, err := g.localAddrs(); err != nil {
		errs = append(errs, fmt.Errorf("cannot list this host's addresses: %w", err))
	} else {
		g.local.Store(ignore.New(prefixes...))
	}
	if g.links != nil {
		if prefixes, err := g.links(); err != nil {
			errs = append(errs, fmt.Errorf("cannot list this host's networks: %w", err))
		} else {
			g.link.Store(ignore.New(prefixes...))
		}
	}
	if g.protect.Load() && g.discover != nil {
		found, err := g.discover()
		if err != nil {
			errs = append(errs, fmt.Errorf("finding the name servers, gateways and sessions to protect: %w", err))
		}
		g.infra.Store(&guarded{found: found, list: ignore.New(found.Prefixes()...)})
	}
	return errors.Join(errs...)
}

// Ignored reports the sources the engine never acts on: the ignore list,
// the infrastructure, and this host's own addresses unless -L.
func (g *Guard) Ignored(a netip.Addr) bool {
	return g.ignore.Load().Contains(a) || g.infra.Load().list.Contains(a) || (!g.allowLocal && g.local.Load().Contains(a))
}

// NeverBlock reports the addresses no ban ever lands on, -L or not: the
// ignore list, this host's own addresses and its infrastructure.
func (g *Guard) NeverBlock(a netip.Addr) bool {
	return g.ignore.Load().Contains(a) || g.local.Load().Contains(a) || g.infra.Load().list.Contains(a)
}

// OnLink reports whether a is on one of this host's IPv6 networks, where
// bans are of single addresses.
func (g *Guard) OnLink(a netip.Addr) bool { return g.link.Load().Contains(a) }

// Links lists this host's IPv6 networks, for the kernel's link6 set.
func (g *Guard) Links() []netip.Prefix { return g.link.Load().Prefixes() }

// Prefixes is everything NeverBlock covers, for the kernel's never-ban list.
func (g *Guard) Prefixes() []netip.Prefix {
	return slices.Concat(g.ignore.Load().Prefixes(), g.local.Load().Prefixes(), g.infra.Load().list.Prefixes())
}
