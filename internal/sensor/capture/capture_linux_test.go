package capture

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/sys/unix"

	"github.com/portsentry-go/portsentry/internal/event"
	"github.com/portsentry-go/portsentry/internal/netns"
	"github.com/portsentry-go/portsentry/internal/netns/netnstest"
	"github.com/portsentry-go/portsentry/internal/portset"
)

// The real-kernel tests send traffic only to loopback and between two
// network namespaces they create (with a veth pair) and delete.

// wait bounds every wait for something that should happen at once.
const wait = 5 * time.Second

// helperEnv, when set, turns the test binary into the sensor helper (see
// runHelper); its value is the helper's Config as JSON.
const helperEnv = "PORTSENTRY_CAPTURE_HELPER"

func TestMain(m *testing.M) {
	if cfg := os.Getenv(helperEnv); cfg != "" {
		os.Exit(runHelper(cfg))
	}
	os.Exit(lab.Main(m))
}

// lab makes the network namespaces of the real-kernel tests.
var lab = netnstest.Lab{Prefix: "pscap-"}

// needRoot skips (fails under CI) a test that opens a packet socket
// (CAP_NET_RAW).
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		netnstest.SkipOrFail(t, "needs CAP_NET_RAW (packet socket): run as root, e.g. sudo env PATH=$PATH go test ./internal/sensor/capture/")
	}
}

// --- the per-packet path allocates nothing --------------------------------

func TestHandlePacketAllocs(t *testing.T) {
	s, _ := testSensor(t, stealth())
	n := 0
	s.emit = func(evs []event.Event) { n += len(evs) }
	host := unix.RawSockaddrLinklayer{Pkttype: pktHost, Ifindex: ifEth}
	outgoing := unix.RawSockaddrLinklayer{Pkttype: pktOutgoing, Ifindex: ifEth}
	cases := []struct {
		name string
		b    []byte
		sa   *unix.RawSockaddrLinklayer
	}{
		{"SYN", tcpPacket(peer4, here4, 40001, 22, event.FlagSYN), &host},
		{"SYN IPv6", tcpPacket(peer6, here6, 40001, 22, event.FlagSYN), &host},
		{"UDP", udpPacket(peer4, here4, 5353, 53), &host},
		{"outgoing UDP", udpPacket(here4, peer4, 40000, 53), &outgoing},
		{"UDP reply", udpPacket(peer4, here4, 53, 40000), &host},
		{"unwatched", tcpPacket(peer4, here4, 40001, 80, event.FlagSYN), &host},
		{"undecodable", []byte{0x45, 0}, &host},
	}
	for _, c := range cases {
		if a := testing.AllocsPerRun(1000, func() { s.handlePacket(c.b, c.sa, t0); s.flush() }); a != 0 {
			t.Errorf("%s: %v allocations per packet, want 0", c.name, a)
		}
	}
	if n == 0 {
		t.Error("no event emitted: the test measured the wrong path")
	}
}

func BenchmarkHandlePacket(b *testing.B) {
	s, _ := testSensor(b, stealth())
	s.emit = func([]event.Event) {}
	host := unix.RawSockaddrLinklayer{Pkttype: pktHost, Ifindex: ifEth}
	for _, bc := range []struct {
		name string
		b    []byte
	}{
		{"SYN-watched", tcpPacket(peer4, here4, 40001, 22, event.FlagSYN)},
		{"SYN-unwatched", tcpPacket(peer4, here4, 40001, 80, event.FlagSYN)},
		{"UDP-watched-IPv6", udpPacket(peer6, here6, 5353, 53)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.handlePacket(bc.b, &host, t0)
				s.flush()
			}
		})
	}
}

// --- a sensor in this namespace, on loopback ------------------------------

