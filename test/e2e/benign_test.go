package e2e

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// Benign traffic is never a probe: the kernel trap and the daemon spare
// what real users send to a host, under the shipped protections
// (SERVICE_GRACE, traceroute).

// TestKernelServiceRestart: F connects to T's service on port 700 every
// 50 ms; the service stops for 2 s and starts again. The connections made
// while it is down fail (or wait for a retransmission), but F is never
// banned, and it is served again after the restart.
func TestKernelServiceRestart(t *testing.T) {
	t.Parallel()
	k := newKLab(t, nil)
	const port = 700
	stop := startListener(t, k.T, "tcp", fmt.Sprintf(":%d", port), "svc")

	var mu sync.Mutex
	var served, failed int
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-time.After(50 * time.Millisecond):
			}
			r, err := stProbe(k.F, "tcp", k.T.v4, port, time.Second, "-dial", "4s")
			mu.Lock()
			if err == nil && r.Connected && r.Data == "svc" {
				served++
			} else {
				failed++
			}
			mu.Unlock()
		}
	}()
	count := func() (int, int) { mu.Lock(); defer mu.Unlock(); return served, failed }
	waitServed := func(n int) {
		t.Helper()
		s0, _ := count()
		deadline := time.Now().Add(20 * time.Second)
		for s, _ := count(); s < s0+n; s, _ = count() {
			if time.Now().After(deadline) {
				t.Fatalf("the client was served %d times in 20 s, want %d more", s-s0, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitServed(5)
	stop()
	time.Sleep(2 * time.Second)
	startListener(t, k.T, "tcp", fmt.Sprintf(":%d", port), "svc")
	waitServed(5) // served again after the restart
	close(quit)
	<-done
	s, f := count()
	t.Logf("client served %d times, %d attempts failed or waited while the service was down", s, f)

	if ls := k.messages("Host " + k.F.v4.String() + " "); len(ls) != 0 {
		t.Errorf("the client was acted on: %q", ls)
	}
	k.assertBanned(t)
	k.assertNoErrors(t)
}

// TestKernelTraceroute: a traceroute from F to T (UDP to 33434 and up, the
// last probes arriving with a TTL of 1 or a little more) reaches its end
// and bans nobody, with every UDP port below 65535 watched.
func TestKernelTraceroute(t *testing.T) {
	t.Parallel()
	tr := requireTool(t, "traceroute", "traceroute")
	k := newKLab(t, func(c *config) { c.set("ADVANCED_PORTS_UDP", "65535") })
	out, err := k.F.ns.Command(tr, "-n", "-q", "1", "-w", "1", "-m", "5", k.T.v4.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("traceroute: %v\n%s", err, out)
	}
	t.Logf("traceroute:\n%s", out)
	// One hop: T answers the first probe with a port unreachable.
	if want := " 1  " + k.T.v4.String(); !containsLine(string(out), want) {
		t.Errorf("traceroute did not reach %v in one hop", k.T.v4)
	}
	time.Sleep(200 * time.Millisecond)
	if ls := k.messages("[" + k.F.v4.String() + "]"); len(ls) != 0 {
		t.Errorf("the traceroute was reported: %q", ls)
	}
	k.assertBanned(t)
	k.assertNoErrors(t)
}

// containsLine reports whether a line of out starts with prefix.
func containsLine(out, prefix string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// TestSlowScan: a slow scan (nmap -T1, a probe every 15 s) with
// SCAN_TRIGGER="3" and the default SCAN_TRIGGER_WINDOW (an hour) is
// blocked by its third probe: hits add up across the minute it takes,
// where the window would otherwise let stray packets decay.
func TestSlowScan(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 35 s: nmap -T1 waits 15 s between probes")
	}
	t.Parallel()
	s := newStLab(t, stAdvanced, func(c *config) { c.set("SCAN_TRIGGER", "3") })
	start := time.Now()
	s.scan(t, "-sS", "-T1", "--max-retries", "0", "--host-timeout", "120s", "-p", "1001-1003", s.T.v4.String())
	took := time.Since(start)
	if took < 25*time.Second {
		t.Fatalf("nmap -T1 took %v for 3 probes: not a slow scan", took)
	}
	port := s.assertBlockedOnce(t, s.S.v4, "tcp", "TCP SYN/Normal scan", stExpandPorts("1001-1003"))
	if counted := s.messages("triggered: [false]"); len(counted) != 2 {
		t.Errorf("below-trigger lines %q, want two (hits 1 and 2 of 3)", counted)
	}
	t.Logf("nmap -T1 took %v; blocked at port %d, its third probe", took.Round(time.Second), port)
	s.assertBanned(t, s.S.v4)
	s.assertNoErrors(t)
}
