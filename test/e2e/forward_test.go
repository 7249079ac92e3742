package e2e

import (
	"fmt"
	"net/netip"
	"regexp"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/netns"
	"github.com/portsentry-go/portsentry/internal/netns/netnstest"
)

// A container behind T, as Docker makes one: a bridge in T, the container
// namespace on it, its service published on one of T's ports by DNAT.
var (
	containerBridgeV4 = netip.MustParseAddr("10.232.0.1")
	containerBridgeV6 = netip.MustParseAddr("fd00:232::1")
	containerV4       = netip.MustParseAddr("10.232.0.2")
	containerV6       = netip.MustParseAddr("fd00:232::2")
)

const (
	// publishedPort is where T publishes the container's service: a port
	// advanced mode watches (below ADVANCED_PORTS_TCP, no local socket),
	// as every port is under the shipped configuration.
	publishedPort = 800
	containerPort = 80
	containerSays = "container"
	// okDial bounds a handshake that must succeed.
	okDial = 5 * time.Second
)

// publishContainer adds the container to the lab, turns forwarding on in
// T (after the daemon started, as Docker's start does on a host where
// portsentry came first) and publishes the container's TCP service on
// T's port publishedPort, IPv4 and IPv6, as Docker does: DNAT in
// prerouting and a forward filter of policy drop that accepts the
// published service. With proxy, docker-proxy listens on the published
// port too, as by default (the userland proxy, for this host's own
// connections; DNAT takes every other client's packets before they could
// reach it). Without it ("userland-proxy": false, as Podman's netavark and
// Kubernetes' NodePorts do it too) no socket owns the port: only the
// kernel's record of the ports it DNATs tells the daemon that its clients
// are not scanners.
func (s *stLab) publishContainer(t *testing.T, proxy bool) host {
	t.Helper()
	c := host{ns: namespaces.New(t, "c"), v4: containerV4, v6: containerV6}
	netnstest.Star(t, s.T.ns, "psbr0", netns.Iface{NS: c.ns, Name: "eth0", Addrs: netns.OnLink(c.v4, c.v6)})
	for _, err := range []error{
		netns.Address(netns.Iface{NS: s.T.ns, Name: "psbr0", Addrs: netns.OnLink(containerBridgeV4, containerBridgeV6)}),
		c.ns.Route(netip.MustParsePrefix("0.0.0.0/0"), containerBridgeV4),
		c.ns.Route(netip.MustParsePrefix("::/0"), containerBridgeV6),
		s.T.ns.Forward(true),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	startListener(t, c, "tcp", fmt.Sprintf(":%d", containerPort), containerSays)
	if proxy {
		startListener(t, s.T, "tcp", fmt.Sprintf(":%d", publishedPort), "docker-proxy")
	}
	s.nftExec(t, fmt.Sprintf(`table inet dockerlike {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		fib daddr type local meta nfproto ipv4 tcp dport %[1]d dnat ip to %[2]s:%[3]d
		fib daddr type local meta nfproto ipv6 tcp dport %[1]d dnat ip6 to [%[4]s]:%[3]d
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		oifname "psbr0" ip daddr %[2]s tcp dport %[3]d accept
		oifname "psbr0" ip6 daddr %[4]s tcp dport %[3]d accept
		iifname "psbr0" accept
	}
}
`, publishedPort, c.v4, containerPort, c.v6), "-f", "-")
	return c
}

// reachesContainer makes one request to the published service from h,
// waiting up to dial for the handshake: a client that must get through
// is given seconds (the first IPv6 packets through a host that has just
// become a router can wait for neighbour discovery), one that must not
// under a second (the SYN is dropped: no answer ever comes).
func reachesContainer(t *testing.T, h host, to netip.Addr, dial time.Duration) bool {
	t.Helper()
	r := mustStProbe(t, h, "tcp", to, publishedPort, time.Second, "-dial", dial.String())
	if r.Connected && r.Data != containerSays {
		t.Fatalf("published service [%s]:%d answered %+v, want %q", to, publishedPort, r, containerSays)
	}
	return r.Connected
}

// TestKernelForwardContainer: the daemon with its kernel trap (advanced
// mode, nftables) on a host that publishes a container's service by DNAT
// on a watched port, with docker-proxy listening there and without it.
// Clients of the container are not scanners: F uses it, IPv4 and IPv6,
// and nobody is banned or alerted on, though without docker-proxy no
// socket owns the port that the packet capture sees F's packets go to. S,
// banned by the trap for probing a free port of T, then cannot reach the
// container either, while F still can. `portsentry status` says the bans
// cover the forward path and that T forwards.
func TestKernelForwardContainer(t *testing.T) {
	t.Parallel()
	for _, proxy := range []bool{true, false} {
		name := "docker-proxy"
		if !proxy {
			name = "no-proxy"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testForwardContainer(t, proxy)
		})
	}
}

func testForwardContainer(t *testing.T, proxy bool) {
	k := newKLab(t, nil)
	k.publishContainer(t, proxy)

	for _, v6 := range []bool{false, true} {
		if !reachesContainer(t, k.F, k.T.addr(v6), okDial) {
			t.Fatalf("F cannot reach the container published on [%s]:%d", k.T.addr(v6), publishedPort)
		}
	}

	for _, v6 := range []bool{false, true} {
		src := k.S.addr(v6)
		trapOne(t, k.S, k.T.addr(v6), 1000)
		k.d.waitFor(t, nativeLine(src, "permanently"), logWait)
		if reachesContainer(t, k.S, k.T.addr(v6), 700*time.Millisecond) {
			t.Errorf("the banned scanner %s still reaches the container published on [%s]:%d", src, k.T.addr(v6), publishedPort)
		}
		if !reachesContainer(t, k.F, k.T.addr(v6), okDial) {
			t.Errorf("F lost the container after S was banned")
		}
	}
	// The daemon decided on F's packets before S's: by now any ban of F
	// would be in the kernel and in the log.
	k.assertBanned(t, k.S.v4, k.S.v6)
	if ls := k.d.lines(fmt.Sprintf("port: %d", publishedPort)); len(ls) > 0 {
		t.Errorf("the container's clients were taken for scanners: %q", ls)
	}

	out := k.mustCLI(t, "status")
	if re := regexp.MustCompile(`(?m)^Bans cover:\s+input and forward: .*\(this host forwards IPv4 and IPv6\); [1-9]\d* packets from banned sources dropped on the forward path$`); !re.MatchString(out) {
		t.Errorf("status does not match %s:\n%s", re, out)
	}
}
