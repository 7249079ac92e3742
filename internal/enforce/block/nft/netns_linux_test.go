package nft

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/portsentry-go/portsentry/internal/enforce/block"
)

// The real-kernel tests run every blocker in a network namespace of their
// own (nftables state is per namespace), so the host's ruleset is never
// touched, and send traffic only between namespaces they create and
// delete.

// nsPrefix starts the name of every namespace these tests create; the
// test binary's pid follows, so TestMain can tell a crashed run's leftovers
// from a concurrent run's namespaces.
const nsPrefix = "psnft-"

var nsSeq atomic.Int64

func TestMain(m *testing.M) {
	sweepNetns()
	code := m.Run()
	if left := ourNetns(os.Getpid()); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "nft tests left network namespaces behind: %v\n", left)
		for _, ns := range left {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
		code = 1
	}
	os.Exit(code)
}

// listNetns returns the names `ip netns list` prints, or nil.
func listNetns() []string {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil
	}
	var names []string
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

// nsOwner returns the pid in a name made by newNetns, or 0.
func nsOwner(name string) int {
	rest, ok := strings.CutPrefix(name, nsPrefix)
	if !ok {
		return 0
	}
	pid, _, _ := strings.Cut(rest, "-")
	n, _ := strconv.Atoi(pid)
	return n
}

// ourNetns lists the namespaces that the test binary with this pid made.
func ourNetns(pid int) []string {
	var out []string
	for _, n := range listNetns() {
		if nsOwner(n) == pid {
			out = append(out, n)
		}
	}
	return out
}

// sweepNetns deletes namespaces left by an earlier run that died before
// its cleanups (its pid no longer exists); a concurrent run's are kept.
func sweepNetns() {
	if os.Geteuid() != 0 {
		return
	}
	for _, n := range listNetns() {
		pid := nsOwner(n)
		if pid == 0 || pid == os.Getpid() {
			continue
		}
		if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
			_ = exec.Command("ip", "netns", "del", n).Run()
		}
	}
}

// skipOrFail skips with the remedy, or fails when CI is set: there every
// test must really run.
func skipOrFail(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set but this test %s", why)
	}
	t.Skip(why)
}

var kernelCheck = sync.OnceValue(func() string {
	if os.Geteuid() != 0 {
		return "needs root (CAP_NET_ADMIN for nftables, CAP_SYS_ADMIN for network namespaces): run `sudo env PATH=$PATH go test ./internal/enforce/block/nft/`"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "needs ip(8): apt-get install iproute2"
	}
	name := fmt.Sprintf("%s%d-probe", nsPrefix, os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Sprintf("cannot create a network namespace (ip netns add: %v: %s)", err, bytes.TrimSpace(out))
	}
	defer exec.Command("ip", "netns", "del", name).Run()
	fd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "cannot open the namespace: " + err.Error()
	}
	defer unix.Close(fd)
	b, err := newIn(Options{}, fd)
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
	if why := kernelCheck(); why != "" {
		skipOrFail(t, why)
	}
}

// netns is a network namespace made for one test and deleted after it.
type netns struct {
	name string
	fd   int // open on /run/netns/name, for WithNetNSFd and setns
}

func run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newNetns creates a namespace with its loopback up.
func newNetns(t testing.TB) *netns {
	t.Helper()
	needKernel(t)
	n := &netns{name: fmt.Sprintf("%s%d-%d", nsPrefix, os.Getpid(), nsSeq.Add(1))}
	run(t, "ip", "netns", "add", n.name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", n.name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", n.name, err, out)
		}
	})
	fd, err := unix.Open("/run/netns/"+n.name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	n.fd = fd
	t.Cleanup(func() { unix.Close(fd) }) // runs before the delete above
	run(t, "ip", "-n", n.name, "link", "set", "lo", "up")
	return n
}

// blocker opens a Blocker in the namespace, closed after the test.
func (n *netns) blocker(t testing.TB, o Options) *Blocker {
	t.Helper()
	b, err := newIn(o, n.fd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// nft runs the nft tool inside the namespace (tests only: the product
// never runs it).
func (n *netns) nft(t testing.TB, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		skipOrFail(t, "needs nft(8) to compare with: apt-get install nftables")
	}
	return run(t, append([]string{"ip", "netns", "exec", n.name, "nft"}, args...)...)
}

// do runs f on a thread that has entered the namespace, so the sockets f
// creates live there (a socket stays in the namespace it was created in,
// whichever thread uses it later). The thread stays locked and is
// discarded when f returns: it is never reused in the wrong namespace.
func (n *netns) do(t testing.TB, f func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the runtime ends the thread
		if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", n.name, err)
			return
		}
		errc <- f()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
