package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/portsentry-go/portsentry/internal/control"
	"github.com/portsentry-go/portsentry/internal/enforce/bans"
	"github.com/portsentry-go/portsentry/internal/enforce/block/command"
	"github.com/portsentry-go/portsentry/internal/enforce/respond"
	"github.com/portsentry-go/portsentry/internal/engine"
)

// Version is reported by the control socket's status; set by main.
var Version = "dev"

// restoreBans makes a restart (or a crash, or a reboot) change nothing:
// every unexpired ban is back in the firewall in one batch and the engine
// knows its hosts are blocked. Without a ban file, BLOCKED_FILE tells the
// engine who was blocked, as PortSentry's did.
func (d *Daemon) restoreBans(s *Settings) error {
	if s.Conf.BanFile == "" && !d.enf.native() {
		d.restoreBlocked(s.Conf.BlockedFile)
		return nil
	}
	restored, removed, err := d.enf.restore()
	if err != nil {
		return fmt.Errorf("daemon: restoring bans with %s: %w", d.enf.kind, err)
	}
	active := d.enf.store.Active()
	for _, b := range active {
		d.engine.MarkBlocked(b.Addr)
	}
	if len(active) > 0 || removed > 0 {
		d.log.Info(fmt.Sprintf("adminalert: %d bans in force (%d restored to %s, %d stale removed)", len(active), restored, d.enf.kind, removed))
	}
	return nil
}

// neverBan is what the kernel must never ban: the ignore list and this
// host's own addresses.
func (d *Daemon) neverBan() []netip.Prefix {
	return append(d.ignore.Load().Prefixes(), d.local.Load().Prefixes()...)
}

// applyKernel brings the kernel's never-ban list and trap in line with s.
func (d *Daemon) applyKernel(s *Settings) error {
	if err := d.enf.setAllowed(d.neverBan()); err != nil {
		return fmt.Errorf("daemon: kernel never-ban list: %w", err)
	}
	t := s.trap(d.enf.kind, d.opts)
	if err := d.enf.setTrap(t); err != nil {
		return fmt.Errorf("daemon: kernel trap: %w", err)
	}
	if t != nil {
		d.log.Info(fmt.Sprintf("adminalert: kernel trap set on %d TCP and %d UDP ports: a first probe is banned in the packet path", t.TCP.Len(), t.UDP.Len()))
	}
	if d.enf.native() && (s.Conf.KillRoute != "" || s.Conf.KillRoute6 != "") {
		d.log.Warn(fmt.Sprintf("adminalert: WARNING: BLOCKER=%q blocks with %s: KILL_ROUTE and KILL_ROUTE6 are not used", s.Conf.Blocker, d.enf.kind))
	}
	return nil
}

// expire lifts the bans whose time has come, and makes the ban file durable.
func (d *Daemon) expire() {
	if expired := d.enf.store.Expire(); len(expired) > 0 {
		d.liftBans(expired, "ban expired")
	}
	if err := d.enf.store.Sync(); err != nil {
		d.log.Error("adminalert: ERROR: writing the ban file: " + err.Error())
	}
}

// liftBans undoes bans the record no longer holds: in the engine (the host
// counts from zero again), in the firewall, in hosts.deny, and through
// UNKILL_ROUTE. It runs in the event loop; commands run beside it.
func (d *Daemon) liftBans(bs []bans.Ban, why string) {
	rt := d.rt.Load()
	var unkill []string
	reason := "manual"
	if why == "ban expired" {
		reason = "expired"
	}
	for _, b := range bs {
		d.engine.Unblock(b.Addr)
		d.metrics.Unban(reason)
		d.log.Info(fmt.Sprintf("attackalert: Host %s unblocked: %s", b.Addr, why))
		if line := rt.plan.HostsDenyLine(b.Addr); line != "" {
			if _, err := rt.denyFile().Remove(line); err != nil {
				d.log.Error("adminalert: ERROR: removing hosts.deny line: " + err.Error())
			}
		}
		if !d.enf.native() {
			if cmd := rt.plan.UnblockCommand(b.Addr); cmd != "" {
				unkill = append(unkill, cmd)
			}
		}
	}
	if err := d.enf.lift(bs, reason == "expired"); err != nil {
		d.log.Error(fmt.Sprintf("adminalert: ERROR: unblocking with %s: %v", d.enf.kind, err))
	}
	if len(unkill) > 0 {
		// One goroutine runs them in turn: a mass expiry cannot start a
		// thousand shells at once.
		shell := command.Shell{Timeout: rt.settings.Conf.CommandTimeout}
		go func() {
			for _, cmd := range unkill {
				if err := shell.Run(context.Background(), cmd); err != nil {
					d.log.Error(fmt.Sprintf("attackalert: ERROR: UNKILL_ROUTE command %q failed: %v", cmd, err))
				} else {
					d.log.Info(fmt.Sprintf("attackalert: ran UNKILL_ROUTE command %q", cmd))
				}
			}
		}()
	}
}

