package main

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"syscall"
	"time"

	"github.com/portsentry-go/portsentry/test/internal/labproc"
)

// floodPort is the unused port of T every flood aims at: a trap port of
// the shipped advanced modes, TCP and UDP alike.
const floodPort = 4444

// flood6Sources is where the IPv6 flood's random sources come from: the
// documentation prefix (RFC 3849), routed by T back into F's link.
const flood6Sources = "2001:db8::/32"

// scenario is one flood of the benchmark.
type scenario struct {
	name  string
	title string
	tool  string // hping3, or floodlab for its own IPv6 flooder
	v6    bool   // the flood, and the scans, use IPv6
	// argv is the flooder's command, run in F; self is floodlab's path.
	argv func(l *lab, hping3, self string) []string
}

var scenarios = []scenario{
	{name: "syn", title: "TCP SYN flood from random IPv4 sources", tool: "hping3",
		argv: func(l *lab, hping3, _ string) []string {
			return []string{hping3, "-S", "--flood", "--rand-source", "-p", strconv.Itoa(floodPort), l.T.v4.String()}
		}},
	{name: "udp", title: "UDP flood from random IPv4 sources", tool: "hping3",
		argv: func(l *lab, hping3, _ string) []string {
			return []string{hping3, "--udp", "--flood", "--rand-source", "-p", strconv.Itoa(floodPort), l.T.v4.String()}
		}},
	{name: "syn6", title: "TCP SYN flood from random IPv6 sources in " + flood6Sources, tool: "floodlab", v6: true,
		argv: func(l *lab, _, self string) []string {
			return []string{self, helperFlood6, "-dst", l.T.v6.String(), "-port", strconv.Itoa(floodPort), "-src", flood6Sources}
		}},
}

func scenarioByName(name string) (scenario, bool) {
	for _, s := range scenarios {
		if s.name == name {
			return s, true
		}
	}
	return scenario{}, false
}

// command is the flooder's command line as the report shows it.
func (s scenario) command(l *lab) string {
	argv := s.argv(l, "hping3", "floodlab")
	out := argv[0]
	for _, a := range argv[1:] {
		out += " " + a
	}
	return out
}

// startFlood starts the flooder in F. floodlab's own flooder stops when
// its stdin closes; hping3 on SIGINT (stopFlood).
func startFlood(l *lab, s scenario, hping3, self string) (*labproc.Proc, error) {
	argv := l.F.ns.Argv(s.argv(l, hping3, self)...)
	return labproc.Start("flooder ("+s.tool+")", s.tool == "floodlab", argv...)
}

// stopFlood stops the flooder (hping3 with SIGINT, which makes it print
// its statistics; floodlab's own by closing its stdin) and returns the
// number of packets it says it sent (-1: it did not say).
func stopFlood(p *labproc.Proc, s scenario) (int64, error) {
	sig := syscall.SIGINT
	if s.tool == "floodlab" {
		sig = 0
	}
	err := p.Stop(sig, 10*time.Second)
	if labproc.IsSignalExit(err) {
		err = nil
	}
	// hping3 exits 1 after SIGINT when no reply came back, which is the
	// point of a flood from forged sources: its statistics tell it stopped.
	sent := floodSent(p.Output())
	if err != nil && sent >= 0 {
		err = nil
	}
	if err != nil {
		return sent, fmt.Errorf("%s: %w:\n%s", p.Name(), err, p.Tail())
	}
	return sent, nil
}

var (
	hpingSentRE  = regexp.MustCompile(`(\d+) packets transmitted`)
	flood6SentRE = regexp.MustCompile(flood6Mark + `(\d+)`)
)

// floodSent reads the flooder's own count of the packets it sent: hping3's
// statistics, or floodlab's flooder's last line; -1 when there is none.
func floodSent(out string) int64 {
	for _, re := range []*regexp.Regexp{hpingSentRE, flood6SentRE} {
		if m := re.FindStringSubmatch(out); m != nil {
			n, err := strconv.ParseInt(m[1], 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// waitFlood lets the flood run for d, or until ctx ends or the flooder
// exits early (an error).
func waitFlood(ctx context.Context, p *labproc.Proc, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-p.Done():
		return fmt.Errorf("%s stopped before the end of the flood:\n%s", p.Name(), p.Tail())
	}
}