// TestReadAllocs extends TestHandlePacketAllocs to the socket: reading
// queued packets and handling them allocates nothing either.
func TestReadAllocs(t *testing.T) {
	needRoot(t)
	p := freePort(t)
	s, err := Open(Config{UDP: ports(p), UDPMode: event.ModeSUDP, Interfaces: []string{All}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n := 0
	s.emit = func(evs []event.Event) { n += len(evs) }
	// On loopback each datagram is captured twice, outgoing and incoming,
	// and a read takes up to readBatch packets: enough are queued that
	// every read of the runs (and AllocsPerRun's warm-up) finds a full
	// batch.
	const runs = 8
	for range (runs + 2) * readBatch / 2 {
		sendUDP(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p).String())
	}
	sys := &s.sys
	allocs := testing.AllocsPerRun(runs, func() {
		if errno := sys.read(); errno != 0 {
			t.Fatalf("read: %v", errno)
		}
		if sys.n != readBatch {
			t.Fatalf("read %d packets, want a full batch of %d", sys.n, readBatch)
		}
		now := time.Now()
		for i := range sys.n {
			b, sa := sys.packet(i)
			s.handlePacket(b, sa, now)
		}
		s.flush()
	})
	if allocs != 0 {
		t.Errorf("%v allocations per packet read, want 0", allocs)
	}
	if n == 0 {
		t.Error("no event emitted: the test measured the wrong path")
	}
}

// freePort returns a port free for TCP and UDP on loopback right now.
func freePort(t *testing.T) uint16 {
	t.Helper()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		ln.Close()
		if err == nil {
			pc.Close()
			return uint16(p)
		}
	}
	t.Fatal("no free port")
	return 0
}

// runningSensor is a sensor whose Run is going, with its events on a channel.
type runningSensor struct {
	s      *Sensor
	events chan event.Event
	done   chan error
	cancel context.CancelFunc
}

func runSensor(t *testing.T, s *Sensor) *runningSensor {
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningSensor{s: s, events: make(chan event.Event, 100), done: make(chan error, 1), cancel: cancel}
	go func() {
		r.done <- s.Run(ctx, func(evs []event.Event) {
			for _, e := range evs {
				r.events <- e
			}
		})
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *runningSensor) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // for a second stop
		return err
	case <-time.After(wait):
		t.Fatal("Run did not return after its context was cancelled")
		return nil
	}
}

func (r *runningSensor) next(t *testing.T) event.Event {
	t.Helper()
	select {
	case e := <-r.events:
		return e
	case <-time.After(wait):
		t.Fatal("no event")
		return event.Event{}
	}
}

// dial sends a SYN to addr; nothing listens there, so the answer is a RST.
func dial(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, wait)
	if err == nil {
		c.Close()
	}
}

func sendUDP(t *testing.T, addr string) {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("probe")); err != nil {
		t.Fatal(err)
	}
}

