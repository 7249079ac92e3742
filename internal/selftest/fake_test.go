package selftest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/portsentry-go/portsentry/internal/report/logline"
)

// fakeSystem simulates the kernel, the two namespaces' network and a
// daemon, with knobs for every way the real ones can fail.
type fakeSystem struct {
	mu sync.Mutex

	// Knobs.
	privErr      error
	netnsErr     error             // NewNetns fails
	removeErr    error             // Netns.Remove fails
	missing      map[Feature]error // Probe fails
	noTools      map[string]bool   // LookPath fails
	unknownKeys  map[string]bool   // `check` refuses these keys
	daemonExits  bool              // the daemon dies before it is ready
	neverReady   bool              // the daemon never says it listens
	noDetect     bool              // probes are not reported
	noBlock      bool              // the block command fails
	blockLeaks   bool              // the block is logged but does not hold
	serviceAlert bool              // connections to the service are reported
	noIPv6       bool              // the kernel has IPv6 turned off
	forwards4    bool              // the host forwards IPv4
	status       string            // what `portsentry status` prints; "" fails it

	// State.
	live     map[string]*fakeNetns
	created  []string
	commands [][]string
	conf     string // the last configuration `check` saw
	daemon   *fakeProcess
	blocked  map[netip.Addr]bool
}

func newFake() *fakeSystem {
	return &fakeSystem{
		missing:     map[Feature]error{},
		noTools:     map[string]bool{},
		unknownKeys: map[string]bool{},
		live:        map[string]*fakeNetns{},
		blocked:     map[netip.Addr]bool{},
	}
}

func (f *fakeSystem) Privileges() (string, error) {
	if f.privErr != nil {
		return "", f.privErr
	}
	return "root", nil
}

func (f *fakeSystem) LookPath(file string) (string, error) {
	if f.noTools[file] {
		return "", &osExecError{file}
	}
	return "/usr/sbin/" + file, nil
}

type osExecError struct{ file string }

func (e *osExecError) Error() string {
	return "exec: " + e.file + ": executable file not found in $PATH"
}

func (f *fakeSystem) RemoveStale(string) ([]string, error) { return nil, nil }

func (f *fakeSystem) Forwarding() (v4, v6 bool) { return f.forwards4, false }

func (f *fakeSystem) NewNetns(name string) (Netns, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.netnsErr != nil {
		return nil, f.netnsErr
	}
	if f.live[name] != nil {
		return nil, fmt.Errorf("%s: %w", name, os.ErrExist)
	}
	n := &fakeNetns{sys: f, name: name, listeners: map[uint16]*fakeListener{}}
	f.live[name] = n
	f.created = append(f.created, name)
	return n, nil
}

func (f *fakeSystem) Link(a, b Netns, aAddrs, bAddrs []netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, side := range []struct {
		n     *fakeNetns
		addrs []netip.Prefix
	}{{a.(*fakeNetns), aAddrs}, {b.(*fakeNetns), bAddrs}} {
		for _, p := range side.addrs {
			if !f.noIPv6 || p.Addr().Is4() {
				side.n.addrs = append(side.n.addrs, p.Addr())
			}
		}
	}
	if f.noIPv6 {
		return fmt.Errorf("%w (address fd00:239::1/64: permission denied)", ErrNoIPv6)
	}
	return nil
}

func (f *fakeSystem) Output(ctx context.Context, ns Netns, argv []string) ([]byte, error) {
	f.mu.Lock()
	f.commands = append(f.commands, argv)
	f.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(argv) >= 4 && argv[1] == "check" {
		b, err := os.ReadFile(argv[3])
		if err != nil {
			return []byte("portsentry: " + err.Error()), err
		}
		f.mu.Lock()
		f.conf = string(b)
		f.mu.Unlock()
		for i, l := range strings.Split(string(b), "\n") {
			if k, _, ok := strings.Cut(l, "="); ok && f.unknownKeys[k] {
				return []byte(fmt.Sprintf("portsentry: %s:%d: unknown key %q\n", argv[3], i+1, k)), errors.New("exit status 2")
			}
		}
		return []byte(argv[3] + ": OK\n"), nil
	}
	if len(argv) >= 2 && argv[1] == "status" {
		if f.status == "" {
			return []byte("portsentry: control: the daemon is not running\n"), errors.New("exit status 1")
		}
		return []byte(f.status), nil
	}
	return nil, nil
}

func (f *fakeSystem) Start(ns Netns, argv []string, dir string, out io.Writer) (Process, error) {
	p := &fakeProcess{out: out, done: make(chan struct{})}
	f.mu.Lock()
	f.daemon = p
	f.mu.Unlock()
	switch {
	case f.daemonExits:
		p.log("adminalert: ERROR: cannot open packet socket")
		p.exit(errors.New("exit status 1"))
	case f.neverReady:
	default:
		p.log(logline.Active)
	}
	return p, nil
}

