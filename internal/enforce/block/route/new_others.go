//go:build !linux

package route

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/portsentry-go/portsentry/internal/enforce/block"
)

// New reports that netlink routes exist only on Linux. The error wraps
// block.ErrUnavailable, so detection moves on.
func New(opts Options) (*Blocker, error) {
	return nil, fmt.Errorf("route: not implemented on %s: %w", runtime.GOOS, block.ErrUnavailable)
}

// errDumpInterrupted stands for netlink's error of that name, which exists
// on Linux only; nothing returns it here but the tests' fake.
var errDumpInterrupted = errors.New("route: dump interrupted")
