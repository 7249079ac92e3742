package enforce

import (
	"fmt"

	"github.com/portsentry-go/portsentry/internal/enforce/block"
	"github.com/portsentry-go/portsentry/internal/report/history"
	"github.com/portsentry-go/portsentry/internal/report/logline"
)

// applyKernel brings the kernel's never-ban list and trap in line with the
// guard and t.
func (e *Enforcer) applyKernel(t *block.Trap) error {
	if err := e.jail.SetNeverBan(e.guard.Prefixes()); err != nil {
		return fmt.Errorf("kernel never-ban list: %w", err)
	}
	if err := e.jail.SetLinks(e.guard.Links()); err != nil {
		return fmt.Errorf("kernel list of this host's networks: %w", err)
	}
	if t != nil && e.flood.active.Load() {
		t = noBan(t)
	}
	set, err := e.jail.SetTrap(t)
	if err != nil {
		return fmt.Errorf("kernel trap: %w", err)
	}
	if set && t.Peers > 0 {
		e.peers.use(e.jail.trapper.Peers, e.log)
	} else {
		e.peers.use(nil, nil)
	}
	if set {
		e.log.Info(logline.TrapSet(t.TCP.Len(), t.UDP.Len()))
	}
	return nil
}

// floodTrap sets the kernel trap of the settings in force for a flood
// under way (NoBan: the random sources of a flood would fill the ban sets
// within seconds, leaving no room for the scanners among them, which the
// daemon bans itself), or back to banning when it is over.
func (e *Enforcer) floodTrap(flooding bool) {
	t := e.cur.Load().Trap
	if t == nil {
		return
	}
	if flooding {
		t = noBan(t)
	}
	if _, err := e.jail.SetTrap(t); err != nil {
		e.log.Error(logline.Error("setting the kernel trap for the flood: " + err.Error()))
	}
}

func noBan(t *block.Trap) *block.Trap {
	c := *t
	c.NoBan = true
	return &c
}

// RemoveTrap takes the kernel trap away at a clean stop: a stopped daemon
// detects nothing, so no ban may be made that nothing logs or records.
// Bans in force stay, and expire.
func (e *Enforcer) RemoveTrap() {
	if _, err := e.jail.SetTrap(nil); err != nil {
		e.log.Error(logline.Error("removing the kernel trap: " + err.Error()))
	}
}

// Restore makes a restart (or a crash, or a reboot) change nothing: every
// unexpired ban is back in the firewall in one batch and the engine knows
// its hosts are blocked. Without a ban file or a native blocker,
// blockedFile (BLOCKED_FILE) tells the engine who was blocked, as
// PortSentry's did. Event loop only (or before it starts).
func (e *Enforcer) Restore(banFile, blockedFile string) error {
	if banFile == "" && !e.jail.Native() {
		e.restoreBlocked(blockedFile)
		return nil
	}
	// The blocker keys IPv6 bans by this host's networks: it must know
	// them before the record's bans are put back.
	if err := e.jail.SetLinks(e.guard.Links()); err != nil {
		return fmt.Errorf("kernel list of this host's networks: %w", err)
	}
	restored, removed, err := e.jail.Restore()
	if err != nil {
		return fmt.Errorf("restoring bans with %s: %w", e.jail.Kind(), err)
	}
	active := e.jail.Active()
	for _, b := range active {
		e.engine.MarkBlocked(b.Addr)
	}
	if len(active) > 0 || removed > 0 {
		e.log.Info(logline.BansInForce(len(active), restored, e.jail.Kind(), removed))
	}
	return nil
}

// restoreBlocked reloads BLOCKED_FILE so that a restart does not act on
// the same hosts again.
func (e *Enforcer) restoreBlocked(path string) {
	if path == "" {
		return
	}
	recs, bad, err := history.LoadBlocked(path)
	if err != nil {
		e.log.Error(logline.Error("cannot read blocked file: " + err.Error()))
	}
	for i, err := range bad {
		if i == 10 {
			e.log.Warn(logline.Warning(fmt.Sprintf("%d more unreadable lines in %s", len(bad)-10, path)))
			break
		}
		e.log.Warn(logline.Warning("skipping unreadable blocked-file line: " + err.Error()))
	}
	for _, r := range recs {
		e.engine.MarkBlocked(r.Addr)
	}
	if len(recs) > 0 {
		_, _, n := e.engine.Stats()
		e.log.Info(logline.HostsAlreadyBlocked(n, path))
	}
}
