package connect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/portsentry-go/portsentry/internal/event"
	"github.com/portsentry-go/portsentry/internal/portset"
	"github.com/portsentry-go/portsentry/internal/syncbuf"
)

// Tests touch loopback only: 127.0.0.1 and ::1.

// wait bounds every wait for something that should happen at once.
const wait = 5 * time.Second

var (
	lo4 = netip.MustParseAddr("127.0.0.1")
	lo6 = netip.MustParseAddr("::1")
)

// cmpEvent compares events except for their time.
var cmpEvent = []cmp.Option{
	cmpopts.IgnoreFields(event.Event{}, "Time"),
	cmpopts.EquateComparable(netip.Addr{}),
}

// freePorts returns n distinct ports that are free for both TCP and UDP right
// now, as the kernel hands them out.
func freePorts(t *testing.T, n int) []uint16 {
	t.Helper()
	seen := make(map[uint16]bool)
	var ports []uint16
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100*n {
			t.Fatalf("found only %d free ports of %d", len(ports), n)
		}
		ln, err := net.Listen("tcp", ":0")
		if err != nil {
			t.Fatal(err)
		}
		p := uint16(ln.Addr().(*net.TCPAddr).Port)
		pc, err := net.ListenPacket("udp", ":"+strconv.Itoa(int(p)))
		ln.Close()
		if err != nil {
			continue
		}
		pc.Close()
		if !seen[p] {
			seen[p] = true
			ports = append(ports, p)
		}
	}
	return ports
}

func set(ports ...uint16) portset.Set {
	var s portset.Set
	for _, p := range ports {
		s.Add(p)
	}
	return s
}

func newLogger() (*slog.Logger, *syncbuf.Buffer) {
	b := new(syncbuf.Buffer)
	return slog.New(slog.NewTextHandler(b, nil)), b
}

