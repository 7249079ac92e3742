package packet

import (
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/portsentry-go/portsentry/internal/event"
	"github.com/portsentry-go/portsentry/internal/netns/netnstest"
)

// These tests hand the filter to the real kernel: the classic BPF checker
// (sk_chk_filter) rejects what bpf.VM would not notice, and only the kernel
// runs the ancillary loads the VM tests replace with constants.

const ethPAll = 0x0003 // ETH_P_ALL

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// packetSocket opens an AF_PACKET SOCK_DGRAM socket that receives nothing
// until bound, or skips the test with the remedy when that is not allowed.
func packetSocket(t *testing.T) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		netnstest.SkipOrFail(t, "AF_PACKET needs CAP_NET_RAW: run as root")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func attach(fd int, raw []bpf.RawInstruction) error {
	if len(raw) == 0 {
		return errors.New("empty program")
	}
	// bpf.RawInstruction and unix.SockFilter are both struct sock_filter.
	prog := unix.SockFprog{
		Len:    uint16(len(raw)),
		Filter: (*unix.SockFilter)(unsafe.Pointer(&raw[0])),
	}
	return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog)
}

func TestFilterKernelAccepts(t *testing.T) {
	fd := packetSocket(t)
	for _, o := range []FilterOptions{
		{},
		{Outgoing: true},
		{ExcludeIfindex: []int{1}},
		{ExcludeIfindex: []int{1, 2, 3, 4, 5, 6, 7, 8}, Outgoing: true},
	} {
		raw, err := Filter(o)
		if err != nil {
			t.Fatal(err)
		}
		if err := attach(fd, raw); err != nil {
			t.Errorf("kernel rejects Filter(%+v): %v", o, err)
		}
	}
	// A control: the kernel must refuse a program that jumps past its end,
	// or the test above would prove nothing.
	bad, err := bpf.Assemble([]bpf.Instruction{bpf.JumpIf{Cond: bpf.JumpEqual, SkipTrue: 5}, bpf.RetConstant{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := attach(fd, bad); !errors.Is(err, unix.EINVAL) {
		t.Errorf("kernel accepts a broken program (err %v): the acceptance test proves nothing", err)
	}
}

// seen is one packet a filtered socket delivered.
type seen struct {
	pkttype uint8
	n       int // bytes delivered
	p       Packet
	err     error
}

// lab makes the fresh network namespaces of the kernel tests.
var lab = netnstest.Lab{Prefix: "pspkt-"}

func TestMain(m *testing.M) { os.Exit(lab.Main(m)) }

// TestFilterKernelTraffic sends real loopback traffic in a fresh network
// namespace (so no other traffic interferes) and checks what three filtered
// sockets receive.
func TestFilterKernelTraffic(t *testing.T) {
	packetSocket(t) // skips when not allowed

	var r struct {
		plain, outgoing, excluded []seen
		v6                        bool
	}
	// Every socket is made on a thread inside the namespace, so it
	// belongs there.
	netnstest.Do(t, lab.New(t, "f"), func() error {
		lo := 1 // loopback is always ifindex 1 in a new namespace
		plain, err := boundPacketSocket(FilterOptions{}, lo)
		if err != nil {
			return err
		}
		defer unix.Close(plain)
		outgoing, err := boundPacketSocket(FilterOptions{Outgoing: true}, lo)
		if err != nil {
			return err
		}
		defer unix.Close(outgoing)
		excluded, err := boundPacketSocket(FilterOptions{ExcludeIfindex: []int{lo}, Outgoing: true}, lo)
		if err != nil {
			return err
		}
		defer unix.Close(excluded)

		if err := traffic(netip.MustParseAddr("127.0.0.1")); err != nil {
			return err
		}
		// ::1 appears when lo comes up unless IPv6 is disabled.
		if err := traffic(netip.MustParseAddr("::1")); err == nil {
			r.v6 = true
		}
		r.plain, r.outgoing, r.excluded = drain(plain), drain(outgoing), drain(excluded)
		return nil
	})

	type key struct {
		pkttype uint8
		v6      bool
		proto   event.Proto
		flags   uint8
		dport   uint16
	}
	summary := func(ss []seen) map[key]int {
		m := make(map[key]int)
		for _, s := range ss {
			if s.err != nil {
				t.Errorf("delivered packet does not decode: %v", s.err)
				continue
			}
			// The datagram carries 300 bytes of payload: only the
			// snap length's worth may arrive.
			if s.p.Proto == event.UDP && s.n != 128 {
				t.Errorf("UDP datagram delivered as %d bytes, want the 128-byte snap", s.n)
			}
			m[key{s.pkttype, s.p.Src.Is6(), s.p.Proto, s.p.Flags, s.p.DstPort}]++
		}
		return m
	}
	want := func(outgoing bool) map[key]int {
		m := make(map[key]int)
		for _, v6 := range []bool{false, true} {
			if v6 && !r.v6 {
				continue
			}
			// The SYN arrives; the RST+ACK answer, the outgoing
			// copy of the SYN and the ICMP port unreachable do not.
			m[key{pktHost, v6, event.TCP, syn, closedTCP}] = 1
			m[key{pktHost, v6, event.UDP, 0, closedUDP}] = 1
			// A completed handshake and close: only the SYN, never
			// SYN+ACK, ACK or FIN+ACK.
			m[key{pktHost, v6, event.TCP, syn, openTCP}] = 1
			if outgoing {
				m[key{pktOutgoing, v6, event.UDP, 0, closedUDP}] = 1
			}
		}
		return m
	}
	if got, w := summary(r.plain), want(false); !equalCounts(got, w) {
		t.Errorf("plain socket got %v, want %v", got, w)
	}
	if got, w := summary(r.outgoing), want(true); !equalCounts(got, w) {
		t.Errorf("Outgoing socket got %v, want %v", got, w)
	}
	if len(r.excluded) != 0 {
		t.Errorf("socket excluding lo got %d packets", len(r.excluded))
	}
	if !r.v6 {
		t.Log("IPv6 loopback unavailable: IPv6 part not checked")
	}
}

func equalCounts[K comparable](a, b map[K]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// Ports in the fresh namespace: nothing listens on the closed ones, traffic
// listens on openTCP.
const (
	closedTCP = 143
	closedUDP = 31337
	openTCP   = 8080
)

// traffic, on addr: makes a TCP connection attempt to a closed port (SYN,
// RST+ACK), a full connection to an open one (handshake, close) and sends a
// UDP datagram with a payload longer than the snap length to a closed port
// (ICMP port unreachable in reply).
func traffic(addr netip.Addr) error {
	family := unix.AF_INET6
	sa := func(port int) unix.Sockaddr { return &unix.SockaddrInet6{Port: port, Addr: addr.As16()} }
	if addr.Is4() {
		family = unix.AF_INET
		sa = func(port int) unix.Sockaddr { return &unix.SockaddrInet4{Port: port, Addr: addr.As4()} }
	}
	s, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	err = unix.Connect(s, sa(closedTCP))
	unix.Close(s)
	if !errors.Is(err, unix.ECONNREFUSED) {
		return errors.New("connect to a closed port: want ECONNREFUSED, got " + errString(err))
	}

	l, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(l)
	if err := unix.Bind(l, sa(openTCP)); err != nil {
		return err
	}
	if err := unix.Listen(l, 1); err != nil {
		return err
	}
	c, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	if err := unix.Connect(c, sa(openTCP)); err != nil {
		unix.Close(c)
		return err
	}
	a, _, err := unix.Accept(l)
	if err != nil {
		unix.Close(c)
		return err
	}
	unix.Write(c, []byte("hello"))
	unix.Close(c)
	unix.Close(a)

	u, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(u)
	return unix.Sendto(u, make([]byte, 300), 0, sa(closedUDP))
}

func errString(err error) string {
	if err == nil {
		return "success"
	}
	return err.Error()
}

// boundPacketSocket opens a packet socket with Filter(o) attached before it
// is bound, so no unfiltered packet can be queued, then binds it to ifindex.
func boundPacketSocket(o FilterOptions, ifindex int) (int, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	raw, err := Filter(o)
	if err == nil {
		err = attach(fd, raw)
	}
	if err == nil {
		err = unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(ethPAll), Ifindex: ifindex})
	}
	if err == nil {
		tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
		err = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	}
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// drain reads what the socket queued until a read times out.
func drain(fd int) []seen {
	var out []seen
	buf := make([]byte, 2048)
	for {
		n, from, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return out
		}
		s := seen{n: n}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok {
			s.pkttype = ll.Pkttype
		}
		s.err = Decode(buf[:n], &s.p)
		out = append(out, s)
	}
}
