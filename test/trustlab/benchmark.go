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

	"github.com/portsentry-go/portsentry/internal/netns"
	"github.com/portsentry-go/portsentry/test/internal/labenv"
	"github.com/portsentry-go/portsentry/test/internal/labns"
	"github.com/portsentry-go/portsentry/test/internal/labproc"
	"github.com/portsentry-go/portsentry/test/internal/labsvc"
)

// env is what every scenario shares.
type env struct {
	o          *options
	l          *lab
	root, work string
	bin, self  string
	nft, nmap  string
	traceroute string
	mtr        string // "" when mtr is not installed: its rows are skipped
}

// benchmark runs the whole lab. The report holds the scenarios done so
// far, also when it returns an error.
func benchmark(ctx context.Context, o *options, stderr io.Writer) (*report, error) {
	start := time.Now()
	progress := func(format string, a ...any) {
		fmt.Fprintf(stderr, "trustlab: "+format+"\n", a...)
	}
	e, cleanup, err := setUp(ctx, o, progress)
	defer cleanup()
	if err != nil {
		return nil, err
	}
	rep := newReport(ctx, e)
	defer func() { rep.elapsed = time.Since(start) }()
	for i, s := range o.scenarios {
		progress("[%d/%d] %s: %s", i+1, len(o.scenarios), s.name, s.title)
		dir := filepath.Join(e.work, fmt.Sprintf("%d-%s", i+1, s.name))
		if err := os.Mkdir(dir, 0o700); err != nil {
			return rep, err
		}
		r := runScenario(ctx, e, s, dir, progress)
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
	if removed := labns.RemoveLeftovers(nsPrefix, "trustlab", os.Stderr); len(removed) > 0 {
		progress("removed leftover namespaces %s", strings.Join(removed, " "))
	}
	work, err := os.MkdirTemp("", "trustlab-")
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
	progress("creating namespaces %s*-{h,t,r,a,n1,n2,s,c}", netns.Own(nsPrefix))
	if e.l, err = newLab(ctx); err != nil {
		return nil, cleanup, fmt.Errorf("building the lab: %w", err)
	}
	undo = append(undo, e.l.close, labproc.KillAll) // processes first, then the namespaces
	for _, svc := range []struct {
		name string
		argv []string
	}{
		{"web and DNS services in T", []string{e.self, labsvc.Serve}},
		{"SSH-like service in T", []string{e.self, helperService, "-echo", "-port", fmt.Sprint(sessionPort)}},
	} {
		p, err := labproc.Start(svc.name, true, e.l.T.ns.Argv(svc.argv...)...)
		if err != nil {
			return nil, cleanup, err
		}
		undo = append(undo, func() { _ = p.Stop(0, 3*time.Second) })
		if err := p.WaitOutput(ctx, labsvc.ReadyMark, 10*time.Second); err != nil {
			return nil, cleanup, err
		}
	}
	took, err := e.l.prime()
	if err != nil {
		return nil, cleanup, err
	}
	progress("C's first connections to T across R took %v (IPv4) and %v (IPv6)", took[0].Round(time.Millisecond), took[1].Round(time.Millisecond))
	return e, cleanup, nil
}

// preflight checks root and the tools, and finds them.
func preflight(e *env) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root to create network namespaces: sudo make trustlab (or sudo env PATH=$PATH go run ./test/trustlab)")
	}
	if runtime.GOOS != "linux" {
		return fmt.Errorf("runs on Linux only, not %s", runtime.GOOS)
	}
	var missing []string
	for _, t := range []struct {
		dst  *string
		name string
	}{{new(string), "ip"}, {new(string), "sysctl"}, {&e.nft, "nft"}, {&e.nmap, "nmap"}, {&e.traceroute, "traceroute"}} {
		p, err := exec.LookPath(t.name)
		if err != nil {
			missing = append(missing, t.name)
			continue
		}
		*t.dst, _ = filepath.Abs(p)
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s: %s", strings.Join(missing, ", "), installHint)
	}
	if p, err := exec.LookPath("mtr"); err == nil {
		e.mtr, _ = filepath.Abs(p)
	}
	var err error
	e.self, err = os.Executable()
	return err
}

// daemonBinary builds the daemon into the work directory, or takes -bin.
func daemonBinary(ctx context.Context, e *env, progress func(string, ...any)) error {
	var err error
	if e.root, err = labenv.RepoRoot("trustlab"); err != nil {
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
