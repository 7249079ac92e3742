package enforce

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/control"
	"github.com/portsentry-go/portsentry/internal/enforce/block"
	"github.com/portsentry-go/portsentry/internal/event"
	"github.com/portsentry-go/portsentry/internal/portset"
)

// probeAt is a stealth SYN from src to port that arrived with ttl, at t.
func (r *rig) probeAt(src netip.Addr, port uint16, ttl uint8, t time.Time) {
	r.do(func() {
		r.e.Decide(event.Event{Time: t, Src: src, Dst: local, Port: port, Proto: event.TCP, Kind: event.SYN, Mode: event.ModeSTCP, TTL: ttl})
	})
}

// A peer's address with another hop count is a forgery: logged as such,
// neither counted nor banned, whatever the number of probes; the peer's own
// probe, and anyone else's, is banned as before. The kernel's peers are
// read at most once per peerRefresh, however many probes ask.
func TestForgedProbesOfAPeer(t *testing.T) {
	peer := netip.MustParseAddr("198.51.100.20")
	peer6 := netip.MustParseAddr("2001:db8::20")
	trap := &block.Trap{TCP: portset.Below(1024), TTL: time.Hour, Peers: time.Hour}
	r := newRig(t, rigOptions{traps: true, settings: Settings{Trap: trap}})
	r.fake.setPeers(block.Peer{Addr: peer, Hops: []uint8{63}}, block.Peer{Addr: peer6, Hops: []uint8{61, 62}})

	t0 := time.Now()
	for i := range 20 {
		r.probeAt(peer, uint16(100+i), 50, t0.Add(time.Duration(i)*time.Millisecond))
		r.probeAt(peer6, uint16(100+i), 64, t0.Add(time.Duration(i)*time.Millisecond))
	}
	r.waitLog("attackalert: Forged probe: TCP SYN/Normal scan claiming host 198.51.100.20 to TCP port: 100 arrived with hop count 50, the host's own connections with 63: not blocked")
	r.waitLog("claiming host 2001:db8::20 to TCP port: 100 arrived with hop count 64, the host's own connections with 61, 62: not blocked")
	r.settle()
	for _, a := range []netip.Addr{peer, peer6} {
		if _, ok := r.fake.ttl(a); ok {
			t.Errorf("forged probes banned the peer %v", a)
		}
	}
	if strings.Contains(r.log.String(), "has been blocked") {
		t.Errorf("something was blocked:\n%s", r.log.String())
	}
	r.fake.mu.Lock()
	reads := r.fake.reads
	r.fake.mu.Unlock()
	if reads != 1 {
		t.Errorf("the kernel's peers were read %d times for 40 probes within %v, want once", reads, peerRefresh)
	}

	// The peer itself, from its own distance, and a stranger: banned.
	later := t0.Add(time.Second)
	r.probeAt(peer6, 200, 62, later)
	r.probeAt(scanner, 200, 50, later)
	r.waitLog("attackalert: Host 2001:db8::20 has been blocked via nftables")
	r.waitLog("attackalert: Host 198.51.100.7 has been blocked via nftables")
}

