package daemon

import (
	"net/netip"
	"reflect"
	"time"

	"github.com/portsentry-go/portsentry/internal/control"
	"github.com/portsentry-go/portsentry/internal/enforce"
	"github.com/portsentry-go/portsentry/internal/fleet"
	"github.com/portsentry-go/portsentry/internal/report/metrics"
	"github.com/portsentry-go/portsentry/internal/settings"
)

// openFleet joins the fleet the settings name, if any: the member shares
// the enforcer's bans and hands the others' to it. Nothing is connected
// yet: Run does that in the background.
func (d *Daemon) openFleet(s *settings.Settings) error {
	c := s.Fleet()
	if !c.Enabled() {
		return nil
	}
	m, err := fleet.New(c, fleetSink{enf: d.enf}, d.log)
	if err != nil {
		return err
	}
	d.fleet = m
	d.enf.SetSharer(m)
	return nil
}

// fleetSink applies the fleet's bans in the event loop, after local
// policy (enforce.Import).
type fleetSink struct{ enf *enforce.Enforcer }

// Import queues the import for the event loop; it waits only for room
// in the loop's queue (the fleet's consumer slows down when the loop is
// busy), never for the import itself.
func (f fleetSink) Import(addr netip.Addr, ttl time.Duration, reason, origin string, done func(error)) {
	f.enf.ImportAsync(addr, ttl, reason, origin, done)
}

func (f fleetSink) Revoke(p netip.Prefix, originPrefix, by string) {
	f.enf.Submit(func() { f.enf.Revoke(p, originPrefix, by) })
}

// fleetStatus is the fleet's part of portsentry status.
func (d *Daemon) fleetStatus() *control.Fleet {
	if d.fleet == nil {
		return nil
	}
	st := d.fleet.Status()
	return &control.Fleet{Name: st.Name, Connected: st.Connected, Server: st.Server, Embedded: st.Embedded,
		Members: st.Members, Lag: st.Lag, Pending: st.Pending, Out: st.Published, Queued: st.Queued,
		Dropped: st.Dropped, In: st.Received, Applied: st.Applied, Refused: st.Refused, Throttled: st.Throttled}
}

// fleetGauges adds the fleet's metrics to f.
func (d *Daemon) fleetGauges(f *metrics.Funcs) {
	m := d.fleet
	if m == nil {
		return
	}
	f.FleetConnected = func() float64 {
		if m.Status().Connected {
			return 1
		}
		return 0
	}
	f.FleetMembers = func() float64 { return float64(len(m.Status().Members)) }
	f.FleetLag = func() float64 { return m.Status().Lag.Seconds() }
	f.FleetPublished = func() float64 { return float64(m.Status().Published) }
	f.FleetReceived = func() float64 { return float64(m.Status().Received) }
	f.FleetRefused = func() float64 { return float64(m.Status().Refused) }
	f.FleetThrottled = func() float64 { return float64(m.Status().Throttled) }
	f.FleetQueued = func() float64 { return float64(m.Status().Queued) }
}

// fleetChanged reports whether a reload changes the fleet: it is joined
// once, at start.
func fleetChanged(old, new *settings.Settings) bool {
	return !reflect.DeepEqual(old.Fleet(), new.Fleet())
}
