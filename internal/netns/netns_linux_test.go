//go:build linux

package netns_test

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/netns"
	"github.com/portsentry-go/portsentry/internal/netns/netnstest"
)

// The tests send traffic only between namespaces they create.
var lab = netnstest.Lab{Prefix: "psnetns-"}

func TestMain(m *testing.M) { os.Exit(lab.Main(m)) }

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// TestPair joins two namespaces, checks their links and addresses as
// iproute2 shows them, and connects over both families.
func TestPair(t *testing.T) {
	a, b := lab.New(t, "a"), lab.New(t, "b")
	if !strings.HasPrefix(a.Name(), netns.Own(lab.Prefix)) || !strings.HasSuffix(a.Name(), "-a") {
		t.Errorf("name %q, want %s…-a", a.Name(), netns.Own(lab.Prefix))
	}
	netnstest.Pair(t,
		netns.Iface{NS: a, Name: "eth0", Addrs: netns.OnLink(addr("10.9.0.1"), addr("fd09::1"))},
		netns.Iface{NS: b, Name: "veth-b", Addrs: netns.OnLink(addr("10.9.0.2"), addr("fd09::2"))})
	out := netnstest.Output(t, a.Command("ip", "-o", "addr", "show", "dev", "eth0"))
	for _, want := range []string{"inet 10.9.0.1/24 brd 10.9.0.255", "inet6 fd09::1/64"} {
		if !strings.Contains(out, want) {
			t.Errorf("ip addr in %s lacks %q:\n%s", a, want, out)
		}
	}
	if out := netnstest.Output(t, b.Command("ip", "-o", "link", "show", "up")); !strings.Contains(out, "veth-b@") || !strings.Contains(out, " lo:") {
		t.Errorf("links up in %s:\n%s", b, out)
	}
	if r, err := a.DefaultRoutes(); err != nil || len(r) != 0 {
		t.Errorf("DefaultRoutes = %q, %v; want none", r, err)
	}
	if mac, err := a.MAC("eth0"); err != nil || len(mac) != 6 {
		t.Errorf("MAC = %v, %v", mac, err)
	}
	port := netnstest.Listen(t, a)
	for _, p := range [][2]string{{"10.9.0.2", "10.9.0.1"}, {"fd09::2", "fd09::1"}} {
		if err := netnstest.Dial(t, b, addr(p[0]), netip.AddrPortFrom(addr(p[1]), uint16(port)), 5*time.Second); err != nil {
			t.Errorf("%s → %s: %v", p[0], p[1], err)
		}
	}
}

// TestStar joins three namespaces on a bridge in a fourth.
func TestStar(t *testing.T) {
	hub := lab.New(t, "h")
	var ifs []netns.Iface
	for i := range 3 {
		ifs = append(ifs, netns.Iface{NS: lab.New(t, strconv.Itoa(i)), Name: "eth0",
			Addrs: netns.OnLink(netip.AddrFrom4([4]byte{10, 9, 1, byte(i + 1)}), netip.AddrFrom16([16]byte{0xfd, 9, 15: byte(i + 1)}))})
	}
	netnstest.Star(t, hub, "br0", ifs...)
	if out := netnstest.Output(t, hub.Command("ip", "-o", "link", "show", "master", "br0")); strings.Count(out, "br0-p") != 3 {
		t.Errorf("ports of br0:\n%s", out)
	}
	port := netnstest.Listen(t, ifs[0].NS)
	for _, from := range ifs[1:] {
		for _, fam := range []int{0, 1} {
			src, dst := from.Addrs[fam].Addr(), ifs[0].Addrs[fam].Addr()
			if err := netnstest.Dial(t, from.NS, src, netip.AddrPortFrom(dst, uint16(port)), 5*time.Second); err != nil {
				t.Errorf("%s → %s: %v", src, dst, err)
			}
		}
	}
}

// TestDoAndCommand: Go code and programs run inside the namespace, and a
// plain command started with Start too; nothing leaks into this one.
func TestDoAndCommand(t *testing.T) {
	n := lab.New(t, "d")
	var ifaces []net.Interface
	netnstest.Do(t, n, func() (err error) {
		ifaces, err = net.Interfaces()
		return err
	})
	if len(ifaces) != 1 || ifaces[0].Name != "lo" {
		t.Errorf("interfaces inside: %v, want lo only", ifaces)
	}
	if out := netnstest.Output(t, n.Command("ip", "-o", "link")); strings.Count(out, "\n") != 1 {
		t.Errorf("ip link inside:\n%s", out)
	}
	cmd := exec.Command("sleep", "30")
	if err := n.Start(cmd); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	pids, err := netns.Pids(n.Name())
	if err != nil || !slices.Contains(pids, cmd.Process.Pid) || slices.Contains(pids, os.Getpid()) {
		t.Errorf("Pids = %v, %v; want the sleep (%d) and not this process", pids, err, cmd.Process.Pid)
	}
	// Delete ends it.
	if err := n.Delete(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Error("the process inside survived Delete")
	}
	if err := n.Delete(); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if _, err := os.Stat(netns.Dir + "/" + n.Name()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still exists: %v", n, err)
	}
}

// TestSweep: the namespace of a dead creator goes, a live one's stays.
func TestSweep(t *testing.T) {
	netnstest.Require(t)
	const prefix = "psnetnssweep-"
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	var made []string
	for _, pid := range []int{dead.Process.Pid, os.Getpid(), 1} {
		n, err := netns.Create(prefix + strconv.Itoa(pid) + "-abcdef-x")
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, n.Name())
		t.Cleanup(func() { n.Delete() })
	}
	removed, err := netns.Sweep(prefix)
	if err != nil || !slices.Equal(removed, made[:1]) {
		t.Errorf("Sweep = %q, %v; want %q", removed, err, made[:1])
	}
	left, _ := netns.List(prefix)
	slices.Sort(left)
	want := slices.Sorted(slices.Values(made[1:]))
	if !slices.Equal(left, want) {
		t.Errorf("left %q, want %q", left, want)
	}
}
