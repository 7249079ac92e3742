// Package connect is the connect-mode sensor: PortSentry 1.2's -tcp and -udp
// modes, 2.x's --connect. It binds a real socket on every watched port and
// reports each contact as an event.Event. A TCP alarm needs a completed
// handshake, so spoofed sources cannot raise one; any UDP datagram is one.
//
// PORT_BANNER goes to every TCP client (its handshake proves its address)
// but to a UDP source at most once a minute, so that datagrams forged from a
// victim's address cannot make this host flood the victim with banners.
//
// Each port gets one dual-stack socket on [::] that accepts IPv4 as well
// (IPv4-only 0.0.0.0 when the host has no IPv6) and one goroutine serving it.
// A port some service already holds is skipped with a warning: that is
// connect mode's own service check, as in PortSentry.
//
// File descriptors: one per watched port and protocol, plus one per accepted
// connection while its banner is written (at most maxBannerWriters). Go
// raises the soft RLIMIT_NOFILE to the hard limit when a program starts
// (package syscall, Go 1.19 and later on Unix), so thousands of ports fit
// under the usual hard limit without setup; a port that still cannot get a
// descriptor is skipped with a warning like any other bind failure.
package connect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/portsentry-go/portsentry/internal/event"
	"github.com/portsentry-go/portsentry/internal/portset"
	"github.com/portsentry-go/portsentry/internal/sensor/backoff"
)

const (
	// bannerTimeout bounds how long a client that does not read can hold
	// a banner writer (and its descriptor).
	bannerTimeout = 2 * time.Second

	// maxBannerWriters bounds the banner writers in flight so that a
	// connection flood cannot grow goroutines and descriptors without
	// limit. When all are busy the connection is closed without a banner:
	// the alarm has been raised already, the banner is only a courtesy.
	maxBannerWriters = 256

	// udpBufSize is the read buffer of a UDP trap. The payload is never
	// looked at, so a short buffer that truncates it is enough and keeps
	// thousands of traps cheap.
	udpBufSize = 64

	// oobSize holds the packet-info control messages of one datagram.
	oobSize = 128
)

// Config is what the sensor watches. A nil-or-empty set means that protocol
// is off.
type Config struct {
	// TCP and UDP are TCP_PORTS and UDP_PORTS.
	TCP, UDP portset.Set

	// Banner is PORT_BANNER: written to a TCP client before close, sent
	// back to a UDP sender at most once per source address per minute
	// (see bannerWindow); "" = nothing. It is sent as is, with no newline
	// added.
	Banner string
}

// state is where a Sensor is in its life.
type state uint8

const (
	idle    state = iota // opened, Run not called yet
	running              // Run is serving
	closed               // Run returned or Close was called; nothing is bound
)

// A Sensor holds the trap sockets of connect mode. Create it with Open,
// serve with Run.
type Sensor struct {
	log *slog.Logger

	// banner is read by every trap on every contact and replaced by
	// Reconfigure, hence atomic rather than under mu. nil means none.
	banner atomic.Pointer[[]byte]

	// sem counts banner writers in flight; see maxBannerWriters.
	sem chan struct{}

	// replies limits UDP banners to one per source per bannerWindow.
	replies *replyLimiter

	// wg counts trap goroutines and banner writers; Run waits for it.
	wg sync.WaitGroup

	mu     sync.Mutex
	state  state
	tcp    map[uint16]*net.TCPListener
	udp    map[uint16]*net.UDPConn
	ctx    context.Context    // Run's, while running
	cancel context.CancelFunc // stops Run, while running
	emit   func(event.Event)  // Run's, while running
}

