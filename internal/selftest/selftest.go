// Package selftest proves on this host that portsentry's detection and
// blocking work, without another machine: it is what the PortSentry
// tutorials do with "now scan the server with nmap from another machine",
// done inside private network namespaces.
//
// Run checks the kernel features the daemon needs (packet sockets, socket
// filters, sock_diag, nftables and the expressions the kernel trap uses),
// then builds a two-namespace network — T, the target, and S, the scanner,
// joined by a veth pair, IPv4 and IPv6 — starts the portsentry binary in T
// in advanced mode with blocking on, and from S connects to a real service
// in T, probes a free port, waits for the daemon's attackalert and block
// lines, and checks that the scanner can no longer connect. Each step is one
// Result on a checklist.
//
// The network rule: every packet the self-test sends goes to an address
// inside a namespace it created (10.239.0.0/30 and fd00:239::/64, with no
// default route), and everything it creates (namespaces, processes, the
// temporary directory) is removed at the end, also on error, timeout and
// SIGINT (the caller cancels the context). The host's own network, routes
// and firewall are never touched.
//
// All the kernel plumbing sits behind the System interface (NewSystem is the
// real one), so that the checklist logic is tested with fakes.
package selftest

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/portsentry-go/portsentry/internal/netns"
)

// Status is the outcome of one check.
type Status int

// Statuses. Only Fail makes the self-test fail: Warn is an optional feature
// that is missing (the daemon works without it, with a fallback), Skip a
// check that could not run because of an earlier failure, Info a fact.
const (
	OK Status = iota
	Warn
	Fail
	Skip
	Info
)

