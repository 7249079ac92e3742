//go:build !linux

package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
)

// NS is a network namespace; there are none on this system.
type NS struct{ name string }

func unsupported() error {
	return fmt.Errorf("netns: network namespaces need Linux, not %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

// New fails: network namespaces are Linux's.
func New(prefix, role string) (*NS, error) { return nil, unsupported() }

// Create fails: network namespaces are Linux's.
func Create(name string) (*NS, error) { return nil, unsupported() }

// Name is the namespace's name.
func (n *NS) Name() string { return n.name }

// String is the name.
func (n *NS) String() string { return n.name }

// Fd is -1: there is no namespace.
func (n *NS) Fd() int { return -1 }

// Delete fails.
func (n *NS) Delete() error { return unsupported() }

// Delete fails.
func Delete(name string) error { return unsupported() }

// Pids fails.
func Pids(name string) ([]int, error) { return nil, unsupported() }

// List finds nothing.
func List(prefix string) ([]string, error) { return nil, nil }

// Sweep has nothing to delete.
func Sweep(prefix string) ([]string, error) { return nil, nil }

// SweepFunc has nothing to delete.
func SweepFunc(prefix string, alive func(pid int) bool) ([]string, error) { return nil, nil }

// Runs is always true here: nothing is swept.
func Runs(pid int) bool { return true }

// Do fails without calling fn.
func (n *NS) Do(fn func() error) error { return unsupported() }

// Argv is argv prefixed with `ip netns exec`.
func (n *NS) Argv(argv ...string) []string {
	return append([]string{"ip", "netns", "exec", n.name}, argv...)
}

// Command returns a command that fails to start.
func (n *NS) Command(name string, arg ...string) *exec.Cmd {
	cmd := exec.Command(name, arg...)
	cmd.Err = unsupported()
	return cmd
}

// CommandContext returns a command that fails to start.
func (n *NS) CommandContext(ctx context.Context, name string, arg ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, arg...)
	cmd.Err = unsupported()
	return cmd
}

// Start fails.
func (n *NS) Start(cmd *exec.Cmd) error { return unsupported() }

// LinkUp fails.
func (n *NS) LinkUp(dev string) error { return unsupported() }

// MAC fails.
func (n *NS) MAC(dev string) (net.HardwareAddr, error) { return nil, unsupported() }

// DefaultRoutes fails.
func (n *NS) DefaultRoutes() ([]string, error) { return nil, unsupported() }

// Pair fails.
func Pair(a, b Iface) error { return unsupported() }

// Star fails.
func Star(hub *NS, bridge string, ifaces ...Iface) error { return unsupported() }

// Address fails.
func Address(f Iface) error { return unsupported() }

// Route fails.
func (n *NS) Route(dst netip.Prefix, via netip.Addr) error { return unsupported() }

// Forward fails.
func (n *NS) Forward(on bool) error { return unsupported() }
