// Package capture is the packet-capture sensor: PortSentry 1.2's stealth
// modes (-stcp, -sudp; 2.x --stealth) and advanced modes (-atcp, -audp). It
// binds nothing: it reads the packets that reach this host from one Linux
// packet socket (AF_PACKET) and reports each probe of a watched port as an
// event.Event, so it also sees the half-open SYN, FIN, NULL and XMAS scans a
// trap socket never notices.
//
// A kernel filter (packet.Filter) passes only candidate probes: TCP without
// ACK or RST, UDP, and this host's own outgoing UDP, cut to their headers.
// In user space, each packet is kept only when it is addressed to one of
// this host's addresses (forwarded traffic on a router is not a probe of
// this host), arrived on a watched interface, goes to a watched port and,
// for UDP, is not the reply to a datagram this host sent: the sensor
// remembers the host's own recent UDP flows (up to 65536, for 180 s after
// their last packet) so that a late DNS answer to a closed port is not taken
// for a probe.
//
// The service check (is some local socket using the port?) is not done
// here: enforcement asks package sockets later, and only for sources it has
// not blocked already.
//
// The per-packet path allocates nothing, so a fast scan or a flood costs no
// garbage collection; packets are read and handed over up to 64 at a time,
// and during a flood the reader coalesces (see pacer). Packets the kernel
// had to drop because the sensor fell behind are counted (Stats).
//
// On systems other than Linux, Open fails with an error wrapping
// errors.ErrUnsupported.
package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portsentry-go/portsentry/internal/event"
	"github.com/portsentry-go/portsentry/internal/portset"
	"github.com/portsentry-go/portsentry/internal/sensor/packet"
)

// Interface selections with a meaning of their own in Config.Interfaces, as
// PortSentry 2.x's -i spells them.
const (
	// AllButLoopback watches every interface except loopback: the
	// default, also chosen by a nil or empty Interfaces.
	AllButLoopback = "ALL_NLO"
	// All watches every interface, loopback included.
	All = "ALL"
)

// Config is what the sensor watches.
type Config struct {
	// TCP and UDP are the ports watched: TCP_PORTS and UDP_PORTS in
	// stealth mode; in advanced mode, what the caller computed (every
	// port below ADVANCED_PORTS_* minus excludes and ports in use). A
	// protocol whose set is empty is off.
	TCP, UDP portset.Set

	// TCPMode and UDPMode label the events: event.ModeSTCP or
	// event.ModeATCP for TCP, event.ModeSUDP or event.ModeAUDP for UDP.
	// The mode of a protocol that is off is not looked at.
	TCPMode, UDPMode event.Mode

	// Interfaces chooses where to listen (2.x -i): nil, empty or
	// {AllButLoopback} for every interface but loopback, {All} for every
	// interface, else the interfaces named, which must exist when the
	// sensor is opened or reconfigured (an interface that goes away
	// later is simply not seen, and one that comes back is picked up).
	Interfaces []string
}

// ifaceMode is what Config.Interfaces selects.
type ifaceMode uint8

const (
	ifAllButLoopback ifaceMode = iota
	ifAll
	ifNamed
)

// watch is a validated Config, swapped as a whole by Reconfigure so that a
// packet never sees half of an old configuration and half of a new one.
type watch struct {
	tcp, udp         portset.Set
	tcpMode, udpMode event.Mode
	ifMode           ifaceMode
	names            []string // ifNamed only; sorted, no duplicates
}

