package nft

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/enforce/block/blocktest"
	"github.com/portsentry-go/portsentry/internal/netns"
	"github.com/portsentry-go/portsentry/internal/netns/netnstest"
)

// The trap end to end: namespace T runs the blocker and a few services,
// namespace S probes it from several addresses, over a veth pair. Traffic
// stays between these two namespaces (and a third, in one test), which the
// tests create and delete.

const (
	// dropWait is how long a connect waits before calling the SYN
	// dropped: on a veth an answer comes within microseconds, and the
	// first retransmission is a second away.
	dropWait = 500 * time.Millisecond
	// okWait bounds what must succeed.
	okWait = 3 * time.Second
)

// trapLab is T and S joined by a veth pair.
type trapLab struct {
	T, S   *testNS
	tIf    string // T's end of the veth
	t4, t6 netip.Addr
	// S's addresses, by role: 0 scans TCP, 1 is a well-behaved client
	// and the peer of T's own traffic, 2 is allowed, 3 scans UDP.
	s4, s6 [4]netip.Addr
}

func newTrapLab(t *testing.T) *trapLab {
	t.Helper()
	l := &trapLab{T: newNetns(t), S: newNetns(t), tIf: "pst0",
		t4: mustAddr("192.0.2.1"), t6: mustAddr("2001:db8::1")}
	for i := range l.s4 {
		l.s4[i] = netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)})
		l.s6[i] = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(0x10 + i)})
	}
	// IPv4 on a /24 with its broadcast address, 192.0.2.255.
	netnstest.Pair(t,
		netns.Iface{NS: l.T.NS, Name: l.tIf, Addrs: netns.OnLink(l.t4, l.t6)},
		netns.Iface{NS: l.S.NS, Name: "pss0", Addrs: netns.OnLink(append(l.s4[:], l.s6[:]...)...)})
	return l
}

// listen opens a socket in n; the caller closes it.
func (n *testNS) listenTCP(t *testing.T, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	n.do(t, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	})
	t.Cleanup(func() { ln.Close() })
	// Every connection gets "hi" and is closed.
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	return ln
}

// serveUDP answers every datagram with "re:"+datagram after delay. A
// socket bound to one address answers from it; a wildcard socket answers
// from whatever address the route prefers, which on a host with several
// is not always the one asked.
func (n *testNS) serveUDP(t *testing.T, addr string, delay time.Duration) net.PacketConn {
	t.Helper()
	var pc net.PacketConn
	n.do(t, func() (err error) {
		pc, err = net.ListenPacket("udp", addr)
		return err
	})
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			k, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			msg := append([]byte("re:"), buf[:k]...)
			time.AfterFunc(delay, func() { pc.WriteTo(msg, from) })
		}
	}()
	return pc
}

// connect dials to from n with source address from (and source port
// sport, if not 0) and reads the greeting. It returns nil on success, or
// the error: a timeout when the SYN was dropped, ECONNREFUSED when the
// port was closed and nothing dropped it.
func (n *testNS) connect(t *testing.T, from netip.Addr, sport uint16, to netip.AddrPort, wait time.Duration) error {
	t.Helper()
	var result error
	n.do(t, func() error {
		d := net.Dialer{Timeout: wait, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, sport))}
		c, err := d.Dial("tcp", to.String())
		if err != nil {
			result = err
			return nil
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(wait))
		b, err := io.ReadAll(c)
		if err == nil && string(b) != "hi" {
			err = fmt.Errorf("read %q", b)
		}
		result = err
		return nil
	})
	return result
}

// query sends "q" over UDP from n and waits for the answer.
func (n *testNS) query(t *testing.T, from netip.Addr, to netip.AddrPort, wait time.Duration) error {
	t.Helper()
	var result error
	n.do(t, func() error {
		c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, 0)), net.UDPAddrFromAddrPort(to))
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(wait))
		if _, err := c.Write([]byte("q")); err != nil {
			return err
		}
		b := make([]byte, 64)
		k, err := c.Read(b)
		if err == nil && string(b[:k]) != "re:q" {
			err = fmt.Errorf("answer %q", b[:k])
		}
		result = err
		return nil
	})
	return result
}

// sendUDP sends one datagram from n, from:sport → to, and closes the
// socket at once.
func (n *testNS) sendUDP(t *testing.T, from netip.AddrPort, to netip.AddrPort) {
	t.Helper()
	n.do(t, func() error {
		c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(from), net.UDPAddrFromAddrPort(to))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("q"))
		return err
	})
}

// broadcastUDP sends one datagram from n to the broadcast address
// 192.0.2.255:port from the address from.
func (n *testNS) broadcastUDP(t *testing.T, from netip.Addr, port uint16) {
	t.Helper()
	n.do(t, func() error {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, 0)))
		if err != nil {
			return err
		}
		defer c.Close()
		raw, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := raw.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1)
		}); err != nil {
			return err
		}
		if serr != nil {
			return serr
		}
		_, err = c.WriteTo([]byte("q"), net.UDPAddrFromAddrPort(netip.MustParseAddrPort("192.0.2.255:"+fmt.Sprint(port))))
		return err
	})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// banned waits briefly for a to show in the blocker's list; the kernel