// Open binds every port of cfg synchronously, dual stack: one socket per port
// on [::] accepting IPv4 too, or on 0.0.0.0 when the host has no IPv6.
//
// A port already in use (EADDRINUSE) is skipped with a Warn log naming the
// port and protocol; other per-port errors likewise warn and skip. Open
// returns an error only when nothing at all could be bound while something
// was asked; it then wraps the first bind error, so errors.Is(err,
// syscall.EADDRINUSE) tells the common case. An empty cfg is no error: the
// sensor then watches nothing until Reconfigure.
//
// A nil log discards the warnings.
func Open(cfg Config, log *slog.Logger) (*Sensor, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sensor{
		log:     log,
		sem:     make(chan struct{}, maxBannerWriters),
		replies: newReplyLimiter(bannerSources, bannerWindow),
		tcp:     make(map[uint16]*net.TCPListener),
		udp:     make(map[uint16]*net.UDPConn),
	}
	if err := s.Reconfigure(cfg); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Run serves until ctx is done, then closes every socket and returns nil once
// every goroutine it started has stopped, well under a second later.
//
// emit is called once per contact, from many goroutines at once (one per
// socket), so it must be safe for concurrent use; it must also be quick,
// because a trap accepts or reads nothing more until emit returns. emit is
// never called after Run returns.
//
// Run may be called once; it returns an error wrapping net.ErrClosed if the
// sensor was closed or has run already, and an error if emit is nil.
func (s *Sensor) Run(ctx context.Context, emit func(event.Event)) error {
	if emit == nil {
		return errors.New("connect: Run needs an emit function")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	s.mu.Lock()
	if s.state != idle {
		s.mu.Unlock()
		return fmt.Errorf("connect: Run: %w", net.ErrClosed)
	}
	s.state, s.ctx, s.cancel, s.emit = running, ctx, cancel, emit
	for p, ln := range s.tcp {
		s.serveTCPLocked(p, ln)
	}
	for p, pc := range s.udp {
		s.serveUDPLocked(p, pc)
	}
	s.mu.Unlock()

	<-ctx.Done()

	s.mu.Lock()
	s.closeLocked()
	s.mu.Unlock()
	// Closing the sockets ends the trap goroutines at once; banner writers
	// end through the context.AfterFunc each one sets on ctx.
	s.wg.Wait()
	return nil
}

// Close releases every socket. If Run is serving, Close makes it return
// instead and Run closes the sockets. Close is only needed when Run is never
// called, or to stop Run without its context; calling it again does nothing.
func (s *Sensor) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == running {
		s.cancel()
		return nil
	}
	s.closeLocked()
	return nil
}

// Reconfigure rebinds to a new Config without dropping detection on ports
// kept: sockets for ports still wanted stay open untouched, new ports are
// bound, removed ports closed, and the banner is replaced for every port. It
// is safe to call while Run runs, and before it.
//
// Ports that cannot be bound are logged and skipped as in Open. Reconfigure
// returns an error when cfg asks for ports and none is bound afterwards (the
// change is applied all the same), or, wrapping net.ErrClosed, when the sensor
// is closed.
func (s *Sensor) Reconfigure(cfg Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == closed {
		return fmt.Errorf("connect: Reconfigure: %w", net.ErrClosed)
	}

	if cfg.Banner == "" {
		s.banner.Store(nil)
	} else {
		b := []byte(cfg.Banner)
		s.banner.Store(&b)
	}

	// Close first so that descriptors freed here can serve the new ports.
	for p, ln := range s.tcp {
		if !cfg.TCP.Has(p) {
			ln.Close()
			delete(s.tcp, p)
		}
	}
	for p, pc := range s.udp {
		if !cfg.UDP.Has(p) {
			pc.Close()
			delete(s.udp, p)
		}
	}

	var first error
	fail := func(proto event.Proto, p uint16, err error) {
		if first == nil {
			first = err
		}
		if errors.Is(err, syscall.EADDRINUSE) {
			s.log.Warn("connect: port already in use; not watching it",
				"proto", proto.String(), "port", p, "err", err)
			return
		}
		s.log.Warn("connect: cannot bind port; not watching it",
			"proto", proto.String(), "port", p, "err", err)
	}
	for _, p := range cfg.TCP.Ports() {
		if _, ok := s.tcp[p]; ok {
			continue
		}
		ln, err := listenTCP(p)
		if err != nil {
			fail(event.TCP, p, err)
			continue
		}
		s.tcp[p] = ln
		if s.state == running {
			s.serveTCPLocked(p, ln)
		}
	}
	for _, p := range cfg.UDP.Ports() {
		if _, ok := s.udp[p]; ok {
			continue
		}
		pc, err := listenUDP(p)
		if err != nil {
			fail(event.UDP, p, err)
			continue
		}
		s.udp[p] = pc
		if s.state == running {
			s.serveUDPLocked(p, pc)
		}
	}

	if asked := cfg.TCP.Len() + cfg.UDP.Len(); asked > 0 && len(s.tcp)+len(s.udp) == 0 {
		return fmt.Errorf("connect: could bind none of %d ports: %w", asked, first)
	}
	return nil
}

// Bound reports what is bound right now, for the status line "listening on N
// TCP and M UDP ports" and for tests. After Run returns, both are empty.
func (s *Sensor) Bound() (tcp, udp portset.Set) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := range s.tcp {
		tcp.Add(p)
	}
	for p := range s.udp {
		udp.Add(p)
	}
	return tcp, udp
}

// closeLocked closes every socket and marks the sensor closed.
func (s *Sensor) closeLocked() {
	s.state = closed
	for p, ln := range s.tcp {
		ln.Close()
		delete(s.tcp, p)
	}
	for p, pc := range s.udp {
		pc.Close()
		delete(s.udp, p)
	}
	s.ctx, s.cancel, s.emit = nil, nil, nil
}

