package alert

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeDest records messages, or hangs until its delivery is cancelled.
type fakeDest struct {
	mu   sync.Mutex
	msgs []*message
	hang bool
	err  error
}

func (f *fakeDest) deliver(ctx context.Context, m *message) error {
	if f.hang {
		<-ctx.Done()
		return ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msgs = append(f.msgs, m)
	return f.err
}

func (f *fakeDest) got() []*message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.msgs)
}

// testConfig is a valid configuration (its webhook is replaced by fakes).
func testConfig(t *testing.T, mod func(*Config)) Config {
	t.Helper()
	c := Config{WebhookURL: "http://127.0.0.1:9/hook", Hostname: "sensor1", Version: "2.0.0-test"}
	if mod != nil {
		mod(&c)
	}
	c, err := c.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// start runs an alerter over fake destinations until the test ends.
func start(t *testing.T, cfg Config, dests ...*fakeDest) *Alerter {
	t.Helper()
	var sinks []*sink
	for i, d := range dests {
		sinks = append(sinks, newSink(fmt.Sprintf("fake%d", i), d, cfg.QueueSize))
	}
	a := newAlerter(cfg, nil, sinks)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return a
}

var (
	srcA = netip.MustParseAddr("10.99.0.1")
	srcB = netip.MustParseAddr("2001:db8::66")
)

func probe(src netip.Addr, port uint16) Alert {
	return Alert{Src: src, Ports: []uint16{port}, Kinds: []string{"TCP SYN/Normal scan"}, Action: ActionBlocked}
}

// TestFullScanIsOneAlert: a 65 535-port scan from one source, all within
// the gather delay, is one message naming every port.
func TestFullScanIsOneAlert(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(t, nil)
		dest := &fakeDest{}
		a := start(t, cfg, dest)
		t0 := time.Now()
		for p := 1; p <= 65535; p++ {
			al := probe(srcA, uint16(p))
			al.Host = "scanner.example.net"
			al.BanExpires = t0.Add(time.Hour)
			a.Notify(al)
			if p%1024 == 0 {
				synctest.Wait() // let the worker drain the queue, as a scan's pace would
			}
		}
		synctest.Wait()
		if n := len(dest.got()); n != 0 {
			t.Fatalf("%d messages before the gather delay, want 0", n)
		}
		time.Sleep(cfg.Delay)
		synctest.Wait()
		msgs := dest.got()
		if len(msgs) != 1 {
			t.Fatalf("%d messages for one scan, want 1", len(msgs))
		}
		m := msgs[0]
		if m.Summary || m.Src != srcA || m.Host != "scanner.example.net" || m.PortCount != 65535 || m.Probes != 65535 ||
			!slices.Equal(m.Actions, []string{ActionBlocked}) || !slices.Equal(m.Kinds, []string{"TCP SYN/Normal scan"}) ||
			!m.BanExpires.Equal(t0.Add(time.Hour)) || !m.First.Equal(t0) || !m.Time.Equal(t0.Add(cfg.Delay)) {
			t.Errorf("message = %+v", *m)
		}
		if len(m.Ports) != webhookPorts || m.Ports[0] != 1 || m.Ports[webhookPorts-1] != webhookPorts {
			t.Errorf("ports listed: %v…, want the lowest %d", m.Ports[:5], webhookPorts)
		}
		// Nothing more came: the window ends without a summary.
		time.Sleep(cfg.Window + time.Second)
		synctest.Wait()
		if n := len(dest.got()); n != 1 {
			t.Errorf("%d messages after a quiet window, want still 1", n)
		}
		if s := a.Stats(); s != (Stats{Sent: 1}) {
			t.Errorf("Stats = %+v", s)
		}
	})
}

