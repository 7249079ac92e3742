package enforce

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/control"
	"github.com/portsentry-go/portsentry/internal/enforce/block/command"
	"github.com/portsentry-go/portsentry/internal/enforce/respond"
)

// waitCount waits until n log lines contain want.
func (r *rig) waitCount(want string, n int) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(r.log.String(), want) < n {
		if time.Now().After(deadline) {
			r.t.Fatalf("%d log lines with %q, want %d; log:\n%s", strings.Count(r.log.String(), want), want, n, r.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestUnkillBounded: a stream of unblocks (or expiries), each its own
// batch, runs its UNKILL_ROUTE commands through the background queue:
// never more than command.Workers shells at once, however many bans end.
func TestUnkillBounded(t *testing.T) {
	dir := t.TempDir()
	// Each command marks itself running, notes how many are, and lingers.
	unkill := fmt.Sprintf("mkdir %[1]s/run-$TARGET$ && set -- %[1]s/run-* && echo $# >> %[1]s/seen; sleep 0.2; rmdir %[1]s/run-$TARGET$", dir)
	r := newRig(t, rigOptions{command: true, settings: Settings{
		Plan:           respond.Plan{KillRoute: "true", UnkillRoute: unkill},
		CommandTimeout: 10 * time.Second,
	}})
	c := r.e.Control(func() control.Status { return control.Status{} })
	const n = 12
	for i := range n {
		r.e.Jail().Record(netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + i)}), "test", 22, "TCP")
	}
	for i := range n {
		a := netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + i)})
		if lifted, err := c.Unblock(netip.PrefixFrom(a, 32)); err != nil || len(lifted) != 1 {
			t.Fatalf("Unblock(%v) = %v, %v", a, lifted, err)
		}
	}
	r.waitCount("attackalert: ran UNKILL_ROUTE command", n)
	b, err := os.ReadFile(dir + "/seen")
	if err != nil {
		t.Fatal(err)
	}
	var seen []int
	for _, f := range strings.Fields(string(b)) {
		k, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("seen: %q", b)
		}
		seen = append(seen, k)
	}
	if len(seen) != n || slices.Max(seen) > command.Workers {
		t.Errorf("UNKILL_ROUTE commands saw %v running at once, want %d runs, none above %d", seen, n, command.Workers)
	}
}
