package pkg

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/netns/netnstest"
)

var (
	repoDir string // the module's root directory
	tmpRoot string // this run's scratch directory, removed at exit
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain())
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	root, err := findRepo()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pkg:", err)
		return 1
	}
	repoDir = root
	tmpRoot, err = os.MkdirTemp("", "pspkg-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "pkg:", err)
		return 1
	}
	defer os.RemoveAll(tmpRoot)
	return lab.Main(m)
}

// findRepo is the directory holding go.mod: go test runs a package's tests
// in its own directory, test/pkg.
func findRepo() (string, error) {
	abs, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(abs, "go.mod")); err != nil {
		return "", fmt.Errorf("no go.mod at %s: run the tests with go test ./test/pkg/", abs)
	}
	return abs, nil
}

// requireRoot skips the test (fails it under CI) when not root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		netnstest.SkipOrFail(t, "needs root: run `sudo env PATH=$PATH go test ./test/pkg/`")
	}
}

// requireTool returns the path of a program the test runs, or skips the
// test (fails it under CI) naming the Debian package that has it.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	return netnstest.RequireTool(t, name, pkg)
}

// command runs name with args and returns its combined output; it fails the
// test on a non-zero exit.
func command(t *testing.T, stdin io.Reader, name string, args ...string) string {
	t.Helper()
	out, err := commandErr(stdin, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// commandErr runs name with args (stdin nil means /dev/null) and returns
// its combined output and error.
func commandErr(stdin io.Reader, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Stdin = stdin
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	return b.String(), err
}

// The package under test, built once per run by scripts/build-deb.
var (
	debOnce sync.Once
	debPath string // the .deb
	debRoot string // its contents, extracted
	debErr  error
)

// builtDeb builds the package with the project's one command (into a
// scratch directory, not dist/) and returns the .deb and a directory with
// its contents extracted.
func builtDeb(t *testing.T) (deb, root string) {
	t.Helper()
	requireTool(t, "dpkg-deb", "dpkg")
	debOnce.Do(func() {
		out := filepath.Join(tmpRoot, "dist")
		cmd := exec.Command(filepath.Join(repoDir, "scripts", "build-deb"))
		cmd.Dir = repoDir
		cmd.Env = append(os.Environ(), "OUTDIR="+out)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.Output()
		if err != nil {
			debErr = fmt.Errorf("scripts/build-deb: %v\n%s", err, stderr.Bytes())
			return
		}
		debPath = strings.TrimSpace(string(stdout))
		if !filepath.IsAbs(debPath) {
			debPath = filepath.Join(repoDir, debPath)
		}
		debRoot = filepath.Join(tmpRoot, "deb-root")
		if o, err := exec.Command("dpkg-deb", "-x", debPath, debRoot).CombinedOutput(); err != nil {
			debErr = fmt.Errorf("dpkg-deb -x %s: %v\n%s", debPath, err, o)
		}
	})
	if debErr != nil {
		t.Fatal(debErr)
	}
	return debPath, debRoot
}

// Helper mode: the test binary re-executed inside a network namespace as a
// tiny TCP service (a port that is in use, so never a trap).
const (
	helperEnv  = "PSPKG_HELPER"
	helperAddr = "PSPKG_ADDR"
)

func helperMain() int {
	switch os.Getenv(helperEnv) {
	case "listen":
		ln, err := net.Listen("tcp", os.Getenv(helperAddr))
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			return 1
		}
		fmt.Println("listening")
		for {
			c, err := ln.Accept()
			if err != nil {
				return 1
			}
			fmt.Fprintln(c, "pspkg service")
			c.Close()
		}
	}
	fmt.Fprintln(os.Stderr, "helper: unknown mode", os.Getenv(helperEnv))
	return 2
}