func TestLoopback(t *testing.T) {
	needRoot(t)
	p, q := freePort(t), freePort(t)
	cfg := Config{
		TCP: ports(p, q), UDP: ports(p),
		TCPMode: event.ModeSTCP, UDPMode: event.ModeSUDP,
		Interfaces: []string{All},
	}
	s, err := Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	r := runSensor(t, s)
	l4, l6 := netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()
	hp := func(a netip.Addr, port uint16) string { return netip.AddrPortFrom(a, port).String() }
	cmpEv := []cmp.Option{cmpopts.IgnoreFields(event.Event{}, "Time", "Ifindex", "SrcPort"), cmpopts.EquateComparable(netip.Addr{})}
	check := func(want event.Event) {
		t.Helper()
		if diff := cmp.Diff(want, r.next(t), cmpEv...); diff != "" {
			t.Errorf("event (-want +got):\n%s", diff)
		}
	}

	dial(t, hp(l4, p))
	check(ev(l4, l4, p, event.TCP, event.SYN, event.FlagSYN, event.IPOptsNotSet, event.ModeSTCP))
	sendUDP(t, hp(l4, p))
	check(ev(l4, l4, p, event.UDP, event.UDPProbe, 0, event.IPOptsNotSet, event.ModeSUDP))
	if lnx, err := net.Listen("tcp", "[::1]:0"); err == nil { // IPv6 loopback may be off
		lnx.Close()
		dial(t, hp(l6, p))
		check(ev(l6, l6, p, event.TCP, event.SYN, event.FlagSYN, event.IPOptsUnknown, event.ModeSTCP))
	}

	// Without loopback nothing is seen; named "lo", loopback is back.
	cfg.Interfaces = []string{AllButLoopback}
	if err := s.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	dial(t, hp(l4, p))
	cfg.Interfaces = []string{"lo"}
	cfg.TCPMode = event.ModeATCP
	if err := s.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	dial(t, hp(l4, q))
	check(ev(l4, l4, q, event.TCP, event.SYN, event.FlagSYN, event.IPOptsNotSet, event.ModeATCP))

	// A bad configuration changes nothing.
	if err := s.Reconfigure(Config{Interfaces: []string{"no-such-if0"}}); err == nil {
		t.Error("Reconfigure to a missing interface: no error")
	}
	if w := s.watch.Load(); !cmp.Equal(w.names, []string{"lo"}) {
		t.Errorf("a failed Reconfigure changed the interfaces to %q", w.names)
	}

	inspected, emitted, dropped := s.Stats()
	if inspected < emitted || emitted < 3 || dropped != 0 {
		t.Errorf("Stats = %d inspected, %d emitted, %d dropped", inspected, emitted, dropped)
	}
	if err := r.stop(t); err != nil {
		t.Errorf("Run: %v", err)
	}
	if err := s.Run(context.Background(), func([]event.Event) {}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Run: %v, want net.ErrClosed", err)
	}
	if err := s.Reconfigure(cfg); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Reconfigure after Run: %v, want net.ErrClosed", err)
	}
	// Stats still answers after Run, with nothing lost.
	if i, e, _ := s.Stats(); i < inspected || e < emitted {
		t.Errorf("Stats after Run = %d inspected, %d emitted; had %d, %d", i, e, inspected, emitted)
	}
}

