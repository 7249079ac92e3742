// Package labenv describes where a lab benchmark (scanlab, floodlab) runs:
// the repository it builds the daemon from, the go tool, the kernel, the
// revision and the tools' versions its report names.
package labenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/portsentry-go/portsentry/test/internal/labproc"
)

// RepoRoot is the directory holding go.mod; name is the benchmark's
// directory under test/, for the error message.
func RepoRoot(name string) (string, error) {
	out, err := exec.Command(GoTool(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the portsentry module: run from the repository (go run ./test/%s)", name)
	}
	return filepath.Dir(mod), nil
}

// GoTool is the go command: the one on PATH, else Go's usual place.
func GoTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// BuildDaemon builds ./cmd/portsentry of the repository at root into bin,
// without cgo, as `make build` does.
func BuildDaemon(ctx context.Context, root, bin string) error {
	build := exec.CommandContext(ctx, GoTool(), "build", "-o", bin, "./cmd/portsentry")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/portsentry: %v\n%s", err, out)
	}
	return nil
}

// KernelRelease is uname -r.
func KernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// GitRevision is `git describe --always --dirty` of the repository at root.
func GitRevision(root string) string {
	out, err := exec.Command("git", "-C", root, "describe", "--always", "--dirty").Output()
	if err != nil {
		return "unknown revision"
	}
	return strings.TrimSpace(string(out))
}

// ToolVersion is the first line naming a version in `tool --version`'s
// output, else its first line (mtr prints only "mtr 0.95").
func ToolVersion(ctx context.Context, tool string) string {
	txt, _ := labproc.Run(ctx, 10*time.Second, tool, "--version")
	first := ""
	for _, line := range strings.Split(txt, "\n") {
		line = strings.TrimSpace(line)
		if strings.Contains(strings.ToLower(line), "version") {
			return line
		}
		if first == "" {
			first = line
		}
	}
	if first != "" {
		return first
	}
	return tool + " (version unknown)"
}
