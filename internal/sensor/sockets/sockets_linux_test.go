package sockets

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/event"
)

// These tests ask the real kernel about sockets they open on loopback
// (127.0.0.1 and ::1) only. They need no privileges.

// backends runs f with each way of asking: sock_diag with TCPDIAG_GETSOCK
// for TCP, sock_diag with SOCK_DIAG_BY_FAMILY only, and /proc/net.
func backends(t *testing.T, f func(t *testing.T, c *Checker)) {
	for _, name := range []string{"sock_diag", "sock_diag-v2", "procfs"} {
		t.Run(name, func(t *testing.T) {
			c, err := NewChecker()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			switch {
			case name == "procfs":
				c.sys.noDiag = [2]bool{true, true}
			case c.sys.noDiag[event.TCP]:
				t.Skip("this kernel offers no sock_diag")
			case name == "sock_diag-v2":
				c.sys.noOld = true
			}
			f(t, c)
			if name == "sock_diag" && (c.sys.noOld || c.sys.noDiag != [2]bool{}) {
				t.Errorf("sock_diag fell back: noOld %v, noDiag %v", c.sys.noOld, c.sys.noDiag)
			}
		})
	}
}

func mustInUse(t *testing.T, c *Checker, proto event.Proto, port uint16, want bool) {
	t.Helper()
	got, err := c.InUse(proto, port)
	if err != nil {
		t.Fatalf("InUse(%v, %d): %v", proto, port, err)
	}
	if got != want {
		t.Errorf("InUse(%v, %d) = %v, want %v", proto, port, got, want)
	}
}

func tcpPort(a net.Addr) uint16 { return uint16(a.(*net.TCPAddr).Port) }
func udpPort(a net.Addr) uint16 { return uint16(a.(*net.UDPAddr).Port) }

func listen(t *testing.T, network, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("cannot listen on %s %s: %v", network, addr, err)
	}
	return ln
}

func TestInUseTCPListener(t *testing.T) {
	backends(t, func(t *testing.T, c *Checker) {
		for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
			ln := listen(t, "tcp", addr)
			p := tcpPort(ln.Addr())
			mustInUse(t, c, event.TCP, p, true)
			mustInUse(t, c, event.UDP, p, false) // same number, other protocol
			ln.Close()
			mustInUse(t, c, event.TCP, p, false)
		}
	})
}

func TestInUseUDP(t *testing.T) {
	backends(t, func(t *testing.T, c *Checker) {
		for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				t.Skipf("cannot bind %s: %v", addr, err)
			}
			p := udpPort(pc.LocalAddr())
			mustInUse(t, c, event.UDP, p, true)
			pc.Close()
			mustInUse(t, c, event.UDP, p, false)
		}
		// A connected UDP socket (a resolver's query socket) counts too.
		srv, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		cl, err := net.Dial("udp", srv.LocalAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		mustInUse(t, c, event.UDP, udpPort(cl.LocalAddr()), true)
	})
}

func TestInUseOutgoingTCP(t *testing.T) {
	backends(t, func(t *testing.T, c *Checker) {
		ln := listen(t, "tcp", "127.0.0.1:0")
		defer ln.Close()
		cl, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		srv, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		mustInUse(t, c, event.TCP, tcpPort(cl.LocalAddr()), true)
	})
}

// TestInUseTimeWait: the side that closes first keeps its port in TIME_WAIT
// for a minute; that port serves nothing and must read as free.
func TestInUseTimeWait(t *testing.T) {
	backends(t, func(t *testing.T, c *Checker) {
		ln := listen(t, "tcp", "127.0.0.1:0")
		defer ln.Close()
		cl, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		srv, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		p := tcpPort(cl.LocalAddr())
		cl.Close()
		srv.Read(make([]byte, 1)) // EOF: the client's FIN is in
		srv.Close()
		// Wait until the client's socket reaches TIME_WAIT (the
		// server's FIN has to arrive), as /proc/net/tcp shows it.
		deadline := time.Now().Add(5 * time.Second)
		for !inTimeWait(t, p) {
			if time.Now().After(deadline) {
				t.Skip("client socket never showed TIME_WAIT")
			}
			time.Sleep(10 * time.Millisecond)
		}
		mustInUse(t, c, event.TCP, p, false)
	})
}

