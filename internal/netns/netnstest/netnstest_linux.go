//go:build linux

package netnstest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/netns"
)

// Lab makes the namespaces of one test package.
type Lab struct {
	// Prefix starts the name of every namespace (see netns.ID), e.g.
	// "psnft-": one per package, so that sweeping leftovers and checking
	// for them concern this package's namespaces only.
	Prefix string

	sweep sync.Once
}

// New creates a namespace for the test (loopback up), deleted with the
// processes left in it when the test ends. It skips the test (fails it
// under CI) when namespaces cannot be made here. The first call deletes
// the namespaces of earlier runs that died before their clean-up.
func (l *Lab) New(tb testing.TB, role string) *netns.NS {
	tb.Helper()
	Require(tb)
	l.sweep.Do(func() { _, _ = netns.Sweep(l.Prefix) })
	n, err := netns.New(l.Prefix, role)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := n.Delete(); err != nil {
			tb.Errorf("deleting %s: %v", n, err)
		}
	})
	return n
}

// Main runs the tests (call it from TestMain: os.Exit(lab.Main(m))), then
// deletes the namespaces of this run that outlived their test, and makes
// the run fail if there were any.
func (l *Lab) Main(m *testing.M) int {
	code := m.Run()
	left, _ := netns.List(netns.Own(l.Prefix))
	if len(left) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: network namespaces left behind: %s\n", strings.Join(left, " "))
		for _, name := range left {
			_ = netns.Delete(name)
		}
		code = 1
	}
	return code
}

// Require skips the test (fails it under CI) unless network namespaces
// can be made here: root, iproute2's ip (tests run programs inside with
// `ip netns exec`) and a kernel that allows it.
func Require(tb testing.TB) {
	tb.Helper()
	if why := prereq(); why != "" {
		SkipOrFail(tb, why)
	}
}

var prereq = sync.OnceValue(func() string {
	if os.Geteuid() != 0 {
		return "needs root to create network namespaces: run `sudo env PATH=$PATH go test " + pkgDir() + "`"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "needs iproute2's ip: apt-get install iproute2"
	}
	const probe = "psprobe-"
	_, _ = netns.Sweep(probe)
	n, err := netns.New(probe, "x")
	if err != nil {
		return fmt.Sprintf("cannot create a network namespace (%v): needs CAP_SYS_ADMIN and CAP_NET_ADMIN", err)
	}
	_ = n.Delete()
	return ""
})

// pkgDir is the package under test as go test names it ("./test/e2e/"),
// from the directory go test runs it in; "." when the module's root cannot
// be found.
func pkgDir() string {
	wd, err := os.Getwd()
	if err != nil {
		return "."
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			rel, err := filepath.Rel(dir, wd)
			if err != nil || rel == "." {
				return "."
			}
			return "./" + filepath.ToSlash(rel) + "/"
		}
		if filepath.Dir(dir) == dir {
			return "."
		}
	}
}

// SkipOrFail skips the test saying why, or fails it when CI is set: there
// every test must really run.
func SkipOrFail(tb testing.TB, why string) {
	tb.Helper()
	if os.Getenv("CI") != "" {
		tb.Fatalf("CI is set but this test %s", why)
	}
	tb.Skip(why)
}

// RequireTool returns the path of a program the test runs (searched in
// PATH, then /usr/sbin and /sbin), or skips the test (fails it under CI)
// naming the Debian package that has it.
func RequireTool(tb testing.TB, name, debPkg string) string {
	tb.Helper()
	for _, p := range []string{name, "/usr/sbin/" + name, "/sbin/" + name} {
		if full, err := exec.LookPath(p); err == nil {
			return full
		}
	}
	SkipOrFail(tb, fmt.Sprintf("needs %s: apt-get install %s", name, debPkg))
	return ""
}

// Pair is netns.Pair, failing the test on error.
func Pair(tb testing.TB, a, b netns.Iface) {
	tb.Helper()
	if err := netns.Pair(a, b); err != nil {
		tb.Fatal(err)
	}
}

// Star is netns.Star, failing the test on error.
func Star(tb testing.TB, hub *netns.NS, bridge string, ifaces ...netns.Iface) {
	tb.Helper()
	if err := netns.Star(hub, bridge, ifaces...); err != nil {
		tb.Fatal(err)
	}
}

// Do runs fn on a thread inside n (netns.NS.Do) and fails the test if it
// returns an error.
func Do(tb testing.TB, n *netns.NS, fn func() error) {
	tb.Helper()
	if err := n.Do(fn); err != nil {
		tb.Fatal(err)
	}
}

// Output runs cmd (typically made by netns.NS.Command) and returns its
// standard output and error together; it fails the test, quoting them,
// when cmd fails.
func Output(tb testing.TB, cmd *exec.Cmd) string {
	tb.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		tb.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out.Bytes())
	}
	return out.String()
}

// Listen opens a TCP listener on both families in n that accepts and
// closes connections until the test ends, and returns its port.
func Listen(tb testing.TB, n *netns.NS) int {
	tb.Helper()
	var ln net.Listener
	Do(tb, n, func() (err error) {
		ln, err = net.Listen("tcp", ":0")
		return err
	})
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

// Dial connects from src in n to dst within timeout, closes the
// connection, and reports the error.
func Dial(tb testing.TB, n *netns.NS, src netip.Addr, dst netip.AddrPort, timeout time.Duration) error {
	tb.Helper()
	var err error
	Do(tb, n, func() error {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Timeout: timeout}
		var c net.Conn
		c, err = d.DialContext(context.Background(), "tcp", dst.String())
		if err == nil {
			c.Close()
		}
		return nil
	})
	return err
}
