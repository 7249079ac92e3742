package enforce

import (
	"log/slog"
	"time"

	"github.com/portsentry-go/portsentry/internal/enforce/block"
	"github.com/portsentry-go/portsentry/internal/event"
	"github.com/portsentry-go/portsentry/internal/report/logline"
	"github.com/portsentry-go/portsentry/internal/sensor/sockets"
)

// ServiceCheck is PortSentry's service check for passively captured
// probes: a packet to a port that a local socket owns when it arrives is
// traffic for a service, not a probe. With a grace period (SERVICE_GRACE)
// a port that a socket owned recently still counts, so that the clients
// of a restarting service are not taken for scanners: the kernel trap
// spares the same ports (block.Trap.Grace). Event loop only.
type ServiceCheck struct {
	log      *slog.Logger
	ask      func(event.Event) (bool, error)
	close    func() error
	now      func() time.Time
	lastFail time.Time // errors are logged once a minute
	grace    time.Duration
	// served holds, per protocol and port, when the check last found a
	// socket there; at most 2 × 65536 entries, and only while grace > 0.
	served map[servedPort]time.Time
}

type servedPort struct {
	proto event.Proto
	port  uint16
}

// OpenServiceCheck opens the kernel's socket table (sock_diag, else
// /proc/net). It returns nil, having said so, when that fails: probes are
// then counted without the check.
func OpenServiceCheck(log *slog.Logger) *ServiceCheck {
	c, err := sockets.NewChecker()
	if err != nil {
		log.Warn(logline.Warning("service check unavailable: " + err.Error()))
		return nil
	}
	return newServiceCheck(log, func(ev event.Event) (bool, error) { return c.Owns(packetOf(ev)) }, c.Close, time.Now)
}

// packetOf is the packet ev was made from, for sockets.Checker.Owns: a TCP
// port without a listener is then asked about this packet's connection
// only, a hash lookup, not about every connection on the port (a walk of
// the kernel's whole connection table, milliseconds on the path of a
// scanner's first probe).
func packetOf(ev event.Event) sockets.Packet {
	return sockets.Packet{Proto: ev.Proto, Src: ev.Src, SrcPort: ev.SrcPort, Dst: ev.Dst, DstPort: ev.Port, Ifindex: ev.Ifindex}
}

func newServiceCheck(log *slog.Logger, ask func(event.Event) (bool, error), close func() error, now func() time.Time) *ServiceCheck {
	return &ServiceCheck{log: log, ask: ask, close: close, now: now}
}

// SetGrace sets how long a port stays a service's after its socket is
// gone; 0 turns the memory off (and forgets it).
func (s *ServiceCheck) SetGrace(d time.Duration) {
	if s == nil {
		return
	}
	s.grace = d
	if d <= 0 {
		s.served = nil
	} else if s.served == nil {
		s.served = make(map[servedPort]time.Time)
	}
}

// InUse reports whether a local socket owns ev's port now, for ev's
// packet (sockets.Checker.Owns), or did within the grace period. Unknown
// counts as in use: a broken check must not turn a service's clients into
// scanners. A nil check owns nothing.
func (s *ServiceCheck) InUse(ev event.Event) bool {
	if s == nil {
		return false
	}
	proto, port := ev.Proto, ev.Port
	used, err := s.ask(ev)
	now := s.now()
	if err != nil {
		if now.Sub(s.lastFail) > time.Minute {
			s.lastFail = now
			s.log.Error(logline.Error("service check failed: " + err.Error()))
		}
		return true
	}
	if s.served == nil {
		return used
	}
	k := servedPort{proto, port}
	if used {
		s.served[k] = now
		return true
	}
	at, ok := s.served[k]
	if ok && now.Sub(at) > s.grace {
		delete(s.served, k)
		return false
	}
	return ok
}

// Remember takes in the ports the kernel trap remembers as served
// (block.Trapper.Served), whose memory outlives the daemon: after a
// restart a port whose service went away before it is then still a
// service's here too, for what is left of its grace, as in the kernel.
func (s *ServiceCheck) Remember(ports []block.Served) {
	if s == nil || s.served == nil {
		return
	}
	now := s.now()
	for _, p := range ports {
		proto := event.TCP
		if p.UDP {
			proto = event.UDP
		}
		k := servedPort{proto, p.Port}
		at := now.Add(min(p.Left, s.grace) - s.grace)
		if old, ok := s.served[k]; !ok || at.After(old) {
			s.served[k] = at
		}
	}
}

// Close releases the check's socket.
func (s *ServiceCheck) Close() {
	if s != nil {
		s.close()
	}
}