// probed is the fake daemon's reaction to a packet from src to port.
func (f *fakeSystem) probed(src netip.Addr, port uint16, service bool) {
	f.mu.Lock()
	p := f.daemon
	f.mu.Unlock()
	if p == nil || p.exited() {
		return
	}
	if service {
		if f.serviceAlert {
			p.log(fmt.Sprintf("attackalert: Connect from host: %s/%s to TCP port: %d", src, src, port))
		}
		return
	}
	if f.noDetect {
		return
	}
	p.log(fmt.Sprintf("attackalert: TCP SYN/Normal scan from host: %s/%s to TCP port: %d", src, src, port))
	if f.noBlock {
		p.log(fmt.Sprintf("attackalert: ERROR: dropped route for host %s failed: exit status 1", src))
		p.log(fmt.Sprintf("attackalert: ERROR: Host %s was NOT blocked; its next probe will try again", src))
		return
	}
	p.log(fmt.Sprintf("attackalert: Host %s has been blocked via dropped route using command: \"nft add rule ... %s drop\"", src, src))
	p.log(fmt.Sprintf("Scan from: [%s] (%s) protocol: [TCP] port: [%d] type: [TCP SYN/Normal scan] IP opts: [not set] ignored: [false] triggered: [true] noblock: [false] blocked: [true]", src, src, port))
	if !f.blockLeaks {
		f.mu.Lock()
		f.blocked[src] = true
		f.mu.Unlock()
	}
}

// owner is the namespace that has addr.
func (f *fakeSystem) owner(addr netip.Addr) *fakeNetns {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range f.live {
		for _, a := range n.addrs {
			if a == addr {
				return n
			}
		}
	}
	return nil
}

// liveNames lists the namespaces not removed.
func (f *fakeSystem) liveNames() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for n := range f.live {
		out = append(out, n)
	}
	return out
}

type fakeNetns struct {
	sys       *fakeSystem
	name      string
	addrs     []netip.Addr
	listeners map[uint16]*fakeListener
}

func (n *fakeNetns) Name() string { return n.name }

func (n *fakeNetns) Probe(ctx context.Context, f Feature) error {
	if err := n.sys.missing[f]; err != nil {
		return err
	}
	return ctx.Err()
}

func (n *fakeNetns) Remove() error {
	n.sys.mu.Lock()
	defer n.sys.mu.Unlock()
	if n.sys.removeErr != nil {
		return n.sys.removeErr
	}
	if n.sys.live[n.name] == nil {
		return fmt.Errorf("%s: %w", n.name, os.ErrNotExist)
	}
	delete(n.sys.live, n.name)
	return nil
}

func (n *fakeNetns) Listen(addr netip.AddrPort) (net.Listener, error) {
	n.sys.mu.Lock()
	defer n.sys.mu.Unlock()
	if n.listeners[addr.Port()] != nil {
		return nil, syscall.EADDRINUSE
	}
	l := &fakeListener{ns: n, port: addr.Port(), conns: make(chan net.Conn), closed: make(chan struct{})}
	n.listeners[addr.Port()] = l
	return l, nil
}

func (n *fakeNetns) Dial(ctx context.Context, to netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	var src netip.Addr
	for _, a := range n.addrs {
		if a.Is4() == to.Addr().Is4() {
			src = a
		}
	}
	dst := n.sys.owner(to.Addr())
	if !src.IsValid() || dst == nil {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ENETUNREACH}
	}
	n.sys.mu.Lock()
	blocked := n.sys.blocked[src]
	l := dst.listeners[to.Port()]
	n.sys.mu.Unlock()
	n.sys.probed(src, to.Port(), l != nil)
	if blocked {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: timeoutError{}}
	}
	if l == nil {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	}
	client, server := net.Pipe()
	local := &net.TCPAddr{IP: src.AsSlice(), Port: 40000}
	select {
	case l.conns <- server:
		return addrConn{client, local}, nil
	case <-l.closed:
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(timeout):
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: timeoutError{}}
	}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

type addrConn struct {
	net.Conn
	local net.Addr
}

func (c addrConn) LocalAddr() net.Addr { return c.local }

type fakeListener struct {
	ns     *fakeNetns
	port   uint16
	conns  chan net.Conn
	once   sync.Once
	closed chan struct{}
}

func (l *fakeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *fakeListener) Close() error {
	l.once.Do(func() {
		close(l.closed)
		l.ns.sys.mu.Lock()
		delete(l.ns.listeners, l.port)
		l.ns.sys.mu.Unlock()
	})
	return nil
}

func (l *fakeListener) Addr() net.Addr { return &net.TCPAddr{Port: int(l.port)} }

type fakeProcess struct {
	mu      sync.Mutex
	out     io.Writer
	done    chan struct{}
	err     error
	stopped bool
}

// log writes one daemon line with the 2.x timestamp, as the daemon does.
func (p *fakeProcess) log(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.out, "%s %s\n", time.Now().Format(logline.Timestamp2x), line)
}

func (p *fakeProcess) exit(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
	default:
		p.err = err
		close(p.done)
	}
}

func (p *fakeProcess) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *fakeProcess) Done() <-chan struct{} { return p.done }
func (p *fakeProcess) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *fakeProcess) Stop(time.Duration) error {
	p.log("adminalert: PortSentry is shutting down.")
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.exit(nil)
	return nil
}
