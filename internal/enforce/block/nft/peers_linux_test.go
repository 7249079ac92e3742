package nft

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// setTTL returns a Control function that makes a socket's packets leave
// with the given TTL (IPv4) or hop limit (IPv6): a sender at another
// distance, as far as the receiver can tell.
func setTTL(ttl int) func(network, address string, c syscall.RawConn) error {
	return func(network, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if network == "tcp6" || network == "udp6" {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, ttl)
			} else {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TTL, ttl)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
}

// connectTTL is connect with the SYN leaving n with the given TTL.
func (n *testNS) connectTTL(t *testing.T, from netip.Addr, to netip.AddrPort, ttl int, wait time.Duration) error {
	t.Helper()
	var result error
	n.do(t, func() error {
		d := net.Dialer{Timeout: wait, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, 0)), Control: setTTL(ttl)}
		c, err := d.Dial("tcp", to.String())
		if err == nil {
			c.Close()
		}
		result = err
		return nil
	})
	return result
}

// udpTTL sends one datagram from n with the given TTL and waits for what
// comes back: nil for an answer, ECONNREFUSED for a port unreachable, a
// timeout when it was dropped.
func (n *testNS) udpTTL(t *testing.T, from netip.Addr, to netip.AddrPort, ttl int, wait time.Duration) error {
	t.Helper()
	var result error
	n.do(t, func() error {
		d := net.Dialer{LocalAddr: net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, 0)), Control: setTTL(ttl)}
		c, err := d.Dial("udp", to.String())
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(wait))
		if _, err := c.Write([]byte("q")); err != nil {
			return err
		}
		_, result = c.Read(make([]byte, 64))
		return nil
	})
	return result
}

// TestKernelPeers: a source that completed a handshake is a peer, known
// with the hop count its packets arrive with. A probe claiming its address
// with another hop count (forged, as far as the kernel can tell) is
// dropped without banning it, TCP or UDP; a probe with its own hop count
// bans it as any probe would. Sources that are no peers gain nothing.
func TestKernelPeers(t *testing.T) {
	l := newTrapLab(t)
	b := l.T.blocker(t, Options{})
	l.T.listenTCP(t, ":80")
	if err := b.SetTrap(&Trap{TCP: ports(t, "1-1023"), UDP: ports(t, "1-1023"), TTL: time.Hour, Peers: time.Hour}); err != nil {
		t.Fatal(err)
	}
	for _, fam := range []struct {
		name string
		t    netip.Addr
		s    [4]netip.Addr
	}{{"IPv4", l.t4, l.s4}, {"IPv6", l.t6, l.s6}} {
		t.Run(fam.name, func(t *testing.T) {
			stranger, peer := fam.s[0], fam.s[1]
			at := func(p uint16) netip.AddrPort { return netip.AddrPortFrom(fam.t, p) }
			if err := l.S.connect(t, peer, 0, at(80), okWait); err != nil {
				t.Fatalf("connect to the service: %v", err)
			}
			// On a veth nothing decrements the TTL: 64 arrives as 64.
			peers, err := b.Peers()
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(peers, func(p Peer) bool { return p.Addr == peer })
			if i < 0 || !slices.Equal(peers[i].Hops, []uint8{64}) {
				t.Fatalf("peers %+v: want %v with hop count 64", peers, peer)
			}
			before, _ := b.Stats()

			// Forged: the peer's address, another distance.
			if err := l.S.connectTTL(t, peer, at(23), 50, dropWait); !isTimeout(err) {
				t.Errorf("forged SYN to free port 23: %v, want a timeout (dropped)", err)
			}
			if err := l.S.udpTTL(t, peer, at(111), 50, dropWait); !isTimeout(err) {
				t.Errorf("forged datagram to free port 111: %v, want a timeout (dropped)", err)
			}
			if banned(t, b, peer) {
				t.Fatal("a forged probe banned the peer")
			}
			after, _ := b.Stats()
			if d := after.Forged.Packets - before.Forged.Packets; d < 2 {
				t.Errorf("forged counter rose by %d, want at least 2", d)
			}
			if err := l.S.connect(t, peer, 0, at(80), okWait); err != nil {
				t.Errorf("the peer lost the service after forged probes: %v", err)
			}

			// The peer itself probing, from its own distance: banned.
			if err := l.S.connectTTL(t, peer, at(24), 64, dropWait); !isTimeout(err) {
				t.Errorf("the peer's own SYN to free port 24: %v, want a timeout (dropped)", err)
			}
			if !banned(t, b, peer) {
				t.Error("the peer's own probe did not ban it")
			}

			// A stranger's odd TTL protects nothing: banned.
			if err := l.S.connectTTL(t, stranger, at(25), 50, dropWait); !isTimeout(err) {
				t.Errorf("stranger's SYN: %v, want a timeout", err)
			}
			if !banned(t, b, stranger) {
				t.Error("a stranger's probe did not ban it")
			}
		})
	}
}

