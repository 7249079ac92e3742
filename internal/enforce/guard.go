package enforce

import (
	"net/netip"
	"sync/atomic"

	"github.com/portsentry-go/portsentry/internal/ignore"
)

// Guard knows the addresses that are never blocked: the ignore list and
// this host's own addresses. The first is the configuration's, swapped at
// reload; the second is re-read from the kernel, so an address gained by
// DHCP is protected without a reload. Safe for concurrent use.
type Guard struct {
	// allowLocal (-L) lets the engine act on this host's own addresses:
	// they are then reported, still never blocked.
	allowLocal bool
	ignore     atomic.Pointer[ignore.List]
	local      atomic.Pointer[ignore.List]
	// localAddrs lists this host's addresses (ignore.LocalPrefixes).
	localAddrs func() ([]netip.Prefix, error)
}

// NewGuard returns a guard with an empty ignore list and no local
// addresses yet: call SetIgnore and RefreshLocal.
func NewGuard(allowLocal bool, localAddrs func() ([]netip.Prefix, error)) *Guard {
	g := &Guard{allowLocal: allowLocal, localAddrs: localAddrs}
	g.ignore.Store(ignore.New())
	g.local.Store(ignore.New())
	return g
}

// SetIgnore replaces the ignore list.
func (g *Guard) SetIgnore(l *ignore.List) { g.ignore.Store(l) }

// RefreshLocal re-reads this host's addresses. On error the last good list
// stays.
func (g *Guard) RefreshLocal() error {
	prefixes, err := g.localAddrs()
	if err != nil {
		return err
	}
	g.local.Store(ignore.New(prefixes...))
	return nil
}

// Ignored reports the sources the engine never acts on: the ignore list,
// and this host's own addresses unless -L.
func (g *Guard) Ignored(a netip.Addr) bool {
	return g.ignore.Load().Contains(a) || (!g.allowLocal && g.local.Load().Contains(a))
}

// NeverBlock reports the addresses no ban ever lands on, -L or not: the
// ignore list and this host's own addresses.
func (g *Guard) NeverBlock(a netip.Addr) bool {
	return g.ignore.Load().Contains(a) || g.local.Load().Contains(a)
}

// Prefixes is everything NeverBlock covers, for the kernel's never-ban list.
func (g *Guard) Prefixes() []netip.Prefix {
	return append(g.ignore.Load().Prefixes(), g.local.Load().Prefixes()...)
}
