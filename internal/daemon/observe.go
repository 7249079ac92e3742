package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/portsentry-go/portsentry/internal/enforce/bans"
	"github.com/portsentry-go/portsentry/internal/enforce/respond"
	"github.com/portsentry-go/portsentry/internal/event"
	"github.com/portsentry-go/portsentry/internal/report/alert"
	"github.com/portsentry-go/portsentry/internal/report/jsonlog"
	"github.com/portsentry-go/portsentry/internal/report/metrics"
)

// alertConfig is the alerting these settings ask for (ALERT_*).
func (s *Settings) alertConfig() alert.Config {
	c := s.Conf
	var to []string
	for _, a := range strings.Split(c.AlertEmailTo, ",") {
		if a = strings.TrimSpace(a); a != "" {
			to = append(to, a)
		}
	}
	return alert.Config{
		Mailer: c.AlertMailer, SendmailPath: c.AlertSendmail,
		SMTPAddr: c.AlertSMTPServer, SMTPUser: c.AlertSMTPUser, SMTPPassword: c.AlertSMTPPassword,
		SMTPStartTLS: c.AlertSMTPStartTLS, From: c.AlertEmailFrom, To: to,
		WebhookURL: c.AlertWebhookURL, WebhookToken: c.AlertWebhookToken,
		Delay: c.AlertDelay, Window: c.AlertWindow, MaxPerHour: c.AlertMaxPerHour,
		Version: Version,
	}
}

// openObservers starts what METRICS_ADDRESS, EVENT_LOG and ALERT_* ask
// for. Each is optional, and each of its methods is a no-op when off.
func (d *Daemon) openObservers(s *Settings) (serve []func(context.Context), err error) {
	c := s.Conf
	if c.EventLog != "" {
		if d.eventLog, err = jsonlog.Open(c.EventLog, Version); err != nil {
			return nil, fmt.Errorf("daemon: EVENT_LOG: %w", err)
		}
	}
	if cfg := s.alertConfig(); cfg.Enabled() {
		if d.alerts, err = alert.New(cfg, d.log); err != nil {
			return nil, fmt.Errorf("daemon: alerts: %w", err)
		}
		a := d.alerts
		serve = append(serve, func(ctx context.Context) { _ = a.Run(ctx) })
	}
	if c.MetricsAddress == "" {
		return serve, nil
	}
	d.metrics = metrics.New(Version, d.metricFuncs())
	ln, err := net.Listen("tcp", c.MetricsAddress)
	if err != nil {
		return nil, fmt.Errorf("daemon: METRICS_ADDRESS: %w", err)
	}
	m := d.metrics
	serve = append(serve, func(ctx context.Context) {
		if err := m.ServeListener(ctx, ln, d.log); err != nil {
			d.log.Error("adminalert: ERROR: metrics endpoint: " + err.Error())
		}
	})
	d.log.Info("adminalert: metrics on http://" + ln.Addr().String() + metrics.Path)
	return serve, nil
}

func (d *Daemon) metricFuncs() metrics.Funcs {
	f := metrics.Funcs{
		EventsDropped: func() float64 { return float64(d.droppedTotal.Load()) },
		EngineSources: func() float64 { return float64(d.sources.Load()) },
		BansActive:    func() float64 { return float64(d.enf.store.Len()) },
		PacketsInspected: func() float64 {
			if c := d.capture; c != nil {
				n, _, _ := c.Stats()
				return float64(n)
			}
			return 0
		},
		PacketsDropped: func() float64 {
			if c := d.capture; c != nil {
				_, _, n := c.Stats()
				return float64(n)
			}
			return 0
		},
	}
	if d.enf.nft != nil {
		f.KernelTrapDrops = func() float64 {
			st, err := d.enf.nft.Stats()
			if err != nil {
				return 0
			}
			return float64(st.Trapped.Packets)
		}
	}
	if a := d.alerts; a != nil {
		f.AlertsSent = func() float64 { return float64(a.Stats().Sent) }
		f.AlertsFailed = func() float64 { return float64(a.Stats().Failed) }
		f.AlertsDropped = func() float64 { st := a.Stats(); return float64(st.Dropped + st.RateLimited) }
	}
	return f
}

// closeObservers flushes pending alerts (bounded) and closes the event log.
func (d *Daemon) closeObservers() {
	if d.alerts != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := d.alerts.Close(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			d.log.Warn("adminalert: WARNING: alerts: " + err.Error())
		}
		cancel()
	}
	if d.eventLog != nil {
		d.eventLog.Close()
	}
}

// record writes one event to the JSON event log.
func (d *Daemon) writeEvent(ev event.Event, act metrics.Action, hits int, host string, b *bans.Ban) {
	if d.eventLog == nil {
		return
	}
	r := jsonlog.Record{Event: ev, Action: act.String(), Hits: hits}
	if host != ev.Src.String() {
		r.Host = host
	}
	if b != nil {
		r.Blocker, r.BanExpires, r.BanCount = d.enf.kind, b.Expires, b.Count
	}
	if err := d.eventLog.Write(r); err != nil {
		d.log.Error("adminalert: ERROR: EVENT_LOG: " + err.Error())
	}
}

// notify tells the administrators (batched per attacker by the alerter).
func (d *Daemon) notify(ev event.Event, host, action string, b *bans.Ban) {
	if d.alerts == nil {
		return
	}
	al := alert.Alert{Time: ev.Time, Src: ev.Src, Ports: []uint16{ev.Port}, Kinds: []string{ev.Describe()}, Action: action}
	if host != ev.Src.String() {
		al.Host = host
	}
	if b != nil {
		al.BanExpires = b.Expires
	}
	d.alerts.Notify(al)
}

// countFailures counts each failed step of a response by kind.
func (d *Daemon) countFailures(res respond.Result) {
	for _, k := range res.FailedSteps {
		d.metrics.CommandFailure(map[respond.StepKind]string{
			respond.RunCmd: "runcmd", respond.HostsDeny: "hostsdeny", respond.Route: "route", respond.Native: "native",
		}[k])
	}
}