// open opens a sensor and closes it when the test ends.
func open(t *testing.T, cfg Config, log *slog.Logger) *Sensor {
	t.Helper()
	s, err := Open(cfg, log)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// run serves s until the test ends and returns the events it emits. The
// returned stop cancels Run and waits for it to return.
func run(t *testing.T, s *Sensor) (events <-chan event.Event, stop func()) {
	t.Helper()
	ch := make(chan event.Event, 4096)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, func(e event.Event) { ch <- e }) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(wait):
				t.Fatal("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return ch, stop
}

func next(t *testing.T, events <-chan event.Event) event.Event {
	t.Helper()
	select {
	case e := <-events:
		return e
	case <-time.After(wait):
		t.Fatal("no event")
		return event.Event{}
	}
}

// noMore fails if another event is waiting or arrives shortly.
func noMore(t *testing.T, events <-chan event.Event) {
	t.Helper()
	select {
	case e := <-events:
		t.Fatalf("unexpected event %+v", e)
	case <-time.After(50 * time.Millisecond):
	}
}

func hostPort(a netip.Addr, p uint16) string {
	return netip.AddrPortFrom(a, p).String()
}

// dialRead connects over TCP and returns everything the server sends before
// closing.
func dialRead(t *testing.T, a netip.Addr, p uint16) string {
	t.Helper()
	b, err := tryDialRead(a, p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tryDialRead is dialRead for goroutines other than the test's.
func tryDialRead(a netip.Addr, p uint16) (string, error) {
	c, err := net.DialTimeout("tcp", hostPort(a, p), wait)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	b, err := io.ReadAll(c)
	if err != nil {
		return "", fmt.Errorf("read from %v: %w", hostPort(a, p), err)
	}
	return string(b), nil
}

// sendUDP sends one datagram and, if reply is true, returns the answer.
func sendUDP(t *testing.T, a netip.Addr, p uint16, reply bool) string {
	t.Helper()
	b, err := trySendUDP(a, p, reply)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// trySendUDP is sendUDP for goroutines other than the test's.
func trySendUDP(a netip.Addr, p uint16, reply bool) (string, error) {
	c, err := net.Dial("udp", hostPort(a, p))
	if err != nil {
		return "", err
	}
	defer c.Close()
	if _, err := c.Write([]byte("probe")); err != nil {
		return "", err
	}
	if !reply {
		return "", nil
	}
	c.SetReadDeadline(time.Now().Add(wait))
	b := make([]byte, 1500)
	n, err := c.Read(b)
	if err != nil {
		return "", fmt.Errorf("UDP reply from %v: %w", hostPort(a, p), err)
	}
	return string(b[:n]), nil
}

// refused reports whether a TCP connection to p is refused.
func refused(t *testing.T, a netip.Addr, p uint16) bool {
	t.Helper()
	c, err := net.DialTimeout("tcp", hostPort(a, p), wait)
	if err == nil {
		c.Close()
		return false
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %v: %v, want connection refused", hostPort(a, p), err)
	}
	return true
}

func TestTCPConnect(t *testing.T) {
	for _, a := range []netip.Addr{lo4, lo6} {
		t.Run(a.String(), func(t *testing.T) {
			p := freePorts(t, 1)[0]
			s := open(t, Config{TCP: set(p)}, nil)
			events, _ := run(t, s)

			if got := dialRead(t, a, p); got != "" {
				t.Errorf("without banner the trap sent %q", got)
			}
			want := event.Event{
				Src: a, Dst: a, Port: p,
				Proto: event.TCP, Kind: event.Connect,
				IPOpts: event.IPOptsUnknown, Mode: event.ModeTCP,
			}
			got := next(t, events)
			if diff := cmp.Diff(want, got, cmpEvent...); diff != "" {
				t.Errorf("event (-want +got):\n%s", diff)
			}
			if got.Time.IsZero() || time.Since(got.Time) > time.Minute {
				t.Errorf("event time %v, want about now", got.Time)
			}
			noMore(t, events)
		})
	}
}

func TestUDPProbe(t *testing.T) {
	for _, a := range []netip.Addr{lo4, lo6} {
		t.Run(a.String(), func(t *testing.T) {
			p := freePorts(t, 1)[0]
			s := open(t, Config{UDP: set(p)}, nil)
			events, _ := run(t, s)

			sendUDP(t, a, p, false)
			want := event.Event{
				Src: a, Port: p,
				Proto: event.UDP, Kind: event.UDPProbe,
				IPOpts: event.IPOptsUnknown, Mode: event.ModeUDP,
			}
			if runtime.GOOS == "linux" {
				want.Dst = a // from IP_PKTINFO / IPV6_PKTINFO
			}
			if diff := cmp.Diff(want, next(t, events), cmpEvent...); diff != "" {
				t.Errorf("event (-want +got):\n%s", diff)
			}
			noMore(t, events)
		})
	}
}

func TestBanner(t *testing.T) {
	const banner = "** UNAUTHORIZED ACCESS PROHIBITED **\r\n"
	ports := freePorts(t, 2)
	tp, up := ports[0], ports[1]
	s := open(t, Config{TCP: set(tp), UDP: set(up), Banner: banner}, nil)
	events, _ := run(t, s)

	for _, a := range []netip.Addr{lo4, lo6} {
		if got := dialRead(t, a, tp); got != banner {
			t.Errorf("TCP %v: banner %q, want %q", a, got, banner)
		}
		if e := next(t, events); e.Kind != event.Connect || e.Src != a {
			t.Errorf("TCP %v: event %+v", a, e)
		}
		if got := sendUDP(t, a, up, true); got != banner {
			t.Errorf("UDP %v: banner %q, want %q", a, got, banner)
		}
		if e := next(t, events); e.Kind != event.UDPProbe || e.Src != a {
			t.Errorf("UDP %v: event %+v", a, e)
		}
	}
}

// TestBannerWritersFull checks that a connection arriving while every banner
// writer is busy still raises the alarm and is closed without a banner.
func TestBannerWritersFull(t *testing.T) {
	p := freePorts(t, 1)[0]
	s := open(t, Config{TCP: set(p), Banner: "hello"}, nil)
	events, _ := run(t, s)

	for range cap(s.sem) {
		s.sem <- struct{}{}
	}
	if got := dialRead(t, lo4, p); got != "" {
		t.Errorf("with all writers busy the trap sent %q", got)
	}
	next(t, events)

	for range cap(s.sem) {
		<-s.sem
	}
	if got := dialRead(t, lo4, p); got != "hello" {
		t.Errorf("with writers free the trap sent %q, want %q", got, "hello")
	}
	next(t, events)
}

func TestPortInUse(t *testing.T) {
	ports := freePorts(t, 4)
	busyTCP, freeTCP, busyUDP, freeUDP := ports[0], ports[1], ports[2], ports[3]

	ln, err := net.Listen("tcp", hostPort(lo4, busyTCP))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pc, err := net.ListenPacket("udp", ":"+strconv.Itoa(int(busyUDP)))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()

	log, logs := newLogger()
	s := open(t, Config{TCP: set(busyTCP, freeTCP), UDP: set(busyUDP, freeUDP)}, log)

	tcp, udp := s.Bound()
	if got, want := tcp.Ports(), []uint16{freeTCP}; !cmp.Equal(got, want) {
		t.Errorf("bound TCP %v, want %v", got, want)
	}
	if got, want := udp.Ports(), []uint16{freeUDP}; !cmp.Equal(got, want) {
		t.Errorf("bound UDP %v, want %v", got, want)
	}
	out := logs.String()
	for _, want := range []string{
		"level=WARN msg=\"connect: port already in use; not watching it\" proto=TCP port=" + strconv.Itoa(int(busyTCP)),
		"level=WARN msg=\"connect: port already in use; not watching it\" proto=UDP port=" + strconv.Itoa(int(busyUDP)),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q; log:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "\n"); n != 2 {
		t.Errorf("log has %d lines, want 2:\n%s", n, out)
	}

	events, _ := run(t, s)
	dialRead(t, lo4, freeTCP)
	if e := next(t, events); e.Port != freeTCP {
		t.Errorf("event on port %d, want %d", e.Port, freeTCP)
	}
	sendUDP(t, lo6, freeUDP, false)
	if e := next(t, events); e.Port != freeUDP {
		t.Errorf("event on port %d, want %d", e.Port, freeUDP)
	}
}

func TestOpenNothingBound(t *testing.T) {
	p := freePorts(t, 1)[0]
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(int(p)))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	s, err := Open(Config{TCP: set(p)}, nil)
	if err == nil {
		s.Close()
		t.Fatal("Open with every port in use: no error")
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("Open: %v, want EADDRINUSE", err)
	}
}

func TestOpenEmpty(t *testing.T) {
	log, logs := newLogger()
	s := open(t, Config{}, log)
	tcp, udp := s.Bound()
	if tcp.Len() != 0 || udp.Len() != 0 {
		t.Errorf("Bound = %v, %v; want nothing", tcp, udp)
	}
	if logs.String() != "" {
		t.Errorf("log:\n%s", logs)
	}

	// An empty sensor still runs and stops.
	_, stop := run(t, s)
	stop()
}

func TestReconfigure(t *testing.T) {
	ports := freePorts(t, 6)
	keptTCP, goneTCP, newTCP := ports[0], ports[1], ports[2]
	keptUDP, goneUDP, newUDP := ports[3], ports[4], ports[5]

	s := open(t, Config{TCP: set(keptTCP, goneTCP), UDP: set(keptUDP, goneUDP), Banner: "old"}, nil)
	events, _ := run(t, s)
	for _, p := range []uint16{keptTCP, goneTCP} {
		dialRead(t, lo4, p)
		next(t, events)
	}
	s.mu.Lock()
	keptLn, keptPC := s.tcp[keptTCP], s.udp[keptUDP]
	s.mu.Unlock()

	// Hammer the kept TCP port during the change: a single refusal would
	// be a gap in detection.
	hammerCtx, stopHammer := context.WithCancel(t.Context())
	hammerDone := make(chan error, 1)
	var hammered int
	go func() {
		for hammerCtx.Err() == nil {
			c, err := net.DialTimeout("tcp", hostPort(lo4, keptTCP), wait)
			if err != nil {
				hammerDone <- err
				return
			}
			c.Close()
			hammered++
		}
		hammerDone <- nil
	}()
	// Drain the hammer's events so the channel never fills.
	drained := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case e := <-events:
				if e.Port != keptTCP {
					t.Errorf("event on port %d while hammering %d", e.Port, keptTCP)
				}
				n++
			case <-hammerCtx.Done():
				drained <- n
				return
			}
		}
	}()

	time.Sleep(20 * time.Millisecond)
	err := s.Reconfigure(Config{TCP: set(keptTCP, newTCP), UDP: set(keptUDP, newUDP), Banner: "new"})
	time.Sleep(20 * time.Millisecond)
	stopHammer()
	if err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
	if err := <-hammerDone; err != nil {
		t.Fatalf("kept port failed during Reconfigure: %v", err)
	}
	<-drained
	t.Logf("%d connections to the kept port during Reconfigure", hammered)
	// Let the last hammer events arrive, then drop them.
	time.Sleep(50 * time.Millisecond)
	for len(events) > 0 {
		<-events
	}

	s.mu.Lock()
	if s.tcp[keptTCP] != keptLn || s.udp[keptUDP] != keptPC {
		t.Error("Reconfigure replaced a kept socket")
	}
	s.mu.Unlock()

	tcp, udp := s.Bound()
	if want := set(keptTCP, newTCP); tcp != want {
		t.Errorf("bound TCP %v, want %v", tcp, want)
	}
	if want := set(keptUDP, newUDP); udp != want {
		t.Errorf("bound UDP %v, want %v", udp, want)
	}

	// Kept and new ports work, with the new banner; the removed one refuses.
	for _, p := range []uint16{keptTCP, newTCP} {
		if got := dialRead(t, lo6, p); got != "new" {
			t.Errorf("TCP port %d: banner %q, want %q", p, got, "new")
		}
		if e := next(t, events); e.Port != p || e.Kind != event.Connect {
			t.Errorf("event %+v, want a connect on %d", e, p)
		}
	}
	// One source each: a source gets one UDP banner per bannerWindow.
	for _, u := range []struct {
		p   uint16
		src netip.Addr
	}{{keptUDP, lo4}, {newUDP, lo6}} {
		p := u.p
		if got := sendUDP(t, u.src, p, true); got != "new" {
			t.Errorf("UDP port %d: banner %q, want %q", p, got, "new")
		}
		if e := next(t, events); e.Port != p || e.Kind != event.UDPProbe {
			t.Errorf("event %+v, want a UDP probe on %d", e, p)
		}
	}
	if !refused(t, lo4, goneTCP) {
		t.Errorf("removed TCP port %d still accepts", goneTCP)
	}
	noMore(t, events)
}