func TestCloseBeforeRun(t *testing.T) {
	needRoot(t)
	s, err := Open(Config{TCP: ports(1), TCPMode: event.ModeSTCP}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.Run(context.Background(), func([]event.Event) {}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Run after Close: %v, want net.ErrClosed", err)
	}
	if err := s.Run(context.Background(), nil); err == nil {
		t.Error("Run(nil emit): no error")
	}
}

func TestCloseStopsRun(t *testing.T) {
	needRoot(t)
	s, err := Open(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := runSensor(t, s)
	time.Sleep(10 * time.Millisecond) // let Run block in its read
	s.Close()
	select {
	case err := <-r.done:
		r.done <- err
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Close did not stop Run")
	}
}

// --- a sensor in a network namespace of its own ---------------------------

// Why a helper process: a packet socket belongs to the namespace it is
// created in, and the sensor also lists the host's interfaces and
// addresses every few seconds, from whatever thread its goroutines run on.
// Switching one locked thread into the namespace would do for the socket,
// not for those later reads. So the test binary re-executes itself under
// `ip netns exec` (runHelper), where the whole sensor lives in the target
// namespace as it would in production, and reports events on stdout as
// JSON lines. Probes are sent from goroutines locked to a thread that
// entered the scanner's (or target's) namespace: sockets are created in
// the namespace of the creating thread (inNetns).

// helperConfig is the helper's Config as JSON.
type helperConfig struct {
	TCP, UDP         string
	TCPMode, UDPMode string
	Interfaces       []string
}

func (c helperConfig) config() (Config, error) {
	tcp, err := portset.Parse(c.TCP)
	if err != nil {
		return Config{}, err
	}
	udp, err := portset.Parse(c.UDP)
	if err != nil {
		return Config{}, err
	}
	tm, _ := event.ParseMode(c.TCPMode)
	um, _ := event.ParseMode(c.UDPMode)
	return Config{TCP: tcp, UDP: udp, TCPMode: tm, UDPMode: um, Interfaces: c.Interfaces}, nil
}

// runHelper is the helper process: it opens a sensor with the config in
// its environment, prints READY, then one "EVENT {json}" line per event.
// On stdin it takes "RECONF {json}" (answers OK or ERR) and "STATS"
// (answers "STATS inspected emitted dropped"); at end of input it stops
// the sensor and exits.
func runHelper(cfgJSON string) int {
	var out sync.Mutex
	say := func(format string, args ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Printf(format+"\n", args...)
	}
	parse := func(s string) (Config, error) {
		var hc helperConfig
		if err := json.Unmarshal([]byte(s), &hc); err != nil {
			return Config{}, err
		}
		return hc.config()
	}
	cfg, err := parse(cfgJSON)
	if err != nil {
		say("ERR %v", err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := Open(cfg, log)
	if err != nil {
		say("ERR %v", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.Run(ctx, func(evs []event.Event) {
			for _, e := range evs {
				b, _ := json.Marshal(e)
				say("EVENT %s", b)
			}
		})
	}()
	say("READY")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		switch cmd {
		case "RECONF":
			cfg, err := parse(arg)
			if err == nil {
				err = s.Reconfigure(cfg)
			}
			if err != nil {
				say("ERR %v", err)
			} else {
				say("OK")
			}
		case "STATS":
			i, e, d := s.Stats()
			say("STATS %d %d %d", i, e, d)
		}
	}
	cancel()
	if err := <-done; err != nil {
		say("ERR %v", err)
		return 1
	}
	return 0
}

// helper is the parent's handle on a helper process.
type helper struct {
	stdin  io.WriteCloser
	events chan event.Event
	lines  chan string // everything but events
}

func startHelper(t *testing.T, ns *netns.NS, hc helperConfig) *helper {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(hc)
	cmd := ns.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(cfg))
	cmd.Stderr = tlogWriter{t}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{stdin: stdin, events: make(chan event.Event, 100), lines: make(chan string, 10)}
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if js, ok := strings.CutPrefix(line, "EVENT "); ok {
				var e event.Event
				if err := json.Unmarshal([]byte(js), &e); err != nil {
					h.lines <- "ERR bad event " + js
					continue
				}
				h.events <- e
				continue
			}
			h.lines <- line
		}
	}()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(wait):
			cmd.Process.Kill()
			t.Error("helper did not exit at end of input")
		}
		if err := cmd.Wait(); err != nil {
			t.Errorf("helper: %v", err)
		}
	})
	if line := h.line(t); line != "READY" {
		t.Fatalf("helper: %s", line)
	}
	return h
}

// tlogWriter sends the helper's log to the test log.
type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(b []byte) (int, error) {
	w.t.Logf("helper: %s", strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func (h *helper) line(t *testing.T) string {
	t.Helper()
	select {
	case l := <-h.lines:
		return l
	case <-time.After(wait):
		t.Fatal("helper: no answer")
		return ""
	}
}

func (h *helper) send(t *testing.T, cmd string) string {
	t.Helper()
	if _, err := io.WriteString(h.stdin, cmd+"\n"); err != nil {
		t.Fatal(err)
	}
	return h.line(t)
}

func (h *helper) reconfigure(t *testing.T, hc helperConfig) {
	t.Helper()
	b, _ := json.Marshal(hc)
	if got := h.send(t, "RECONF "+string(b)); got != "OK" {
		t.Fatalf("Reconfigure: %s", got)
	}
}

func (h *helper) next(t *testing.T) event.Event {
	t.Helper()
	select {
	case e := <-h.events:
		return e
	case <-time.After(wait):
		t.Fatal("no event")
		return event.Event{}
	}
}

// netPair is two namespaces joined by a veth pair: the target, where the
// sensor runs, and the scanner.
type netPair struct {
	target, scanner   *netns.NS
	targetIf          string
	target4, scanner4 netip.Addr
	target6, scanner6 netip.Addr
}

func newNetPair(t *testing.T) *netPair {
	t.Helper()
	np := &netPair{
		target: lab.New(t, "t"), scanner: lab.New(t, "s"),
		targetIf: "pct0",
		target4:  netip.MustParseAddr("198.51.100.1"), scanner4: netip.MustParseAddr("198.51.100.2"),
		target6: netip.MustParseAddr("2001:db8::1"), scanner6: netip.MustParseAddr("2001:db8::2"),
	}
	netnstest.Pair(t,
		netns.Iface{NS: np.target, Name: np.targetIf, Addrs: netns.OnLink(np.target4, np.target6)},
		netns.Iface{NS: np.scanner, Name: "pcs0", Addrs: netns.OnLink(np.scanner4, np.scanner6)})
	return np
}

// inNetns runs f on a thread that has entered network namespace ns, so the
// sockets f creates live there.
func inNetns(t *testing.T, ns *netns.NS, f func() error) {
	t.Helper()
	netnstest.Do(t, ns, f)
}

// synTo sends a SYN from ns to addr:port (the answer is a RST).
func synTo(t *testing.T, ns *netns.NS, addr netip.Addr, port uint16) {
	t.Helper()
	inNetns(t, ns, func() error {
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(addr, port).String(), wait)
		if err == nil {
			c.Close()
		}
		return nil
	})
}

// udpFrom sends one datagram from ns, source port sport (0: any), to
// addr:port.
func udpFrom(t *testing.T, ns *netns.NS, sport uint16, addr netip.Addr, port uint16) {
	t.Helper()
	inNetns(t, ns, func() error {
		c, err := net.DialUDP("udp", &net.UDPAddr{Port: int(sport)}, net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, port)))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("x"))
		return err
	})
}

