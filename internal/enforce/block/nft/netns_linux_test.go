package nft

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/portsentry-go/portsentry/internal/enforce/block"
	"github.com/portsentry-go/portsentry/internal/enforce/block/blocktest"
	"github.com/portsentry-go/portsentry/internal/netns"
	"github.com/portsentry-go/portsentry/internal/netns/netnstest"
)

// The real-kernel tests run every blocker in a network namespace of their
// own (nftables state is per namespace), so the host's ruleset is never
// touched, and send traffic only between namespaces they create and
// delete (netnstest).
var lab = netnstest.Lab{Prefix: "psnft-"}

func TestMain(m *testing.M) { os.Exit(lab.Main(m)) }

// kernelCheck says why nftables cannot be used here, or "".
var kernelCheck = sync.OnceValue(func() string {
	ns, err := netns.New(lab.Prefix, "probe")
	if err != nil {
		return err.Error()
	}
	defer ns.Delete()
	b, err := newIn(Options{}, ns.Fd())
	if errors.Is(err, block.ErrUnavailable) {
		return "needs nftables in the kernel (CONFIG_NF_TABLES, NF_TABLES_INET, NFT_FIB_INET, NFT_CT): " + err.Error()
	}
	if err != nil {
		return "nftables does not work here: " + err.Error()
	}
	b.Close()
	return ""
})

// needKernel skips (fails under CI) a test that needs root, network
// namespaces and nf_tables.
func needKernel(t testing.TB) {
	t.Helper()
	netnstest.Require(t)
	if why := kernelCheck(); why != "" {
		netnstest.SkipOrFail(t, why)
	}
}

// testNS is a network namespace made for one test and deleted after it.
type testNS struct{ *netns.NS }

// newNetns creates a namespace with its loopback up.
func newNetns(t testing.TB) *testNS {
	t.Helper()
	needKernel(t)
	return &testNS{lab.New(t, "n")}
}

// blocker opens a Blocker in the namespace, closed after the test.
func (n *testNS) blocker(t testing.TB, o Options) *Blocker {
	t.Helper()
	b, err := newIn(o, n.Fd())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// nft runs the nft tool inside the namespace (tests only: the product
// never runs it).
func (n *testNS) nft(t testing.TB, args ...string) string {
	t.Helper()
	netnstest.RequireTool(t, "nft", "nftables")
	return netnstest.Output(t, n.Command("nft", args...))
}

// do runs f on a thread that has entered the namespace, so the sockets f
// creates live there (a socket stays in the namespace it was created in,
// whichever thread uses it later).
func (n *testNS) do(t testing.TB, f func() error) {
	t.Helper()
	netnstest.Do(t, n.NS, f)
}

// suite is the blocker conformance suite, with updates false for the
// three-operation path that kernels which keep an element's timeout on
// re-add need.
func suite(updates bool) blocktest.Suite {
	return blocktest.Suite{
		Lab:      &lab,
		KeepsTTL: true,
		Open: func(tb testing.TB, ns *netns.NS) block.Blocker {
			tb.Helper()
			needKernel(tb)
			b := (&testNS{ns}).blocker(tb, Options{})
			if updates && !b.updates {
				tb.Skip("this kernel does not replace timeouts on re-add")
			}
			b.updates = updates
			return b
		},
	}
}

// TestKernelSuite runs the blocker conformance suite (blocktest) against
// the kernel's nftables, with both ways of replacing a ban's timeout.
func TestKernelSuite(t *testing.T) {
	for _, updates := range []bool{true, false} {
		t.Run(fmt.Sprintf("updates=%v", updates), func(t *testing.T) { blocktest.Run(t, suite(updates)) })
	}
}