// adds it while handling the probe, so it is there at once.
func banned(t *testing.T, b *Blocker, a netip.Addr) bool {
	t.Helper()
	_, ok := blocktest.List(t, b)[a]
	return ok
}

func TestKernelTrap(t *testing.T) {
	l := newTrapLab(t)
	b := l.T.blocker(t, Options{})
	// Services up before the trap: TCP 80 and UDP 53, dual-stack sockets
	// as Go opens them (IPv4 packets find them too).
	l.T.listenTCP(t, ":80")
	l.T.serveUDP(t, ":53", 0)
	if err := b.SetTrap(&Trap{TCP: ports(t, "1-1023"), UDP: ports(t, "1-1023"), TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if err := b.SetAllowed([]netip.Prefix{netip.PrefixFrom(l.s4[2], 32), netip.PrefixFrom(l.s6[2], 128)}); err != nil {
		t.Fatal(err)
	}

	for _, fam := range []struct {
		name string
		t    netip.Addr
		s    [4]netip.Addr
	}{{"IPv4", l.t4, l.s4}, {"IPv6", l.t6, l.s6}} {
		t.Run(fam.name, func(t *testing.T) {
			scanner, client, allowed, udpScanner := fam.s[0], fam.s[1], fam.s[2], fam.s[3]
			at := func(p uint16) netip.AddrPort { return netip.AddrPortFrom(fam.t, p) }

			// Service traffic is not trapped: a local socket owns it.
			if err := l.S.connect(t, scanner, 0, at(80), okWait); err != nil {
				t.Fatalf("connect to the TCP service: %v", err)
			}
			if err := l.S.query(t, scanner, at(53), okWait); err != nil {
				t.Fatalf("query to the UDP service: %v", err)
			}
			if banned(t, b, scanner) {
				t.Fatal("service traffic banned its source")
			}

			// A probe of a free trap port is dropped and bans its source
			// in the same instant...
			if err := l.S.connect(t, scanner, 0, at(23), dropWait); !isTimeout(err) {
				t.Fatalf("connect to free port 23: %v, want a timeout (dropped)", err)
			}
			if !banned(t, b, scanner) {
				t.Fatal("the probe did not ban its source")
			}
			// ...so the service is now out of its reach too.
			if err := l.S.connect(t, scanner, 0, at(80), dropWait); !isTimeout(err) {
				t.Fatalf("banned source connecting to the service: %v, want a timeout", err)
			}

			// A UDP probe likewise.
			l.S.sendUDP(t, netip.AddrPortFrom(udpScanner, 4000), at(111))
			if !banned(t, b, udpScanner) {
				t.Error("a UDP probe of port 111 did not ban its source")
			}

			// A port above the trap range is not trapped: refused.
			if err := l.S.connect(t, client, 0, at(2000), okWait); !isRefused(err) {
				t.Errorf("connect to port 2000 (outside the trap): %v, want refused", err)
			}

			// An allowed source probing a trap port is never banned: its
			// SYN reaches the closed port and is refused.
			if err := l.S.connect(t, allowed, 0, at(23), okWait); !isRefused(err) {
				t.Errorf("allowed source to port 23: %v, want refused", err)
			}
			if banned(t, b, allowed) {
				t.Error("an allowed source was banned")
			}
		})
	}

	t.Run("service started after the trap", func(t *testing.T) {
		// No port list to update: the kernel finds the new socket.
		l.T.listenTCP(t, ":700")
		for _, a := range []netip.AddrPort{netip.AddrPortFrom(l.t4, 700), netip.AddrPortFrom(l.t6, 700)} {
			from := l.s4[1]
			if a.Addr().Is6() {
				from = l.s6[1]
			}
			if err := l.S.connect(t, from, 0, a, okWait); err != nil {
				t.Errorf("connect to %v: %v", a, err)
			}
			if banned(t, b, from) {
				t.Errorf("%v banned for using a new service", from)
			}
		}
	})

	t.Run("broadcast", func(t *testing.T) {
		// A neighbour's broadcast to a trap port (NetBIOS, DHCP) is not
		// a probe of this host.
		before, _ := b.Stats()
		l.S.broadcastUDP(t, l.s4[1], 138)
		time.Sleep(100 * time.Millisecond)
		after, _ := b.Stats()
		if banned(t, b, l.s4[1]) || after.Trapped != before.Trapped {
			t.Errorf("a broadcast to port 138 was trapped (trap counter %+v, then %+v)", before.Trapped, after.Trapped)
		}
	})

	t.Run("replies to the host's own traffic", func(t *testing.T) {
		// S serves TCP 9000 and answers UDP 5353 late, after the asking
		// socket in T is closed. T asks from ports inside the trap range,
		// so only conntrack tells the answers from probes.
		l.S.listenTCP(t, ":9000")
		l.S.serveUDP(t, netip.AddrPortFrom(l.s4[1], 5353).String(), 300*time.Millisecond)
		l.S.serveUDP(t, netip.AddrPortFrom(l.s6[1], 5353).String(), 300*time.Millisecond)
		before, err := b.Stats()
		if err != nil {
			t.Fatal(err)
		}
		for i, peer := range []netip.Addr{l.s4[1], l.s6[1]} {
			local := l.t4
			if peer.Is6() {
				local = l.t6
			}
			if err := l.T.connect(t, local, uint16(600+i), netip.AddrPortFrom(peer, 9000), okWait); err != nil {
				t.Errorf("T's own connection to %v: %v", peer, err)
			}
			l.T.sendUDP(t, netip.AddrPortFrom(local, uint16(500+i)), netip.AddrPortFrom(peer, 5353))
		}
		// Wait for the late answers to arrive (and be counted, if they
		// were trapped) at T.
		time.Sleep(600 * time.Millisecond)
		after, err := b.Stats()
		if err != nil {
			t.Fatal(err)
		}
		for _, peer := range []netip.Addr{l.s4[1], l.s6[1]} {
			if banned(t, b, peer) {
				t.Errorf("a reply to T's own traffic banned %v", peer)
			}
		}
		if after.Trapped != before.Trapped {
			t.Errorf("trap counter moved from %+v to %+v", before.Trapped, after.Trapped)
		}
		// The control: the same datagram, unasked, is a probe.
		l.S.sendUDP(t, netip.AddrPortFrom(l.s4[1], 5354), netip.AddrPortFrom(l.t4, 500))
		if !banned(t, b, l.s4[1]) {
			t.Error("an unasked datagram to port 500 did not ban its source: the test above proves nothing")
		}
	})

	t.Run("the host itself", func(t *testing.T) {
		// The host's own addresses are never dropped nor trapped, even
		// when someone bans them.
		b.Add(l.t4, time.Hour)
		b.Add(l.t6, time.Hour)
		blocktest.Commit(t, b)
		for _, a := range []netip.Addr{l.t4, l.t6} {
			if err := l.T.connect(t, a, 0, netip.AddrPortFrom(a, 80), okWait); err != nil {
				t.Errorf("%v to its own service: %v", a, err)
			}
			if err := l.T.connect(t, a, 0, netip.AddrPortFrom(a, 23), okWait); !isRefused(err) {
				t.Errorf("%v to its own port 23: %v, want refused", a, err)
			}
		}
	})

	t.Run("stats", func(t *testing.T) {
		st, err := b.Stats()
		if err != nil {
			t.Fatal(err)
		}
		// Trapped: at least the TCP and UDP probes of both families and
		// the control; banned: at least the connects of banned sources.
		if st.Trapped.Packets < 5 || st.Banned.Packets < 2 || st.Trapped.Bytes == 0 || st.Banned.Bytes == 0 {
			t.Errorf("stats %+v", st)
		}
	})
}

// TestKernelTrapInterfaces: the trap limited to some interfaces, replaced,
// and removed.
func TestKernelTrapInterfaces(t *testing.T) {
	l := newTrapLab(t)
	b := l.T.blocker(t, Options{})
	probe := func(from netip.Addr) error {
		return l.S.connect(t, from, 0, netip.AddrPortFrom(l.t4, 23), dropWait)
	}
	tr := &Trap{TCP: ports(t, "23"), Interfaces: []string{"pselsewhere0"}}
	if err := b.SetTrap(tr); err != nil {
		t.Fatal(err)
	}
	if err := probe(l.s4[0]); !isRefused(err) {
		t.Errorf("probe on an interface outside the trap: %v, want refused", err)
	}
	tr.Interfaces = []string{"pselsewhere0", l.tIf}
	if err := b.SetTrap(tr); err != nil {
		t.Fatal(err)
	}
	if err := probe(l.s4[0]); !isTimeout(err) {
		t.Errorf("probe on a trapped interface: %v, want a timeout", err)
	}
	if got := blocktest.List(t, b)[l.s4[0]]; got != 0 {
		t.Errorf("trap TTL 0 gave a ban of %v, want permanent", got)
	}
	if err := b.SetTrap(nil); err != nil {
		t.Fatal(err)
	}
	if err := probe(l.s4[1]); !isRefused(err) {
		t.Errorf("probe after SetTrap(nil): %v, want refused", err)
	}
	list := l.T.nft(t, "list", "table", "inet", "portsentry")
	if strings.Contains(list, "dport") || strings.Contains(list, "pselsewhere0") {
		t.Errorf("SetTrap(nil) left trap rules or interfaces:\n%s", list)
	}
}