// TestKernelTraceroute: traceroute's last probe (UDP to 33434 and up,
// arriving with TTL 1) reaches the closed port, whose port unreachable
// ends the traceroute, and bans no one; the same port with an ordinary
// TTL is a probe.
func TestKernelTraceroute(t *testing.T) {
	l := newTrapLab(t)
	b := l.T.blocker(t, Options{})
	if err := b.SetTrap(&Trap{UDP: ports(t, "1-65535"), TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	for _, fam := range []struct {
		name string
		t    netip.Addr
		s    [4]netip.Addr
	}{{"IPv4", l.t4, l.s4}, {"IPv6", l.t6, l.s6}} {
		t.Run(fam.name, func(t *testing.T) {
			admin, scanner := fam.s[1], fam.s[0]
			for _, ttl := range []int{1, 2, 30} {
				if err := l.S.udpTTL(t, admin, netip.AddrPortFrom(fam.t, 33435), ttl, okWait); !errors.Is(err, syscall.ECONNREFUSED) {
					t.Errorf("traceroute probe with TTL %d: %v, want a port unreachable", ttl, err)
				}
			}
			if banned(t, b, admin) {
				t.Error("traceroute banned the admin")
			}
			if err := l.S.udpTTL(t, scanner, netip.AddrPortFrom(fam.t, 33435), 64, dropWait); !isTimeout(err) {
				t.Errorf("datagram to 33435 with TTL 64: %v, want a timeout (dropped)", err)
			}
			if !banned(t, b, scanner) {
				t.Error("a datagram to 33435 with an ordinary TTL did not ban its source")
			}
		})
	}
}

// TestKernelTrapFull: with the ban set full, a new source's probe is still
// dropped (the trap hides every unused port) though it cannot be banned.
func TestKernelTrapFull(t *testing.T) {
	l := newTrapLab(t)
	b := l.T.blocker(t, Options{MaxBans: 1})
	if err := b.SetTrap(&Trap{TCP: ports(t, "1-1023"), TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	at := netip.AddrPortFrom(l.t4, 23)
	if err := l.S.connect(t, l.s4[0], 0, at, dropWait); !isTimeout(err) {
		t.Fatalf("first probe: %v, want a timeout", err)
	}
	if !banned(t, b, l.s4[0]) {
		t.Fatal("first probe did not ban its source")
	}
	for _, src := range []netip.Addr{l.s4[1], l.s4[3]} {
		if err := l.S.connect(t, src, 0, at, dropWait); !isTimeout(err) {
			t.Errorf("probe from %v with the ban set full: %v, want a timeout (dropped)", src, err)
		}
		if banned(t, b, src) {
			t.Errorf("%v banned beyond the set's size", src)
		}
	}
	st, err := b.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Unbanned.Packets < 2 {
		t.Errorf("Unbanned counter %+v, want at least 2 packets", st.Unbanned)
	}
}

// TestKernelServiceRestart: a port whose service went away within the
// grace period drops its clients' packets without banning them (a TCP
// client's retransmission finds the service back); a port never served is
// trapped as before.
func TestKernelServiceRestart(t *testing.T) {
	l := newTrapLab(t)
	b := l.T.blocker(t, Options{})
	web := l.T.listenTCP(t, ":80")
	dns := l.T.serveUDP(t, ":53", 0)
	if err := b.SetTrap(&Trap{TCP: ports(t, "1-1023"), UDP: ports(t, "1-1023"), TTL: time.Hour, Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	client, scanner := l.s4[1], l.s4[0]
	web80, dns53 := netip.AddrPortFrom(l.t4, 80), netip.AddrPortFrom(l.t4, 53)
	if err := l.S.connect(t, client, 0, web80, okWait); err != nil {
		t.Fatalf("connect to the web service: %v", err)
	}
	if err := l.S.query(t, client, dns53, okWait); err != nil {
		t.Fatalf("query to the UDP service: %v", err)
	}

	// Both services stop.
	web.Close()
	dns.Close()
	if err := l.S.connect(t, client, 0, web80, dropWait); !isTimeout(err) {
		t.Errorf("connect while the web service is down: %v, want a timeout (dropped)", err)
	}
	if err := l.S.query(t, client, dns53, dropWait); !isTimeout(err) {
		t.Errorf("query while the UDP service is down: %v, want a timeout (dropped)", err)
	}
	if banned(t, b, client) {
		t.Fatal("a client of a restarting service was banned")
	}
	st, err := b.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Served.Packets < 2 {
		t.Errorf("Served counter %+v, want at least 2 packets", st.Served)
	}
	// The kernel's memory of served ports, as a restarted daemon reads it.
	served, err := b.Served()
	if err != nil {
		t.Fatal(err)
	}
	var tcp80, udp53 bool
	for _, p := range served {
		if p.Left <= 0 || p.Left > time.Hour {
			t.Errorf("served %+v: remaining time out of (0, 1h]", p)
		}
		tcp80 = tcp80 || (!p.UDP && p.Port == 80)
		udp53 = udp53 || (p.UDP && p.Port == 53)
	}
	if !tcp80 || !udp53 {
		t.Errorf("Served() = %+v, want TCP 80 and UDP 53", served)
	}

	// The web service is back: served again.
	l.T.listenTCP(t, ":80")
	if err := l.S.connect(t, client, 0, web80, okWait); err != nil {
		t.Errorf("connect after the restart: %v", err)
	}

	// A port never served is a trap port as before.
	if err := l.S.connect(t, scanner, 0, netip.AddrPortFrom(l.t4, 81), dropWait); !isTimeout(err) {
		t.Errorf("probe of port 81: %v, want a timeout", err)
	}
	if !banned(t, b, scanner) {
		t.Error("a probe of a port never served did not ban its source")
	}
}

// TestKernelReversePath: a probe whose source this host would not reach
// through the interface it came in by (here: an address T has no route
// to) is forged as far as the kernel can tell: dropped, never banned.
func TestKernelReversePath(t *testing.T) {
	l := newTrapLab(t)
	b := l.T.blocker(t, Options{})
	if err := b.SetTrap(&Trap{TCP: ports(t, "1-1023"), TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct{ addr, to netip.Addr }{
		{netip.MustParseAddr("203.0.113.5"), l.t4},
		{netip.MustParseAddr("2001:db8:ffff::5"), l.t6},
	} {
		args := []string{"addr", "add", netip.PrefixFrom(a.addr, a.addr.BitLen()).String(), "dev", "pss0"}
		if a.addr.Is6() {
			args = append(args, "nodad")
		}
		if out, err := l.S.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
		if err := l.S.connect(t, a.addr, 0, netip.AddrPortFrom(a.to, 23), dropWait); !isTimeout(err) {
			t.Errorf("probe from unroutable %v: %v, want a timeout (dropped)", a.addr, err)
		}
		if banned(t, b, a.addr) {
			t.Errorf("a probe from %v, which T has no route back to, banned it", a.addr)
		}
	}
	// The client's SYN may still be on its way (its IPv6 neighbour
	// discovery on a loaded machine): the count, not the timing, matters.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		st, err := b.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st.Unrouted.Packets >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("Unrouted counter %+v, want at least 2 packets", st.Unrouted)
			break
		}
	}
	// A routable source is trapped as ever.
	if err := l.S.connect(t, l.s4[0], 0, netip.AddrPortFrom(l.t4, 23), dropWait); !isTimeout(err) || !banned(t, b, l.s4[0]) {
		t.Errorf("a probe from on-link %v: %v, banned %v; want dropped and banned", l.s4[0], err, banned(t, b, l.s4[0]))
	}
}

// TestKernelPrefix6: with a /64 ban prefix one probe bans its source's
// whole /64 (a scanner rotating through its addresses gains nothing), in
// the trap and through Add; IPv4 bans stay single addresses.
func TestKernelPrefix6(t *testing.T) {
	l := newTrapLab(t)
	b := l.T.blocker(t, Options{Prefix6: 64})
	l.T.listenTCP(t, ":80")
	if err := b.SetTrap(&Trap{TCP: ports(t, "1-1023"), TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	net64 := netip.MustParseAddr("2001:db8::") // the lab's /64
	web6 := netip.AddrPortFrom(l.t6, 80)
	if err := l.S.connect(t, l.s6[1], 0, web6, okWait); err != nil {
		t.Fatalf("a neighbour in the /64 reaches the service before any ban: %v", err)
	}
	if err := l.S.connect(t, l.s6[0], 0, netip.AddrPortFrom(l.t6, 23), dropWait); !isTimeout(err) {
		t.Fatalf("IPv6 probe: %v, want a timeout", err)
	}
	if !banned(t, b, net64) || banned(t, b, l.s6[0]) {
		t.Fatalf("after a probe from %v the ban set holds %v, want its /64 %v", l.s6[0], blockedList(t, b), net64)
	}
	// Another address of the same /64 is banned with it.
	if err := l.S.connect(t, l.s6[1], 0, web6, dropWait); !isTimeout(err) {
		t.Errorf("another address of the banned /64 reached the service: %v", err)
	}
	// Delete by any address of the /64 lifts it.
	b.Delete(l.s6[3])
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if banned(t, b, net64) {
		t.Error("Delete of an address of the /64 left the /64 banned")
	}
	if err := l.S.connect(t, l.s6[1], 0, web6, okWait); err != nil {
		t.Errorf("after the unban: %v", err)
	}
	// On this host's own networks (SetLink) bans are of single
	// addresses: a scanner on the LAN does not take the LAN with it.
	if err := b.SetLink([]netip.Prefix{netip.MustParsePrefix("2001:db8::/64")}); err != nil {
		t.Fatal(err)
	}
	if err := l.S.connect(t, l.s6[2], 0, netip.AddrPortFrom(l.t6, 23), dropWait); !isTimeout(err) {
		t.Fatalf("IPv6 probe on the link: %v, want a timeout", err)
	}
	if !banned(t, b, l.s6[2]) || banned(t, b, net64) {
		t.Errorf("after a probe from %v on the host's own /64 the ban set holds %v, want that address alone", l.s6[2], blockedList(t, b))
	}
	if err := l.S.connect(t, l.s6[1], 0, web6, okWait); err != nil {
		t.Errorf("a LAN neighbour of the scanner lost the service: %v", err)
	}
	b.Add(l.s6[3], time.Hour)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if !banned(t, b, l.s6[3]) {
		t.Errorf("Add of an address on the link banned %v, want the address", blockedList(t, b))
	}
	// IPv4: single addresses.
	if err := l.S.connect(t, l.s4[0], 0, netip.AddrPortFrom(l.t4, 23), dropWait); !isTimeout(err) || !banned(t, b, l.s4[0]) {
		t.Errorf("IPv4 probe: %v, banned %v", err, banned(t, b, l.s4[0]))
	}
	if err := l.S.connect(t, l.s4[1], 0, netip.AddrPortFrom(l.t4, 80), okWait); err != nil {
		t.Errorf("an IPv4 neighbour lost the service: %v", err)
	}
}

func blockedList(t *testing.T, b *Blocker) []netip.Addr {
	t.Helper()
	es, err := b.List()
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Addr
	for _, e := range es {
		out = append(out, e.Addr)
	}
	return out
}

// TestKernelTrapNoBan: a trap set with NoBan (a flood is being summarized)
// still drops every probe, and bans nobody.
func TestKernelTrapNoBan(t *testing.T) {
	l := newTrapLab(t)
	b := l.T.blocker(t, Options{})
	if err := b.SetTrap(&Trap{TCP: ports(t, "1-1023"), TTL: time.Hour, NoBan: true}); err != nil {
		t.Fatal(err)
	}
	if err := l.S.connect(t, l.s4[0], 0, netip.AddrPortFrom(l.t4, 23), dropWait); !isTimeout(err) {
		t.Errorf("probe with NoBan: %v, want a timeout (dropped)", err)
	}
	if banned(t, b, l.s4[0]) {
		t.Error("a probe banned its source with NoBan")
	}
	if st, err := b.Stats(); err != nil || st.Unbanned.Packets < 1 {
		t.Errorf("Unbanned counter %+v (%v), want at least 1 packet", st.Unbanned, err)
	}
}
