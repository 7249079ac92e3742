package enforce

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/control"
	"github.com/portsentry-go/portsentry/internal/enforce/respond"
)

func denyRig(t *testing.T, banTime time.Duration) (*rig, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hosts.deny")
	if err := os.WriteFile(path, []byte("# admin\nsshd: 192.0.2.9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, rigOptions{traps: true, banTime: banTime, settings: Settings{
		Plan:          respond.Plan{KillHostsDeny: "ALL: $TARGET$ : DENY"},
		HostsDenyFile: path,
	}})
	return r, path
}

func denyLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// TestHostsDenyBurst: a burst of bans writes every line, and lifting them
// all at once (unblock of a prefix, as a mass expiry) takes every line
// out, off the event loop, leaving the administrator's lines as they were.
func TestHostsDenyBurst(t *testing.T) {
	r, path := denyRig(t, time.Hour)
	const n = 40
	var want []string
	for i := range n {
		a := netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + i)})
		r.probe(a, 22)
		want = append(want, fmt.Sprintf("ALL: %s : DENY", a))
	}
	r.waitCount("has been blocked via nftables", n)
	r.settle()
	got := denyLines(t, path)
	if !slices.Equal(got[:2], []string{"# admin", "sshd: 192.0.2.9"}) || !sameSet(got[2:], want) {
		t.Fatalf("hosts.deny after %d bans:\n%s", n, strings.Join(got, "\n"))
	}

	c := r.e.Control(func() control.Status { return control.Status{} })
	if lifted, err := c.Unblock(netip.MustParsePrefix("198.51.100.0/24")); err != nil || len(lifted) != n {
		t.Fatalf("Unblock = %d bans, %v; want %d", len(lifted), err, n)
	}
	r.e.denyFile(path).Wait()
	if got := denyLines(t, path); !slices.Equal(got, []string{"# admin", "sshd: 192.0.2.9"}) {
		t.Errorf("hosts.deny after the unblock:\n%s", strings.Join(got, "\n"))
	}
}

// TestHostsDenyExpiryThenBan: an ended ban's line is removed and the
// scanner's new ban writes it again, in that order, though both go
// through the writer's queue.
func TestHostsDenyExpiryThenBan(t *testing.T) {
	r, path := denyRig(t, 300*time.Millisecond)
	r.probe(scanner, 22)
	r.waitLog("Host 198.51.100.7 has been blocked via nftables")
	r.settle()
	time.Sleep(400 * time.Millisecond)
	r.probe(scanner, 23)
	r.waitLog("attackalert: Host 198.51.100.7 unblocked: ban expired")
	r.waitCount("Host 198.51.100.7 has been blocked via nftables", 2)
	r.settle()
	r.e.denyFile(path).Wait()
	want := []string{"# admin", "sshd: 192.0.2.9", "ALL: 198.51.100.7 : DENY"}
	if got := denyLines(t, path); !slices.Equal(got, want) {
		t.Errorf("hosts.deny after expiry and a new ban:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
