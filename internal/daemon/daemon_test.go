package daemon

import (
	"slices"
	"testing"

	"github.com/portsentry-go/portsentry/internal/config"
)

// A reload names every setting it cannot apply that changed, and only
// those.
func TestStartOnly(t *testing.T) {
	base := config.Config{Blocker: "nftables", BanFile: "/var/lib/portsentry/portsentry.bans", BanTime: 3600, BanTimeMax: 86400, BanPrefix6: 128}
	if got := startOnly(&base, &base); len(got) != 0 {
		t.Errorf("no change: %q", got)
	}
	changed := base
	changed.BanPrefix6 = 64
	changed.Blocker = "iptables"
	changed.BanForward = !base.BanForward
	changed.ScanTrigger = 3 // a reload applies it
	if got, want := startOnly(&base, &changed), []string{"BLOCKER", "BAN_PREFIX6", "BAN_FORWARD"}; !slices.Equal(got, want) {
		t.Errorf("startOnly = %q, want %q", got, want)
	}
}
