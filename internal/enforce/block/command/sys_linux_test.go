package command

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestOutputFileUnnamed: the output file is readable and writable and
// leaves no name behind.
func TestOutputFileUnnamed(t *testing.T) {
	dir := t.TempDir()
	f, err := outputFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("iptables: done\n"); err != nil {
		t.Fatal(err)
	}
	if got := string(readTail(f)); got != "iptables: done\n" {
		t.Errorf("read back %q", got)
	}
	if names, _ := os.ReadDir(dir); len(names) != 0 {
		t.Errorf("output file left %v in %s", names, dir)
	}
}

// TestShellRaise: with Raise the command runs that many nice levels more
// favoured than the daemon, and no thread of the daemon keeps the raised
// priority.
func TestShellRaise(t *testing.T) {
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, 0)
	if err != nil {
		t.Fatal(err)
	}
	base := 20 - prio
	if base-3 < -20 {
		t.Skipf("nice %d leaves no room", base)
	}
	out := filepath.Join(t.TempDir(), "nice")
	if err := (Shell{Timeout: 10 * time.Second, Raise: 3}).Run(context.Background(), "nice > "+out); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("nice printed %q", b)
	}
	want := base - 3
	if os.Geteuid() != 0 {
		want = base // without CAP_SYS_NICE nothing changes
	}
	if got != want {
		t.Errorf("the command ran at nice %d, want %d (the daemon's %d raised by 3)", got, want, base)
	}
	tasks, _ := filepath.Glob("/proc/self/task/*")
	for _, task := range tasks {
		tid, _ := strconv.Atoi(filepath.Base(task))
		if p, err := unix.Getpriority(unix.PRIO_PROCESS, tid); err == nil && 20-p != base {
			t.Errorf("thread %d kept nice %d, want %d", tid, 20-p, base)
		}
	}
}