func newWatch(cfg Config) (*watch, error) {
	w := &watch{tcp: cfg.TCP, udp: cfg.UDP, tcpMode: cfg.TCPMode, udpMode: cfg.UDPMode}
	if w.tcp.Len() > 0 && w.tcpMode != event.ModeSTCP && w.tcpMode != event.ModeATCP {
		return nil, fmt.Errorf("capture: TCP mode %q: want stcp or atcp", w.tcpMode)
	}
	if w.udp.Len() > 0 && w.udpMode != event.ModeSUDP && w.udpMode != event.ModeAUDP {
		return nil, fmt.Errorf("capture: UDP mode %q: want sudp or audp", w.udpMode)
	}
	switch {
	case len(cfg.Interfaces) == 0 || len(cfg.Interfaces) == 1 && cfg.Interfaces[0] == AllButLoopback:
		w.ifMode = ifAllButLoopback
	case len(cfg.Interfaces) == 1 && cfg.Interfaces[0] == All:
		w.ifMode = ifAll
	default:
		w.ifMode = ifNamed
		for _, n := range cfg.Interfaces {
			if n == All || n == AllButLoopback {
				return nil, fmt.Errorf("capture: interface %s cannot be combined with other interfaces", n)
			}
			if n == "" {
				return nil, errors.New("capture: empty interface name")
			}
		}
		w.names = slices.Compact(slices.Sorted(slices.Values(cfg.Interfaces)))
	}
	return w, nil
}

// sameInterfaces reports whether w and o select the same interfaces.
func (w *watch) sameInterfaces(o *watch) bool {
	return w.ifMode == o.ifMode && slices.Equal(w.names, o.names)
}

// hostView is what the sensor knows of the host: its addresses and
// interfaces. It is rebuilt every refreshInterval, never per packet.
type hostView struct {
	local    map[netip.Addr]struct{} // every address of every interface, unmapped, no zone
	loopback []int                   // indexes of loopback interfaces
	named    []int                   // indexes of the interfaces named in watch.names present now
}

// refreshInterval is how often the host's addresses and interfaces are read
// again. An address added since the last read is not yet known to be local,
// so probes of it go unseen for at most this long.
const refreshInterval = 5 * time.Second

// newHostView reads the host's interfaces and addresses. missing lists the
// interfaces of w.names that do not exist.
func newHostView(w *watch) (h *hostView, missing []string, err error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, nil, fmt.Errorf("capture: list interfaces: %w", err)
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, nil, fmt.Errorf("capture: list addresses: %w", err)
	}
	h = &hostView{local: make(map[netip.Addr]struct{}, len(addrs))}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			h.local[p.Addr().Unmap().WithZone("")] = struct{}{}
		}
	}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagLoopback != 0 {
			h.loopback = append(h.loopback, ifc.Index)
		}
	}
	for _, n := range w.names {
		i := slices.IndexFunc(ifs, func(ifc net.Interface) bool { return ifc.Name == n })
		if i < 0 {
			missing = append(missing, n)
			continue
		}
		h.named = append(h.named, ifs[i].Index)
	}
	return h, missing, nil
}

// allows reports whether a packet that arrived on interface ifindex is
// watched.
func (h *hostView) allows(mode ifaceMode, ifindex int) bool {
	switch mode {
	case ifAll:
		return true
	case ifNamed:
		return slices.Contains(h.named, ifindex)
	}
	return !slices.Contains(h.loopback, ifindex)
}

// isLocal reports whether dst, unmapped, is an address of this host. A
// whole loopback range is local, but only on a loopback interface:
// elsewhere the kernel drops such packets as martians.
func (h *hostView) isLocal(dst netip.Addr, ifindex int) bool {
	if _, ok := h.local[dst]; ok {
		return true
	}
	return dst.IsLoopback() && slices.Contains(h.loopback, ifindex)
}

// filterOptions is the kernel filter for w on this host: loopback traffic
// (often the busiest) is dropped in the kernel unless it may be watched.
// User space still checks every packet's interface, so the filter only has
// to be a superset.
func filterOptions(w *watch, h *hostView) packet.FilterOptions {
	o := packet.FilterOptions{Outgoing: true}
	for _, i := range h.loopback {
		watched := w.ifMode == ifAll || w.ifMode == ifNamed && slices.Contains(h.named, i)
		if !watched && len(o.ExcludeIfindex) < packet.MaxExcludedInterfaces {
			o.ExcludeIfindex = append(o.ExcludeIfindex, i)
		}
	}
	return o
}

// Packet types of the packet socket's address (linux/if_packet.h), the
// same on every Linux architecture.
const (
	pktHost     = 0 // PACKET_HOST: addressed to this host
	pktOutgoing = 4 // PACKET_OUTGOING: sent by this host
)

// state is where a Sensor is in its life.
type state uint8