// String returns the word printed on the checklist.
func (s Status) String() string {
	switch s {
	case OK:
		return "OK"
	case Warn:
		return "WARN"
	case Fail:
		return "FAIL"
	case Skip:
		return "SKIP"
	case Info:
		return "INFO"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Result is one line of the checklist.
type Result struct {
	// Section groups results on the printed checklist.
	Section string
	// Name says what was checked, e.g. "packet socket (AF_PACKET)".
	Name   string
	Status Status
	// Detail is the evidence: what worked (a log line, an address), or the
	// error, or why the check was skipped.
	Detail string
	// Remedy says what to do about a Fail or Warn; "" otherwise.
	Remedy string
}

// Report is the outcome of a self-test.
type Report struct {
	Results []Result
	// DaemonLog is everything the daemon under test wrote; "" when it was
	// not started.
	DaemonLog string
	// TempDir is the temporary directory (configuration, history, log);
	// it is removed at the end unless Options.Keep.
	TempDir string
}

// Passed reports whether no check failed.
func (r *Report) Passed() bool {
	for _, res := range r.Results {
		if res.Status == Fail {
			return false
		}
	}
	return true
}

// Find returns the first result whose name is name.
func (r *Report) Find(name string) (Result, bool) {
	for _, res := range r.Results {
		if res.Name == name {
			return res, true
		}
	}
	return Result{}, false
}

// Count returns how many results have status s.
func (r *Report) Count(s Status) int {
	n := 0
	for _, res := range r.Results {
		if res.Status == s {
			n++
		}
	}
	return n
}

// Options are the self-test's choices.
type Options struct {
	// Binary is the portsentry executable to test; "" means this one
	// (os.Executable).
	Binary string
	// Timeout bounds the whole run, clean-up excepted; 0 means
	// DefaultTimeout.
	Timeout time.Duration
	// Keep keeps the temporary directory (configuration, history, blocked
	// file and daemon log) for inspection.
	Keep bool
	// TempRoot is where the temporary directory is made; "" means
	// os.TempDir().
	TempRoot string
	// Out receives the checklist as it is made, one line per result;
	// nil discards it.
	Out io.Writer
}

// DefaultTimeout bounds a self-test when Options.Timeout is 0.
const DefaultTimeout = 60 * time.Second

// Section names.
const (
	SectionKernel = "Kernel and system"
	SectionE2E    = "End to end (private namespaces, never the host's network)"
	SectionEnd    = "Clean-up"
)

// NamePrefix starts the name of every namespace the self-test creates; the
// full name is NamePrefix + creator PID + "-" + random + "-" + role (k for
// the kernel checks, t for the target, s for the scanner), so that a later
// run can tell leftovers of a killed run from a live concurrent one.
const NamePrefix = "psst-"

// The private test network. These addresses exist only inside the
// namespaces; neither namespace has a default route.
var (
	TargetV4  = netip.MustParseAddr("10.239.0.1")
	ScannerV4 = netip.MustParseAddr("10.239.0.2")
	TargetV6  = netip.MustParseAddr("fd00:239::1")
	ScannerV6 = netip.MustParseAddr("fd00:239::2")
)

const (
	prefixV4 = 30
	prefixV6 = 64
	// ServicePort is where the real service listens in T; connecting to it
	// from S must work before the block and fail after.
	ServicePort = 80
	// ProbePort is the free port S probes (below ADVANCED_PORTS_TCP, not
	// in ADVANCED_EXCLUDE_TCP).
	ProbePort = 143
	// greeting is what the service sends, so that a connection is known to
	// reach it and nothing else.
	greeting = "portsentry-selftest\n"
)

// Timeouts of single steps; all are also bounded by Options.Timeout.
const (
	readyWait   = 15 * time.Second // the daemon's "now active and listening"
	dialTimeout = 2 * time.Second  // a connection that must succeed
	probeWait   = time.Second      // the probe (refused or dropped)
	holdWait    = 1500 * time.Millisecond
	stopGrace   = 3 * time.Second // SIGTERM to SIGKILL
)

// detectWait bounds the wait for the attackalert and the block lines after
// a probe (a variable so that tests of failures need not wait it out).
var detectWait = 5 * time.Second

// Run runs the self-test on sys and returns the report. It never panics on
// a system error: every failure is a Result. Everything it creates is gone
// when it returns (but the temporary directory with Options.Keep), also when
// ctx is cancelled midway.
func Run(ctx context.Context, sys System, opts Options) *Report {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	r := &runner{
		sys:  sys,
		opts: opts,
		rep:  &Report{},
		id:   netns.ID(NamePrefix),
	}
	defer r.cleanup() // also on panic; a no-op after the explicit call below
	if r.kernel(ctx) {
		r.endToEnd(ctx)
	} else {
		r.section = SectionE2E
		r.add(Result{Name: "end to end", Status: Skip, Detail: "not run: fix the failed checks above first"})
	}
	r.cleanup()
	return r.rep
}

// runner is one self-test under way.
type runner struct {
	sys     System
	opts    Options
	rep     *Report
	id      string // namespace name stem
	section string
	printed string // last section header printed
	// undo holds the clean-up steps, run last first.
	undo []undoStep
	log  *daemonLog // the daemon's output; nil until started
}

type undoStep struct {
	what string
	fn   func() error
}

// add records a result and prints it.
func (r *runner) add(res Result) {
	res.Section = r.section
	r.rep.Results = append(r.rep.Results, res)
	if r.printed != res.Section {
		r.printed = res.Section
		fmt.Fprintf(r.opts.Out, "%s\n", res.Section)
	}
	WriteResult(r.opts.Out, res)
}

// onCleanup registers fn to run at the end.
func (r *runner) onCleanup(what string, fn func() error) {
	r.undo = append(r.undo, undoStep{what, fn})
}

// cleanup undoes everything, last first, and reports it on one line. It
// does not depend on the run's context, which may be cancelled by now.
func (r *runner) cleanup() {
	if len(r.undo) == 0 {
		return
	}
	steps := r.undo
	r.undo = nil
	var done, failed []string
	for i := len(steps) - 1; i >= 0; i-- {
		if err := steps[i].fn(); err != nil {
			failed = append(failed, steps[i].what+": "+err.Error())
		} else {
			done = append(done, steps[i].what)
		}
	}
	if r.log != nil {
		r.rep.DaemonLog = r.log.String()
	}
	r.section = SectionEnd
	if len(failed) > 0 {
		r.add(Result{Name: "clean-up", Status: Fail,
			Detail: strings.Join(failed, "; "),
			Remedy: "remove what is left by hand: ip netns list | grep " + NamePrefix + " (then ip netns delete NAME)"})
		return
	}
	detail := strings.Join(done, ", ")
	if r.opts.Keep && r.rep.TempDir != "" {
		detail += "; kept " + r.rep.TempDir
	}
	r.add(Result{Name: "clean-up", Status: OK, Detail: detail})
}

// WriteResult prints one checklist line, and the remedy under it:
//
//	[ OK ] packet socket (AF_PACKET): opened in psst-1234-0a1b2c-k
//	[FAIL] nft socket expression: no such file or directory
//	       remedy: modprobe nft_socket
func WriteResult(w io.Writer, res Result) {
	line := fmt.Sprintf("  [%-4s] %s", center(res.Status.String()), res.Name)
	if res.Detail != "" {
		line += ": " + res.Detail
	}
	fmt.Fprintln(w, line)
	if res.Remedy != "" {
		fmt.Fprintf(w, "         remedy: %s\n", res.Remedy)
	}
}

func center(s string) string {
	if len(s) == 2 {
		return " " + s + " "
	}
	return s
}

// Summary is the last line of a printed report.
func (r *Report) Summary() string {
	ok, warn, fail, skip := r.Count(OK), r.Count(Warn), r.Count(Fail), r.Count(Skip)
	if fail > 0 {
		return fmt.Sprintf("FAIL: %d checks failed, %d skipped, %d passed, %d warnings", fail, skip, ok, warn)
	}
	s := fmt.Sprintf("PASS: detection and blocking work on this host (%d checks passed", ok)
	if warn > 0 {
		s += fmt.Sprintf(", %d warnings: optional features missing", warn)
	}
	return s + ")"
}

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
