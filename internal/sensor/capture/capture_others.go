//go:build !linux

package capture

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	"github.com/portsentry-go/portsentry/internal/sensor/packet"
)

// errNotImplemented is what Open returns: the sensor needs Linux's packet
// socket.
var errNotImplemented = fmt.Errorf("packet capture: not implemented on %s: %w", runtime.GOOS, errors.ErrUnsupported)

func supported() error { return errNotImplemented }

// sysSensor has no socket where none can be opened; Open never returns a
// Sensor here, so these methods are never reached.
type sysSensor struct{}

func (*sysSensor) open(packet.FilterOptions) error      { return errNotImplemented }
func (*sysSensor) close() error                         { return nil }
func (*sysSensor) interrupt()                           {}
func (*sysSensor) setFilter(packet.FilterOptions) error { return errNotImplemented }
func (*sysSensor) drops() (uint64, error)               { return 0, errNotImplemented }

func (*Sensor) readLoop(context.Context) error { return errNotImplemented }
