package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestKernelFlood: a random-source SYN flood (hping3 --flood --rand-source)
// at an unused, watched port of T, from the hub, where T's default route leads, so
// that the flood's sources are routable as on the internet. During it, the
// friend F keeps using T's web service and S runs a real nmap scan. The
// daemon must sum the flood up (Flood lines, no line, record or ban per
// forged source), keep the kernel's ban set small (the trap drops without
// banning while the flood is summarized), answer `portsentry status`, and
// still block and record the real scanner, who learns at most the two
// unused ports the shipped configuration keeps out of the trap. How much
// it costs is the flood benchmark's business (BENCHMARKS.md, "Floods");
// this test runs alone (not in parallel), for a few seconds.
func TestKernelFlood(t *testing.T) {
	hping := requireTool(t, "hping3", "hping3")
	k := newKLab(t, nil)
	const floodGW = "10.231.0.250"
	for _, c := range [][]string{
		{"-n", k.hub.Name(), "addr", "add", floodGW + "/24", "dev", "br0"},
		{"-n", k.T.ns.Name(), "route", "add", "default", "via", floodGW},
	} {
		if out, err := k.hub.Command("ip", c...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(c, " "), err, out)
		}
	}

	// The friend's requests, every 100 ms, from before the flood to after
	// the scan.
	var mu sync.Mutex
	var served, failed int
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-time.After(100 * time.Millisecond):
			}
			r, err := stProbe(k.F, "tcp", k.T.v4, stWebPort, time.Second, "-dial", "2s")
			mu.Lock()
			if err == nil && r.Connected && r.Data == stWebReply {
				served++
			} else {
				failed++
			}
			mu.Unlock()
		}
	}()

	// Longer than the daemon's summary interval (10 s), so that a
	// summary is written.
	ctx, cancel := context.WithTimeout(context.Background(), 13*time.Second)
	defer cancel()
	flood := k.hub.CommandContext(ctx, hping, "-S", "--flood", "--rand-source", "-p", "1000", k.T.v4.String())
	if err := flood.Start(); err != nil {
		t.Fatal(err)
	}
	floodDone := make(chan struct{})
	go func() { flood.Wait(); close(floodDone) }()
	k.d.waitFor(t, "attackalert: Flood: ", 5*time.Second)

	// status answers, and says a flood is under way.
	if out := k.mustCLI(t, "status"); !strings.Contains(out, "Flood:") {
		t.Errorf("status during the flood does not mention it:\n%s", out)
	}
	// A real scan among the flood, of every port below 1024 (the lab's
	// advanced mode watches those): it may only get answers from the web
	// service and the two ports the shipped configuration keeps out of
	// the trap (ADVANCED_EXCLUDE_TCP), never from a trap port.
	r := k.nmapXML(t, k.S, "-sS", "-p", "1-1023", k.T.v4.String())
	allowed := map[string]bool{fmt.Sprintf("%d/open", stWebPort): true, "113/closed": true, "139/closed": true}
	for _, a := range r.notFiltered() {
		if !allowed[a] {
			t.Errorf("the scan during the flood got an answer from %s: a trap port answered", a)
		}
	}
	k.waitBlocked(t, k.S.v4)
	<-floodDone
	close(quit)
	<-done

	mu.Lock()
	if failed != 0 || served == 0 {
		t.Errorf("the friend was served %d times and failed %d times during the flood, want no failure", served, failed)
	}
	mu.Unlock()
	if _, ok := k.elem(t, k.S.v4); !ok {
		t.Errorf("the scanner %v is not banned", k.S.v4)
	}
	if n := len(k.set(t, "ban4")); n > 5000 {
		t.Errorf("ban4 holds %d elements after the flood: the trap kept banning forged sources", n)
	}
	// The flood is summarized: a few lines and records, not one per source.
	if n := len(k.d.lines("Scan from: [")); n > 200 {
		t.Errorf("%d Scan from lines: the flood's sources were logged one by one", n)
	}
	hist := fileLines(t, k.c.path("portsentry.history"))
	if len(hist) > 200 {
		t.Errorf("%d history lines: the flood's sources were recorded one by one", len(hist))
	}
	scanner := 0
	for _, h := range hist {
		if strings.Contains(h, k.S.v4.String()) {
			scanner++
		}
	}
	if scanner == 0 {
		t.Errorf("the scanner %v is not in the history:\n%s", k.S.v4, strings.Join(hist, "\n"))
	}
	if len(k.d.lines("attackalert: Flood: ")) < 2 || len(k.d.lines(" probes from ")) == 0 {
		t.Errorf("no flood summary after the flood began: %q", k.d.lines("attackalert: Flood: "))
	}
}