func TestReconfigureBeforeRun(t *testing.T) {
	ports := freePorts(t, 2)
	s := open(t, Config{TCP: set(ports[0])}, nil)
	if err := s.Reconfigure(Config{TCP: set(ports[1])}); err != nil {
		t.Fatal(err)
	}
	events, _ := run(t, s)
	dialRead(t, lo4, ports[1])
	if e := next(t, events); e.Port != ports[1] {
		t.Errorf("event on %d, want %d", e.Port, ports[1])
	}
	if !refused(t, lo4, ports[0]) {
		t.Errorf("removed port %d still accepts", ports[0])
	}
}

func TestClosed(t *testing.T) {
	p := freePorts(t, 1)[0]
	s := open(t, Config{TCP: set(p)}, nil)
	_, stop := run(t, s)
	stop()

	if tcp, udp := s.Bound(); tcp.Len()+udp.Len() != 0 {
		t.Errorf("after Run: bound %v, %v", tcp, udp)
	}
	if !refused(t, lo4, p) {
		t.Errorf("port %d still accepts after Run", p)
	}
	if err := s.Reconfigure(Config{TCP: set(p)}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Reconfigure after Run: %v, want net.ErrClosed", err)
	}
	if err := s.Run(t.Context(), func(event.Event) {}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Run: %v, want net.ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close after Run: %v", err)
	}
}

