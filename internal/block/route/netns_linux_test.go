package route

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

// The real-kernel tests work only inside network namespaces they create
// and delete: the host's rules, routes and links are never touched. Each
// namespace is named nsPrefix + PID + "-" + random + "-" + role, so that
// leftovers of a crashed run can be told from a live concurrent run's.
const nsPrefix = "psrt-"

// requireNetns skips (fails under CI, where every test must really run)
// when namespaces cannot be made here.
func requireNetns(tb testing.TB) {
	tb.Helper()
	why := ""
	switch {
	case os.Geteuid() != 0:
		why = "needs root to create network namespaces: run `sudo env PATH=$PATH go test ./internal/block/route/`"
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

var leftovers sync.Once

// newNS creates a network namespace with its loopback up, deleted when the
// test ends.
func newNS(tb testing.TB, role string) string {
	tb.Helper()
	leftovers.Do(removeLeftovers)
	rnd := make([]byte, 3)
	rand.Read(rnd)
	name := fmt.Sprintf("%s%d-%s-%s", nsPrefix, os.Getpid(), hex.EncodeToString(rnd), role)
	mustIP(tb, "netns", "add", name)
	tb.Cleanup(func() { deleteNS(name) })
	mustIP(tb, "-n", name, "link", "set", "lo", "up")
	return name
}

func mustIP(tb testing.TB, args ...string) {
	tb.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		tb.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
}

// removeLeftovers deletes namespaces of earlier runs whose process is gone.
func removeLeftovers() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], nsPrefix) {
			continue
		}
		pid, _, _ := strings.Cut(strings.TrimPrefix(f[0], nsPrefix), "-")
		if n, err := strconv.Atoi(pid); err == nil && n != os.Getpid() && syscall.Kill(n, 0) == nil {
			continue
		}
		deleteNS(f[0])
	}
}

// deleteNS ends the processes left in a namespace, by PID, and deletes it
// (and with it its veth ends).
func deleteNS(name string) {
	if out, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
		for _, s := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(s); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	_ = exec.Command("ip", "netns", "del", name).Run()
}

// inNS runs fn on an OS thread moved into namespace ns. Sockets fn opens
// stay in ns after it returns. It runs in a goroutine of its own so that,
// should moving the thread back fail, the thread (still locked) ends with
// that goroutine instead of carrying the test into the wrong namespace.
func inNS(tb testing.TB, ns string, fn func()) {
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

// lab is two namespaces joined by a veth pair: host (the one defended)
// holds hostV4/hostV6, and peer holds two sources of each family.
type lab struct {
	host, peer string
}

var (
	hostV4 = netip.MustParseAddr("10.78.0.1")
	hostV6 = netip.MustParseAddr("fd78::1")
	// The first of each pair gets banned, the second must keep access.
	peerV4 = []netip.Addr{netip.MustParseAddr("10.78.0.2"), netip.MustParseAddr("10.78.0.3")}
	peerV6 = []netip.Addr{netip.MustParseAddr("fd78::2"), netip.MustParseAddr("fd78::3")}
)

func newLab(tb testing.TB) lab {
	tb.Helper()
	l := lab{host: newNS(tb, "h"), peer: newNS(tb, "p")}
	// Made inside host and its peer end moved straight to peer: no link
	// ever exists in the namespace the test was started in.
	mustIP(tb, "-n", l.host, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", l.peer)
	addrs := map[string][]netip.Addr{l.host: {hostV4, hostV6}, l.peer: append(append([]netip.Addr(nil), peerV4...), peerV6...)}
	for ns, list := range addrs {
		for _, a := range list {
			if a.Is4() {
				mustIP(tb, "-n", ns, "addr", "add", a.String()+"/24", "dev", "eth0")
			} else {
				// nodad: usable at once, not after duplicate detection.
				mustIP(tb, "-n", ns, "addr", "add", a.String()+"/64", "dev", "eth0", "nodad")
			}
		}
		mustIP(tb, "-n", ns, "link", "set", "eth0", "up")
	}
	return l
}

// listen opens a TCP listener on both families in ns that accepts and
// closes connections until the test ends.
func listen(tb testing.TB, ns string) int {
	tb.Helper()
	var ln net.Listener
	var err error
	inNS(tb, ns, func() { ln, err = net.Listen("tcp", ":0") })
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

// dial connects from src in ns to dst, and reports the error.
func dial(tb testing.TB, ns string, src netip.Addr, dst netip.AddrPort, timeout time.Duration) error {
	tb.Helper()
	var err error
	inNS(tb, ns, func() {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Timeout: timeout}
		var c net.Conn
		c, err = d.DialContext(context.Background(), "tcp", dst.String())
		if err == nil {
			c.Close()
		}
	})
	return err
}
