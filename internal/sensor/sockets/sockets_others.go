//go:build !linux

package sockets

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/portsentry-go/portsentry/internal/event"
)

// errNotImplemented says the service check has no implementation here.
var errNotImplemented = fmt.Errorf("sockets: not implemented on %s: %w", runtime.GOOS, errors.ErrUnsupported)

// sysChecker has nothing to hold where nothing is implemented.
type sysChecker struct{}

func (*sysChecker) open() error                             { return errNotImplemented }
func (*sysChecker) close() error                            { return nil }
func (*sysChecker) inUse(event.Proto, uint16) (bool, error) { return false, errNotImplemented }
func (*sysChecker) owns(Packet) (bool, error)               { return false, errNotImplemented }