// TestCloseStopsRun checks that Close ends a running Run.
func TestCloseStopsRun(t *testing.T) {
	p := freePorts(t, 1)[0]
	s := open(t, Config{UDP: set(p)}, nil)
	done := make(chan error, 1)
	running := make(chan struct{})
	go func() {
		close(running)
		done <- s.Run(context.Background(), func(event.Event) {})
	}()
	<-running
	// Run may not have taken the lock yet; Close either stops it or makes it
	// return net.ErrClosed at once.
	s.Close()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Run did not return after Close")
	}
}

func TestManyPorts(t *testing.T) {
	const lo, n = 40000, 2000
	var want portset.Set
	for p := range uint16(n) {
		want.Add(lo + p)
	}
	log, logs := newLogger()
	s := open(t, Config{TCP: want, UDP: want}, log)
	tcp, udp := s.Bound()
	// Other programs on the host may hold a few of these.
	if tcp.Len() < n-20 || udp.Len() < n-20 {
		t.Fatalf("bound %d TCP and %d UDP of %d; log:\n%s", tcp.Len(), udp.Len(), n, logs)
	}
	t.Logf("bound %d TCP and %d UDP ports", tcp.Len(), udp.Len())

	events, stop := run(t, s)
	var tp, up uint16
	for _, p := range tcp.Ports() {
		if p%97 == 0 && tp == 0 {
			tp = p
		}
	}
	up = udp.Ports()[udp.Len()-1]
	dialRead(t, lo4, tp)
	if e := next(t, events); e.Port != tp {
		t.Errorf("event on %d, want %d", e.Port, tp)
	}
	sendUDP(t, lo6, up, false)
	if e := next(t, events); e.Port != up {
		t.Errorf("event on %d, want %d", e.Port, up)
	}

	start := time.Now()
	stop()
	took := time.Since(start)
	t.Logf("Run returned %v after cancel", took)
	if took > time.Second {
		t.Errorf("Run took %v to return after cancel with %d sockets", took, tcp.Len()+udp.Len())
	}
	if !refused(t, lo4, tp) {
		t.Errorf("port %d still accepts after Run", tp)
	}
}

