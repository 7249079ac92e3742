//go:build !linux

package selftest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"runtime"
)

// NewSystem returns the System of this host. Only Linux has one; here
// every method fails with an error wrapping errors.ErrUnsupported, so the
// checklist says so on its first line.
func NewSystem() System { return unsupported{} }

type unsupported struct{}

func errUnsupported() error {
	return fmt.Errorf("the self-test needs Linux network namespaces, not %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

func (unsupported) Privileges() (string, error)                { return "", errUnsupported() }
func (unsupported) LookPath(file string) (string, error)       { return exec.LookPath(file) }
func (unsupported) RemoveStale(string) ([]string, error)       { return nil, nil }
func (unsupported) Forwarding() (v4, v6 bool)                  { return false, false }
func (unsupported) NewNetns(string) (Netns, error)             { return nil, errUnsupported() }
func (unsupported) Link(_, _ Netns, _, _ []netip.Prefix) error { return errUnsupported() }
func (unsupported) Output(context.Context, Netns, []string) ([]byte, error) {
	return nil, errUnsupported()
}
func (unsupported) Start(Netns, []string, string, io.Writer) (Process, error) {
	return nil, errUnsupported()
}
