package enforce

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/enforce/block"
	"github.com/portsentry-go/portsentry/internal/portset"
)

// TestImport: a ban on another's word lands in the native blocker with its
// origin and lifetime (capped by ImportMax), is logged as such and never
// as a detection; local policy refuses protected addresses and peers; a
// probe of the banned host then counts as already blocked.
func TestImport(t *testing.T) {
	peer := netip.MustParseAddr("198.51.100.20")
	trap := &block.Trap{TCP: portset.Below(1024), TTL: time.Hour, Peers: time.Hour}
	r := newRig(t, rigOptions{traps: true, settings: Settings{Trap: trap, ImportMax: 2 * time.Hour}})
	r.fake.setPeers(block.Peer{Addr: peer, Hops: []uint8{63}})

	bad := netip.MustParseAddr("203.0.113.77")
	if err := r.e.Import(bad, 4*time.Hour, "crowdsecurity/ssh-bf", "crowdsec"); err != nil {
		t.Fatalf("Import: %v", err)
	}
	ttl, ok := r.fake.ttl(bad)
	if !ok || ttl > 2*time.Hour || ttl < 2*time.Hour-time.Minute {
		t.Errorf("kernel holds %v for %v (held %v), want about 2h (ImportMax)", bad, ttl, ok)
	}
	b, ok := r.e.Jail().Get(bad)
	if !ok || b.Origin != "crowdsec" || b.Reason != "crowdsecurity/ssh-bf" {
		t.Errorf("record: %+v, %v", b, ok)
	}
	r.waitLog(`attackalert: Host 203.0.113.77 banned on "crowdsec"'s word (reason "crowdsecurity/ssh-bf") for 2h0m0s`)

	for _, tc := range []struct {
		addr netip.Addr
		want error
	}{
		{netip.MustParseAddr("192.0.2.5"), ErrProtected}, // ignore list
		{local, ErrProtected},
		{gateway, ErrProtected},
		{resolver, ErrProtected},
		{netip.MustParseAddr("::ffff:203.0.113.1"), ErrProtected}, // local, mapped
		{peer, ErrPeer},
	} {
		if err := r.e.Import(tc.addr, time.Hour, "x", "fleet:b"); !errors.Is(err, tc.want) {
			t.Errorf("Import(%v) = %v, want %v", tc.addr, err, tc.want)
		}
		if _, ok := r.fake.ttl(tc.addr.Unmap()); ok {
			t.Errorf("%v was banned", tc.addr)
		}
	}
	if err := r.e.Import(netip.MustParseAddr("203.0.113.78"), 0, "x", "crowdsec"); err == nil {
		t.Error("Import for 0 was accepted")
	}

	// The banned host probes: already blocked, no second ban, no detection lines.
	r.probe(bad, 22)
	r.settle()
	if strings.Contains(r.log.String(), "has been blocked") {
		t.Errorf("an imported ban was reported as a detection:\n%s", r.log.String())
	}

	// Withdraw lifts only a ban of its own origin.
	if lifted, err := r.e.Withdraw(bad, "fleet:b"); lifted || err != nil {
		t.Errorf("Withdraw by another origin: %v, %v", lifted, err)
	}
	if got := r.e.Imported("crowdsec"); len(got) != 1 || got[0].Addr != bad {
		t.Errorf("Imported(crowdsec) = %+v", got)
	}
	if lifted, err := r.e.Withdraw(bad, "crowdsec"); !lifted || err != nil {
		t.Errorf("Withdraw: %v, %v", lifted, err)
	}
	if _, ok := r.fake.ttl(bad); ok {
		t.Error("withdrawn ban still in the kernel")
	}
	r.waitLog("attackalert: Host 203.0.113.77 unblocked: withdrawn by crowdsec")

	// A local ban is never withdrawn by an importer.
	r.probe(scanner, 22)
	r.waitLog("has been blocked")
	if err := r.e.Import(scanner, time.Hour, "x", "crowdsec"); err != nil {
		t.Fatal(err)
	}
	if lifted, _ := r.e.Withdraw(scanner, "crowdsec"); lifted {
		t.Error("a local ban was withdrawn by crowdsec")
	}
	if _, ok := r.fake.ttl(scanner); !ok {
		t.Error("local ban gone")
	}
}

// TestImportCommand: with BLOCKER="command" nothing is imported: imports
// never run commands.
func TestImportCommand(t *testing.T) {
	r := newRig(t, rigOptions{command: true})
	if err := r.e.Import(netip.MustParseAddr("203.0.113.77"), time.Hour, "x", "crowdsec"); !errors.Is(err, ErrNoNativeBlocker) {
		t.Errorf("Import = %v, want ErrNoNativeBlocker", err)
	}
	if r.e.Jail().Len() != 0 {
		t.Error("recorded")
	}
}
