package e2e

import (
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRestartKeepsBlocks: a host blocked before a restart (clean SIGTERM or
// kill -9) is "already blocked" afterwards: BLOCKED_FILE is read back, its
// KILL_ROUTE is not run again, and the history keeps its earlier line and
// only grows.
func TestRestartKeepsBlocks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
	}{{"SIGTERM", syscall.SIGTERM}, {"kill-9", syscall.SIGKILL}} {
		sig := tc.sig
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			l := newLab(t)
			c := newConfig(t)
			conf := c.write(t)
			mode := modeToken(flags2x, "tcp")

			d1 := startDaemon(t, l.T.ns, conf, flags2x...)
			hit(t, l.S, "tcp", l.T.v4, 143)
			d1.waitFor(t, routeLine(l.S.v4, routeCmd(c, l.S.v4, 143, mode)), logWait)
			hist := waitFileLines(t, c.path("portsentry.history"), 1, logWait)
			waitFileLines(t, c.path("portsentry.blocked"), 1, logWait)

			d1.signal(t, sig)
			err := d1.waitExit(t, 5*time.Second)
			var ee *exec.ExitError
			switch {
			case sig == syscall.SIGTERM && err != nil:
				t.Fatalf("exit after SIGTERM: %v, want status 0", err)
			case sig == syscall.SIGKILL && !errors.As(err, &ee):
				t.Fatalf("exit after SIGKILL: %v, want killed", err)
			}

			d2 := startDaemon(t, l.T.ns, conf, flags2x...)
			r := probe(t, l.S, "tcp", l.T.v4, 540, time.Second)
			if !r.Connected {
				t.Fatalf("probe after the restart did not get through (KILL_ROUTE here only records): %s", r.Error)
			}
			d2.waitFor(t, alreadyLine(l.S.v4), logWait)
			time.Sleep(settle)
			if ls := d2.lines("has been blocked via"); len(ls) != 0 {
				t.Errorf("host blocked before the restart was blocked again: %q", ls)
			}
			if got, want := fileLines(t, c.path("actions.log")), routeRecord(l.S.v4, 143, mode); len(got) != 1 || got[0] != want {
				t.Errorf("KILL_ROUTE ran as %q, want once, before the restart, as %q", got, want)
			}
			assertDeny(t, c, l.S.v4)
			if got := fileLines(t, c.path("portsentry.history")); strings.Join(got, "\n") != strings.Join(hist, "\n") {
				t.Errorf("history after the restart = %q, want unchanged %q", got, hist)
			}

			// A new block after the restart is appended to the same history.
			hit(t, l.S, "tcp", l.T.v6, 11)
			d2.waitFor(t, routeLine(l.S.v6, routeCmd(c, l.S.v6, 11, mode)), logWait)
			got := waitFileLines(t, c.path("portsentry.history"), 2, logWait)
			if len(got) != 2 || got[0] != hist[0] {
				t.Fatalf("history = %q, want the earlier line %q kept and one new line", got, hist[0])
			}
			assertHistory12(t, got[1], l.S.v6, 11, "tcp", start)
			if b := waitFileLines(t, c.path("portsentry.blocked"), 2, logWait); len(b) != 2 {
				t.Errorf("blocked file = %q, want both blocks", b)
			}
		})
	}
}