// finTo sends a bare TCP FIN from ns to addr:port through a raw socket:
// what nmap -sF sends.
func finTo(t *testing.T, ns *netns.NS, addr netip.Addr, port uint16) {
	t.Helper()
	inNetns(t, ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, tcpHdr(40123, port, event.FlagFIN), 0, &unix.SockaddrInet4{Addr: addr.As4()})
	})
}

func TestNetns(t *testing.T) {
	np := newNetPair(t)
	const (
		tcpWatched   = 2222
		tcpUnwatched = 2223
		tcpMarker    = 2224
		udpWatched   = 5300
		udpQuery     = 40000 // watched; the target's own query leaves from it
		dnsPort      = 5353  // the "DNS server" port on the scanner
	)
	stealthCfg := helperConfig{
		TCP: "2222,2224", UDP: "5300,40000",
		TCPMode: "stcp", UDPMode: "sudp",
	}
	h := startHelper(t, np.target, stealthCfg)
	cmpEv := []cmp.Option{cmpopts.IgnoreFields(event.Event{}, "Time", "Ifindex", "SrcPort"), cmpopts.EquateComparable(netip.Addr{})}
	check := func(what string, want event.Event) {
		t.Helper()
		if diff := cmp.Diff(want, h.next(t), cmpEv...); diff != "" {
			t.Errorf("%s: event (-want +got):\n%s", what, diff)
		}
	}
	s4, t4, s6, t6 := np.scanner4, np.target4, np.scanner6, np.target6
	v4, v6 := event.IPOptsNotSet, event.IPOptsUnknown
	emitted := 0
	checkN := func(what string, want event.Event) { t.Helper(); emitted++; check(what, want) }

	synTo(t, np.scanner, t4, tcpWatched)
	checkN("SYN", ev(s4, t4, tcpWatched, event.TCP, event.SYN, event.FlagSYN, v4, event.ModeSTCP))

	// An unwatched port gives nothing: the next event is the marker's.
	synTo(t, np.scanner, t4, tcpUnwatched)
	synTo(t, np.scanner, t4, tcpMarker)
	checkN("unwatched, then marker", ev(s4, t4, tcpMarker, event.TCP, event.SYN, event.FlagSYN, v4, event.ModeSTCP))

	udpFrom(t, np.scanner, 0, t4, udpWatched)
	checkN("UDP", ev(s4, t4, udpWatched, event.UDP, event.UDPProbe, 0, v4, event.ModeSUDP))

	finTo(t, np.scanner, t4, tcpWatched)
	checkN("FIN", ev(s4, t4, tcpWatched, event.TCP, event.FIN, event.FlagFIN, v4, event.ModeSTCP))

	synTo(t, np.scanner, t6, tcpWatched)
	checkN("SYN IPv6", ev(s6, t6, tcpWatched, event.TCP, event.SYN, event.FlagSYN, v6, event.ModeSTCP))
	udpFrom(t, np.scanner, 0, t6, udpWatched)
	checkN("UDP IPv6", ev(s6, t6, udpWatched, event.UDP, event.UDPProbe, 0, v6, event.ModeSUDP))

	// The target sends a query from watched port udpQuery and closes the
	// socket; the answer arrives late, to a port nobody holds any more.
	// It is a reply, not a probe. A datagram to the same port from
	// another source port is a probe.
	for _, a := range []struct{ s, t netip.Addr }{{s4, t4}, {s6, t6}} {
		udpFromTo(t, np.target, a.t, udpQuery, a.s, dnsPort)
		udpFrom(t, np.scanner, dnsPort, a.t, udpQuery) // the late answer
		udpFrom(t, np.scanner, 0, a.t, udpWatched)     // marker
		opts := v4
		if a.t.Is6() {
			opts = v6
		}
		checkN("marker after a late reply", ev(a.s, a.t, udpWatched, event.UDP, event.UDPProbe, 0, opts, event.ModeSUDP))
		udpFrom(t, np.scanner, dnsPort+1, a.t, udpQuery)
		checkN("not a reply", ev(a.s, a.t, udpQuery, event.UDP, event.UDPProbe, 0, opts, event.ModeSUDP))
	}

	// Reconfigure: other ports, advanced mode, then only the veth named.
	adv := helperConfig{TCP: "2223", UDP: "", TCPMode: "atcp", UDPMode: "audp", Interfaces: []string{np.targetIf}}
	h.reconfigure(t, adv)
	synTo(t, np.scanner, t4, tcpWatched) // no longer watched
	udpFrom(t, np.scanner, 0, t4, udpWatched)
	synTo(t, np.scanner, t4, tcpUnwatched)
	checkN("advanced", ev(s4, t4, tcpUnwatched, event.TCP, event.SYN, event.FlagSYN, v4, event.ModeATCP))

	// Only loopback: the veth is not watched any more.
	adv.Interfaces = []string{"lo"}
	h.reconfigure(t, adv)
	synTo(t, np.scanner, t4, tcpUnwatched)
	lo := netip.MustParseAddr("127.0.0.1")
	synTo(t, np.target, lo, tcpUnwatched)
	checkN("loopback only", ev(lo, lo, tcpUnwatched, event.TCP, event.SYN, event.FlagSYN, v4, event.ModeATCP))

	fields := strings.Fields(h.send(t, "STATS"))
	if len(fields) != 4 || fields[0] != "STATS" {
		t.Fatalf("STATS answer %q", fields)
	}
	inspected, _ := strconv.Atoi(fields[1])
	gotEmitted, _ := strconv.Atoi(fields[2])
	dropped, _ := strconv.Atoi(fields[3])
	if gotEmitted != emitted || inspected < emitted || dropped != 0 {
		t.Errorf("Stats: %d inspected, %d emitted, %d dropped; want >= %d, %d, 0", inspected, gotEmitted, dropped, emitted, emitted)
	}
	select {
	case e := <-h.events:
		t.Errorf("unexpected event %+v", e)
	default:
	}
}

// udpFromTo sends one datagram from ns, from local address laddr port
// lport, to raddr:rport, and closes the socket.
func udpFromTo(t *testing.T, ns *netns.NS, laddr netip.Addr, lport uint16, raddr netip.Addr, rport uint16) {
	t.Helper()
	inNetns(t, ns, func() error {
		c, err := net.DialUDP("udp",
			net.UDPAddrFromAddrPort(netip.AddrPortFrom(laddr, lport)),
			net.UDPAddrFromAddrPort(netip.AddrPortFrom(raddr, rport)))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("query"))
		return err
	})
}
