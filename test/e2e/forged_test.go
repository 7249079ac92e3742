package e2e

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// forgeFrom sends, from h, one raw TCP SYN or UDP datagram to each port
// first..last of to, with source address src and TTL ttl (netclient -forge).
func forgeFrom(t *testing.T, h host, proto string, src netip.Addr, ttl int, to netip.Addr, first, last int) {
	t.Helper()
	cmd := h.ns.Command(clientPath, "-forge", src.String(), "-ttl", strconv.Itoa(ttl), "-proto", proto,
		"-addr", netip.AddrPortFrom(to, 0).String(), "-ports", fmt.Sprintf("%d-%d", first, last))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("netclient -forge %s from %s: %v\n%s", src, h.ns, err, out)
	}
}

// TestKernelForgedProbes: F uses T's services (so the kernel knows it as a
// peer, arriving with TTL 64) while S forges F's address (raw packets),
// from another distance (TTL 50): 20 SYNs and 20 UDP datagrams to unused
// ports, IPv4 and IPv6. Every request of F succeeds, F is in no ban set,
// and the daemon logs the forgeries as such. Then F itself scans T with
// nmap and is banned, learning nothing about the unused ports.
func TestKernelForgedProbes(t *testing.T) {
	t.Parallel()
	k := newKLab(t, nil)
	f := stStartFriend(k.lab)
	f.waitRounds(t, 4) // F has talked to T over IPv4 and IPv6: a peer

	// The log says the first 20 of a source's lines in 10 s, so the
	// protocol forged first is the one each family's lines tell.
	forgeFrom(t, k.S, "udp", k.F.v4, 50, k.T.v4, 900, 919)
	forgeFrom(t, k.S, "tcp", k.F.v4, 50, k.T.v4, 900, 919)
	forgeFrom(t, k.S, "tcp", k.F.v6, 50, k.T.v6, 900, 919)
	forgeFrom(t, k.S, "udp", k.F.v6, 50, k.T.v6, 900, 919)
	k.d.waitFor(t, fmt.Sprintf("attackalert: Forged probe: UDP claiming host %s to UDP port: 900 arrived with hop count 50, the host's own connections with 64: not blocked", k.F.v4), 10*time.Second)
	k.d.waitFor(t, fmt.Sprintf("attackalert: Forged probe: TCP SYN/Normal scan claiming host %s to TCP port: 900 arrived with hop count 50, the host's own connections with 64: not blocked", k.F.v6), 10*time.Second)
	f.waitRounds(t, 4) // after
	rounds, failures := f.finish()
	if len(failures) > 0 {
		t.Errorf("%d of the friend's %d rounds failed: %q", len(failures), rounds, failures)
	}
	for _, a := range []string{k.F.v4.String(), k.F.v6.String()} {
		if ls := k.messages("Host " + a + " "); len(ls) != 0 {
			t.Errorf("the friend %s was acted on: %q", a, ls)
		}
	}
	if _, ok := k.elem(t, k.F.v4); ok {
		t.Errorf("forged probes banned the friend %s", k.F.v4)
	}
	if _, ok := k.elem(t, k.F.v6); ok {
		t.Errorf("forged probes banned the friend %s", k.F.v6)
	}

	// F's own scan. nmap's raw probes leave with a TTL of their own
	// (random, 37 to 59), so they too look forged: dropped, unbanned by
	// the kernel, until they reach 64 ports and the daemon bans F. No
	// trap port ever answers; what may answer before the ban is what is
	// no trap: the web service and the ports the lab leaves out.
	r := k.nmapXML(t, k.F, "-sS", "-p", "1-1024", k.T.v4.String())
	allowed := map[string]string{"80": "open", "113": "closed", "139": "closed", "1024": "closed"}
	for _, a := range r.notFiltered() {
		port, state, _ := strings.Cut(a, "/")
		if allowed[port] != state {
			t.Errorf("the friend's own scan: port %s %s: a trap port answered", port, state)
		}
	}
	k.d.waitFor(t, fmt.Sprintf("attackalert: Host %s: probes claiming its address from another distance than its connections reached 64 ports: a scan, acting on it", k.F.v4), 10*time.Second)
	k.d.waitFor(t, nativeLine(k.F.v4, ""), 10*time.Second)
	k.assertBanned(t, k.F.v4)
	k.assertNoErrors(t)
}
