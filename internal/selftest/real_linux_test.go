//go:build linux

package selftest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/netns"
	"github.com/portsentry-go/portsentry/internal/netns/netnstest"
	"github.com/portsentry-go/portsentry/internal/syncbuf"
)

// The real tests need root (namespaces, packet sockets, nftables) and
// build the daemon; they skip otherwise, saying how to run them.

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
	buildDir  string
)

// portsentryBinary builds ./cmd/portsentry once per test binary.
func portsentryBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goTool); err != nil {
			goTool = "go"
		}
		out, err := exec.Command(goTool, "env", "GOMOD").Output()
		if err != nil {
			buildErr = err
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		if buildDir, buildErr = os.MkdirTemp("", "psst-bin-"); buildErr != nil {
			return
		}
		builtBin = filepath.Join(buildDir, "portsentry")
		cmd := exec.Command(goTool, "build", "-o", builtBin, "./cmd/portsentry")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = &buildError{err, out}
		}
	})
	if buildErr != nil {
		t.Fatalf("go build ./cmd/portsentry: %v", buildErr)
	}
	return builtBin
}

type buildError struct {
	err error
	out []byte
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + string(e.out) }

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// requireRoot skips (fails under CI) when the real self-test cannot run.
func requireRoot(t *testing.T) {
	t.Helper()
	if _, err := NewSystem().Privileges(); err != nil {
		netnstest.SkipOrFail(t, fmt.Sprintf("needs root (%v): run sudo go test ./internal/selftest/ (or make test as root)", err))
	}
}

// ourNamespaces lists this process's namespaces in /run/netns.
func ourNamespaces(t *testing.T) []string {
	t.Helper()
	names, err := netns.List(netns.Own(NamePrefix))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestRealSelftest runs the whole self-test against a freshly built
// binary and wants every check OK (warnings only for optional kernel
// features), in well under a minute, with nothing left behind.
func TestRealSelftest(t *testing.T) {
	requireRoot(t)
	bin := portsentryBinary(t)
	var out bytes.Buffer
	start := time.Now()
	rep := Run(context.Background(), NewSystem(), Options{Binary: bin, Out: &out, TempRoot: t.TempDir()})
	took := time.Since(start)
	t.Logf("self-test took %v\n%s", took, out.String())
	if !rep.Passed() {
		t.Errorf("self-test failed:\n%s\ndaemon log:\n%s", out.String(), rep.DaemonLog)
	}
	for _, res := range rep.Results {
		switch res.Status {
		case Fail, Skip:
			t.Errorf("%s: %s %s", res.Name, res.Status, res.Detail)
		}
	}
	want := []string{"privileges", "network namespaces", CheckBinary, CheckNetwork, CheckService, CheckConfig, CheckDaemon, CheckServiceQuiet, "clean-up"}
	for _, fam := range []string{"IPv4", "IPv6"} {
		c := FamilyChecks(fam)
		want = append(want, c[:]...)
	}
	for _, fc := range features {
		want = append(want, fc.name)
	}
	for _, name := range want {
		res, ok := rep.Find(name)
		if !ok {
			t.Errorf("no %q on the checklist", name)
			continue
		}
		if res.Status != OK && !(res.Status == Warn && !isRequired(name)) {
			t.Errorf("%s: %s %s", name, res.Status, res.Detail)
		}
	}
	// The evidence is the daemon's own lines.
	if res, _ := rep.Find(FamilyChecks("IPv4")[1]); !strings.Contains(res.Detail, "attackalert:") || !strings.Contains(res.Detail, ScannerV4.String()) {
		t.Errorf("IPv4 detection evidence %q: want the attackalert line for %s", res.Detail, ScannerV4)
	}
	if res, _ := rep.Find(FamilyChecks("IPv6")[2]); !strings.Contains(res.Detail, ScannerV6.String()) {
		t.Errorf("IPv6 block evidence %q: want a line naming %s", res.Detail, ScannerV6)
	}
	if took > 45*time.Second {
		t.Errorf("self-test took %v, want well under a minute", took)
	}
	if left := ourNamespaces(t); len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
	}
	if _, err := os.Stat(rep.TempDir); !os.IsNotExist(err) {
		t.Errorf("temporary directory %s left behind (%v)", rep.TempDir, err)
	}
}

