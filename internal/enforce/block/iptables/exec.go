package iptables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// execRunner runs the programs with os/exec: argv straight to execve, no
// shell, so nothing in an argument is ever interpreted.
type execRunner struct {
	// prefix goes before every command. The tests set it to
	// "ip netns exec NS" so that the real programs act on a namespace of
	// their own, never on the host's rules.
	prefix  []string
	timeout time.Duration
}

// cmdError is a command that failed.
type cmdError struct {
	argv   []string
	code   int    // exit code; -1 when it did not exit normally
	stderr string // the tail of its standard error, on one line
	err    error
}

func (e *cmdError) Error() string {
	s := fmt.Sprintf("%s: %v", strings.Join(e.argv, " "), e.err)
	if e.stderr != "" {
		s += ": " + e.stderr
	}
	return s
}

func (e *cmdError) Unwrap() error { return e.err }

// isExit reports whether err is a command that exited with one of codes.
func isExit(err error, codes ...int) bool {
	var ce *cmdError
	return errors.As(err, &ce) && slices.Contains(codes, ce.code)
}

// maxStderr bounds how much of a failing command's standard error is kept.
const maxStderr = 512

func (r execRunner) run(stdin []byte, argv ...string) ([]byte, error) {
	timeout := r.timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	full := append(slices.Clone(r.prefix), argv...)
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// iptables starts no children, so killing it frees the pipes; the
	// delay only guards against one that somehow does.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if err == nil {
		return stdout.Bytes(), nil
	}
	ce := &cmdError{argv: argv, code: -1, stderr: tail(stderr.Bytes()), err: err}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		ce.code = ee.ExitCode()
	}
	if ctx.Err() == context.DeadlineExceeded {
		ce.code, ce.err = -1, fmt.Errorf("timed out after %v", timeout)
	}
	return nil, ce
}

// sbin are searched after PATH: the programs live there, and a daemon
// started from cron or a user's shell may not have them in its PATH.
var sbin = []string{"/usr/sbin", "/sbin"}

func (execRunner) lookPath(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil || strings.Contains(name, "/") {
		return p, err
	}
	for _, dir := range sbin {
		if p, lerr := exec.LookPath(filepath.Join(dir, name)); lerr == nil {
			return p, nil
		}
	}
	return "", err
}

// tail keeps the end of a command's error output on one line.
func tail(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > maxStderr {
		b = b[len(b)-maxStderr:]
	}
	return strings.Join(strings.Fields(string(b)), " ")
}
