package nft

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/enforce/block/blocktest"
	"github.com/portsentry-go/portsentry/internal/netns/netnstest"
)

// TestKernelForwardDNAT: on a container host (blocktest.Publish: a
// bridge, a container, its service published on port 8080 by DNAT, a
// Docker-like forward filter), with the trap watching every port as the
// shipped configuration does. Connections to the published port are not
// probes of this host, though no local socket owns 8080: nobody is
// banned for them. A scanner the real trap bans for probing an unused
// port of the host loses the published service and the container's own
// address; an innocent client keeps them. With InputOnly the forward
// chain goes, and the scanner reaches the container again.
func TestKernelForwardDNAT(t *testing.T) {
	needKernel(t)
	p := blocktest.Publish(t, &lab)
	host := &testNS{p.Host}
	b := host.blocker(t, Options{})
	all := ports(t, "1-65535")
	if err := b.SetTrap(&Trap{TCP: all, UDP: all, TTL: time.Hour, Peers: time.Hour, Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	dial := func(from netip.Addr, to netip.AddrPort, wait time.Duration) error {
		return netnstest.Dial(t, p.Peer, from, to, wait)
	}
	for _, v6 := range []bool{false, true} {
		published, direct := p.Published(v6)
		scanner, client := p.Sources(v6)
		for _, from := range []netip.Addr{scanner, client} {
			if err := dial(from, published, okWait); err != nil {
				t.Fatalf("%v → published %v before any ban: %v", from, published, err)
			}
			if banned(t, b, from) {
				t.Fatalf("a connection to the published port %v banned %v: forwarded traffic is not a probe of this host", published, from)
			}
		}
		// The real trap: a probe of an unused port of the host.
		if err := dial(scanner, netip.AddrPortFrom(published.Addr(), 23), dropWait); !isTimeout(err) {
			t.Fatalf("probe of port 23: %v, want a timeout (trapped)", err)
		}
		if !banned(t, b, scanner) {
			t.Fatalf("the trap did not ban %v", scanner)
		}
		for _, to := range []netip.AddrPort{published, direct} {
			if err := dial(scanner, to, dropWait); err == nil {
				t.Errorf("banned %v → %v connected: the ban does not cover forwarded traffic", scanner, to)
			}
			if err := dial(client, to, okWait); err != nil {
				t.Errorf("innocent %v → %v: %v", client, to, err)
			}
		}
		if banned(t, b, client) {
			t.Errorf("the innocent client %v was banned", client)
		}
	}
	st, err := b.Stats()
	if err != nil {
		t.Fatal(err)
	}
	// Two families, two destinations, at least a SYN each.
	if st.BannedForward.Packets < 4 || st.Banned.Packets < st.BannedForward.Packets || st.Trapped.Packets != 2 {
		t.Errorf("stats %+v: want at least 4 packets dropped on the forward path, counted in Banned too, and 2 trapped", st)
	}
	if got := b.Paths(); !got.Input || !got.Forward {
		t.Errorf("Paths() = %+v, want input and forward", got)
	}

	// A restart with InputOnly removes the forward chain: the banned
	// scanner reaches the container again (the control: the check above
	// can fail), and still nothing of the host's own.
	io := host.blocker(t, Options{InputOnly: true})
	if list := host.nft(t, "list", "table", "inet", "portsentry"); strings.Contains(list, "hook forward") {
		t.Errorf("InputOnly left the forward chain:\n%s", list)
	}
	if got := io.Paths(); !got.Input || got.Forward {
		t.Errorf("Paths() with InputOnly = %+v, want input only", got)
	}
	published, _ := p.Published(false)
	scanner, _ := p.Sources(false)
	if err := dial(scanner, published, okWait); err != nil {
		t.Errorf("with InputOnly the banned %v → %v: %v, want it through (forwarded traffic is not covered)", scanner, published, err)
	}
	// And back: the bans held in the kernel cover forwarding again.
	host.blocker(t, Options{})
	if err := dial(scanner, published, dropWait); err == nil {
		t.Errorf("after a restart without InputOnly the banned %v → %v connected", scanner, published)
	}
}

// TestKernelForwardPrefix6: with /64 IPv6 bans the forward chain masks
// the source as the input chain does: a ban of one address covers its
// /64 on the way to a published container too.
func TestKernelForwardPrefix6(t *testing.T) {
	needKernel(t)
	p := blocktest.Publish(t, &lab)
	b := (&testNS{p.Host}).blocker(t, Options{Prefix6: 64})
	published, _ := p.Published(true)
	one, other := p.Sources(true)
	b.Add(one, time.Hour)
	blocktest.Commit(t, b)
	if err := netnstest.Dial(t, p.Peer, other, published, dropWait); err == nil {
		t.Errorf("%v, in the /64 of banned %v, reached %v", other, one, published)
	}
	// On this host's own networks (SetLink) bans are of single addresses.
	if err := b.SetLink([]netip.Prefix{netip.PrefixFrom(one, 64).Masked()}); err != nil {
		t.Fatal(err)
	}
	b.Delete(one)
	b.Add(one, time.Hour)
	blocktest.Commit(t, b)
	if err := netnstest.Dial(t, p.Peer, other, published, okWait); err != nil {
		t.Errorf("%v, a LAN neighbour of banned %v, → %v: %v", other, one, published, err)
	}
	if err := netnstest.Dial(t, p.Peer, one, published, dropWait); err == nil {
		t.Errorf("banned %v reached %v", one, published)
	}
}

// TestKernelPublished: a port the kernel DNATs is recorded in the served
// sets under the port the client asked for (the published one, as the
// packet capture sees it, not the container's), with or without a trap,
// so that the daemon's service check counts it as a service's
// (block.Trapper.Served) although no local socket owns it. A connection
// routed to the container without DNAT records nothing. With the trap's
// grace the port is remembered for the grace: when the DNAT goes away (a
// container restarting) a client's SYN reaching the input path is
// dropped, not banned, as for a local service that went away.
func TestKernelPublished(t *testing.T) {
	needKernel(t)
	p := blocktest.Publish(t, &lab)
	host := &testNS{p.Host}
	b := host.blocker(t, Options{})
	served := func() map[uint16]time.Duration {
		t.Helper()
		ss, err := b.Served()
		if err != nil {
			t.Fatal(err)
		}
		m := map[uint16]time.Duration{}
		for _, s := range ss {
			if s.UDP {
				t.Errorf("UDP port %d recorded: only TCP was published and used", s.Port)
			}
			m[s.Port] = s.Left
		}
		return m
	}
	published, direct := p.Published(false)
	_, client := p.Sources(false)
	if err := netnstest.Dial(t, p.Peer, client, direct, okWait); err != nil {
		t.Fatalf("%v → container %v: %v", client, direct, err)
	}
	if got := served(); len(got) != 0 {
		t.Fatalf("served %v after a connection routed without DNAT, want nothing", got)
	}
	// No trap yet: recorded for publishMin.
	if err := netnstest.Dial(t, p.Peer, client, published, okWait); err != nil {
		t.Fatalf("%v → published %v: %v", client, published, err)
	}
	got := served()
	if left, ok := got[p.Port]; !ok || len(got) != 1 || left <= 0 || left > publishMin {
		t.Fatalf("served %v after a connection to the published port %d: want it alone, for at most %v", got, p.Port, publishMin)
	}

	// With the trap's grace (every port trapped), over IPv6 this time.
	all := ports(t, "1-65535")
	if err := b.SetTrap(&Trap{TCP: all, UDP: all, TTL: time.Hour, Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	published6, _ := p.Published(true)
	_, client6 := p.Sources(true)
	if err := netnstest.Dial(t, p.Peer, client6, published6, okWait); err != nil {
		t.Fatalf("%v → published %v: %v", client6, published6, err)
	}
	if left := served()[p.Port]; left <= publishMin {
		t.Errorf("port %d remembered for %v under a trap with an hour's grace, want more than %v", p.Port, left, publishMin)
	}
	// The container stops: Docker removes its DNAT. Its clients' SYNs now
	// reach this host's input path, where no socket owns the port.
	host.nft(t, "flush", "chain", "inet", "dockerlike", "prerouting")
	if err := netnstest.Dial(t, p.Peer, client, published, dropWait); !isTimeout(err) {
		t.Fatalf("%v → %v without its DNAT: %v, want a timeout (dropped by the grace rule)", client, published, err)
	}
	if banned(t, b, client) || banned(t, b, client6) {
		t.Errorf("a client of the published port was banned")
	}
	st, err := b.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Served.Packets == 0 || st.Trapped.Packets != 0 {
		t.Errorf("stats %+v: want the SYN counted as served, nothing trapped", st)
	}
}