func isRequired(name string) bool {
	for _, fc := range features {
		if fc.name == name {
			return fc.required
		}
	}
	return true
}

// TestRealCancel interrupts a real self-test while the daemon runs (as
// SIGINT does through the context) and wants everything removed.
func TestRealCancel(t *testing.T) {
	requireRoot(t)
	bin := portsentryBinary(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &cancelOn{sub: "[ OK ] " + CheckDaemon, cancel: cancel}
	rep := Run(ctx, NewSystem(), Options{Binary: bin, Out: w, TempRoot: t.TempDir()})
	t.Logf("%s", w.String())
	if rep.Passed() {
		t.Error("an interrupted self-test passed")
	}
	if res, ok := rep.Find("clean-up"); !ok || res.Status != OK {
		t.Errorf("clean-up: %+v", res)
	}
	if left := ourNamespaces(t); len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
	}
	if _, err := os.Stat(rep.TempDir); !os.IsNotExist(err) {
		t.Errorf("temporary directory %s left behind (%v)", rep.TempDir, err)
	}
	if !strings.Contains(w.String(), "interrupted") {
		t.Errorf("the checklist does not say it was interrupted:\n%s", w.String())
	}
}

// cancelOn cancels once the output contains sub.
type cancelOn struct {
	syncbuf.Buffer
	sub    string
	cancel func()
}

func (c *cancelOn) Write(p []byte) (int, error) {
	n, err := c.Buffer.Write(p)
	if strings.Contains(c.String(), c.sub) {
		c.cancel()
	}
	return n, err
}

// TestRealKeep keeps the temporary directory with the history the daemon
// wrote: the blocked scanners are in it.
func TestRealKeep(t *testing.T) {
	requireRoot(t)
	if testing.Short() {
		t.Skip("-short: a second full run")
	}
	bin := portsentryBinary(t)
	root := t.TempDir()
	rep := Run(context.Background(), NewSystem(), Options{Binary: bin, Keep: true, TempRoot: root})
	if !rep.Passed() {
		t.Fatalf("self-test failed; daemon log:\n%s", rep.DaemonLog)
	}
	hist, err := os.ReadFile(filepath.Join(rep.TempDir, "portsentry.history"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{ScannerV4.String(), ScannerV6.String()} {
		if !strings.Contains(string(hist), "/"+a+" Port: ") {
			t.Errorf("history has no record of %s:\n%s", a, hist)
		}
	}
	if _, err := os.Stat(filepath.Join(rep.TempDir, "daemon.log")); err != nil {
		t.Error(err)
	}
}

// withoutIP is the real System as on a host without iproute2: programs
// are started from a thread inside the namespace.
type withoutIP struct{ *linuxSystem }

func (s withoutIP) LookPath(file string) (string, error) {
	if file == "ip" {
		return "", exec.ErrNotFound
	}
	return s.linuxSystem.LookPath(file)
}

// TestRealWithoutIproute2 runs the whole self-test with the daemon and
// the nft set-up started by setns on a locked thread instead of
// `ip netns exec`.
func TestRealWithoutIproute2(t *testing.T) {
	requireRoot(t)
	bin := portsentryBinary(t)
	ls := &linuxSystem{}
	ls.ipOnce.Do(func() {}) // ip stays ""
	var out bytes.Buffer
	rep := Run(context.Background(), withoutIP{ls}, Options{Binary: bin, Out: &out, TempRoot: t.TempDir()})
	if !rep.Passed() {
		t.Errorf("self-test failed:\n%s\ndaemon log:\n%s", out.String(), rep.DaemonLog)
	}
	want(t, rep, "ip program", Info, "started from a thread inside the namespace", "")
	want(t, rep, FamilyChecks("IPv6")[3], OK, "now fails", "")
	if left := ourNamespaces(t); len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
	}
}
