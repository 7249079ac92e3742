//go:build linux

package selftest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/portsentry-go/portsentry/internal/enforce/block"
	"github.com/portsentry-go/portsentry/internal/netns"
)

// NewSystem returns the real System of this host.
//
// Namespaces are named (under /run/netns, as `ip netns add` makes them:
// package netns), so that `ip netns exec` can enter them and an operator
// can see them. Programs
// are started inside a namespace with `ip netns exec NAME` when iproute2 is
// installed: it also gives the program a /sys of its namespace and is what
// an operator would type. Without iproute2 they are started from a goroutine
// locked to an OS thread that has entered the namespace with setns(2): a
// child inherits the network namespace of the thread that forks it, so
// exec.Cmd.Start on that thread puts the program in the namespace. Either
// way the daemon runs in its own process group with SIGKILL as its parent-
// death signal, so that a killed self-test does not leave it running (the
// next run removes the killed one's namespaces: RemoveStale).
func NewSystem() System { return &linuxSystem{} }

func (s *linuxSystem) Forwarding() (v4, v6 bool) { return block.Forwarding() }

type linuxSystem struct {
	ipOnce sync.Once
	ip     string // iproute2's ip, "" when not installed
}

func (s *linuxSystem) ipPath() string {
	s.ipOnce.Do(func() { s.ip, _ = exec.LookPath("ip") })
	return s.ip
}

// Capabilities the self-test needs (linux/capability.h).
var needCaps = []struct {
	bit  uint
	name string
	why  string
}{
	{21, "CAP_SYS_ADMIN", "to create network namespaces"},
	{12, "CAP_NET_ADMIN", "to configure interfaces and firewalls"},
	{13, "CAP_NET_RAW", "to open packet sockets"},
}

func (*linuxSystem) Privileges() (string, error) {
	eff, err := effectiveCaps()
	if err != nil {
		return "", fmt.Errorf("reading this process's capabilities: %w", err)
	}
	var missing, have []string
	for _, c := range needCaps {
		if eff&(1<<c.bit) == 0 {
			missing = append(missing, c.name+" ("+c.why+")")
		} else {
			have = append(have, c.name)
		}
	}
	if len(missing) > 0 {
		who := "uid " + strconv.Itoa(os.Geteuid())
		if os.Geteuid() == 0 {
			who = "root, but"
		}
		return "", fmt.Errorf("%s missing %s", who, strings.Join(missing, ", "))
	}
	if os.Geteuid() == 0 {
		return "root", nil
	}
	return "uid " + strconv.Itoa(os.Geteuid()) + " with " + strings.Join(have, ", "), nil
}

// effectiveCaps reads CapEff from /proc/self/status.
func effectiveCaps() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no CapEff line in /proc/self/status")
}

func (*linuxSystem) LookPath(file string) (string, error) { return exec.LookPath(file) }

func (*linuxSystem) RemoveStale(prefix string) ([]string, error) { return netns.Sweep(prefix) }

// linuxNetns is a namespace made by NewNetns.
type linuxNetns struct {
	ns *netns.NS
}

func (s *linuxSystem) NewNetns(name string) (Netns, error) {
	n, err := netns.Create(name)
	if err != nil {
		return nil, err
	}
	return &linuxNetns{ns: n}, nil
}

func (n *linuxNetns) Name() string  { return n.ns.Name() }
func (n *linuxNetns) Remove() error { return n.ns.Delete() }

// do runs fn on an OS thread inside the namespace.
func (n *linuxNetns) do(fn func() error) error { return n.ns.Do(fn) }

// Go's net package makes the socket in the calling goroutine, so on the
// locked thread, inside the namespace; the socket stays there whichever
// thread uses it later. An IP literal needs no resolver goroutine.
func (n *linuxNetns) Listen(addr netip.AddrPort) (net.Listener, error) {
	var l net.Listener
	err := n.do(func() error {
		var err error
		l, err = net.Listen("tcp", addr.String())
		return err
	})
	return l, err
}

func (n *linuxNetns) Dial(ctx context.Context, addr netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := n.do(func() error {
		d := net.Dialer{Timeout: timeout}
		var err error
		c, err = d.DialContext(ctx, "tcp", addr.String())
		return err
	})
	return c, err
}

// Link joins a (psst0) and b (psst1) with a veth pair made inside a with
// its peer inside b: no name ever exists in this host's own namespace.
func (s *linuxSystem) Link(a, b Netns, aAddrs, bAddrs []netip.Prefix) error {
	na, ok1 := a.(*linuxNetns)
	nb, ok2 := b.(*linuxNetns)
	if !ok1 || !ok2 {
		return errors.New("selftest: Link of namespaces from another System")
	}
	return netns.Pair(netns.Iface{NS: na.ns, Name: "psst0", Addrs: aAddrs}, netns.Iface{NS: nb.ns, Name: "psst1", Addrs: bAddrs})
}

// childEnv is the environment of programs the self-test starts: this
// one's, without what would make a daemon report readiness to someone
// else (a service manager, a backgrounding parent).
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k == "NOTIFY_SOCKET" || k == "PORTSENTRY_READY_FD" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// command makes the exec.Cmd for argv inside ns, and says whether it must
// be started on a thread inside ns (no iproute2).
func (s *linuxSystem) command(ctx context.Context, ns Netns, argv []string) (*exec.Cmd, *linuxNetns, error) {
	if len(argv) == 0 {
		return nil, nil, errors.New("selftest: empty command")
	}
	if ns == nil {
		return exec.CommandContext(ctx, argv[0], argv[1:]...), nil, nil
	}
	n, ok := ns.(*linuxNetns)
	if !ok {
		return nil, nil, errors.New("selftest: namespace from another System")
	}
	if s.ipPath() != "" {
		return n.ns.CommandContext(ctx, argv[0], argv[1:]...), nil, nil
	}
	return exec.CommandContext(ctx, argv[0], argv[1:]...), n, nil
}

func start(cmd *exec.Cmd, in *linuxNetns) error {
	if in == nil {
		return cmd.Start()
	}
	return in.ns.Start(cmd)
}

func (s *linuxSystem) Output(ctx context.Context, ns Netns, argv []string) ([]byte, error) {
	cmd, in, err := s.command(ctx, ns, argv)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = childEnv()
	cmd.WaitDelay = time.Second
	if err := start(cmd, in); err != nil {
		return nil, err
	}
	err = cmd.Wait()
	return out.Bytes(), err
}

func (s *linuxSystem) Start(ns Netns, argv []string, dir string, out io.Writer) (Process, error) {
	cmd, in, err := s.command(context.Background(), ns, argv)
	if err != nil {
		return nil, err
	}
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = childEnv()
	// Its own group, so that Stop reaches the block commands it runs too;
	// SIGKILL if this process dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Block commands it started may hold the output pipe after it exits.
	cmd.WaitDelay = 2 * time.Second
	if err := start(cmd, in); err != nil {
		return nil, err
	}
	p := &linuxProcess{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

type linuxProcess struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid once done is closed
}

func (p *linuxProcess) Done() <-chan struct{} { return p.done }

func (p *linuxProcess) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

func (p *linuxProcess) Stop(grace time.Duration) error {
	pid := p.cmd.Process.Pid
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			select {
			case <-p.done:
			case <-time.After(5 * time.Second):
				return fmt.Errorf("pid %d still runs after SIGKILL", pid)
			}
		}
	}
	// Whatever is left of its group: a block command still running. The
	// group's ID cannot be reused while a member lives.
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("killing process group %d: %w", pid, err)
	}
	return nil
}
