package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/portsentry-go/portsentry/test/internal/labproc"
)

// tracer is one way of tracing the route from C to T.
type tracer struct {
	name string
	argv func(e *env, target netip.Addr) []string // nil: the tool is missing
	v6   bool
	mtr  bool // mtr's report, not traceroute's output
}

// tracers are run in this order, each against a fresh daemon. traceroute's
// defaults (3 probes a hop, 16 at once, up to 30 hops) are kept: the
// probes that reach T arrive with a TTL of 1 to 15.
var tracers = []tracer{
	{name: "`traceroute` (UDP to 33434 and up)", argv: func(e *env, t netip.Addr) []string { return []string{e.traceroute, "-n", t.String()} }},
	{name: "`traceroute -I` (ICMP echo)", argv: func(e *env, t netip.Addr) []string { return []string{e.traceroute, "-n", "-I", t.String()} }},
	{name: "`traceroute -T` (TCP SYN to port 80)", argv: func(e *env, t netip.Addr) []string { return []string{e.traceroute, "-n", "-T", t.String()} }},
	{name: "`traceroute -6` (UDP)", v6: true, argv: func(e *env, t netip.Addr) []string { return []string{e.traceroute, "-6", "-n", t.String()} }},
	{name: "`mtr -c 3` (ICMP echo, three rounds)", mtr: true, argv: mtrArgv()},
	{name: "`mtr -u -c 3` (UDP, three rounds)", mtr: true, argv: mtrArgv("-u")},
}

// mtrArgv is mtr's report of three rounds with flags, or nil when mtr is
// not installed.
func mtrArgv(flags ...string) func(e *env, t netip.Addr) []string {
	return func(e *env, t netip.Addr) []string {
		if e.mtr == "" {
			return nil
		}
		return append(append([]string{e.mtr, "-n", "-r", "-c", "3"}, flags...), t.String())
	}
}

// traceTimeout bounds one traceroute or mtr.
const traceTimeout = 90 * time.Second

// traceroutes runs every tracer from C.
func (sr *scenarioRun) traceroutes() error {
	l := sr.e.l
	for i, t := range tracers {
		target := l.T.v4
		if t.v6 {
			target = l.T.v6
		}
		src := l.C.addr(target)
		argv := t.argv(sr.e, target)
		if argv == nil {
			sr.note("%s: not run, the tool is not installed (%s)", t.name, installHint)
			continue
		}
		if err := sr.startDaemon(nil); err != nil {
			return err
		}
		out, err := labproc.Run(sr.ctx, traceTimeout, l.C.ns.Argv(argv...)...)
		_ = os.WriteFile(filepath.Join(sr.dir, fmt.Sprintf("trace-%d.txt", i+1)), []byte(strings.Join(argv, " ")+"\n"+out), 0o644)
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		hops := traceHops(out, t.mtr)
		reached := len(hops) > 0 && hops[len(hops)-1] == target.String()
		// a ban lands within milliseconds of its probe: look a little later
		if err := sr.sleep(500 * time.Millisecond); err != nil {
			return err
		}
		in, err := sr.banned(src)
		if err != nil {
			return err
		}
		lines := sr.daemonLines("attackalert", src.String())
		sr.add(fmt.Sprintf("%s from C: C banned", t.name), "no",
			fmt.Sprintf("%s (reached T: %s, hops %s; daemon lines naming C: %d)", yesNo(len(in) > 0), yesNo(reached), strings.Join(hops, " "), len(lines)),
			len(in) == 0 && reached)
		if len(lines) > 0 {
			sr.note("%s: the daemon said: %s", t.name, strings.Join(firstN(lines, 3), " / "))
		}
	}
	return nil
}

var (
	tracerouteHop = regexp.MustCompile(`^\s*(\d+)\s+(\S+)`)
	mtrHop        = regexp.MustCompile(`^\s*(\d+)\.\|--\s+(\S+)`)
)

// traceHops reads the address that answered each hop, in order, from
// traceroute's output or mtr's report ("*" or "???" for none).
func traceHops(out string, mtr bool) []string {
	re := tracerouteHop
	if mtr {
		re = mtrHop
	}
	var hops []string
	for _, line := range strings.Split(out, "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			hops = append(hops, m[2])
		}
	}
	return hops
}
