package selftest

import (
	"context"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/portsentry-go/portsentry/internal/netns"
)

// System is the kernel and process plumbing the self-test drives. The real
// one (NewSystem) changes state only inside the namespaces it creates;
// tests use fakes.
type System interface {
	// Privileges reports whether this process may run the self-test
	// (create namespaces, open packet sockets, change firewall rules): a
	// description such as "root", or an error naming what is missing.
	Privileges() (string, error)
	// LookPath finds an executable, as exec.LookPath.
	LookPath(file string) (string, error)
	// RemoveStale deletes the namespaces whose names start with prefix
	// and whose creator (the PID after the prefix) no longer runs: the
	// leftovers of a self-test that was killed. It returns their names.
	RemoveStale(prefix string) ([]string, error)
	// NewNetns creates an empty network namespace called name, loopback
	// up, and no other interface or route.
	NewNetns(name string) (Netns, error)
	// Link joins a and b with a veth pair and gives each end its
	// addresses (IPv6 ones without duplicate address detection). When
	// this kernel has IPv6 turned off, the IPv4 part is done and the
	// error wraps ErrNoIPv6.
	Link(a, b Netns, aAddrs, bAddrs []netip.Prefix) error
	// Output runs argv to completion inside ns (nil: this process's own
	// namespace) and returns its standard output and error together.
	Output(ctx context.Context, ns Netns, argv []string) ([]byte, error)
	// Start starts argv inside ns, in dir, with standard output and error
	// going to out.
	Start(ns Netns, argv []string, dir string, out io.Writer) (Process, error)
	// Forwarding reports whether this host forwards IPv4 and IPv6
	// (net.ipv4.ip_forward, net.ipv6.conf.all.forwarding): a router or a
	// container host, whose forwarded traffic bans must cover too.
	Forwarding() (v4, v6 bool)
}

// Netns is a network namespace made by System.NewNetns.
type Netns interface {
	// Name is the namespace's name (as `ip netns` lists it).
	Name() string
	// Probe checks one kernel feature inside the namespace: nil when it
	// works.
	Probe(ctx context.Context, f Feature) error
	// Listen opens a TCP listener inside the namespace.
	Listen(addr netip.AddrPort) (net.Listener, error)
	// Dial opens a TCP connection from inside the namespace.
	Dial(ctx context.Context, addr netip.AddrPort, timeout time.Duration) (net.Conn, error)
	// Remove deletes the namespace.
	Remove() error
}

// Process is a program started by System.Start.
type Process interface {
	// Done is closed once the process has exited.
	Done() <-chan struct{}
	// Err is the exit status, once Done is closed.
	Err() error
	// Stop asks the process to exit (SIGTERM) and kills it and its
	// process group if it has not after grace. It returns once the
	// process is gone.
	Stop(grace time.Duration) error
}

// Feature is a kernel feature that Netns.Probe checks.
type Feature int

// Features, in the order the checklist shows them.
const (
	// PacketSocket: an AF_PACKET socket opens (stealth and advanced
	// modes capture on one).
	PacketSocket Feature = iota
	// SocketFilter: the daemon's classic BPF program attaches to it
	// (SO_ATTACH_FILTER).
	SocketFilter
	// SockDiag: sockets.Checker sees a socket bound in the namespace
	// (the service check over NETLINK_SOCK_DIAG).
	SockDiag
	// NFTables: a table can be created and deleted over netlink.
	NFTables
	// NFTSocket: a rule with the socket expression loads (nft_socket).
	NFTSocket
	// NFTConntrack: a rule with the ct expression loads (nft_ct).
	NFTConntrack
	// NFTFib: a rule with the fib expression loads (nft_fib_inet).
	NFTFib
	// NFTSetTimeout: a dynamic set with timeouts, an element with a
	// timeout, and a rule adding to it from the packet path load.
	NFTSetTimeout
	numFeatures
)

// ErrNoIPv6 is wrapped by System.Link's error when the kernel has IPv6
// turned off: the IPv6 checks are then skipped, not failed. It is
// netns.ErrNoIPv6, which the real System's Link wraps.
var ErrNoIPv6 = netns.ErrNoIPv6
