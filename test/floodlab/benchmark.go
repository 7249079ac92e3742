package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portsentry-go/portsentry/internal/netns"
	"github.com/portsentry-go/portsentry/test/internal/labenv"
	"github.com/portsentry-go/portsentry/test/internal/labns"
	"github.com/portsentry-go/portsentry/test/internal/labproc"
	"github.com/portsentry-go/portsentry/test/internal/labsvc"
)

// benchmark runs the whole lab. The report holds the scenarios done so
// far, also when it returns an error.
func benchmark(ctx context.Context, o *options, stderr io.Writer) (*report, error) {
	start := time.Now()
	progress := func(format string, a ...any) {
		fmt.Fprintf(stderr, "floodlab: "+format+"\n", a...)
	}
	e, cleanup, err := setUp(ctx, o, progress)
	defer cleanup()
	if err != nil {
		return nil, err
	}
	rep := newReport(ctx, e)
	defer func() { rep.elapsed = time.Since(start) }()
	for i, s := range o.scenarios {
		progress("[%d/%d] %s: %s for %v", i+1, len(o.scenarios), s.name, s.title, o.duration)
		dir := filepath.Join(e.work, fmt.Sprintf("%d-%s", i+1, s.name))
		if err := os.Mkdir(dir, 0o700); err != nil {
			return rep, err
		}
		r := runScenario(ctx, e, s, dir)
		rep.results = append(rep.results, r)
		progress("[%d/%d] %s: %s", i+1, len(o.scenarios), s.name, r.summary())
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
	}
	return rep, nil
}

// setUp checks the host, builds the daemon, creates the lab and starts T's
// services. cleanup undoes it all, whatever it returns.
func setUp(ctx context.Context, o *options, progress func(string, ...any)) (e *env, cleanup func(), err error) {
	var undo []func()
	cleanup = func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	e = &env{o: o}
	if err := preflight(e); err != nil {
		return nil, cleanup, err
	}
	if removed := labns.RemoveLeftovers(nsPrefix, "floodlab", os.Stderr); len(removed) > 0 {
		progress("removed leftover namespaces %s", strings.Join(removed, " "))
	}
	work, err := os.MkdirTemp("", "floodlab-")
	if err != nil {
		return nil, cleanup, err
	}
	e.work = work
	if o.keep {
		undo = append(undo, func() { progress("kept the work directory %s", work) })
	} else {
		undo = append(undo, func() { os.RemoveAll(work) })
	}
	if err := daemonBinary(ctx, e, progress); err != nil {
		return nil, cleanup, err
	}
	progress("creating namespaces %s*-{h,t,f,s,p,i}", netns.Own(nsPrefix))
	if e.l, err = newLab(ctx); err != nil {
		return nil, cleanup, fmt.Errorf("building the lab: %w", err)
	}
	l := e.l
	undo = append(undo, l.close, labproc.KillAll) // processes first, then the namespaces
	services, err := labproc.Start("services in T", true, e.l.T.ns.Argv(e.self, labsvc.Serve)...)
	if err != nil {
		return nil, cleanup, err
	}
	undo = append(undo, func() { _ = services.Stop(0, 3*time.Second) })
	if err := services.WaitOutput(ctx, labsvc.ReadyMark, 10*time.Second); err != nil {
		return nil, cleanup, err
	}
	return e, cleanup, nil
}

// preflight checks root and the tools, and finds them.
func preflight(e *env) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root to create network namespaces: sudo make floodlab (or sudo env PATH=$PATH go run ./test/floodlab)")
	}
	var missing []string
	for _, t := range []struct {
		dst  *string
		name string
	}{{new(string), "ip"}, {&e.nft, "nft"}, {&e.nmap, "nmap"}, {&e.hping3, "hping3"}} {
		p, err := exec.LookPath(t.name)
		if err != nil {
			missing = append(missing, t.name)
			continue
		}
		*t.dst, _ = filepath.Abs(p)
	}
	if e.o.perf {
		if p, err := exec.LookPath("perf"); err == nil {
			e.perf = p
		} else {
			missing = append(missing, "perf (for -perf: apt-get install linux-perf)")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s: %s", strings.Join(missing, ", "), installHint)
	}
	if runtime.GOOS != "linux" {
		return fmt.Errorf("runs on Linux only, not %s", runtime.GOOS)
	}
	var err error
	e.self, err = os.Executable()
	return err
}

// daemonBinary builds the daemon into the work directory, or takes -bin.
func daemonBinary(ctx context.Context, e *env, progress func(string, ...any)) error {
	var err error
	if e.root, err = labenv.RepoRoot("floodlab"); err != nil {
		return err
	}
	if e.o.bin != "" {
		e.bin, err = filepath.Abs(e.o.bin)
		return err
	}
	e.bin = filepath.Join(e.work, "portsentry")
	progress("building the daemon: go build -o %s ./cmd/portsentry", e.bin)
	return labenv.BuildDaemon(ctx, e.root, e.bin)
}

// onTmpfs reports whether dir is on a tmpfs, where write_bytes stays 0
// (its pages are never written back).
func onTmpfs(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.TMPFS_MAGIC
}
