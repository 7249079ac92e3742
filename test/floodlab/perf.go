package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/portsentry-go/portsentry/test/internal/labproc"
)

// perfTop is how many of the daemon's hottest symbols -perf reports.
const perfTop = 15

// startPerf samples the daemon's threads with perf record (-perf) into
// dir/perf.data, until stopPerf.
func startPerf(perf string, pid int, dir string) (*labproc.Proc, error) {
	p, err := labproc.Start("perf record", false, perf, "record", "-F", "499", "-p", strconv.Itoa(pid), "-o", filepath.Join(dir, "perf.data"))
	if err != nil {
		return nil, err
	}
	// perf prints nothing until it stops: give it a moment to attach.
	time.Sleep(200 * time.Millisecond)
	if p.Exited() {
		return nil, fmt.Errorf("perf record exited at once:\n%s", p.Tail())
	}
	return p, nil
}

// stopPerf stops perf record (SIGINT: it writes its file then) and returns
// the daemon's hottest symbols, by self time, as perf report prints them.
func stopPerf(ctx context.Context, p *labproc.Proc, perf, dir string) ([]string, error) {
	if err := p.Stop(syscall.SIGINT, 30*time.Second); err != nil && !labproc.IsSignalExit(err) {
		return nil, fmt.Errorf("perf record: %w:\n%s", err, p.Tail())
	}
	out, err := labproc.Run(ctx, 5*time.Minute, perf, "report", "-i", filepath.Join(dir, "perf.data"),
		"--stdio", "--no-children", "--sort", "dso,symbol", "--percent-limit", "0.5")
	if err != nil {
		return nil, err
	}
	return perfLines(out, perfTop), nil
}

// perfLines keeps the first n sample lines of perf report --stdio, with
// their spacing squeezed: "12.34%  portsentry  [.] runtime.mallocgc".
func perfLines(out string, n int) []string {
	var lines []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasSuffix(f[0], "%") || strings.HasPrefix(line, "#") {
			continue
		}
		if len(lines) == n {
			break
		}
		for len(f) > 3 && f[len(f)-1] == "-" { // empty columns perf adds at the end
			f = f[:len(f)-1]
		}
		lines = append(lines, strings.Join(f, " "))
	}
	return lines
}
