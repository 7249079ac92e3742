package enforce

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/portsentry-go/portsentry/internal/control"
	"github.com/portsentry-go/portsentry/internal/enforce/bans"
	"github.com/portsentry-go/portsentry/internal/enforce/block"
	"github.com/portsentry-go/portsentry/internal/enforce/block/command"
	"github.com/portsentry-go/portsentry/internal/enforce/respond"
	"github.com/portsentry-go/portsentry/internal/engine"
	"github.com/portsentry-go/portsentry/internal/report/logline"
)

// errStopping answers a control call that arrives while the daemon stops.
var errStopping = errors.New("daemon: shutting down")

// Control answers the operator's control socket (portsentry list, block,
// unblock, status). Every call that touches the engine runs in the event
// loop, so the socket never races detection.
type Control struct {
	e *Enforcer
	// about describes the daemon (version, modes, events seen); Status adds
	// the bans.
	about func() control.Status
}

var _ control.Handler = (*Control)(nil)

// Control returns the control socket's handler.
func (e *Enforcer) Control(about func() control.Status) *Control {
	return &Control{e: e, about: about}
}

// inLoop runs fn in the event loop and waits for it.
func (e *Enforcer) inLoop(fn func()) error {
	done := make(chan struct{})
	select {
	case e.calls <- func() { fn(); close(done) }:
	case <-e.ctx.Done():
		return errStopping
	}
	select {
	case <-done:
		return nil
	case <-e.ctx.Done():
		return errStopping
	}
}

// List returns the bans in force.
func (c *Control) List() []bans.Ban { return c.e.jail.Active() }

// Block bans addr by hand, applied like an automatic ban (hosts.deny, then
// the native blocker or KILL_ROUTE), never on an address the guard
// protects.
func (c *Control) Block(addr netip.Addr, d time.Duration, reason string) (bans.Ban, error) {
	e := c.e
	addr = addr.Unmap().WithZone("")
	if e.guard.NeverBlock(addr) {
		return bans.Ban{}, fmt.Errorf("%s is on the ignore list or is this host's own: never blocked", addr)
	}
	if reason == "" {
		reason = "manual"
	}
	cur := e.cur.Load()
	var steps []respond.Step
	for _, st := range cur.Plan.Steps(engine.Block, command.Target{Addr: addr, Mode: "manual"}) {
		if st.Blocks {
			steps = append(steps, st)
		}
	}
	var b bans.Ban
	x := cur.exec
	x.Ban = func(a netip.Addr) (string, error) {
		var err error
		b, err = e.jail.BanFor(a, d, reason)
		return Describe(b), err
	}
	res := x.Execute(e.ctx, addr, steps)
	for _, l := range res.Lines {
		e.log.Info(l)
	}
	if !res.Blocked {
		return bans.Ban{}, fmt.Errorf("blocking %s failed (see the daemon's log)", addr)
	}
	if !e.jail.Native() {
		b, _ = e.jail.BanFor(addr, d, reason)
	}
	e.log.Info(logline.BlockedByHand(addr.String(), Describe(b)))
	e.sharer.share(b)
	return b, e.inLoop(func() { e.engine.MarkBlocked(addr) })
}

// Unblock lifts every ban inside p: those the record holds, and those
// only the native blocker's sets hold. The kernel trap bans in the packet
// path, and when the daemon loses the probe's event (a full queue under a
// flood) the record never hears of the ban; the operator's unblock must
// lift it all the same. Those are returned with reason KernelOnly.
func (c *Control) Unblock(p netip.Prefix) ([]bans.Ban, error) {
	e := c.e
	// Read off the event loop: a dump of a large ban set must not stall
	// detection.
	held, heldErr := e.jail.Held(p)
	var lifted []bans.Ban
	err := e.inLoop(func() {
		lifted = e.jail.Unban(p)
		stray := e.jail.Unrecorded(held, lifted)
		for _, b := range stray {
			e.log.Warn(logline.Warning(fmt.Sprintf("%s was banned by the kernel trap without a record in the daemon (its probe's event was lost): lifting it", b.Addr)))
		}
		lifted = append(lifted, stray...)
		e.lift(lifted, false)
	})
	// The operator's word goes to the fleet: its members lift their
	// fleet bans inside p (their own detections stand).
	e.sharer.lift(p)
	if err == nil && heldErr != nil {
		err = fmt.Errorf("%d recorded bans lifted, but the %s ban sets could not be read for bans the daemon never recorded: %w", len(lifted), e.jail.Kind(), heldErr)
	}
	return lifted, err
}

// Status describes the daemon and its bans.
func (c *Control) Status() control.Status {
	st := c.about()
	st.Blocker = c.e.jail.Kind()
	st.Bans = c.e.jail.Len()
	if t, ok := c.e.jail.NextExpiry(); ok {
		st.NextExpiry = t
	}
	st.Sources = c.e.Sources()
	st.Flooding = c.e.Flooding()
	if ts, ok := c.e.jail.TrapStats(); ok {
		st.Trap = &control.Trap{Trapped: ts.Trapped.Packets, Forged: ts.Forged.Packets,
			Unrouted: ts.Unrouted.Packets, Served: ts.Served.Packets, Unbanned: ts.Unbanned.Packets}
	}
	if p, ok := c.e.jail.Paths(); ok {
		v4, v6 := block.Forwarding()
		st.Coverage = &control.Coverage{Input: p.Input, Forward: p.Forward, ForwardingIPv4: v4, ForwardingIPv6: v6}
		if ts, ok := c.e.jail.TrapStats(); ok {
			st.Coverage.DroppedForward = ts.BannedForward.Packets
		}
	}
	if found, on := c.e.guard.Infrastructure(); on {
		st.Infrastructure = &control.Infrastructure{
			NameServers: strs(found.NameServers), Gateways: strs(found.Gateways), Sessions: strs(found.Sessions),
		}
	}
	return st
}

func strs(as []netip.Addr) []string {
	out := make([]string, 0, len(as))
	for _, a := range as {
		out = append(out, a.String())
	}
	return out
}