// TestWindowSummary: probes after the alert are gathered into one summary
// at the end of the window; a quiet window ends the source's entry.
func TestWindowSummary(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(t, nil)
		dest := &fakeDest{}
		a := start(t, cfg, dest)
		for p := range uint16(100) {
			a.Notify(probe(srcA, p+1))
		}
		time.Sleep(cfg.Delay)
		synctest.Wait()
		alertAt := time.Now()
		// 30 s of scanning after the alert: 3 000 more ports, one of them
		// already seen, from a block that then failed.
		for i := range 3000 {
			al := probe(srcA, uint16(101+i))
			if i == 0 {
				al.Ports = append(al.Ports, 1)
			}
			if i == 2999 {
				al.Action = ActionBlockFailed
				al.Kinds = []string{"TCP FIN scan"}
			}
			a.Notify(al)
			if i%100 == 99 {
				time.Sleep(time.Second)
			}
		}
		synctest.Wait()
		if n := len(dest.got()); n != 1 {
			t.Fatalf("%d messages inside the window, want 1", n)
		}
		time.Sleep(alertAt.Add(cfg.Window).Sub(time.Now()))
		synctest.Wait()
		msgs := dest.got()
		if len(msgs) != 2 {
			t.Fatalf("%d messages at the end of the window, want 2", len(msgs))
		}
		s := msgs[1]
		// Ports counts every port probed in the window, port 1 included
		// although the alert named it: the summary tells what the window saw.
		if !s.Summary || s.PortCount != 3001 || s.Probes != 3001 || !s.Since.Equal(alertAt) ||
			!slices.Equal(s.Actions, []string{ActionBlocked, ActionBlockFailed}) ||
			!slices.Equal(s.Kinds, []string{"TCP SYN/Normal scan", "TCP FIN scan"}) {
			t.Errorf("summary = %+v", *s)
		}
		// A window with nothing: no message, and the entry is gone, so the
		// next probe is a new alert after the delay, not a summary.
		time.Sleep(cfg.Window + time.Second)
		synctest.Wait()
		a.Notify(probe(srcA, 7))
		time.Sleep(cfg.Delay)
		synctest.Wait()
		msgs = dest.got()
		if len(msgs) != 3 || msgs[2].Summary || msgs[2].PortCount != 1 {
			t.Fatalf("after a quiet window: %d messages, last %+v; want a new alert", len(msgs), msgs[len(msgs)-1])
		}
	})
}

func TestTwoSourcesTwoAlerts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(t, nil)
		dest := &fakeDest{}
		a := start(t, cfg, dest)
		for p := range uint16(10) {
			a.Notify(probe(srcA, 1000+p))
			a.Notify(probe(srcB, 2000+p))
			a.Notify(probe(srcB, 3000+p))
		}
		time.Sleep(cfg.Delay)
		synctest.Wait()
		msgs := dest.got()
		if len(msgs) != 2 {
			t.Fatalf("%d messages, want 2", len(msgs))
		}
		if msgs[0].Src != srcA || msgs[0].PortCount != 10 || msgs[0].Ports[0] != 1000 {
			t.Errorf("first = %+v", *msgs[0])
		}
		if msgs[1].Src != srcB || msgs[1].PortCount != 20 || msgs[1].Ports[0] != 2000 {
			t.Errorf("second = %+v", *msgs[1])
		}
	})
}

// TestMappedSourceIsSameSource: ::ffff:10.99.0.1 and 10.99.0.1 are one
// attacker.
func TestMappedSourceIsSameSource(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(t, nil)
		dest := &fakeDest{}
		a := start(t, cfg, dest)
		a.Notify(probe(srcA, 1))
		a.Notify(probe(netip.AddrFrom16(srcA.As16()), 2))
		time.Sleep(cfg.Delay)
		synctest.Wait()
		if msgs := dest.got(); len(msgs) != 1 || msgs[0].PortCount != 2 || msgs[0].Src != srcA {
			t.Errorf("messages %v", msgs)
		}
	})
}

func TestRateLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(t, func(c *Config) { c.MaxPerHour = 3 })
		dest := &fakeDest{}
		a := start(t, cfg, dest)
		for i := range 10 {
			a.Notify(probe(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 22))
		}
		time.Sleep(cfg.Delay)
		synctest.Wait()
		if n := len(dest.got()); n != 3 {
			t.Fatalf("%d messages, want the limit, 3", n)
		}
		if s := a.Stats(); s.RateLimited != 7 {
			t.Errorf("RateLimited = %d, want 7", s.RateLimited)
		}
		// Still limited within the hour.
		time.Sleep(30 * time.Minute)
		a.Notify(probe(srcB, 22))
		time.Sleep(cfg.Delay)
		synctest.Wait()
		if n := len(dest.got()); n != 3 {
			t.Fatalf("%d messages half an hour later, want 3", n)
		}
		// An hour after the first three, the next one goes and tells how
		// many were held back.
		time.Sleep(31 * time.Minute)
		a.Notify(probe(srcB, 23))
		time.Sleep(cfg.Delay)
		synctest.Wait()
		msgs := dest.got()
		if len(msgs) != 4 {
			t.Fatalf("%d messages after the hour, want 4", len(msgs))
		}
		if msgs[3].Held != 8 {
			t.Errorf("Held = %d, want 8", msgs[3].Held)
		}
	})
}

