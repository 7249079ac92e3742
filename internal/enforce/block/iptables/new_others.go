//go:build !linux

package iptables

import (
	"fmt"
	"runtime"

	"github.com/portsentry-go/portsentry/internal/enforce/block"
)

// New reports that iptables exists only on Linux. The error wraps
// block.ErrUnavailable, so detection moves on.
func New(opts Options) (*Blocker, error) {
	return nil, fmt.Errorf("iptables: not implemented on %s: %w", runtime.GOOS, block.ErrUnavailable)
}
