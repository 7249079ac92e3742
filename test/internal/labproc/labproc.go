// Package labproc runs the processes of the lab benchmarks (scanlab,
// floodlab): each child in a process group of its own, so that Ctrl-C at
// the terminal reaches the benchmark only (which then stops everything in
// order) and killing the group also ends whatever the child started; every
// child not yet reaped is known, so that clean-up can end them whatever
// went wrong (KillAll).
package labproc

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

// Proc is a started child process.
type Proc struct {
	name  string
	cmd   *exec.Cmd
	out   syncbuf.Buffer // stdout and stderr together (the head only, with StartLogged)
	stdin io.WriteCloser
	done  chan struct{} // closed once the process has been waited for
	err   error         // Wait's result, valid after done
}

// running holds every started process that has not been reaped.
var running struct {
	mu    sync.Mutex
	procs map[*Proc]bool
}

// Start starts argv, its output kept in memory (Output). With stdinPipe
// the child gets a pipe as its stdin: the lab helpers exit when it closes,
// which also happens when the benchmark itself dies.
func Start(name string, stdinPipe bool, argv ...string) (*Proc, error) {
	p := newProc(name, argv)
	p.cmd.Stdout = &p.out
	p.cmd.Stderr = &p.out
	if stdinPipe {
		w, err := p.cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		p.stdin = w
	}
	if err := p.start(); err != nil {
		return nil, err
	}
	return p, nil
}

// StartLogged starts argv with its output copied to log through a pipe (as
// a service manager's journal takes a daemon's output: the child's writes
// are pipe writes, not file writes); only its first keep bytes are also
// kept in memory (Output), enough to wait for a start-up line of a program
// that may print millions.
func StartLogged(name string, log io.Writer, keep int, argv ...string) (*Proc, error) {
	p := newProc(name, argv)
	w := io.MultiWriter(log, &headWriter{buf: &p.out, room: keep})
	p.cmd.Stdout = w
	p.cmd.Stderr = w
	if err := p.start(); err != nil {
		return nil, err
	}
	return p, nil
}

func newProc(name string, argv []string) *Proc {
	p := &Proc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return p
}

func (p *Proc) start() error {
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	running.mu.Lock()
	if running.procs == nil {
		running.procs = map[*Proc]bool{}
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
	return nil
}

// headWriter keeps the first room bytes written and drops the rest,
// never failing (a failing writer would stop io.MultiWriter).
type headWriter struct {
	buf  *syncbuf.Buffer
	room int
}

func (h *headWriter) Write(b []byte) (int, error) {
	if h.room > 0 {
		n := min(len(b), h.room)
		_, _ = h.buf.Write(b[:n])
		h.room -= n
	}
	return len(b), nil
}

// Name is the name the process was started with.
func (p *Proc) Name() string { return p.name }

// Pid is the process's ID.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Output is what the process printed so far (stdout and stderr).
func (p *Proc) Output() string { return p.out.String() }

// Done is closed once the process has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Tail returns the last lines of the output, for error messages.
func (p *Proc) Tail() string { return Tail(p.out.String(), 15) }

// Tail returns the last n non-blank lines of s.
func Tail(s string, n int) string {
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

// WaitOutput waits until the output contains sub. It fails early when the
// process exits or ctx ends.
func (p *Proc) WaitOutput(ctx context.Context, sub string, timeout time.Duration) error {
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
			return fmt.Errorf("%s exited (%v) before printing %q:\n%s", p.name, p.err, sub, p.Tail())
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("%s did not print %q within %v:\n%s", p.name, sub, timeout, p.Tail())
		case <-tick.C:
		}
	}
}

// Wait waits for the process to exit by itself; on timeout or when ctx
// ends it kills the process group and returns an error.
func (p *Proc) Wait(ctx context.Context, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		p.Kill()
		return ctx.Err()
	case <-t.C:
		p.Kill()
		return fmt.Errorf("%s still running after %v: killed", p.name, timeout)
	}
}

// Stop asks the process to end with sig (nothing to send when sig is 0:
// closing stdin is the request) and waits up to grace, then kills the group.
func (p *Proc) Stop(sig syscall.Signal, grace time.Duration) error {
	if p.stdin != nil {
		_ = p.stdin.Close()
	}
	if p.Exited() {
		return p.err
	}
	if sig != 0 {
		_ = p.cmd.Process.Signal(sig)
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(grace):
		p.Kill()
		return fmt.Errorf("%s did not stop within %v: killed", p.name, grace)
	}
}

// Kill ends the process group with SIGKILL and waits (briefly) for the exit.
func (p *Proc) Kill() {
	if p.Exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		fmt.Fprintf(os.Stderr, "labproc: %s (pid %d) did not die after SIGKILL\n", p.name, p.cmd.Process.Pid)
	}
}

// KillAll kills every process started here that still runs.
func KillAll() {
	running.mu.Lock()
	var ps []*Proc
	for p := range running.procs {
		ps = append(ps, p)
	}
	running.mu.Unlock()
	for _, p := range ps {
		p.Kill()
	}
}

// Run runs argv to completion within timeout and returns its combined
// output; the error carries the output's tail.
func Run(ctx context.Context, timeout time.Duration, argv ...string) (string, error) {
	p, err := Start(argv[0], false, argv...)
	if err != nil {
		return "", err
	}
	err = p.Wait(ctx, timeout)
	out := p.out.String()
	if err != nil {
		err = fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
		if t := Tail(out, 10); t != "" {
			err = fmt.Errorf("%w:\n%s", err, t)
		}
	}
	return out, err
}

// IsSignalExit reports an exit caused by a signal (the one the benchmark
// sent to stop the process).
func IsSignalExit(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "signal:")
}
