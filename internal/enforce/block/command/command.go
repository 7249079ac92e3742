// Package command runs the user's KILL_ROUTE and KILL_RUN_CMD templates.
//
// Templates are shell command lines (users write pipes and "&&" in them), so
// they run through /bin/sh. Only text this program produced is substituted
// into them: the address as printed by net/netip, a port number and a mode
// name. A resolved host name, which an attacker controls through reverse
// DNS, is never given to a shell.
//
// A line that leaves a shell nothing to do but split it into words and
// find the program ("iptables -I INPUT -s 192.0.2.1 -j DROP") is run
// directly, as /bin/sh would run it: starting the shell first costs about
// a millisecond, during which a scanner's probes are still answered.
package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
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
	// Raise, when above 0, starts commands that many nice levels more
	// favoured than the daemon (at most -20), when the daemon may raise
	// it (root): on a busy host a block command then gets the CPU before
	// the daemon's own work on the probes that keep coming.
	Raise int
}

// ErrTimeout is wrapped by the error of a command killed at its timeout.
var ErrTimeout = errors.New("timed out")

// maxOutput bounds how much of a failing command's output is kept for the log.
const maxOutput = 512

// Run runs line and returns an error when it cannot start, exits non-zero,
// or outlives the timeout. The error carries the tail of its output.
func (s Shell) Run(ctx context.Context, line string) error {
	return s.Start(ctx, line).Wait()
}

// Started is a command Start started; Wait ends it.
type Started struct {
	cmd     *exec.Cmd
	ctx     context.Context
	cancel  context.CancelFunc
	timeout time.Duration
	out     *os.File
	err     error // from the start
	// program is the program's name when its path came from programs:
	// Wait searches for it again, for the next line.
	program string
}

// Start starts line under the timeout, as Run does, and returns at once;
// Wait then tells what Run would have. The caller must call Wait.
func (s Shell) Start(ctx context.Context, line string) *Started {
	p := &Started{timeout: s.Timeout}
	if p.timeout <= 0 {
		p.timeout = 30 * time.Second
	}
	p.ctx, p.cancel = context.WithTimeout(ctx, p.timeout)
	// Output goes to an unlinked file, not a pipe: a template that starts a
	// background job ("notify.sh $TARGET$ &", as system() allowed in 1.2)
	// keeps the file open, and with a pipe Run would then wait WaitDelay,
	// report failure, and close the pipe under the job (SIGPIPE).
	out, err := outputFile(os.TempDir())
	if err != nil {
		p.err = fmt.Errorf("command: %w", err)
		return p
	}
	p.out = out
	var cmd *exec.Cmd
	cmd, p.program = command(p.ctx, line)
	p.err = s.start(cmd, out)
	if p.program != "" && errors.Is(p.err, fs.ErrNotExist) {
		// Where the program was found before, it is no longer: search
		// again, as a shell would have.
		programs.forget(p.program)
		cmd, p.program = command(p.ctx, line)
		p.err = s.start(cmd, out)
	}
	p.cmd = cmd
	return p
}

// start starts cmd with its output to out.
func (s Shell) start(cmd *exec.Cmd, out *os.File) error {
	// Its own process group, so that the kill reaches what the shell started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	cmd.Stdout = out
	cmd.Stderr = out
	if s.Raise > 0 {
		restore := raisePriority(s.Raise)
		defer restore()
	}
	return cmd.Start()
}

// Wait waits for the command to end and returns an error when it could
// not start, exited non-zero, or outlived the timeout, with the tail of its
// output.
func (p *Started) Wait() error {
	defer p.cancel()
	if p.out == nil {
		return p.err
	}
	defer p.out.Close()
	err := p.err
	if err == nil {
		err = p.cmd.Wait()
	}
	if p.program != "" {
		// Off the way to the block, which has run: the next line finds
		// the program where a shell would.
		_, _ = programs.search(p.program)
	}
	if err == nil {
		return nil
	}
	if p.ctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("%w after %v", ErrTimeout, p.timeout)
	}
	if tail := tailOf(readTail(p.out)); tail != "" {
		return fmt.Errorf("%w: %s", err, tail)
	}
	return err
}

// command is line as a command: the program itself when line is a simple
// command (Simple), else /bin/sh -c line. program is the program's name
// when its path came from programs (see there), else "".
func command(ctx context.Context, line string) (cmd *exec.Cmd, program string) {
	if argv, ok := Simple(line); ok {
		// /bin/sh would find the program the same way, on the same PATH
		// (the daemon's, which it inherits). When it cannot be found, the
		// shell runs the line, so that the failure reads as before.
		path, cached := programs.lookup(argv[0])
		if cached {
			program = argv[0]
		} else {
			var err error
			path, err = programs.search(argv[0])
			cached = err == nil
		}
		if cached {
			cmd := exec.CommandContext(ctx, path, argv[1:]...)
			cmd.Args[0] = argv[0]
			return cmd, program
		}
	}
	return exec.CommandContext(ctx, "/bin/sh", "-c", line), ""
}

// Simple splits line into words when /bin/sh would do nothing else with
// it: only letters, digits and -_./:,+@%= between blanks (no quoting,
// expansion, redirection, globbing, comment, operator or assignment), and
// a first word that is no shell keyword or builtin. Otherwise it reports
// false, and the line is the shell's.
func Simple(line string) ([]string, bool) {
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == ' ' || c == '\t':
		case strings.IndexByte("-_./:,+@%=", c) >= 0:
		default:
			return nil, false
		}
	}
	argv := strings.Fields(line)
	if len(argv) == 0 || strings.IndexByte(argv[0], '=') >= 0 {
		return nil, false // empty, or an assignment (NAME=value cmd)
	}
	if !strings.Contains(argv[0], "/") && shellWords[argv[0]] {
		return nil, false
	}
	return argv, true
}

// shellWords are the names /bin/sh runs itself (POSIX reserved words and
// builtins, and dash's and bash's common ones) rather than looking them up
// on PATH.
var shellWords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`! { } [[ ]] case do done elif else esac fi for function if in select then time until while
		. : alias bg break builtin cd command continue declare echo enable eval exec exit export false fc fg getopts hash
		jobs kill let local logout printf pwd read readonly return set shift source test times trap true type typeset
		ulimit umask unalias unset wait [`) {
		m[w] = true
	}
	return m
}()

// namedOutputFile is outputFile with a named file, unlinked at once.
func namedOutputFile(dir string) (*os.File, error) {
	f, err := os.CreateTemp(dir, "portsentry-cmd-*")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	return f, nil
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