// TestNotifyNeverBlocks: with the queue full and the worker stopped by a
// hung destination, Notify still returns at once and counts the loss.
func TestNotifyNeverBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(t, func(c *Config) { c.QueueSize = 8 })
		dest := &fakeDest{hang: true}
		a := start(t, cfg, dest)
		for i := range 100 {
			a.Notify(probe(netip.AddrFrom4([4]byte{10, 0, 1, byte(i)}), 22))
		}
		time.Sleep(cfg.Delay) // deliveries start, and hang
		synctest.Wait()
		before := time.Now()
		for range 100_000 {
			a.Notify(probe(srcA, 80))
		}
		if !time.Now().Equal(before) {
			t.Error("Notify waited")
		}
		synctest.Wait()
		s := a.Stats()
		if s.Dropped == 0 {
			t.Errorf("Stats %+v: nothing dropped from a queue of 8", s)
		}
		// Each hung delivery ends at the timeout, counted as failed.
		time.Sleep(cfg.Timeout)
		synctest.Wait()
		if s := a.Stats(); s.Failed == 0 {
			t.Errorf("Stats %+v: no failure after the timeout", s)
		}
	})
}

// TestLostCounted: notifications the queue dropped are told in the next
// message.
func TestLostCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(t, func(c *Config) { c.QueueSize = 4 })
		dest := &fakeDest{}
		a := start(t, cfg, dest)
		for p := range uint16(1000) {
			a.Notify(probe(srcA, p+1))
		}
		time.Sleep(cfg.Delay)
		synctest.Wait()
		msgs := dest.got()
		if len(msgs) != 1 {
			t.Fatalf("%d messages", len(msgs))
		}
		d := a.Stats().Dropped
		if d == 0 || msgs[0].Lost != int(d) || msgs[0].Probes+int(d) != 1000 {
			t.Errorf("Dropped %d, message Lost %d Probes %d: want Lost = Dropped and Probes + Dropped = 1000", d, msgs[0].Lost, msgs[0].Probes)
		}
	})
}

// TestTableBound: a full table first forgets a source that only waits out
// its window; with none, the new source's notification is dropped.
func TestTableBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(t, func(c *Config) { c.MaxSources = 2 })
		dest := &fakeDest{}
		a := start(t, cfg, dest)
		srcC := netip.MustParseAddr("192.0.2.3")
		a.Notify(probe(srcA, 1))
		a.Notify(probe(srcB, 1))
		synctest.Wait()
		a.Notify(probe(srcC, 1)) // A and B both gathering: C is dropped
		time.Sleep(cfg.Delay)
		synctest.Wait()
		if s := a.Stats(); s.Dropped != 1 {
			t.Fatalf("Dropped = %d, want 1", s.Dropped)
		}
		// A and B now only wait out their windows: C takes a place.
		a.Notify(probe(srcC, 2))
		time.Sleep(cfg.Delay)
		synctest.Wait()
		msgs := dest.got()
		if len(msgs) != 3 || msgs[2].Src != srcC {
			t.Fatalf("messages %d, last %+v; want C's alert", len(msgs), msgs[len(msgs)-1])
		}
		if msgs[0].Lost != 1 || msgs[1].Lost != 0 || msgs[2].Lost != 0 {
			t.Errorf("Lost %d, %d, %d; want the first message after the drop to tell it, once", msgs[0].Lost, msgs[1].Lost, msgs[2].Lost)
		}
	})
}

// TestCloseFlushes: Close sends what is gathered, alerts and summaries,
// without waiting for the delay or the window.
func TestCloseFlushes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(t, func(c *Config) { c.Delay = time.Hour })
		dest := &fakeDest{}
		a := newAlerter(cfg, nil, []*sink{newSink("fake", dest, cfg.QueueSize)})
		runErr := make(chan error, 1)
		go func() { runErr <- a.Run(context.Background()) }()
		a.Notify(probe(srcA, 1))
		a.Notify(probe(srcB, 2))
		synctest.Wait()
		t0 := time.Now()
		if err := a.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if !time.Now().Equal(t0) {
			t.Error("Close waited for the delay")
		}
		if err := <-runErr; err != nil {
			t.Errorf("Run = %v", err)
		}
		if msgs := dest.got(); len(msgs) != 2 {
			t.Fatalf("%d messages after Close, want 2", len(msgs))
		}
		a.Notify(probe(srcA, 3))
		if s := a.Stats(); s.Dropped != 1 || s.Sent != 2 {
			t.Errorf("Stats after Close = %+v, want the late Notify dropped", s)
		}
		if err := a.Close(context.Background()); err != nil {
			t.Errorf("second Close = %v", err)
		}
		if err := a.Run(context.Background()); !errors.Is(err, ErrRunning) {
			t.Errorf("second Run = %v, want ErrRunning", err)
		}
	})
}

