package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/portsentry-go/portsentry/internal/syncbuf"
)

// proc is a child process in a process group of its own, so that Ctrl-C at
// the terminal reaches scanlab only (which then stops everything in order)
// and so that killing the group also ends whatever the child started.
type proc struct {
	name  string
	cmd   *exec.Cmd
	out   syncbuf.Buffer // stdout and stderr together
	stdin io.WriteCloser
	done  chan struct{} // closed once the process has been waited for
	err   error         // Wait's result, valid after done
}

// running holds every started process that has not been reaped, so that
// cleanup can end them whatever went wrong.
var running struct {
	mu    sync.Mutex
	procs map[*proc]bool
}

// startProc starts argv. With stdinPipe the child gets a pipe as its stdin:
// the scanlab helpers exit when it closes, which also happens when scanlab
// itself dies.
func startProc(name string, stdinPipe bool, argv ...string) (*proc, error) {
	p := &proc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stdout = &p.out
	p.cmd.Stderr = &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if stdinPipe {
		w, err := p.cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		p.stdin = w
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	running.mu.Lock()
	if running.procs == nil {
		running.procs = map[*proc]bool{}
	}
	running.procs[p] = true
	running.mu.Unlock()
	go func() {
		p.err = p.cmd.Wait()
		running.mu.Lock()
		delete(running.procs, p)
		running.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// tail returns the last lines of the output, for error messages.
func (p *proc) tail() string { return tail(p.out.String(), 15) }

func tail(s string, n int) string {
	s = strings.ReplaceAll(s, "\r", "\n")
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	var keep []string
	for _, l := range lines {
		if strings.TrimSpace(l) != "" {
			keep = append(keep, l)
		}
	}
	if len(keep) > n {
		keep = keep[len(keep)-n:]
	}
	return strings.Join(keep, "\n")
}

// waitOutput waits until the output contains sub. It fails early when the
// process exits or ctx ends.
func (p *proc) waitOutput(ctx context.Context, sub string, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if strings.Contains(p.out.String(), sub) {
			return nil
		}
		select {
		case <-p.done:
			if strings.Contains(p.out.String(), sub) {
				return nil
			}
			return fmt.Errorf("%s exited (%v) before printing %q:\n%s", p.name, p.err, sub, p.tail())
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("%s did not print %q within %v:\n%s", p.name, sub, timeout, p.tail())
		case <-tick.C:
		}
	}
}

// wait waits for the process to exit by itself; on timeout or when ctx
// ends it kills the process group and returns an error.
func (p *proc) wait(ctx context.Context, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		p.kill()
		return ctx.Err()
	case <-t.C:
		p.kill()
		return fmt.Errorf("%s still running after %v: killed", p.name, timeout)
	}
}

// stop asks the process to end with sig (nothing to send when sig is 0:
// closing stdin is the request) and waits up to grace, then kills the group.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) error {
	if p.stdin != nil {
		_ = p.stdin.Close()
	}
	if p.exited() {
		return p.err
	}
	if sig != 0 {
		_ = p.cmd.Process.Signal(sig)
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(grace):
		p.kill()
		return fmt.Errorf("%s did not stop within %v: killed", p.name, grace)
	}
}

// kill ends the process group with SIGKILL and waits (briefly) for the exit.
func (p *proc) kill() {
	if p.exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		fmt.Fprintf(os.Stderr, "scanlab: %s (pid %d) did not die after SIGKILL\n", p.name, p.cmd.Process.Pid)
	}
}

// killAll kills every process scanlab started that still runs.
func killAll() {
	running.mu.Lock()
	var ps []*proc
	for p := range running.procs {
		ps = append(ps, p)
	}
	running.mu.Unlock()
	for _, p := range ps {
		p.kill()
	}
}

// runCmd runs argv to completion within timeout and returns its combined
// output; the error carries the output's tail.
func runCmd(ctx context.Context, timeout time.Duration, argv ...string) (string, error) {
	p, err := startProc(argv[0], false, argv...)
	if err != nil {
		return "", err
	}
	err = p.wait(ctx, timeout)
	out := p.out.String()
	if err != nil {
		err = fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
		if t := tail(out, 10); t != "" {
			err = fmt.Errorf("%w:\n%s", err, t)
		}
	}
	return out, err
}
