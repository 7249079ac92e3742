package enforce

import (
	"log/slog"
	"time"

	"github.com/portsentry-go/portsentry/internal/event"
	"github.com/portsentry-go/portsentry/internal/report/logline"
	"github.com/portsentry-go/portsentry/internal/sensor/sockets"
)

// ServiceCheck is PortSentry's service check for passively captured
// probes: a packet to a port that a local socket owns when it arrives is
// traffic for a service, not a probe. Event loop only.
type ServiceCheck struct {
	log      *slog.Logger
	checker  *sockets.Checker
	lastFail time.Time // errors are logged once a minute
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
	return &ServiceCheck{log: log, checker: c}
}

// InUse reports whether a local socket owns port now. Unknown counts as in
// use: a broken check must not turn a service's clients into scanners. A
// nil check owns nothing.
func (s *ServiceCheck) InUse(proto event.Proto, port uint16) bool {
	if s == nil {
		return false
	}
	used, err := s.checker.InUse(proto, port)
	if err != nil {
		if now := time.Now(); now.Sub(s.lastFail) > time.Minute {
			s.lastFail = now
			s.log.Error(logline.Error("service check failed: " + err.Error()))
		}
		return true
	}
	return used
}

// Close releases the check's socket.
func (s *ServiceCheck) Close() {
	if s != nil {
		s.checker.Close()
	}
}
