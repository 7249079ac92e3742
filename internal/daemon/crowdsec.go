package daemon

import (
	"context"
	"errors"
	"net/netip"
	"time"

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
	if settings.Pushes(cfg) {
		p := crowdsec.NewPusher(c, d.log)
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
			Refused: func(err error) bool {
				return errors.Is(err, enforce.ErrProtected) || errors.Is(err, enforce.ErrPeer)
			},
		}, d.log)
		run = append(run, p.Run)
	}
	return obs, run, nil
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
