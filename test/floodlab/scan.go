package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/portsentry-go/portsentry/test/internal/labdaemon"
	"github.com/portsentry-go/portsentry/test/internal/labnmap"
	"github.com/portsentry-go/portsentry/test/internal/labproc"
	"github.com/portsentry-go/portsentry/test/internal/labsvc"
)

// scanTimeout bounds one nmap run (its own --host-timeout is 240 s).
const scanTimeout = 300 * time.Second

// scanArgv is the scan S and P run: scanlab's "syn" scan, over the
// scenario's family, with one retry and at least 100 probes a second: a
// target that answers a few ports and drops the rest (a scanner the trap
// could not ban) makes nmap's congestion control slow it down to a probe
// every 100 ms or so, and a scan cut by --host-timeout reports no port.
func scanArgv(nmap string, target netip.Addr) []string {
	argv := []string{nmap, "-n", "-Pn", "-sS", "-T4", "-p1-1024", "--max-retries", "1", "--min-rate", "100", "--host-timeout", "240s", "-oX", "-"}
	if target.Is6() {
		argv = append(argv, "-6")
	}
	return append(argv, target.String())
}

// scanOutcome is what one scan found.
type scanOutcome struct {
	scanner  netip.Addr
	answered int    // ports not filtered: open, closed, unfiltered
	unused   int    // of them, ports without a service in T
	states   string // nmap's view, e.g. "filtered 1021, closed 2, open 1"
	timedOut bool
	start    time.Time
	duration time.Duration
	recorded bool // the scanner's address is in the history file
	err      error
}

// scan is a scan under way.
type scan struct {
	p     *labproc.Proc
	out   scanOutcome
	saved string         // where nmap's output is kept
	ended chan time.Time // when nmap exited
}

// startScan starts nmap in h against T.
func startScan(h host, nmap string, target netip.Addr, saved string) (*scan, error) {
	src := h.v4
	if target.Is6() {
		src = h.v6
	}
	p, err := labproc.Start("nmap from "+src.String(), false, h.ns.Argv(scanArgv(nmap, target)...)...)
	if err != nil {
		return nil, err
	}
	s := &scan{p: p, saved: saved, out: scanOutcome{scanner: src, start: time.Now()}, ended: make(chan time.Time, 1)}
	go func() {
		<-p.Done()
		s.ended <- time.Now()
	}()
	return s, nil
}

// wait waits for the scan's end and reads nmap's report.
func (s *scan) wait(ctx context.Context) scanOutcome {
	err := s.p.Wait(ctx, scanTimeout)
	select {
	case end := <-s.ended:
		s.out.duration = end.Sub(s.out.start)
	case <-time.After(5 * time.Second): // killed and not reaped
		s.out.duration = time.Since(s.out.start)
	}
	out := s.p.Output()
	_ = os.WriteFile(s.saved, []byte(out), 0o644)
	if err != nil {
		s.out.err = fmt.Errorf("nmap: %w:\n%s", err, s.p.Tail())
		return s.out
	}
	s.out.answered, s.out.unused, s.out.states, s.out.timedOut, s.out.err = nmapPorts(out, labsvc.ServicePortTCP)
	return s.out
}

// nmapPorts reads nmap's XML report: how many ports answered (any state
// without "filtered" in it), how many of them are not among services (the
// ports of T's real services), and every state's count.
func nmapPorts(out string, services ...int) (answered, unused int, states string, timedOut bool, err error) {
	r, err := labnmap.Parse(out)
	if err != nil {
		return 0, 0, "", false, err
	}
	answered, unused = r.Answered(), r.Answered()
	for _, p := range r.AnsweredPorts() {
		if slices.Contains(services, p.ID) {
			unused--
		}
	}
	return answered, unused, r.States(), r.TimedOut, nil
}

// recordWait is how long the daemon has, after the last scan, to write
// the scanners into its history file.
const recordWait = 10 * time.Second

// waitRecorded polls the history file until it names every scanner or
// recordWait has passed, and marks the scans it names.
func waitRecorded(ctx context.Context, history string, scans ...*scanOutcome) error {
	deadline := time.Now().Add(recordWait)
	for {
		missing := 0
		for _, s := range scans {
			if s == nil || s.recorded {
				continue
			}
			ok, err := labdaemon.InHistory(history, s.scanner)
			if err != nil {
				return err
			}
			if s.recorded = ok; !ok {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// scanOutput is where a scan's nmap output is kept.
func scanOutput(dir, who string) string { return filepath.Join(dir, "nmap-"+who+".xml") }