const (
	idle    state = iota // opened, Run not called yet
	running              // Run is reading
	closed               // Run returned or Close was called; the socket is closed
)

// A Sensor reads one packet socket. Create it with Open, read with Run.
type Sensor struct {
	log *slog.Logger

	watch     atomic.Pointer[watch]
	host      atomic.Pointer[hostView]
	refreshMu sync.Mutex // serialises refresh

	inspected, emitted, undecodable atomic.Uint64
	dropped                         atomic.Uint64 // kernel drops harvested so far
	implausible                     atomic.Uint64 // sources no host can have (see plausibleSource)

	// Used by the reading goroutine only.
	flows *flowTable
	pkt   packet.Packet
	epoch time.Time     // zero of the flow table's clock
	batch []event.Event // the probes of the packets being read
	emit  func([]event.Event)

	mu     sync.Mutex
	state  state
	cancel context.CancelFunc // stops Run, while running

	sys sysSensor // the socket; see capture_linux.go
}

// Open opens the packet socket and starts capturing at once: packets that
// arrive before Run is called wait in the socket's buffer. Opening needs
// CAP_NET_RAW (root); the error then says so. A nil log discards the log.
//
// The socket is an AF_PACKET SOCK_DGRAM socket for every protocol
// (ETH_P_ALL) with the kernel filter attached before the socket is bound,
// so not one unfiltered packet is queued, and a 4 MiB receive buffer
// (beyond net.core.rmem_max when root) so that a burst is not lost while
// the sensor is busy.
//
// A nonexistent named interface or a mode that does not fit its protocol
// is an error.
func Open(cfg Config, log *slog.Logger) (*Sensor, error) {
	if err := supported(); err != nil {
		return nil, err
	}
	s, err := newSensor(cfg, log)
	if err != nil {
		return nil, err
	}
	if err := s.sys.open(filterOptions(s.watch.Load(), s.host.Load())); err != nil {
		return nil, err
	}
	return s, nil
}

// newSensor builds everything but the socket.
func newSensor(cfg Config, log *slog.Logger) (*Sensor, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w, err := newWatch(cfg)
	if err != nil {
		return nil, err
	}
	h, missing, err := newHostView(w)
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("capture: no interface %q", missing[0])
	}
	s := &Sensor{log: log, flows: newFlowTable(flowBuckets), epoch: time.Now(), batch: make([]event.Event, 0, readBatch)}
	s.watch.Store(w)
	s.host.Store(h)
	return s, nil
}

// Run reads packets until ctx is done or Close is called, then closes the
// socket and returns nil. Either ends a pending wait for packets at once.
//
// emit is called with the probes of the packets read together (at most
// 64, in the order they arrived), always from the goroutine that called
// Run, never concurrently and never after Run returns. The slice is the
// sensor's own, reused once emit returns: emit copies what it keeps. It
// must be quick: while it runs no packet is read, and the kernel drops
// what does not fit in the socket buffer (counted in Stats).
//
// Run may be called once; it returns an error wrapping net.ErrClosed if the
// sensor was closed or has run already, and an error if emit is nil.
func (s *Sensor) Run(ctx context.Context, emit func([]event.Event)) error {
	if emit == nil {
		return errors.New("capture: Run needs an emit function")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	s.mu.Lock()
	if s.state != idle {
		s.mu.Unlock()
		return fmt.Errorf("capture: Run: %w", net.ErrClosed)
	}
	s.state, s.cancel, s.emit = running, cancel, emit
	s.mu.Unlock()

	var wg sync.WaitGroup
	wg.Go(func() { s.refreshLoop(ctx) })
	stop := context.AfterFunc(ctx, func() { s.Close() })
	err := s.readLoop(ctx)
	stop()
	cancel()
	wg.Wait()

	s.mu.Lock()
	s.closeLocked()
	s.emit = nil
	s.mu.Unlock()
	s.log.Debug("capture: stopped", "inspected", s.inspected.Load(), "emitted", s.emitted.Load(),
		"dropped", s.dropped.Load(), "undecodable", s.undecodable.Load(), "implausible", s.implausible.Load())
	return err
}

// Close closes the socket. If Run is reading, Close makes it return, and
// Run closes the socket once it has stopped using it. Close is only needed
// when Run is never called, or to stop Run without its context; calling it
// again does nothing.
func (s *Sensor) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == running {
		s.cancel()
		s.sys.interrupt()
		return nil
	}
	return s.closeLocked()
}