func inTimeWait(t *testing.T, port uint16) bool {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	tw := false
	if err := scanProcNet(bytes.NewReader(b), func(e procEntry) bool {
		tw = e.Port == port && e.State == stateTimeWait
		return !tw
	}); err != nil {
		t.Fatal(err)
	}
	return tw
}

func TestInUseFreePort(t *testing.T) {
	backends(t, func(t *testing.T, c *Checker) {
		// A port the kernel just handed out and took back is free.
		ln := listen(t, "tcp", "127.0.0.1:0")
		p := tcpPort(ln.Addr())
		ln.Close()
		mustInUse(t, c, event.TCP, p, false)
		mustInUse(t, c, event.UDP, p, false)
		mustInUse(t, c, event.TCP, 0, false)
	})
}

// TestInUseManyConnections: a port with more connections than one netlink
// batch holds is answered from the first batch; the checker then drops the
// unfinished dump (and its socket), and the next queries still work.
func TestInUseManyConnections(t *testing.T) {
	backends(t, func(t *testing.T, c *Checker) {
		ln := listen(t, "tcp", "127.0.0.1:0")
		defer ln.Close()
		p := tcpPort(ln.Addr())
		const n = 300 // 300 × 88 bytes: more than a first 8 KiB batch
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for range n {
			cl, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			srv, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, cl, srv)
		}
		// Without the listener, only the 300 accepted connections hold
		// the port: the listener query finds nothing, the next one
		// finds hundreds.
		ln.Close()
		for range 3 {
			mustInUse(t, c, event.TCP, p, true)
		}
		other := listen(t, "tcp", "127.0.0.1:0")
		mustInUse(t, c, event.TCP, tcpPort(other.Addr()), true)
		other.Close()
		mustInUse(t, c, event.TCP, tcpPort(other.Addr()), false)
		mustInUse(t, c, event.UDP, p, false)
	})
}

func TestPackageInUse(t *testing.T) {
	ln := listen(t, "tcp", "127.0.0.1:0")
	defer ln.Close()
	got, err := InUse(event.TCP, tcpPort(ln.Addr()))
	if err != nil || !got {
		t.Errorf("InUse = %v, %v; want true, nil", got, err)
	}
}

func TestClosed(t *testing.T) {
	c, err := NewChecker()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := c.InUse(event.TCP, 22); err != ErrClosed {
		t.Errorf("InUse after Close: %v, want ErrClosed", err)
	}
	if _, err := c.InUse(event.Proto(9), 22); err == nil {
		t.Error("InUse of an unknown protocol: no error")
	}
}

