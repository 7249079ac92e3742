package iptables

import (
	"net/netip"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/netnstest"
)

// The real-kernel tests run only in namespaces they create and delete
// (internal/netnstest): the host's rules, routes and links are never touched.
var testNet = netnstest.Net{
	Prefix: "psipt-",
	Pkg:    "./internal/enforce/block/iptables/",
	HostV4: hostV4, HostV6: hostV6, PeerV4: peerV4, PeerV6: peerV6,
}

var (
	hostV4 = netip.MustParseAddr("10.77.0.1")
	hostV6 = netip.MustParseAddr("fd77::1")
	// The first of each pair gets banned, the second must keep access.
	peerV4 = []netip.Addr{netip.MustParseAddr("10.77.0.2"), netip.MustParseAddr("10.77.0.3")}
	peerV6 = []netip.Addr{netip.MustParseAddr("fd77::2"), netip.MustParseAddr("fd77::3")}
)

// lab is two namespaces joined by a veth pair: host (the one defended)
// holds hostV4/hostV6, and peer holds two sources of each family.
type lab struct {
	host, peer string
}

func requireNetns(tb testing.TB)              { testNet.Require(tb) }
func newNS(tb testing.TB, role string) string { return testNet.NewNS(tb, role) }
func listen(tb testing.TB, ns string) int     { return netnstest.Listen(tb, ns) }
func newLab(tb testing.TB) lab                { l := testNet.NewLab(tb); return lab{l.Host, l.Peer} }
func dial(tb testing.TB, ns string, src netip.Addr, dst netip.AddrPort, timeout time.Duration) error {
	return netnstest.Dial(tb, ns, src, dst, timeout)
}
