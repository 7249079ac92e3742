package report

import (
	"time"

	"github.com/portsentry-go/portsentry/internal/event"
	"github.com/portsentry-go/portsentry/internal/report/logline"
	"github.com/portsentry-go/portsentry/internal/report/metrics"
)

// Flood sums up one interval of a flood: probes from many sources, each of
// which probed a single port, reported together rather than one by one.
type Flood struct {
	Start, End time.Time
	Probes     int    // single probes summarized
	Sources    int    // sources among them (each counted at its first probe)
	Ports      [2]int // distinct TCP and UDP ports they probed
	// Ended is set on the last interval: the flood has died down.
	Ended bool
}

// FloodBegins says that single probes are summarized from now on.
func (r *Reporter) FloodBegins(rate int, every time.Duration) {
	r.log.Warn(logline.FloodBegins(rate, every))
}

// Flooded counts one single probe of a flood, on the event loop: it must
// stay cheap (the metrics' events_total, action "flooded").
func (r *Reporter) Flooded(ev event.Event) {
	for _, o := range r.observers {
		o.Decided(ev, metrics.Flooded)
	}
}

// Flooding reports an interval of a flood.
func (r *Reporter) Flooding(f Flood) {
	r.log.Warn(logline.FloodSummary(f.Probes, f.Sources, f.Ports[event.TCP], f.Ports[event.UDP], f.End.Sub(f.Start).Round(time.Second), f.Ended))
}
