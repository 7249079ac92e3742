// Package backoff paces a sensor's retries after a failed read or accept,
// so that a persistent error (a closed-down interface, fd exhaustion)
// neither spins a core nor floods the log.
package backoff

import (
	"context"
	"time"
)

// The delays: the first retry comes quickly, later ones double up to Max.
const (
	First = 5 * time.Millisecond
	Max   = time.Second
)

// Next is the delay after d (0: no failure yet).
func Next(d time.Duration) time.Duration {
	if d == 0 {
		return First
	}
	return min(2*d, Max)
}

// Sleep waits d and reports whether ctx is still live.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
