// Package command runs the user's KILL_ROUTE and KILL_RUN_CMD templates.
//
// Templates are shell command lines (users write pipes and "&&" in them), so
// they run through /bin/sh. Only text this program produced is substituted
// into them: the address as printed by net/netip, a port number and a mode
// name. A resolved host name, which an attacker controls through reverse
// DNS, is never given to a shell.
package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Target is what a template's tokens expand to.
type Target struct {
	Addr netip.Addr // $TARGET$
	Port uint16     // $PORT$
	Mode string     // $MODE$
}

// Expand replaces $TARGET$, $PORT$ and $MODE$ everywhere they occur. An
// IPv4-mapped IPv6 address is written as IPv4, and a zone is dropped.
func Expand(template string, t Target) string {
	return strings.NewReplacer(
		"$TARGET$", t.Addr.Unmap().WithZone("").String(),
		"$PORT$", strconv.Itoa(int(t.Port)),
		"$MODE$", t.Mode,
	).Replace(template)
}

// Shell runs command lines with /bin/sh under a timeout.
type Shell struct {
	// Timeout bounds one command; at expiry its whole process group is
	// killed, so a hung command cannot stall later responses.
	Timeout time.Duration
}

// ErrTimeout is wrapped by the error of a command killed at its timeout.
var ErrTimeout = errors.New("timed out")

// maxOutput bounds how much of a failing command's output is kept for the log.
const maxOutput = 512

// Run runs line and returns an error when it cannot start, exits non-zero,
// or outlives the timeout. The error carries the tail of its output.
func (s Shell) Run(ctx context.Context, line string) error {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", line)
	// Its own process group, so that the kill reaches what the shell started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	// Output goes to an unlinked file, not a pipe: a template that starts a
	// background job ("notify.sh $TARGET$ &", as system() allowed in 1.2)
	// keeps the file open, and with a pipe Run would then wait WaitDelay,
	// report failure, and close the pipe under the job (SIGPIPE).
	out, err := os.CreateTemp("", "portsentry-cmd-*")
	if err != nil {
		return fmt.Errorf("command: %w", err)
	}
	os.Remove(out.Name())
	defer out.Close()
	cmd.Stdout = out
	cmd.Stderr = out
	err = cmd.Run()
	if err == nil {
		return nil
	}
	if ctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("%w after %v", ErrTimeout, timeout)
	}
	if tail := tailOf(readTail(out)); tail != "" {
		return fmt.Errorf("%w: %s", err, tail)
	}
	return err
}

// readTail returns the end of f, enough for tailOf.
func readTail(f *os.File) []byte {
	fi, err := f.Stat()
	if err != nil {
		return nil
	}
	off := max(fi.Size()-4*maxOutput, 0)
	b := make([]byte, fi.Size()-off)
	n, _ := f.ReadAt(b, off)
	return b[:n]
}

func tailOf(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > maxOutput {
		b = b[len(b)-maxOutput:]
	}
	return strings.Join(strings.Fields(string(b)), " ")
}
