package daemon

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/portsentry-go/portsentry/internal/control"
	"github.com/portsentry-go/portsentry/internal/crowdsec"
	"github.com/portsentry-go/portsentry/internal/enforce"
	"github.com/portsentry-go/portsentry/internal/enforce/bans"
	"github.com/portsentry-go/portsentry/internal/event"
	"github.com/portsentry-go/portsentry/internal/report"
	"github.com/portsentry-go/portsentry/internal/report/metrics"
	"github.com/portsentry-go/portsentry/internal/settings"
)

// openCrowdSec builds what CROWDSEC_* asks for: the pusher, as a report
// observer of this host's bans, and the puller, into enforcement. Both
// run once the loop does; neither is reached before start-up ends, so an
// absent LAPI never delays it.
func (d *Daemon) openCrowdSec(s *settings.Settings) (obs []report.Observer, run []func(context.Context), err error) {
	cfg, ok := s.CrowdSec(Version)
	if !ok {
		return nil, nil, nil
	}
	c, err := crowdsec.NewClient(cfg)
	if err != nil {
		return nil, nil, err
	}
	d.crowd = crowdLink{url: c.URL(), poll: c.Poll()}
	if settings.Pushes(cfg) {
		p := crowdsec.NewPusher(c, d.log)
		d.crowd.push = p
		obs = append(obs, pushBans{p})
		run = append(run, p.Run)
	}
	if settings.Pulls(cfg) {
		enf := d.enf
		p := crowdsec.NewPuller(c, crowdsec.Target{
			Import: func(a netip.Addr, ttl time.Duration, reason string) error {
				return enf.Import(a, ttl, reason, crowdsec.Origin)
			},
			Withdraw: func(a netip.Addr) (bool, error) { return enf.Withdraw(a, crowdsec.Origin) },
			Held: func() []netip.Addr {
				var out []netip.Addr
				for _, b := range enf.Imported(crowdsec.Origin) {
					out = append(out, b.Addr)
				}
				return out
			},
			Refused: refusedWhy,
		}, d.log)
		d.crowd.pull = p
		run = append(run, p.Run)
	}
	return obs, run, nil
}

// refusedWhy names the local policy that refused a decision (the
// status's and the metrics' "why"), or "" for another error.
func refusedWhy(err error) string {
	switch {
	case errors.Is(err, enforce.ErrProtected):
		return "protected"
	case errors.Is(err, enforce.ErrPeer):
		return "peer"
	}
	return ""
}

// crowdLink is the daemon's link with a CrowdSec LAPI, for status and
// metrics; zero without one.
type crowdLink struct {
	url  string
	poll time.Duration
	push *crowdsec.Pusher // nil: not pushing
	pull *crowdsec.Puller // nil: not pulling
}

// crowdStatus is CrowdSec's part of portsentry status.
func (d *Daemon) crowdStatus() *control.CrowdSec {
	l := d.crowd
	if l.push == nil && l.pull == nil {
		return nil
	}
	c := &control.CrowdSec{URL: l.url}
	if l.push != nil {
		st := l.push.Stats()
		c.Push = &control.CrowdSecPush{Connected: st.Connected(), LastPush: st.LastPush, LastError: st.LastError,
			LastErrorAt: st.LastErrorAt, Pushed: st.Pushed, Queued: st.Queued, Dropped: st.Dropped}
	}
	if l.pull != nil {
		st := l.pull.Stats()
		c.Pull = &control.CrowdSecPull{Connected: st.Connected(), Poll: l.poll, LastPoll: st.LastPoll, LastError: st.LastError,
			LastErrorAt: st.LastErrorAt, Pulled: st.Pulled, Applied: st.Applied, Lifted: st.Lifted, Refused: st.Refused,
			Skipped: st.Skipped, Failed: st.Failed, Followed: st.Followed}
	}
	return c
}

// crowdGauges adds CrowdSec's metrics to f.
func (d *Daemon) crowdGauges(f *metrics.Funcs) {
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	if p := d.crowd.push; p != nil {
		f.CrowdSecPushConnected = func() float64 { return b(p.Stats().Connected()) }
		f.CrowdSecPushed = func() float64 { return float64(p.Stats().Pushed) }
		f.CrowdSecPushQueued = func() float64 { return float64(p.Stats().Queued) }
		f.CrowdSecPushDropped = func() float64 { return float64(p.Stats().Dropped) }
	}
	if p := d.crowd.pull; p != nil {
		f.CrowdSecPullConnected = func() float64 { return b(p.Stats().Connected()) }
		f.CrowdSecLastPoll = func() float64 {
			if t := p.Stats().LastPoll; !t.IsZero() {
				return float64(t.UnixNano()) / 1e9
			}
			return 0
		}
		f.CrowdSecPulled = func() float64 { return float64(p.Stats().Pulled) }
		f.CrowdSecApplied = func() float64 { return float64(p.Stats().Applied) }
		f.CrowdSecLifted = func() float64 { return float64(p.Stats().Lifted) }
		f.CrowdSecSkipped = func() float64 { return float64(p.Stats().Skipped) }
		f.CrowdSecFailed = func() float64 { return float64(p.Stats().Failed) }
		f.CrowdSecRefused = func(why string) float64 { return float64(p.Stats().Refused[why]) }
	}
}

// pushBans hands this host's own bans to the pusher: those of a
// response that blocked, after the engine and the guard had their say.
// Probes dropped as forged, flood sources summed up and the kernel
// trap's unrecorded bans never get here; nor do bans made on another's
// word (Import), which are never a response.
type pushBans struct{ p *crowdsec.Pusher }

func (pushBans) Decided(event.Event, metrics.Action) {}
func (pushBans) Lifted(bans.Ban, bool)               {}
func (pushBans) Reloaded(bool)                       {}
func (pushBans) Imported(bans.Ban, string)           {}

func (o pushBans) Record(r report.Record) {
	b := r.Ban
	if r.Action != metrics.Blocked || b == nil || b.Origin != "" {
		return
	}
	bits := b.Addr.BitLen()
	if b.Bits > 0 {
		bits = b.Bits
	}
	o.p.Push(crowdsec.Ban{Prefix: netip.PrefixFrom(b.Addr, bits), Reason: b.Reason, Port: b.Port, Proto: b.Proto, Since: b.Since, Expires: b.Expires})
}