func BenchmarkInUse(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	p := tcpPort(ln.Addr())
	for _, bc := range []struct {
		name     string
		proc, v2 bool
		port     uint16
		proto    event.Proto
	}{
		{"sock_diag/TCP-listening", false, false, p, event.TCP},
		{"sock_diag/TCP-free", false, false, p + 1, event.TCP},
		{"sock_diag/UDP-free", false, false, p + 1, event.UDP},
		{"sock_diag-v2/TCP-listening", false, true, p, event.TCP},
		{"sock_diag-v2/TCP-free", false, true, p + 1, event.TCP},
		{"procfs/TCP-listening", true, false, p, event.TCP},
		{"procfs/TCP-free", true, false, p + 1, event.TCP},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c, err := NewChecker()
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			c.sys.noDiag = [2]bool{bc.proc, bc.proc}
			c.sys.noOld = bc.v2
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.InUse(bc.proto, bc.port); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func mustOwn(t *testing.T, c *Checker, p Packet, want bool) {
	t.Helper()
	got, err := c.Owns(p)
	if err != nil {
		t.Fatalf("Owns(%+v): %v", p, err)
	}
	if got != want {
		t.Errorf("Owns(%+v) = %v, want %v", p, got, want)
	}
}

// tcpPacket is a packet from the remote end of conn's peer address to its
// local end, as it would arrive.
func tcpPacket(local, remote net.Addr) Packet {
	l, r := local.(*net.TCPAddr).AddrPort(), remote.(*net.TCPAddr).AddrPort()
	return Packet{Proto: event.TCP, Src: r.Addr().Unmap(), SrcPort: r.Port(), Dst: l.Addr().Unmap(), DstPort: l.Port()}
}

// TestOwns: a listener owns its port for the packets it would accept; a
// connection owns its port only for its own packets (another peer's probe
// of that port is answered by the kernel with a RST: a probe); TIME_WAIT
// owns nothing but leaves its port's listener the packet; a free port is
// owned by nothing; UDP is asked as InUse.
func TestOwns(t *testing.T) {
	backends(t, func(t *testing.T, c *Checker) {
		for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
			ln := listen(t, "tcp", addr)
			cl, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			srv, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			own := tcpPacket(cl.LocalAddr(), cl.RemoteAddr())
			mustOwn(t, c, own, true)
			stranger := own
			stranger.SrcPort++
			// /proc/net answers by port: the connection owns it.
			mustOwn(t, c, stranger, t.Name() == "TestOwns/procfs")
			toListener := tcpPacket(ln.Addr(), cl.LocalAddr())
			toListener.SrcPort++
			mustOwn(t, c, toListener, true)
			mustOwn(t, c, Packet{Proto: event.TCP, Src: own.Src, Dst: own.Dst, SrcPort: 40000, DstPort: 0}, false)

			// A listener on one address does not take a packet for
			// another: the kernel answers it as a closed port. By
			// port (/proc/net) it is the listener's.
			if own.Dst.Is4() {
				other := toListener
				other.Dst = netip.MustParseAddr("127.0.0.2")
				mustOwn(t, c, other, t.Name() == "TestOwns/procfs")
			}

			// The server closes first: its end of the accepted
			// connection goes to TIME_WAIT, on the listener's port,
			// where the same client may connect again.
			srv.Close()
			cl.Read(make([]byte, 1))
			cl.Close()
			back := tcpPacket(srv.LocalAddr(), srv.RemoteAddr())
			deadline := time.Now().Add(5 * time.Second)
			tw := back.Dst.Is4()
			for tw && !inTimeWait(t, back.DstPort) {
				if time.Now().After(deadline) {
					t.Log("server socket never showed TIME_WAIT")
					tw = false
				}
				time.Sleep(10 * time.Millisecond)
			}
			mustOwn(t, c, back, true) // the listener takes it
			ln.Close()
			if tw {
				mustOwn(t, c, back, false) // TIME_WAIT alone serves nothing
			}
			mustOwn(t, c, own, false)
			mustOwn(t, c, toListener, false)
		}
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Skipf("cannot bind: %v", err)
		}
		defer pc.Close()
		u := pc.LocalAddr().(*net.UDPAddr).AddrPort()
		mustOwn(t, c, Packet{Proto: event.UDP, Src: u.Addr(), SrcPort: 5353, Dst: u.Addr(), DstPort: u.Port()}, true)
		if !c.sys.noDiag[event.TCP] && c.sys.noExact {
			t.Error("the kernel refused the lookup by addresses and ports")
		}
	})
}

// BenchmarkOwns: a TCP probe of a free port, asked by port (InUse: the
// listeners, then every connection) and as a packet (Owns: the listeners,
// then its own connection by addresses and ports).
func BenchmarkOwns(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	free := tcpPort(ln.Addr())
	ln.Close()
	lo := netip.MustParseAddr("127.0.0.1")
	p := Packet{Proto: event.TCP, Src: lo, SrcPort: 40000, Dst: lo, DstPort: free}
	c, err := NewChecker()
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.Run("InUse", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.InUse(event.TCP, free); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Owns", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Owns(p); err != nil {
				b.Fatal(err)
			}
		}
	})
}