func TestCloseFlushesSummary(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(t, nil)
		dest := &fakeDest{}
		a := newAlerter(cfg, nil, []*sink{newSink("fake", dest, cfg.QueueSize)})
		ctx, cancel := context.WithCancel(context.Background())
		runErr := make(chan error, 1)
		go func() { runErr <- a.Run(ctx) }()
		a.Notify(probe(srcA, 1))
		time.Sleep(cfg.Delay)
		a.Notify(probe(srcA, 2))
		a.Notify(probe(srcA, 3))
		synctest.Wait()
		cancel() // the daemon's shutdown: Run flushes too
		if err := <-runErr; err != nil {
			t.Fatal(err)
		}
		msgs := dest.got()
		if len(msgs) != 2 || !msgs[1].Summary || msgs[1].PortCount != 2 {
			t.Fatalf("messages %v, want the alert then a 2-port summary", msgs)
		}
		if err := a.Close(context.Background()); err != nil {
			t.Errorf("Close after Run returned = %v", err)
		}
	})
}

// TestCloseDeadline: a destination that hangs holds Close only until the
// caller's deadline; the delivery is then cancelled and counted.
func TestCloseDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(t, func(c *Config) { c.Timeout = time.Hour })
		dest := &fakeDest{hang: true}
		a := newAlerter(cfg, nil, []*sink{newSink("fake", dest, cfg.QueueSize)})
		go a.Run(context.Background())
		a.Notify(probe(srcA, 1))
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		t0 := time.Now()
		if err := a.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Close = %v, want DeadlineExceeded", err)
		}
		if d := time.Since(t0); d != 2*time.Second {
			t.Errorf("Close took %v, want the 2s deadline", d)
		}
		if s := a.Stats(); s.Failed != 1 {
			t.Errorf("Stats = %+v, want the cancelled delivery failed", s)
		}
	})
}

func TestCloseBeforeRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(t, nil)
		dest := &fakeDest{}
		a := newAlerter(cfg, nil, []*sink{newSink("fake", dest, cfg.QueueSize)})
		a.Notify(probe(srcA, 1))
		if err := a.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := a.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		if msgs := dest.got(); len(msgs) != 1 {
			t.Errorf("%d messages: Run after Close must flush what was queued", len(msgs))
		}
	})
}

// TestFailureCounted: an error is counted, logged, and does not stop the
// next delivery.
func TestFailureCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(t, nil)
		bad := &fakeDest{err: errors.New("boom")}
		good := &fakeDest{}
		a := start(t, cfg, bad, good)
		a.Notify(probe(srcA, 1))
		a.Notify(probe(srcB, 1))
		time.Sleep(cfg.Delay)
		synctest.Wait()
		if s := a.Stats(); s.Failed != 2 || s.Sent != 2 {
			t.Errorf("Stats = %+v, want 2 failed, 2 sent", s)
		}
	})
}

func TestNilAlerter(t *testing.T) {
	var a *Alerter
	a.Notify(probe(srcA, 1))
	if err := a.Run(context.Background()); err != nil {
		t.Error(err)
	}
	if err := a.Close(context.Background()); err != nil {
		t.Error(err)
	}
	if a.Stats() != (Stats{}) {
		t.Error("nil Stats")
	}
}

func TestPortSet(t *testing.T) {
	var s portSet
	for _, p := range []uint16{9, 3, 3, 65535, 0} {
		s.add(p)
	}
	if s.n != 4 || !slices.Equal(s.lowest(10), []uint16{0, 3, 9, 65535}) || !slices.Equal(s.lowest(2), []uint16{0, 3}) {
		t.Errorf("small set: n %d, %v", s.n, s.lowest(10))
	}
	for p := 1000; p < 1200; p++ {
		s.add(uint16(p))
		s.add(uint16(p))
	}
	if s.n != 204 || s.bits == nil {
		t.Errorf("large set: n %d, bits %v", s.n, s.bits != nil)
	}
	if got := s.lowest(5); !slices.Equal(got, []uint16{0, 3, 9, 1000, 1001}) {
		t.Errorf("lowest(5) = %v", got)
	}
	if got := s.lowest(1000); len(got) != 204 || got[203] != 65535 {
		t.Errorf("lowest(1000): %d ports, last %d", len(got), got[len(got)-1])
	}
}

func TestRateLimitUnlimited(t *testing.T) {
	r := newRateLimit(-1)
	for range 1000 {
		if !r.allow(time.Unix(0, 0)) {
			t.Fatal("refused with no limit")
		}
	}
}