// Reading the kernel's peers again (a busy host's sets take a while to
// list) never holds up decisions that act on nobody: they use the last
// reading meanwhile, and the new one once it is there.
func TestPeersReadInTheBackground(t *testing.T) {
	peer := netip.MustParseAddr("198.51.100.20")
	trap := &block.Trap{TCP: portset.Below(1024), TTL: time.Hour, Peers: time.Hour}
	r := newRig(t, rigOptions{traps: true, settings: Settings{Trap: trap}})
	t0 := time.Now()
	r.probeAt(scanner, 100, 50, t0) // the first reading, made at once: no peers
	r.waitLog("attackalert: Host 198.51.100.7 has been blocked via nftables")

	gate := make(chan struct{})
	r.fake.mu.Lock()
	r.fake.peerGate = gate
	r.fake.peers = []block.Peer{{Addr: peer, Hops: []uint8{63}}}
	r.fake.mu.Unlock()
	decided := make(chan struct{})
	go func() {
		// The blocked scanner again, later: the reading is stale, a new
		// one starts, and the kernel holds it up.
		r.probeAt(scanner, 101, 50, t0.Add(time.Second))
		close(decided)
	}()
	select {
	case <-decided:
	case <-time.After(5 * time.Second):
		close(gate)
		t.Fatal("a decision waited for the kernel's peers")
	}
	close(gate)
	deadline := time.Now().Add(5 * time.Second)
	for in := false; !in; {
		r.do(func() { in = r.e.peers.src.view.Load().hops[peer] != nil })
		if time.Now().After(deadline) {
			t.Fatal("the new reading never came in")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A peer the kernel learnt after the daemon's last reading of its peers,
// whose forged probe the kernel spared, is not banned by the daemon
// either: before acting on a source the daemon reads the peers again if
// its reading began before the probe was captured.
func TestPeerLearntSinceTheLastReading(t *testing.T) {
	peer := netip.MustParseAddr("198.51.100.20")
	trap := &block.Trap{TCP: portset.Below(1024), TTL: time.Hour, Peers: time.Hour}
	r := newRig(t, rigOptions{traps: true, settings: Settings{Trap: trap}})
	r.probeAt(scanner, 100, 50, time.Now()) // a reading: no peers yet
	r.waitLog("attackalert: Host 198.51.100.7 has been blocked via nftables")
	r.fake.setPeers(block.Peer{Addr: peer, Hops: []uint8{63}}) // learnt now
	r.probeAt(peer, 101, 50, time.Now())                       // forged, within peerRefresh
	r.waitLog("attackalert: Forged probe: TCP SYN/Normal scan claiming host 198.51.100.20")
	r.settle()
	if _, ok := r.fake.ttl(peer); ok {
		t.Fatal("the daemon banned a peer the kernel spared")
	}
}

// Without peers in the trap (PROTECT_PEERS="0"), nothing is read and the
// hop count changes nothing.
func TestNoPeersWithoutTheSetting(t *testing.T) {
	peer := netip.MustParseAddr("198.51.100.20")
	trap := &block.Trap{TCP: portset.Below(1024), TTL: time.Hour}
	r := newRig(t, rigOptions{traps: true, settings: Settings{Trap: trap}})
	r.fake.setPeers(block.Peer{Addr: peer, Hops: []uint8{63}})
	r.probeAt(peer, 100, 50, time.Now())
	r.waitLog("attackalert: Host 198.51.100.20 has been blocked via nftables")
	r.fake.mu.Lock()
	defer r.fake.mu.Unlock()
	if r.fake.reads != 0 {
		t.Errorf("peers read %d times with peers off", r.fake.reads)
	}
}

// Probes from another distance than a peer's own packets are forged, or
// the peer itself scanning with a tool that writes its own TTL (nmap's raw
// probes): at peerTrigger distinct ports within the window it is a scan,
// and the peer is banned; retransmissions to the same port never get there.
func TestPeerScanningFromAnotherDistance(t *testing.T) {
	peer := netip.MustParseAddr("198.51.100.20")
	trap := &block.Trap{TCP: portset.Below(1024), TTL: time.Hour, Peers: time.Hour}
	r := newRig(t, rigOptions{traps: true, settings: Settings{Trap: trap}})
	r.fake.setPeers(block.Peer{Addr: peer, Hops: []uint8{63}})
	t0 := time.Now()
	for i := range 3 * peerTrigger {
		r.probeAt(peer, 100, uint8(37+i%23), t0.Add(time.Duration(i)*time.Millisecond))
	}
	for i := range peerTrigger - 2 { // with port 100: one short of peerTrigger
		r.probeAt(peer, uint16(200+i), uint8(37+i%23), t0.Add(time.Second))
	}
	r.settle()
	if _, ok := r.fake.ttl(peer); ok {
		t.Fatalf("banned before %d distinct ports", peerTrigger)
	}
	r.probeAt(peer, 999, 41, t0.Add(2*time.Second))
	r.waitLog("attackalert: Host 198.51.100.20: probes claiming its address from another distance than its connections reached 64 ports: a scan, acting on it")
	r.waitLog("attackalert: Host 198.51.100.20 has been blocked via nftables")
	// Acted on once: its further probes are a banned scanner's, not a
	// line each.
	for i := range 20 {
		r.probeAt(peer, uint16(300+i), uint8(37+i%23), t0.Add(3*time.Second))
	}
	r.settle()
	if n := strings.Count(r.log.String(), "a scan, acting on it"); n != 1 {
		t.Errorf("%d lines saying the peer is acted on, want 1", n)
	}
	// Its ban lifted, it is a peer again: a forged probe is spared.
	c := r.e.Control(func() control.Status { return control.Status{} })
	if _, err := c.Unblock(netip.PrefixFrom(peer, 32)); err != nil {
		t.Fatal(err)
	}
	r.probeAt(peer, 400, 50, t0.Add(4*time.Second))
	r.settle()
	if _, ok := r.fake.ttl(peer); ok {
		t.Error("after its ban was lifted, one forged probe banned the peer again")
	}
}

// With IPv6 bans by /64, a probe bans its source's /64: another address
// of it is already blocked, the record and the blocker hold the prefix,
// list shows it, and unblock of any address in it lifts it. IPv4 is as
// before.
func TestPrefix6Bans(t *testing.T) {
	r := newRig(t, rigOptions{traps: true, prefix6: 64})
	first, second := netip.MustParseAddr("2001:db8:1:2::7"), netip.MustParseAddr("2001:db8:1:2:ffff::1")
	net64 := netip.MustParseAddr("2001:db8:1:2::")
	r.probe(first, 143)
	r.waitLog("attackalert: Host 2001:db8:1:2::7 has been blocked via nftables")
	r.settle()
	if _, ok := r.fake.ttl(net64); !ok {
		t.Fatalf("the blocker does not hold %v/64", net64)
	}
	r.probe(second, 144)
	r.waitLog("attackalert: Host: 2001:db8:1:2:ffff::1/2001:db8:1:2:ffff::1 is already blocked Ignoring")
	ls := r.e.Control(func() control.Status { return control.Status{} }).List()
	if len(ls) != 1 || ls[0].Target() != "2001:db8:1:2::/64" {
		t.Fatalf("list = %+v, want one ban of 2001:db8:1:2::/64", ls)
	}
	lifted, err := r.e.Control(func() control.Status { return control.Status{} }).Unblock(netip.PrefixFrom(second, 128))
	if err != nil || len(lifted) != 1 || lifted[0].Target() != "2001:db8:1:2::/64" {
		t.Fatalf("unblock of an address of the /64: %+v, %v", lifted, err)
	}
	r.settle()
	if _, ok := r.fake.ttl(net64); ok {
		t.Error("the /64 is still held after unblock")
	}
	r.probe(scanner, 143)
	r.waitLog("attackalert: Host 198.51.100.7 has been blocked via nftables")
	if _, ok := r.fake.ttl(netip.MustParseAddr("198.51.100.8")); ok {
		t.Error("an IPv4 neighbour was banned with the scanner")
	}

	// On this host's own network (lanPrefix) bans are of single
	// addresses: a LAN scanner does not take its neighbours with it.
	lanScanner, lanNeighbour := netip.MustParseAddr("2001:db8:ffff::7"), netip.MustParseAddr("2001:db8:ffff::8")
	r.probe(lanScanner, 143)
	r.waitLog("attackalert: Host 2001:db8:ffff::7 has been blocked via nftables")
	r.settle()
	if _, ok := r.fake.ttl(lanScanner); !ok {
		t.Error("the LAN scanner's own address is not held")
	}
	if _, ok := r.fake.ttl(lanPrefix.Addr()); ok {
		t.Error("the LAN's /64 was banned for one of its hosts")
	}
	var neighbourBlocked bool
	r.do(func() { neighbourBlocked = r.e.engine.IsBlocked(lanNeighbour) })
	if neighbourBlocked {
		t.Error("the LAN scanner's neighbour counts as blocked")
	}
	for _, b := range r.e.Control(func() control.Status { return control.Status{} }).List() {
		if b.Addr == lanScanner && b.Target() != "2001:db8:ffff::7" {
			t.Errorf("list shows the LAN ban as %q, want the address", b.Target())
		}
	}
}
