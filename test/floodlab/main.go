// Command floodlab is the flood benchmark (issue 9, "Bounded cost under
// floods"): it measures what a flood of forged probes costs the real
// daemon, and whether the daemon still catches a real scanner during and
// after it.
//
//	sudo go run ./test/floodlab [-duration 60s] [-scenarios syn,udp,syn6] [-out FILE] [-keep] [-bin PORTSENTRY] [-perf]
//	make floodlab FLOODLAB_FLAGS='-duration 10s'
//
// It needs root, hping3, nmap and nftables (apt-get install hping3 nmap
// nftables). It builds the daemon from ./cmd/portsentry (or takes -bin),
// then creates network namespaces named psflood-PID-*: the target T (the
// daemon, a real TCP service on port 80 and a real UDP service on port 53),
// the flooder F, a scanner S that scans during the flood, a scanner P that
// scans after it and an innocent client I, on one bridge in a hub
// namespace, 10.233.0.0/24 and fd00:233::/64. No namespace has a link to
// the host. T's default routes point at F, so that T routes the flood's
// random sources (and any reply to them) back into F's link; no other
// namespace has a default route. Everything is deleted at the end, also on
// error and on Ctrl-C; leftovers of a killed run are deleted at the next
// start.
//
// The daemon runs on the shipped configuration (packaging/portsentry.conf:
// advanced modes over every unused port, SCAN_TRIGGER="0", BLOCKER="auto",
// which is nftables here, KERNEL_TRAP="1") with every file it writes
// moved into the run's work directory and EVENT_LOG on. Its output goes
// through a pipe to a file, as a service manager's journal takes it.
//
// Each scenario gets a fresh daemon and a fresh ban table, then:
//
//  1. I starts using T's services every 50 ms, and keeps on to the end;
//  2. F floods one unused port of T from random sources for -duration, at
//     the highest rate it can: hping3 for IPv4 (syn: `hping3 -S --flood
//     --rand-source`, udp: `hping3 --udp --flood --rand-source`), and
//     floodlab's own raw-socket flooder for IPv6 (syn6: sources random in
//     2001:db8::/32, the documentation prefix);
//  3. meanwhile `portsentry status` runs every -status-every, timed, and S
//     runs `nmap -sS -p1-1024` against T;
//  4. once the flood has stopped P runs the same scan.
//
// The table gives the packets F sent (its interface's counters) and their
// rate, the daemon's CPU over the flood (utime+stime of /proc/PID/stat, in
// cores), its peak RSS (VmHWM), the bytes it wrote to storage over the
// flood (write_bytes of /proc/PID/io) and the size of its files at the end,
// the kernel ban sets' elements at the end, the innocent client's failed
// requests, the ports each scan found answered (not filtered) and whether
// the scanner's address is in the history file, and the latency of
// `portsentry status` (median and maximum).
//
// hping3 --rand-source draws from all of IPv4: about 12% of its packets
// claim a source the kernel takes for a martian (0/8, 127/8, 224/3), and
// one may, very rarely, claim a lab address (about one packet in 17
// million names a given /24). The packets still travel only on the lab's
// links.
//
// -perf samples the daemon with perf record during each flood and adds
// its hottest symbols to the notes; -bin measures a daemon built
// elsewhere (for instance from a clean export of a commit).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/portsentry-go/portsentry/test/internal/labns"
	"github.com/portsentry-go/portsentry/test/internal/labproc"
	"github.com/portsentry-go/portsentry/test/internal/labsvc"
)

func main() {
	if code, ok := labsvc.Main(os.Args[1:]); ok {
		os.Exit(code)
	}
	if code, ok := floodHelperMain(os.Args[1:]); ok {
		os.Exit(code)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options is the parsed command line.
type options struct {
	duration    time.Duration
	scenarios   []scenario
	out         string
	keep        bool
	bin         string
	statusEvery time.Duration
	timeout     time.Duration
	perf        bool
}

const (
	defaultScenarios = "syn,udp,syn6"
	installHint      = "apt-get install hping3 nmap nftables iproute2"
)

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("floodlab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{}
	names := fs.String("scenarios", defaultScenarios, "`list` of floods to run, from "+defaultScenarios)
	fs.DurationVar(&o.duration, "duration", 60*time.Second, "how long each flood lasts")
	fs.StringVar(&o.out, "out", "", "append the Markdown report to `FILE`")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (daemon files and log, scanner output, status samples)")
	fs.StringVar(&o.bin, "bin", "", "the daemon `binary` to measure (default: go build ./cmd/portsentry)")
	fs.BoolVar(&o.perf, "perf", false, "sample the daemon with perf record during each flood and list its hottest symbols")
	fs.DurationVar(&o.statusEvery, "status-every", 2*time.Second, "interval between two `portsentry status` during the flood")
	fs.DurationVar(&o.timeout, "timeout", 0, "give up (and clean up) after this long (default: 15 min per scenario plus twice the floods)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: floodlab [flags]   (as root; needs %s)\n", installHint)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.duration < time.Second {
		return nil, fmt.Errorf("-duration %v: want at least 1s", o.duration)
	}
	if o.statusEvery <= 0 {
		return nil, fmt.Errorf("-status-every %v: want a positive interval", o.statusEvery)
	}
	for _, n := range splitList(*names) {
		s, ok := scenarioByName(n)
		if !ok {
			return nil, fmt.Errorf("-scenarios: unknown scenario %q (want some of %s)", n, defaultScenarios)
		}
		o.scenarios = append(o.scenarios, s)
	}
	if len(o.scenarios) == 0 {
		return nil, errors.New("-scenarios: empty")
	}
	if o.timeout == 0 {
		o.timeout = time.Duration(len(o.scenarios)) * (15*time.Minute + 2*o.duration)
	}
	return o, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// command is the command line that reproduces this run.
func (o *options) command() string {
	var names []string
	for _, s := range o.scenarios {
		names = append(names, s.name)
	}
	return fmt.Sprintf("go run ./test/floodlab -duration %v -scenarios %s", o.duration, strings.Join(names, ","))
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "floodlab:", err)
		return 2
	}
	sigCtx, stopSignals := labproc.HandleSignals("floodlab", stderr, func() {
		if err := labns.RemoveOwn(nsPrefix); err != nil {
			fmt.Fprintln(stderr, "floodlab:", err)
		}
	})
	defer stopSignals()
	ctx, cancel := context.WithTimeout(sigCtx, o.timeout)
	defer cancel()

	rep, err := benchmark(ctx, o, stderr)
	if rep != nil && len(rep.results) > 0 {
		if werr := rep.write(stdout, o.out); werr != nil {
			fmt.Fprintln(stderr, "floodlab:", werr)
			return 1
		}
	}
	if err != nil {
		if errors.Is(context.Cause(sigCtx), labproc.ErrInterrupted) {
			err = labproc.ErrInterrupted
		} else if ctx.Err() != nil {
			err = fmt.Errorf("gave up after -timeout %v: %w", o.timeout, err)
		}
		fmt.Fprintln(stderr, "floodlab:", err)
		return 1
	}
	if rep.failed() {
		return 1
	}
	return 0
}
