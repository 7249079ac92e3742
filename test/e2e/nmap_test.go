package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestNmap: a real nmap run from the scanner namespace (TCP connect scan over
// IPv4, UDP scan over IPv6) against the trap ports is seen, and each scanner
// address is blocked exactly once however many ports it touched.
func TestNmap(t *testing.T) {
	t.Parallel()
	nmap := requireTool(t, "nmap", "nmap")
	l := newLab(t)
	c := newConfig(t)
	d := startDaemon(t, l.T.ns, c.write(t), flags2x...)

	run := func(args ...string) string {
		t.Helper()
		out, err := l.S.ns.Command(nmap, append([]string{"-n", "-Pn", "--max-retries", "1", "--host-timeout", "60s"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("nmap %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	out := run("-sT", "-p", joinInts(tcpPorts), l.T.v4.String())
	if !strings.Contains(out, "143/tcp") || !strings.Contains(out, "open") {
		t.Errorf("nmap -sT did not see the trap ports open:\n%s", out)
	}
	d.waitFor(t, wrappersPrefix(l.S.v4), logWait)
	out = run("-6", "-sU", "-p", joinInts(udpPorts), l.T.v6.String())
	d.waitFor(t, wrappersPrefix(l.S.v6), logWait)
	time.Sleep(settle)

	routes := fileLines(t, c.path("actions.log"))
	var v4, v6 int
	for _, r := range routes {
		switch {
		case strings.HasPrefix(r, fmt.Sprintf("route %s ", l.S.v4)) && strings.HasSuffix(r, " "+modeToken(flags2x, "tcp")):
			v4++
		case strings.HasPrefix(r, fmt.Sprintf("route %s ", l.S.v6)) && strings.HasSuffix(r, " "+modeToken(flags2x, "udp")):
			v6++
		default:
			t.Errorf("unexpected KILL_ROUTE run %q", r)
		}
	}
	if v4 != 1 || v6 != 1 {
		t.Errorf("KILL_ROUTE ran %q, want once for %s (TCP) and once for %s (UDP)\nlast nmap:\n%s", routes, l.S.v4, l.S.v6, out)
	}
	assertDeny(t, c, l.S.v4, l.S.v6)
	if n := len(d.lines("Scan from: [" + l.S.v4.String() + "]")); n < 2 {
		t.Errorf("%d TCP events from nmap's connect scan logged, want one per port reached (≥ 2)", n)
	}
}
