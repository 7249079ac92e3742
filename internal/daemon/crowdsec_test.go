package daemon

import (
	"fmt"
	"slices"
	"testing"

	"github.com/portsentry-go/portsentry/internal/enforce"
	"github.com/portsentry-go/portsentry/internal/report/metrics"
)

// Every reason local policy gives for refusing a CrowdSec decision is a
// value the metrics export: a reason missing there would be counted in
// status and never in the metrics.
func TestRefusedWhyExported(t *testing.T) {
	for _, err := range []error{enforce.ErrProtected, enforce.ErrPeer} {
		why := refusedWhy(fmt.Errorf("ban of 192.0.2.1: %w", err))
		if why == "" || !slices.Contains(metrics.CrowdSecRefusedWhy, why) {
			t.Errorf("%v: why %q, not one of the metrics' %q", err, why, metrics.CrowdSecRefusedWhy)
		}
	}
	if why := refusedWhy(fmt.Errorf("netlink: busy")); why != "" {
		t.Errorf("another error: why %q, want none", why)
	}
}
