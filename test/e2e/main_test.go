package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// nsPrefix starts the name of every namespace these tests create. The full
// name is nsPrefix + creator PID + "-" + random + "-" + role, so that a run
// can tell its own namespaces and a live concurrent run's from leftovers.
const nsPrefix = "pse2e-"

var (
	binPath    string // the portsentry binary under test, built by TestMain
	clientPath string // the netclient helper, built by TestMain
	netnsSkip  string // why namespace tests cannot run here; "" when they can
	repoDir    string // the module's root directory
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "pse2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(tmp)

	root, err := repoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: finding the repository root:", err)
		return 1
	}
	repoDir = root
	binPath = filepath.Join(tmp, "portsentry")
	clientPath = filepath.Join(tmp, "netclient")
	for _, b := range []struct{ out, pkg string }{
		{binPath, "./cmd/portsentry"},
		{clientPath, "./test/e2e/internal/netclient"},
	} {
		if out, err := goBuild(root, b.out, b.pkg); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL e2e: go build -o %s %s: %v\n%s\n", b.out, b.pkg, err, out)
			return 1
		}
	}

	netnsSkip = netnsPrereq()
	if netnsSkip == "" {
		removeLeftovers()
	}
	return m.Run()
}

// repoRoot is the directory holding go.mod, asked of the go command so that
// the tests work from any working directory inside the module.
func repoRoot() (string, error) {
	out, err := exec.Command(goTool(), "env", "GOMOD").Output()
	if err == nil {
		if mod := strings.TrimSpace(string(out)); mod != "" && mod != os.DevNull {
			return filepath.Dir(mod), nil
		}
	}
	// go test runs a package's tests in its own directory: test/e2e.
	abs, aerr := filepath.Abs(filepath.Join("..", ".."))
	if aerr != nil {
		return "", aerr
	}
	if _, serr := os.Stat(filepath.Join(abs, "go.mod")); serr != nil {
		return "", fmt.Errorf("no go.mod from `go env GOMOD` (%v) nor at %s", err, abs)
	}
	return abs, nil
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

func goBuild(root, out, pkg string) ([]byte, error) {
	cmd := exec.Command(goTool(), "build", "-o", out, pkg)
	cmd.Dir = root
	return cmd.CombinedOutput()
}

// netnsPrereq says why network namespaces cannot be made here, or "".
func netnsPrereq() string {
	if os.Geteuid() != 0 {
		return "needs root to create network namespaces: run `sudo env PATH=$PATH go test ./test/e2e/`"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "needs iproute2's ip: apt-get install iproute2"
	}
	probe := fmt.Sprintf("%s%d-probe", nsPrefix, os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		return fmt.Sprintf("cannot create a network namespace (ip netns add: %v: %s): needs CAP_SYS_ADMIN and CAP_NET_ADMIN", err, bytes.TrimSpace(out))
	}
	_ = exec.Command("ip", "netns", "del", probe).Run()
	return ""
}

// requireNetns skips a test that needs namespaces when they cannot be made,
// and fails it instead under CI, where the suite must really run.
func requireNetns(t *testing.T) {
	t.Helper()
	if netnsSkip != "" {
		skipOrFail(t, netnsSkip)
	}
}

// skipOrFail skips with the remedy, or fails under CI (CI set), where every
// test must really run.
func skipOrFail(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set but this test %s", why)
	}
	t.Skip(why)
}

// requireTool skips (fails under CI) when a program the test runs is missing.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	skipOrFail(t, fmt.Sprintf("needs %s: apt-get install %s", name, pkg))
	return ""
}

// removeLeftovers deletes namespaces (and ends the processes in them) that a
// crashed earlier run of these tests left behind. A namespace whose creator
// is still alive belongs to a concurrent run and is left alone.
func removeLeftovers() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], nsPrefix) {
			continue
		}
		name := f[0]
		rest := strings.TrimPrefix(name, nsPrefix)
		if pidStr, _, ok := strings.Cut(rest, "-"); ok {
			if pid, err := strconv.Atoi(pidStr); err == nil && pid != os.Getpid() && syscall.Kill(pid, 0) == nil {
				continue
			}
		}
		deleteNetns(name)
	}
}

// deleteNetns ends the processes left in a test namespace, by PID, then
// deletes it (which also deletes its veth ends).
func deleteNetns(name string) {
	if out, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
		for _, s := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(s); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	_ = exec.Command("ip", "netns", "del", name).Run()
}