// inLoop runs fn in the event loop, so the control socket never races the
// engine, and waits for it.
func (d *Daemon) inLoop(fn func()) error {
	done := make(chan struct{})
	select {
	case d.ctl <- func() { fn(); close(done) }:
	case <-d.runCtx.Done():
		return errors.New("daemon: shutting down")
	}
	select {
	case <-done:
		return nil
	case <-d.runCtx.Done():
		return errors.New("daemon: shutting down")
	}
}

// listenControl opens the operator's socket; a failure is not fatal (the
// daemon protects the host without it).
func (d *Daemon) listenControl(s *Settings) *control.Server {
	path := s.Conf.ControlSocket
	if path == "" {
		return nil
	}
	srv, err := control.Listen(path, d, d.log)
	if err != nil {
		d.log.Warn(fmt.Sprintf("adminalert: WARNING: control socket %s: %v; portsentry list/block/unblock will not reach this daemon", path, err))
		return nil
	}
	return srv
}

// List implements control.Handler.
func (d *Daemon) List() []bans.Ban { return d.enf.store.Active() }

// Block implements control.Handler: a ban made by hand, applied like an
// automatic one (hosts.deny, then the native blocker or KILL_ROUTE), never
// to an ignore-listed or local address.
func (d *Daemon) Block(addr netip.Addr, dur time.Duration, reason string) (bans.Ban, error) {
	addr = addr.Unmap().WithZone("")
	if d.ignore.Load().Contains(addr) || d.local.Load().Contains(addr) {
		return bans.Ban{}, fmt.Errorf("%s is on the ignore list or is this host's own: never blocked", addr)
	}
	if reason == "" {
		reason = "manual"
	}
	rt := d.rt.Load()
	var steps []respond.Step
	for _, st := range rt.plan.Steps(engine.Block, command.Target{Addr: addr, Mode: "manual"}) {
		if st.Blocks {
			steps = append(steps, st)
		}
	}
	var b bans.Ban
	x := rt.exec
	x.Ban = func(a netip.Addr) (string, error) {
		var err error
		b, err = d.enf.banFor(a, dur, reason)
		return describeBan(b), err
	}
	res := x.Execute(d.runCtx, addr, steps)
	for _, l := range res.Lines {
		d.log.Info(l)
	}
	if !res.Blocked {
		return bans.Ban{}, fmt.Errorf("blocking %s failed (see the daemon's log)", addr)
	}
	if !d.enf.native() {
		b = d.enf.store.BanFor(addr, dur, reason)
	}
	d.log.Info(fmt.Sprintf("attackalert: Host %s blocked by hand %s", addr, describeBan(b)))
	return b, d.inLoop(func() { d.engine.MarkBlocked(addr) })
}

// Unblock implements control.Handler.
func (d *Daemon) Unblock(p netip.Prefix) ([]bans.Ban, error) {
	var lifted []bans.Ban
	err := d.inLoop(func() {
		lifted = d.enf.store.Unban(p)
		d.liftBans(lifted, "unblocked by hand")
	})
	return lifted, err
}

// Status implements control.Handler.
func (d *Daemon) Status() control.Status {
	rt := d.rt.Load()
	st := control.Status{
		Version: Version,
		PID:     os.Getpid(),
		Started: d.started,
		Blocker: d.enf.kind,
		Bans:    d.enf.store.Len(),
		Events:  d.seen.Load(),
		BanFile: rt.settings.Conf.BanFile,
	}
	for _, m := range rt.settings.Modes {
		st.Modes = append(st.Modes, m.String())
	}
	if t, ok := d.enf.store.NextExpiry(); ok {
		st.NextExpiry = t
	}
	_ = d.inLoop(func() { st.Sources, _, _ = d.engine.Stats() })
	return st
}
