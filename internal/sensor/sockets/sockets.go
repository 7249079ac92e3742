// Package sockets answers one question for the service check (PortSentry
// 1.2's "Smart-Verify"): does a local socket own this port right now?
//
// A probe to a port where some local socket is bound is not a scan: it is
// traffic for a service (or the reply half of a connection this host
// opened), so the engine asks Owns (InUse for a port alone) before it
// counts a packet-capture event.
//
// On Linux the answer comes from NETLINK_SOCK_DIAG, the interface ss(8)
// uses, with a kernel-side bytecode filter so that only sockets on the asked
// port come back, and the search stops at the first one. When sock_diag is
// unavailable (no netlink, or no udp_diag module),
// /proc/net/{tcp,tcp6,udp,udp6} are read instead. sock_diag answers about
// the network namespace the Checker was created in, /proc/net about the
// process's.
//
// Cost: the kernel cannot look sockets up by local port alone, so a dump
// walks a socket hash table whatever the filter. A port with a listener is
// answered in tens of microseconds; a free TCP port costs a walk of the
// established-connection table too, about half a millisecond to a
// millisecond on a host with a large one (BenchmarkInUse), and several
// milliseconds of CPU on a small virtual machine whose table has 262 144
// buckets. Owns, the question the daemon asks about a captured packet,
// avoids that walk: a TCP port without a listener can only be the packet's
// own connection's, and a connection is looked up by its addresses and
// ports, as the kernel itself does when the packet arrives.
//
// Other systems get an error wrapping errors.ErrUnsupported.
package sockets

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/portsentry-go/portsentry/internal/event"
)

// ErrClosed is returned by Checker.InUse after Close.
var ErrClosed = errors.New("sockets: checker closed")

// A Checker answers InUse queries over one kernel connection that it keeps
// open between calls. It is safe for concurrent use; calls are serialised.
type Checker struct {
	mu     sync.Mutex
	closed bool
	sys    sysChecker // the OS-specific part; see sockets_linux.go
}

// NewChecker returns a Checker for the network namespace of the calling
// thread. On Linux it fails only when neither sock_diag nor /proc/net can be
// used; elsewhere it always fails with an error wrapping
// errors.ErrUnsupported.
func NewChecker() (*Checker, error) {
	c := &Checker{}
	if err := c.sys.open(); err != nil {
		return nil, err
	}
	return c, nil
}

// InUse reports whether any local socket of proto (event.TCP or event.UDP),
// IPv4 or IPv6, has local port port right now. A TCP socket counts in every
// state but TIME_WAIT (listening, connecting, connected, closing); a UDP
// socket counts once it is bound, connected or not.
//
// Port 0 is never in use. An error means the question could not be asked;
// the answer is then false.
func (c *Checker) InUse(proto event.Proto, port uint16) (bool, error) {
	if proto != event.TCP && proto != event.UDP {
		return false, fmt.Errorf("sockets: unknown protocol %d", proto)
	}
	if port == 0 {
		return false, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false, ErrClosed
	}
	return c.sys.inUse(proto, port)
}

// Packet is a packet as it arrived: Src and SrcPort are the sender's, Dst
// and DstPort this host's.
type Packet struct {
	Proto            event.Proto
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	// Ifindex is the interface it arrived on; 0 when unknown.
	Ifindex int
}

// Owns reports whether a local socket owns p's destination port for p, so
// that p is traffic for it rather than a probe. For TCP that is the socket
// the kernel itself would hand p to: the connection p belongs to (exactly
// p's addresses and ports, in any state but TIME_WAIT), else a listener
// that accepts p (on its address or all, and its interface or all). A
// socket on the port that would not take p (a connection with another
// peer, a listener on another address) does not count: the kernel answers
// p as it answers a closed port (a RST), so p is a probe. The kernel's
// trap (nftables' socket expression) decides the same way. The socket is
// looked up by p's addresses and ports, two hash lookups, where InUse
// walks the kernel's tables. For UDP, and when p's addresses are unknown,
// Owns is InUse.
func (c *Checker) Owns(p Packet) (bool, error) {
	if p.Proto != event.TCP || !p.Src.IsValid() || !p.Dst.IsValid() || p.Src.Unmap().Is4() != p.Dst.Unmap().Is4() {
		return c.InUse(p.Proto, p.DstPort)
	}
	if p.DstPort == 0 {
		return false, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false, ErrClosed
	}
	return c.sys.owns(p)
}

// Close releases the kernel connection. Later InUse calls return ErrClosed;
// calling Close again does nothing.
func (c *Checker) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	return c.sys.close()
}

var (
	defaultMu      sync.Mutex
	defaultChecker *Checker
)

// InUse is Checker.InUse on a Checker shared by the whole process, created
// on first use for the namespace of the thread that first calls it. A
// failure to create it is returned and retried on the next call.
func InUse(proto event.Proto, port uint16) (bool, error) {
	defaultMu.Lock()
	c := defaultChecker
	if c == nil {
		var err error
		c, err = NewChecker()
		if err != nil {
			defaultMu.Unlock()
			return false, err
		}
		defaultChecker = c
	}
	defaultMu.Unlock()
	return c.InUse(proto, port)
}
