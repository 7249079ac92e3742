//go:build !linux

package nft

import (
	"fmt"
	"net/netip"
	"runtime"
	"time"

	"github.com/portsentry-go/portsentry/internal/enforce/block"
)

// Blocker is the nftables blocker; nftables exists only on Linux, so here
// every method fails.
type Blocker struct{}

var _ block.Blocker = (*Blocker)(nil)

var errOS = fmt.Errorf("nft: nftables is not available on %s: %w", runtime.GOOS, block.ErrUnavailable)

// New reports that nftables is not available on this system; the error
// wraps block.ErrUnavailable.
func New(Options) (*Blocker, error) { return nil, errOS }

// Add does nothing: there is no nftables here.
func (*Blocker) Add(netip.Addr, time.Duration) {}

// Delete does nothing: there is no nftables here.
func (*Blocker) Delete(netip.Addr) {}

// Commit reports that nftables is not available.
func (*Blocker) Commit() error { return errOS }

// List reports that nftables is not available.
func (*Blocker) List() ([]block.Entry, error) { return nil, errOS }

// Close does nothing.
func (*Blocker) Close() error { return nil }

// SetAllowed reports that nftables is not available.
func (*Blocker) SetAllowed([]netip.Prefix) error { return errOS }

// SetTrap reports that nftables is not available.
func (*Blocker) SetTrap(*Trap) error { return errOS }

// Stats reports that nftables is not available.
func (*Blocker) Stats() (Stats, error) { return Stats{}, errOS }
