package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/netns/netnstest"
)

// termLimit is how soon the daemon must be gone after SIGTERM.
const termLimit = time.Second

// TestSIGTERM: the daemon exits with status 0 within a second of SIGTERM,
// idle or after it has blocked someone.
func TestSIGTERM(t *testing.T) {
	t.Parallel()
	for _, busy := range []bool{false, true} {
		name := "idle"
		if busy {
			name = "after-blocks"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			l := newLab(t)
			c := newConfig(t)
			d := startDaemon(t, l.T.ns, c.write(t), flags2x...)
			if busy {
				hit(t, l.S, "tcp", l.T.v4, 143)
				hit(t, l.S, "udp", l.T.v6, 69)
				d.waitFor(t, routeLine(l.S.v6, routeCmd(c, l.S.v6, 69, modeToken(flags2x, "udp"))), logWait)
			}
			took, err := d.stop(t, 5*time.Second)
			t.Logf("exited %v after SIGTERM", took)
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("still running %v after SIGTERM", took)
			}
			if err != nil {
				t.Errorf("exit after SIGTERM: %v, want status 0", err)
			}
			if took > termLimit {
				t.Errorf("took %v to exit after SIGTERM, want ≤ %v", took, termLimit)
			}
		})
	}
}

// runCheck runs `portsentry check -c conf` (no namespace: it must not touch
// the network) and returns its combined output and error.
func runCheck(t *testing.T, conf string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binPath, "check", "-c", conf).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("portsentry check -c %s did not finish in 10s:\n%s", conf, out)
	}
	return string(out), err
}

// TestCheck: `portsentry check` accepts good configs (ours and Debian's 1.2
// file) and rejects a typo'd key naming file:line: KEY.
func TestCheck(t *testing.T) {
	t.Parallel()
	t.Run("typo", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		conf := filepath.Join(dir, "typo.conf")
		writeFile(t, conf, "# line 1\nTCP_PORTS=\"1,11,143\"\nBLOK_TCP=\"1\"\nBLOCK_UDP=\"1\"\n")
		out, err := runCheck(t, conf)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() == 0 {
			t.Fatalf("check of a config with BLOK_TCP: err %v, want a non-zero exit\n%s", err, out)
		}
		for _, want := range []string{"typo.conf", ":3:", "BLOK_TCP"} {
			if !strings.Contains(out, want) {
				t.Errorf("check output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("good", func(t *testing.T) {
		t.Parallel()
		c := newConfig(t)
		c.set("HISTORY_FORMAT", "2.x")
		c.set("KILL_RUN_CMD", "/bin/true $TARGET$")
		c.set("KILL_RUN_CMD_FIRST", "1")
		if out, err := runCheck(t, c.write(t)); err != nil {
			t.Errorf("check of the e2e config: %v\n%s", err, out)
		}
	})
	t.Run("debian-1.2-conf", func(t *testing.T) {
		t.Parallel()
		conf := os.Getenv("PORTSENTRY_DEBIAN_CONF")
		if conf == "" {
			// Where .ci/run and scripts/test-deps extract it.
			conf = filepath.Join(repoDir, ".cache", "debian-portsentry", "etc", "portsentry", "portsentry.conf")
		}
		if _, err := os.Stat(conf); err != nil {
			netnstest.SkipOrFail(t, fmt.Sprintf("needs Debian's portsentry.conf (%v): set PORTSENTRY_DEBIAN_CONF, or run .ci/run or scripts/test-deps, which extract it with apt-get download portsentry", err))
		}
		if out, err := runCheck(t, conf); err != nil {
			t.Errorf("check of Debian's portsentry.conf: %v\n%s", err, out)
		}
	})
}
