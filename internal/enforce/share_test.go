package enforce

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/enforce/bans"
)

// recordSharer keeps what the enforcer shares.
type recordSharer struct {
	mu    sync.Mutex
	bans  []bans.Ban
	lifts []netip.Prefix
}

func (s *recordSharer) Share(b bans.Ban) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bans = append(s.bans, b)
}

func (s *recordSharer) ShareLift(p netip.Prefix) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lifts = append(s.lifts, p)
}

func (s *recordSharer) shared() ([]bans.Ban, []netip.Prefix) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]bans.Ban(nil), s.bans...), append([]netip.Prefix(nil), s.lifts...)
}

// Only this host's own bans are shared, and the operator's unblocks; an
// imported ban (ImportAsync streams them) is not; Revoke lifts the bans
// of the origins named, never a local one.
func TestShareAndRevoke(t *testing.T) {
	r := newRig(t, rigOptions{traps: true})
	sh := &recordSharer{}
	r.e.SetSharer(sh)
	other := netip.MustParseAddr("198.51.100.8")

	done := make(chan error, 1)
	if !r.e.ImportAsync(scanner, 10*time.Minute, "TCP SYN/Normal scan", "fleet:web1", func(err error) { done <- err }) {
		t.Fatal("ImportAsync refused")
	}
	if err := <-done; err != nil {
		t.Fatalf("ImportAsync: %v", err)
	}
	if ttl, ok := r.fake.ttl(scanner); !ok || ttl > 10*time.Minute || ttl < 9*time.Minute {
		t.Fatalf("blocker holds %v (%v), want 10 minutes", ttl, ok)
	}
	r.ImportAsyncRefused(t, ignored)

	r.probe(other, 143)
	r.waitLog("attackalert: Host 198.51.100.8 has been blocked via nftables")
	r.settle()
	r.do(func() {
		if got := r.e.Revoke(netip.MustParsePrefix("198.51.100.0/24"), "fleet:", "fleet:web2"); len(got) != 1 || got[0].Addr != scanner {
			t.Errorf("Revoke lifted %+v, want the fleet ban of %v only", got, scanner)
		}
	})
	r.waitLog("attackalert: Host 198.51.100.7 unblocked: lifted by fleet:web2")
	if _, ok := r.fake.ttl(scanner); ok {
		t.Error("the revoked ban is still in the blocker")
	}
	if _, ok := r.fake.ttl(other); !ok {
		t.Error("Revoke lifted a local ban")
	}
	shared, _ := sh.shared()
	if len(shared) != 1 || shared[0].Addr != other || shared[0].Origin != "" {
		t.Errorf("shared %+v, want the local ban of %v only", shared, other)
	}
	if _, err := r.e.Control(nil).Unblock(netip.PrefixFrom(other, 32)); err != nil {
		t.Fatal(err)
	}
	if _, lifts := sh.shared(); len(lifts) != 1 || lifts[0] != netip.PrefixFrom(other, 32) {
		t.Errorf("lifts shared: %v", lifts)
	}
}

// ImportAsyncRefused checks that local policy refuses a, through
// ImportAsync as through Import.
func (r *rig) ImportAsyncRefused(t *testing.T, a netip.Addr) {
	t.Helper()
	done := make(chan error, 1)
	r.e.ImportAsync(a, time.Hour, "x", "fleet:web1", func(err error) { done <- err })
	if err := <-done; err == nil {
		t.Errorf("ImportAsync(%v) applied", a)
	}
	if _, ok := r.fake.ttl(a); ok {
		t.Errorf("%v was banned", a)
	}
}