// listenTCP binds a TCP trap. p is never 0 (portset.Set has no port 0),
// which would bind a random port.
func listenTCP(p uint16) (*net.TCPListener, error) {
	// Accepted connections live for one banner write at most: keep-alive
	// would only cost a setsockopt per contact.
	lc := net.ListenConfig{KeepAlive: -1}
	// An empty host makes net bind [::] with IPV6_V6ONLY off when the host
	// can map IPv4 into IPv6, and 0.0.0.0 otherwise: exactly the dual
	// stack with IPv4 fallback we want.
	ln, err := lc.Listen(context.Background(), "tcp", net.JoinHostPort("", strconv.Itoa(int(p))))
	if err != nil {
		return nil, err
	}
	return ln.(*net.TCPListener), nil
}

func listenUDP(p uint16) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: udpControl}
	pc, err := lc.ListenPacket(context.Background(), "udp", net.JoinHostPort("", strconv.Itoa(int(p))))
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// serveTCPLocked starts the goroutine serving one TCP trap. s.mu is held,
// so s.wg cannot be waited on yet.
func (s *Sensor) serveTCPLocked(port uint16, ln *net.TCPListener) {
	ctx, emit := s.ctx, s.emit
	s.wg.Go(func() {
		var delay time.Duration
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				// EMFILE and friends: back off as net/http does
				// rather than spin, and say so once per episode.
				delay = backoff.Next(delay)
				if delay == backoff.First {
					s.log.Warn("connect: accept failed; retrying",
						"proto", "TCP", "port", port, "err", err)
				}
				if !backoff.Sleep(ctx, delay) {
					return
				}
				continue
			}
			delay = 0
			emit(event.Event{
				Time:   time.Now(),
				Src:    addrOf(c.RemoteAddr()),
				Dst:    addrOf(c.LocalAddr()),
				Port:   port,
				Proto:  event.TCP,
				Kind:   event.Connect,
				IPOpts: event.IPOptsUnknown,
				Mode:   event.ModeTCP,
			})
			s.greet(ctx, c)
		}
	})
}

// greet writes the banner, if any, and closes c. It never reads from c.
func (s *Sensor) greet(ctx context.Context, c *net.TCPConn) {
	b := s.banner.Load()
	if b == nil {
		c.Close()
		return
	}
	select {
	case s.sem <- struct{}{}:
	default:
		c.Close()
		return
	}
	// The caller is a trap goroutine counted in s.wg, so the count is above
	// zero and this Go cannot race with Run's Wait.
	s.wg.Go(func() {
		defer func() { <-s.sem }()
		c.SetWriteDeadline(time.Now().Add(bannerTimeout))
		// On shutdown, cut the write short so Run returns promptly.
		stop := context.AfterFunc(ctx, func() { c.SetWriteDeadline(time.Unix(1, 0)) })
		c.Write(*b) // the client may be gone already; nothing to do about it
		stop()
		c.Close()
	})
}

// serveUDPLocked starts the goroutine serving one UDP trap. s.mu is held.
func (s *Sensor) serveUDPLocked(port uint16, pc *net.UDPConn) {
	ctx, emit := s.ctx, s.emit
	s.wg.Go(func() {
		buf := make([]byte, udpBufSize)
		oob := make([]byte, oobSize)
		var delay time.Duration
		for {
			// A datagram longer than buf is truncated (MSG_TRUNC),
			// which is not an error.
			_, oobn, _, from, err := pc.ReadMsgUDPAddrPort(buf, oob)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				delay = backoff.Next(delay)
				if delay == backoff.First {
					s.log.Warn("connect: read failed; retrying",
						"proto", "UDP", "port", port, "err", err)
				}
				if !backoff.Sleep(ctx, delay) {
					return
				}
				continue
			}
			delay = 0
			src := from.Addr().Unmap().WithZone("")
			emit(event.Event{
				Time:   time.Now(),
				Src:    src,
				Dst:    packetDst(oob[:oobn]),
				Port:   port,
				Proto:  event.UDP,
				Kind:   event.UDPProbe,
				IPOpts: event.IPOptsUnknown,
				Mode:   event.ModeUDP,
			})
			// The banner goes back to whatever source the datagram
			// claims, which anyone can forge: unlike PortSentry, which
			// answers every datagram, a source is answered once per
			// bannerWindow, so that a flood forged from a victim's
			// address draws one banner, not one per datagram. A failed
			// send (no route, full buffer) costs nothing worth
			// reporting.
			if b := s.banner.Load(); b != nil && s.replies.allow(src) {
				pc.WriteToUDPAddrPort(*b, from)
			}
		}
	})
}

// addrOf returns the address of a TCP endpoint, unmapped so that an IPv4
// peer of a dual-stack socket comes out as IPv4, and without zone: ignore
// lists and firewalls match addresses, and a zoned address matches no
// netip.Prefix.
func addrOf(a net.Addr) netip.Addr {
	ta, ok := a.(*net.TCPAddr)
	if !ok || ta == nil {
		return netip.Addr{}
	}
	return ta.AddrPort().Addr().Unmap().WithZone("")
}