// TestConcurrent drives many ports over both families and protocols at once
// while Reconfigure and Bound run, for the race detector; every contact must
// come out as exactly one event.
func TestConcurrent(t *testing.T) {
	ports := freePorts(t, 9)
	tcpPorts, udpPorts, extra := ports[:4], ports[4:8], ports[8]
	base := Config{TCP: set(tcpPorts...), UDP: set(udpPorts...), Banner: "x"}
	s := open(t, base, nil)
	// Every UDP probe waits for its banner, and a source gets one banner
	// per bannerWindow: a clock a window further on each time it is read
	// lets every reply through the limiter.
	var tick atomic.Int64
	s.replies.now = func() time.Time { return time.Unix(0, tick.Add(int64(bannerWindow))) }

	var (
		mu  sync.Mutex
		got = make(map[event.Event]int) // with Time zeroed
	)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- s.Run(ctx, func(e event.Event) {
			e.Time = time.Time{}
			mu.Lock()
			got[e]++
			mu.Unlock()
		})
	}()

	const rounds = 20
	want := make(map[event.Event]int)
	var wg sync.WaitGroup
	for _, a := range []netip.Addr{lo4, lo6} {
		for _, p := range tcpPorts {
			want[event.Event{Src: a, Dst: a, Port: p, Proto: event.TCP, Kind: event.Connect, Mode: event.ModeTCP}] = rounds
			wg.Go(func() {
				for range rounds {
					if got, err := tryDialRead(a, p); err != nil || got != "x" {
						t.Errorf("TCP %v: banner %q, error %v", hostPort(a, p), got, err)
					}
				}
			})
		}
		for _, p := range udpPorts {
			e := event.Event{Src: a, Port: p, Proto: event.UDP, Kind: event.UDPProbe, Mode: event.ModeUDP}
			if runtime.GOOS == "linux" {
				e.Dst = a
			}
			want[e] = rounds
			wg.Go(func() {
				for range rounds {
					// Waiting for each reply keeps loopback from
					// dropping datagrams.
					if got, err := trySendUDP(a, p, true); err != nil || got != "x" {
						t.Errorf("UDP %v: banner %q, error %v", hostPort(a, p), got, err)
					}
				}
			})
		}
	}
	wg.Go(func() {
		for i := range rounds {
			cfg := base
			if i%2 == 0 {
				cfg.TCP.Add(extra)
			}
			if err := s.Reconfigure(cfg); err != nil {
				t.Errorf("Reconfigure: %v", err)
			}
			s.Bound()
		}
	})
	wg.Wait()

	// Every client has its answer, so every emit has returned.
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// TestShutdownCutsBanner checks that a client which never reads cannot hold
// Run open for the banner timeout.
func TestShutdownCutsBanner(t *testing.T) {
	// Larger than what loopback socket buffers absorb, so Write blocks.
	banner := strings.Repeat("x", 32<<20)
	p := freePorts(t, 1)[0]
	s := open(t, Config{TCP: set(p), Banner: banner}, nil)
	events, stop := run(t, s)

	c, err := net.Dial("tcp", hostPort(lo4, p))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	next(t, events)
	time.Sleep(50 * time.Millisecond) // let the writer fill the buffers

	start := time.Now()
	stop()
	if took := time.Since(start); took >= bannerTimeout/2 {
		t.Errorf("Run took %v to return with a blocked banner writer", took)
	}
}
