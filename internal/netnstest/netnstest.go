//go:build linux

package netnstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Net describes one package's test network.
type Net struct {
	Prefix string // namespace names start with it
	Pkg    string // the package path, for the remedy when not root
	// HostV4/HostV6 are the defended namespace's addresses; PeerV4/PeerV6
	// the peer's sources (the first of each gets banned, the second must
	// keep access). IPv4 is on a /24, IPv6 on a /64.
	HostV4, HostV6 netip.Addr
	PeerV4, PeerV6 []netip.Addr

	leftovers sync.Once
}

// Require skips (fails under CI, where every test must really run) when
// namespaces cannot be made here.
func (n *Net) Require(tb testing.TB) {
	tb.Helper()
	why := ""
	switch {
	case os.Geteuid() != 0:
		why = "needs root to create network namespaces: run `sudo env PATH=$PATH go test " + n.Pkg + "`"
	default:
		if _, err := exec.LookPath("ip"); err != nil {
			why = "needs iproute2's ip: apt-get install iproute2"
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") != "" {
		tb.Fatalf("CI is set but this test %s", why)
	}
	tb.Skip(why)
}

// NewNS creates a network namespace with its loopback up, deleted when the
// test ends.
func (n *Net) NewNS(tb testing.TB, role string) string {
	tb.Helper()
	n.leftovers.Do(n.removeLeftovers)
	rnd := make([]byte, 3)
	rand.Read(rnd)
	name := fmt.Sprintf("%s%d-%s-%s", n.Prefix, os.Getpid(), hex.EncodeToString(rnd), role)
	MustIP(tb, "netns", "add", name)
	tb.Cleanup(func() { Delete(name) })
	MustIP(tb, "-n", name, "link", "set", "lo", "up")
	return name
}

// MustIP runs ip with args and fails the test on error.
func MustIP(tb testing.TB, args ...string) {
	tb.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		tb.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
}

// removeLeftovers deletes namespaces of earlier runs whose process is gone.
func (n *Net) removeLeftovers() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], n.Prefix) {
			continue
		}
		pid, _, _ := strings.Cut(strings.TrimPrefix(f[0], n.Prefix), "-")
		if p, err := strconv.Atoi(pid); err == nil && p != os.Getpid() && syscall.Kill(p, 0) == nil {
			continue
		}
		Delete(f[0])
	}
}

// Delete ends the processes left in a namespace, by PID, and deletes it
// (and with it its veth ends).
func Delete(name string) {
	if out, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
		for _, s := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(s); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	_ = exec.Command("ip", "netns", "del", name).Run()
}

// In runs fn on an OS thread moved into namespace ns. Sockets fn opens
// stay in ns after it returns. It runs in a goroutine of its own so that,
// should moving the thread back fail, the thread (still locked) ends with
// that goroutine instead of carrying the test into the wrong namespace.
func In(tb testing.TB, ns string, fn func()) {
	tb.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		tb.Fatal(err)
	}
}

// Lab is two namespaces joined by a veth pair: Host (the one defended)
// holds Net.HostV4/HostV6, and Peer holds Net.PeerV4/PeerV6.
type Lab struct {
	Host, Peer string
}

// NewLab builds a Lab, removed when the test ends.
func (n *Net) NewLab(tb testing.TB) Lab {
	tb.Helper()
	l := Lab{Host: n.NewNS(tb, "h"), Peer: n.NewNS(tb, "p")}
	// Made inside host and its peer end moved straight to peer: no link
	// ever exists in the namespace the test was started in.
	MustIP(tb, "-n", l.Host, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", l.Peer)
	addrs := map[string][]netip.Addr{l.Host: {n.HostV4, n.HostV6}, l.Peer: append(append([]netip.Addr(nil), n.PeerV4...), n.PeerV6...)}
	for ns, list := range addrs {
		for _, a := range list {
			if a.Is4() {
				MustIP(tb, "-n", ns, "addr", "add", a.String()+"/24", "dev", "eth0")
			} else {
				// nodad: usable at once, not after duplicate detection.
				MustIP(tb, "-n", ns, "addr", "add", a.String()+"/64", "dev", "eth0", "nodad")
			}
		}
		MustIP(tb, "-n", ns, "link", "set", "eth0", "up")
	}
	return l
}

// Listen opens a TCP listener on both families in ns that accepts and
// closes connections until the test ends.
func Listen(tb testing.TB, ns string) int {
	tb.Helper()
	var ln net.Listener
	var err error
	In(tb, ns, func() { ln, err = net.Listen("tcp", ":0") })
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// Dial connects from src in ns to dst, and reports the error.
func Dial(tb testing.TB, ns string, src netip.Addr, dst netip.AddrPort, timeout time.Duration) error {
	tb.Helper()
	var err error
	In(tb, ns, func() {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Timeout: timeout}
		var c net.Conn
		c, err = d.DialContext(context.Background(), "tcp", dst.String())
		if err == nil {
			c.Close()
		}
	})
	return err
}
