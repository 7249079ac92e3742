// Command trustlab is the trust benchmark (issue 9, "Trust under real
// traffic"): it measures whether the real daemon, blocking as shipped,
// spares the users a forger or everyday traffic would have it ban, and
// still blocks real scans.
//
//	sudo go run ./test/trustlab [-scenarios forged,forged-hop,restart,traceroute,slowscan] [-out FILE] [-keep] [-bin PORTSENTRY]
//	make trustlab TRUSTLAB_FLAGS='-scenarios forged'
//
// It needs root, nmap, nftables and traceroute (mtr too for its rows:
// apt-get install nmap nftables traceroute mtr-tiny). It builds the daemon
// from ./cmd/portsentry (or takes -bin), then creates network namespaces
// named pstrust-PID-*: on one bridge (in a hub namespace), the server T
// (10.235.0.1, fd00:235::1), the LAN side of a router R, a forger A, two
// LAN clients N1 and N2 and a scanner S; behind R, on a link of its own
// (10.235.1.0/24, fd00:235:1::/64), the client C, one hop from T. No
// namespace has a link to the host or a default route. Everything is
// deleted at the end, also on error and on Ctrl-C; leftovers of a killed
// run are deleted at the next start.
//
// T runs the daemon on the shipped configuration (packaging/portsentry.conf:
// advanced modes over every unused port, SCAN_TRIGGER="0", BLOCKER="auto",
// which is nftables here, KERNEL_TRAP="1", PROTECT_PEERS="1",
// SERVICE_GRACE="3600") with every file it writes moved into the run's
// work directory and EVENT_LOG on, a fresh daemon and ban table for each
// scenario; and real services: a web-like TCP service on port 80, a DNS-like
// UDP service on port 53, and an SSH-like echo service on port 22.
//
// The scenarios:
//
//   - forged: C keeps an SSH-like session open to T (a line echoed every
//     100 ms, IPv4 and IPv6) and fetches a page and makes a DNS query every
//     50 ms; A sends 20 TCP SYNs with C's address as source to unused ports
//     900-919, then 20 UDP datagrams, over IPv4 and IPv6, with Linux's
//     default TTL (A is on T's link: they arrive with 64, C's own packets
//     with 63). Measured: C's failed requests, whether its sessions
//     survive, whether its addresses are in a ban set. Then C itself runs
//     `nmap -sS -p1-1024` against T, IPv4 then IPv6: the ports T answered,
//     and whether C is banned and in the history file.
//   - forged-hop: the same forgeries from a forger who guessed C's hop
//     count (TTL 63: arriving as C's own packets do), without the scans:
//     what README.md says a forger at the same distance can do.
//   - restart: C, N1 and N2 connect every 50 ms to a service on T's port
//     8080, which is stopped for 2 s and started again: clients banned,
//     and whether each is served again after the restart.
//   - traceroute: `traceroute` (UDP, the default), `traceroute -I` (ICMP),
//     `traceroute -T` (TCP SYN), `traceroute -6`, and `mtr -u` (UDP, three
//     rounds) from C, two hops from T, each against a fresh daemon: whether
//     it reached T and whether C was banned.
//   - slowscan: with SCAN_TRIGGER="3", S runs `nmap -sS -T1 --max-retries 0
//     -p 1-10` (a probe every 15 s): the probe at which S was blocked, and
//     what nmap learned.
//
// -bin measures a daemon built elsewhere (for instance from a clean
// export of a commit); -keep keeps the work directory (the daemon's files
// and log, nmap's and traceroute's output).
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
	if code, ok := helperMain(os.Args[1:]); ok {
		os.Exit(code)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options is the parsed command line.
type options struct {
	scenarios []scenario
	out       string
	keep      bool
	bin       string
	timeout   time.Duration
}

const installHint = "apt-get install nmap nftables traceroute mtr-tiny iproute2"

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("trustlab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{}
	names := fs.String("scenarios", strings.Join(scenarioNames(), ","), "`list` of scenarios to run")
	fs.StringVar(&o.out, "out", "", "append the Markdown report to `FILE`")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (daemon files and logs, tools' output)")
	fs.StringVar(&o.bin, "bin", "", "the daemon `binary` to measure (default: go build ./cmd/portsentry)")
	fs.DurationVar(&o.timeout, "timeout", 20*time.Minute, "give up (and clean up) after this long")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: trustlab [flags]   (as root; needs %s)\n", installHint)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.timeout <= 0 {
		return nil, fmt.Errorf("-timeout %v: want a positive duration", o.timeout)
	}
	seen := map[string]bool{}
	for _, n := range strings.Split(*names, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		s, ok := scenarioByName(n)
		if !ok {
			return nil, fmt.Errorf("-scenarios: unknown scenario %q (want some of %s)", n, strings.Join(scenarioNames(), ","))
		}
		if seen[n] {
			return nil, fmt.Errorf("-scenarios: %q twice", n)
		}
		seen[n] = true
		o.scenarios = append(o.scenarios, s)
	}
	if len(o.scenarios) == 0 {
		return nil, errors.New("-scenarios: empty")
	}
	return o, nil
}

// command is the command line that reproduces this run.
func (o *options) command() string {
	names := make([]string, len(o.scenarios))
	for i, s := range o.scenarios {
		names[i] = s.name
	}
	cmd := "go run ./test/trustlab -scenarios " + strings.Join(names, ",")
	if o.bin != "" {
		cmd += " -bin BIN"
	}
	return cmd
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "trustlab:", err)
		return 2
	}
	sigCtx, stopSignals := labproc.HandleSignals("trustlab", stderr, func() {
		if err := labns.RemoveOwn(nsPrefix); err != nil {
			fmt.Fprintln(stderr, "trustlab:", err)
		}
	})
	defer stopSignals()
	ctx, cancel := context.WithTimeout(sigCtx, o.timeout)
	defer cancel()

	rep, err := benchmark(ctx, o, stderr)
	if rep != nil && len(rep.results) > 0 {
		if werr := rep.write(stdout, o.out); werr != nil {
			fmt.Fprintln(stderr, "trustlab:", werr)
			return 1
		}
	}
	if err != nil {
		if errors.Is(context.Cause(sigCtx), labproc.ErrInterrupted) {
			err = labproc.ErrInterrupted
		} else if ctx.Err() != nil {
			err = fmt.Errorf("gave up after -timeout %v: %w", o.timeout, err)
		}
		fmt.Fprintln(stderr, "trustlab:", err)
		return 1
	}
	if rep.failed() {
		return 1
	}
	return 0
}