// closeLocked harvests the socket's drop count and closes it.
func (s *Sensor) closeLocked() error {
	if s.state == closed {
		return nil
	}
	s.harvestLocked()
	s.state = closed
	return s.sys.close()
}

// harvestLocked adds the kernel's drop count to s.dropped. The kernel
// resets its counters on every read, hence the running sum.
func (s *Sensor) harvestLocked() {
	if s.state == closed {
		return
	}
	if n, err := s.sys.drops(); err == nil {
		s.dropped.Add(n)
	}
}

// Reconfigure swaps the watched ports, modes and interfaces. Ports and
// modes change atomically between two packets; a change of interfaces also
// replaces the kernel filter on the same socket (SO_ATTACH_FILTER swaps it
// in one step), which, since the socket listens on every interface and
// user space checks each packet's interface, is all a reopen would achieve,
// without the gap. It is safe to call while Run runs, and before it.
//
// A bad cfg (a wrong mode, an interface that does not exist) changes
// nothing and returns the error. After Close it returns an error wrapping
// net.ErrClosed.
func (s *Sensor) Reconfigure(cfg Config) error {
	w, err := newWatch(cfg)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == closed {
		return fmt.Errorf("capture: Reconfigure: %w", net.ErrClosed)
	}
	old := s.watch.Load()
	if old.sameInterfaces(w) {
		s.watch.Store(w)
		return nil
	}
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	h, missing, err := newHostView(w)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return fmt.Errorf("capture: no interface %q", missing[0])
	}
	if err := s.sys.setFilter(filterOptions(w, h)); err != nil {
		return err
	}
	s.host.Store(h)
	s.watch.Store(w)
	return nil
}

// Stats reports the packets read from the socket (inspected), the events
// emitted, and the packets the kernel dropped because the socket buffer was
// full (dropped), all since Open. It is safe to call at any time, also
// after Run returned.
func (s *Sensor) Stats() (inspected, emitted, dropped uint64) {
	s.mu.Lock()
	s.harvestLocked()
	s.mu.Unlock()
	return s.inspected.Load(), s.emitted.Load(), s.dropped.Load()
}

// refreshLoop rereads the host's addresses every refreshInterval.
func (s *Sensor) refreshLoop(ctx context.Context) {
	t := time.NewTicker(refreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.refresh()
		}
	}
}

// refresh rereads the host's addresses and interfaces. A failure keeps the
// previous view; a named interface that went away is logged once per
// refresh that misses it, at debug level (it may be a dial-up link).
func (s *Sensor) refresh() {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	h, missing, err := newHostView(s.watch.Load())
	if err != nil {
		s.log.Warn("capture: cannot refresh the host's addresses; keeping the previous ones", "err", err)
		return
	}
	if len(missing) > 0 {
		s.log.Debug("capture: watched interfaces absent", "interfaces", missing)
	}
	s.host.Store(h)
}

// clock is the flow table's time: whole seconds since the sensor was
// created, starting at 1 (0 marks an empty slot).
func (s *Sensor) clock(now time.Time) uint32 {
	return uint32(now.Sub(s.epoch)/time.Second) + 1
}

