package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portsentry-go/portsentry/internal/netns/netnstest"
)

// namespaces makes every network namespace of these tests (netnstest):
// their names start with "pse2e-", then the creator's PID.
var namespaces = netnstest.Lab{Prefix: "pse2e-"}

var (
	binPath    string // the portsentry binary under test, built by TestMain
	clientPath string // the netclient helper, built by TestMain
	natsPath   string // the natsclient helper (fleet_test.go), built by TestMain
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
	natsPath = filepath.Join(tmp, "natsclient")
	for _, b := range []struct{ out, pkg string }{
		{binPath, "./cmd/portsentry"},
		{clientPath, "./test/e2e/internal/netclient"},
		{natsPath, "./test/e2e/internal/natsclient"},
	} {
		if out, err := goBuild(root, b.out, b.pkg); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL e2e: go build -o %s %s: %v\n%s\n", b.out, b.pkg, err, out)
			return 1
		}
	}
	return namespaces.Main(m)
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

// requireTool returns the path of a program the test runs, or skips the
// test (fails it under CI) naming the Debian package that has it.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	return netnstest.RequireTool(t, name, pkg)
}
