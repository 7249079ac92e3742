package enforce

import (
	"errors"
	"log/slog"
	"net"
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
// spares the same ports (block.Trap.Grace). With the nftables blocker a
// port the kernel remembers as served counts too (see kernelServed): a
// port published by DNAT, which no local socket owns. Event loop only.
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
	kernel *kernelServed // nil: the blocker keeps no served ports
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

// ReadKernel makes the check ask the kernel's memory of served ports
// (block.Trapper.Served) about a port no socket owns; nil stops it.
func (s *ServiceCheck) ReadKernel(read func() ([]block.Served, error)) {
	if s == nil {
		return
	}
	s.kernel = nil
	if read != nil {
		s.kernel = &kernelServed{read: read}
	}
}

// InUse reports whether a local socket owns ev's port now, for ev's
// packet (sockets.Checker.Owns), or did within the grace period, or
// whether the kernel remembers the port as served (kernelServed). Unknown
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
	k := servedPort{proto, port}
	if s.served != nil {
		if used {
			s.served[k] = now
			return true
		}
		at, ok := s.served[k]
		if ok && now.Sub(at) <= s.grace {
			return true
		}
		delete(s.served, k)
	}
	return used || s.kernel.serves(k, ev.Time, now, s.log)
}

// kernelServed is the kernel's memory of served ports, as last read: the
// ports where a local socket took a new connection or datagram within the
// trap's grace, and the ports the kernel published by DNAT (Docker
// without its userland proxy, Podman, Kubernetes NodePorts), which no
// local socket owns. The packet capture sees a published port's client
// before the DNAT, addressed to this host; the service check must then
// judge the port as the kernel did, or the client is banned on its first
// connection.
type kernelServed struct {
	read    func() ([]block.Served, error)
	at      time.Time                // when the last reading began
	until   map[servedPort]time.Time // each port's expiry in the kernel
	failing bool                     // the last reading failed
}

// serves reports whether the kernel remembers k as served. A port not in
// the last reading is read again when that reading began before the
// packet was captured (seen): the kernel records a published port when it
// DNATs the packet, in the same pass through the network stack as the
// capture's copy, so a reading begun after the capture has it. A batch of
// probes captured together costs one reading, an idle host none, and a
// client of a port already known none; the sets hold only served and
// published ports, so a reading is small.
func (k *kernelServed) serves(p servedPort, seen, now time.Time, log *slog.Logger) bool {
	if k == nil {
		return false
	}
	if until, ok := k.until[p]; ok && now.Before(until) {
		return true
	}
	if k.at.After(seen) {
		return false
	}
	k.at = now
	ports, err := k.read()
	if err != nil {
		// The last reading stands; the next batch tries again.
		if !k.failing && !errors.Is(err, net.ErrClosed) {
			log.Warn(logline.Warning("reading the ports the kernel remembers as served (keeping the last known): " + err.Error()))
		}
		k.failing = true
	} else {
		k.failing = false
		k.until = make(map[servedPort]time.Time, len(ports))
		for _, x := range ports {
			proto := event.TCP
			if x.UDP {
				proto = event.UDP
			}
			k.until[servedPort{proto, x.Port}] = now.Add(x.Left)
		}
	}
	until, ok := k.until[p]
	return ok && now.Before(until)
}

// Close releases the check's socket.
func (s *ServiceCheck) Close() {
	if s != nil {
		s.close()
	}
}