// handle is the per-packet path: b is the packet from its IP header on
// (possibly cut to its headers by the filter), pkttype and ifindex come from
// the packet socket's address. It allocates nothing.
func (s *Sensor) handle(b []byte, pkttype uint8, ifindex int, now time.Time) {
	s.inspected.Add(1)
	w := s.watch.Load()
	h := s.host.Load()
	if pkttype == pktHost && !h.allows(w.ifMode, ifindex) {
		return
	}
	p := &s.pkt
	if err := packet.Decode(b, p); err != nil {
		// Fragments, truncated or odd headers: nothing to report, and
		// nothing worth a line unless debugging.
		s.undecodable.Add(1)
		if s.log.Enabled(context.Background(), slog.LevelDebug) {
			s.log.Debug("capture: packet skipped", "err", err, "ifindex", ifindex)
		}
		return
	}
	switch pkttype {
	case pktOutgoing:
		// Remember this host's own UDP flows, on any interface, but only
		// from watched ports: a reply to any other port cannot be
		// mistaken for a probe anyway.
		if p.Proto == event.UDP && w.udp.Has(p.SrcPort) {
			s.flows.remember(p.SrcPort, p.Dst.Unmap(), p.DstPort, s.clock(now))
		}
		return
	case pktHost:
	default:
		return // the filter passes nothing else; be sure
	}

	ports, mode := &w.tcp, w.tcpMode
	if p.Proto == event.UDP {
		ports, mode = &w.udp, w.udpMode
	}
	if !ports.Has(p.DstPort) {
		return
	}
	dst := p.Dst.Unmap()
	if !h.isLocal(dst, ifindex) {
		return // forwarded, or to an address this host has not got yet
	}
	if !plausibleSource(p.Src) {
		s.implausible.Add(1)
		return
	}
	src := p.Src
	if p.Proto == event.UDP && s.flows.isReply(p.DstPort, src, p.SrcPort, s.clock(now)) {
		return
	}
	if p.Proto == event.UDP && event.IsTraceroute(p.DstPort, p.TTL) {
		return
	}
	kind, ok := p.Probe()
	if !ok {
		return
	}
	s.emitted.Add(1)
	s.batch = append(s.batch, event.Event{
		Time:    now,
		Src:     src,
		Dst:     dst,
		Port:    p.DstPort,
		SrcPort: p.SrcPort,
		Proto:   p.Proto,
		Kind:    kind,
		Flags:   p.Flags,
		IPOpts:  p.IPOpts,
		Mode:    mode,
		TTL:     p.TTL,
		Ifindex: ifindex,
	})
}

// flush hands the probes gathered since the last flush to emit.
func (s *Sensor) flush() {
	if len(s.batch) == 0 {
		return
	}
	s.emit(s.batch)
	s.batch = s.batch[:0]
}

// Under a flood the reader coalesces reads: it waits coalesceDelay after a
// read that emptied the socket, so that one read, one pass of the
// per-packet path and one hand-off to the daemon serve the packets of that
// time, instead of a wake-up of the reader and of the daemon per packet
// (which cost most of the daemon's CPU under a flood). A scan's first probe
// is never delayed: the rate is measured over windows of paceWindow, and a
// window reaches pacePackets only after its first packets were handed
// over.
const (
	// readBatch is the most packets one read takes: under a flood one
	// system call and one hand-off to the daemon serve this many probes.
	readBatch = 64

	paceWindow  = 100 * time.Millisecond
	pacePackets = 1000 // per window: 10 000 packets a second, more than nmap -T4 sends one host
	// coalesceDelay is the longest a probe waits during a flood. The
	// socket's 4 MiB buffer holds several thousand packets, far more
	// than arrive in that time at the rates measured (BENCHMARKS.md).
	coalesceDelay = 4 * time.Millisecond
)

// pacer tells whether packets arrive at a flood's rate.
type pacer struct {
	start time.Time // of the current window
	count int       // packets read in it
	busy  bool      // the previous window reached pacePackets
}

// flooded counts n packets read at now, and reports whether the current
// window, or the one before it if it just ended, reached pacePackets.
func (p *pacer) flooded(now time.Time, n int) bool {
	if since := now.Sub(p.start); since >= paceWindow || since < 0 {
		p.busy = p.count >= pacePackets && since < 2*paceWindow
		p.start, p.count = now, 0
	}
	p.count += n
	return p.busy || p.count >= pacePackets
}

// plausibleSource reports whether a packet's source address could be a
// host that sent it. A multicast, broadcast or unspecified source is
// forged or broken (the kernel drops such martians before any socket sees
// them), and an IPv4-mapped IPv6 source
// (::ffff:a.b.c.d) is never sent by a real IPv6 stack: read as IPv4 it
// would let an IPv6 packet name an IPv4 host to ban.
func plausibleSource(a netip.Addr) bool {
	return a.IsValid() && !a.Is4In6() && !a.IsUnspecified() && !a.IsMulticast() &&
		a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}
