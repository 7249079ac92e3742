package main

import (
	"context"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/portsentry-go/portsentry/test/internal/labproc"
)

// statusTimeout bounds one `portsentry status`.
const statusTimeout = 30 * time.Second

// statusSample is one timed `portsentry status`.
type statusSample struct {
	latency time.Duration // the whole command: start, connect, answer, exit
	out     string
	err     error
}

// runStatus runs `portsentry status` on the control socket, from the
// host's namespace (a Unix socket is reached by its path, whatever the
// network namespace), and times it.
func runStatus(ctx context.Context, bin, socket string) statusSample {
	start := time.Now()
	out, err := labproc.Run(ctx, statusTimeout, bin, "status", "-s", socket)
	return statusSample{latency: time.Since(start), out: out, err: err}
}

// statusPoller runs `portsentry status` every interval until stopped.
type statusPoller struct {
	stop    chan struct{}
	done    chan struct{}
	samples []statusSample // valid after done
}

func startStatusPoller(ctx context.Context, bin, socket string, every time.Duration) *statusPoller {
	p := &statusPoller{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			p.samples = append(p.samples, runStatus(ctx, bin, socket))
		}
	}()
	return p
}

// finish stops the poller, waiting for a command under way, and returns
// the samples.
func (p *statusPoller) finish() []statusSample {
	close(p.stop)
	<-p.done
	return p.samples
}

// statusStats summarises the samples.
type statusStats struct {
	n, failed int
	p50, max  time.Duration
	last      string // the last answer's text
}

func summarizeStatus(samples []statusSample) statusStats {
	var st statusStats
	var lat []time.Duration
	for _, s := range samples {
		st.n++
		if s.err != nil {
			st.failed++
		} else {
			st.last = s.out
		}
		lat = append(lat, s.latency)
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		st.p50, st.max = lat[(len(lat)-1)/2], lat[len(lat)-1]
	}
	return st
}

var eventsRE = regexp.MustCompile(`(?m)^Events:\s+(\d+) \((\d+) dropped\)`)

// statusEvents reads "Events: N (M dropped)" from a status answer; ok is
// false when it has none.
func statusEvents(out string) (events, dropped int64, ok bool) {
	m := eventsRE.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, false
	}
	events, _ = strconv.ParseInt(m[1], 10, 64)
	dropped, _ = strconv.ParseInt(m[2], 10, 64)
	return events, dropped, true
}
