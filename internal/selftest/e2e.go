package selftest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portsentry-go/portsentry/internal/netns"
	"github.com/portsentry-go/portsentry/internal/report/logline"
	"github.com/portsentry-go/portsentry/internal/syncbuf"
)

// Names of the end-to-end checks (per-family ones through FamilyChecks).
const (
	CheckBinary       = "portsentry binary"
	CheckNetwork      = "test network"
	CheckService      = "service in T"
	CheckConfig       = "daemon configuration"
	CheckDaemon       = "daemon start"
	CheckServiceQuiet = "service traffic is not a probe"
	CheckCoverage     = "ways in the bans cover"
)

// FamilyChecks are the names of the per-family checks, in order:
// the service is reachable from S, the probe is detected, the scanner is
// blocked, the block holds. family is "IPv4" or "IPv6".
func FamilyChecks(family string) [4]string {
	return [4]string{
		"service reachable (" + family + ")",
		"probe detected (" + family + ")",
		"scanner blocked (" + family + ")",
		"block holds (" + family + ")",
	}
}

// readyLine is the daemon's readiness line.
var readyLine = strings.TrimPrefix(logline.Active, "adminalert: ")

// failure is a check that failed: the evidence, what to do about it,
// and what the checks after it are skipped for ("needs " + needs).
type failure struct {
	detail, remedy, needs string
}

// check is one check of a chain: run returns its result (the name is
// filled in), or a failure, which skips the rest of the chain.
type check struct {
	name string
	run  func(ctx context.Context) (Result, *failure)
}

// chain runs checks in order. After a failure it marks the checks left and
// then those of after skipped, and reports false.
func (r *runner) chain(ctx context.Context, checks []check, after []string) bool {
	for i, c := range checks {
		res, f := c.run(ctx)
		if f == nil {
			res.Name = c.name
			r.add(res)
			continue
		}
		r.add(Result{Name: c.name, Status: Fail, Detail: f.detail, Remedy: f.remedy})
		for _, rest := range checks[i+1:] {
			r.add(Result{Name: rest.name, Status: Skip, Detail: "needs " + f.needs})
		}
		for _, n := range after {
			r.add(Result{Name: n, Status: Skip, Detail: "needs " + f.needs})
		}
		return false
	}
	return true
}

// e2e is the end-to-end section under way, with what its set-up made.
type e2e struct {
	*runner
	bin, dir string
	t, s     Netns // target and scanner
	noV6     bool  // the kernel has IPv6 turned off
	conf     string
	daemon   Process
}

// endToEnd runs the "End to end" section: the set-up checks (binary,
// network, service, configuration, daemon), each of which skips the rest
// when it fails, then the checks of each family and of the service.
func (r *runner) endToEnd(ctx context.Context) {
	r.section = SectionE2E
	e := &e2e{runner: r}
	setup := []check{
		{CheckBinary, e.findBinary},
		{CheckNetwork, e.buildNetwork},
		{CheckService, e.startService},
		{CheckConfig, e.writeConfig},
		{CheckDaemon, e.startDaemon},
	}
	later := append(familyNames(), CheckServiceQuiet, CheckCoverage)
	if e.chain(ctx, setup, later) {
		e.families(ctx, later)
	}
}

// familyNames are the per-family checks, IPv4's then IPv6's.
func familyNames() []string {
	v4, v6 := FamilyChecks("IPv4"), FamilyChecks("IPv6")
	return append(v4[:], v6[:]...)
}

func (e *e2e) findBinary(context.Context) (Result, *failure) {
	bin, err := e.binary()
	if err != nil {
		return Result{}, &failure{err.Error(), "give the binary to test with -bin FILE", "the binary"}
	}
	e.bin = bin
	return Result{Status: OK, Detail: bin}, nil
}

// buildNetwork makes the temporary directory and the two namespaces.
func (e *e2e) buildNetwork(context.Context) (Result, *failure) {
	removeStaleDirs(e.opts.TempRoot)
	dir, err := os.MkdirTemp(e.opts.TempRoot, fmt.Sprintf("%s%d-", tempPrefix, os.Getpid()))
	if err != nil {
		return Result{}, &failure{"temporary directory: " + err.Error(),
			"make $TMPDIR writable, or point TMPDIR elsewhere", "a temporary directory"}
	}
	e.dir, e.rep.TempDir = dir, dir
	e.onCleanup("temporary directory", func() error {
		if e.opts.Keep {
			return nil
		}
		return os.RemoveAll(dir)
	})
	e.t, e.s, err = e.lab()
	if e.noV6 = errors.Is(err, ErrNoIPv6); e.noV6 {
		return Result{Status: Warn, Detail: fmt.Sprintf(
			"T=%s (%s) and S=%s (%s), one veth pair, no default route; IPv6 is turned off in this kernel",
			e.t.Name(), TargetV4, e.s.Name(), ScannerV4),
			Remedy: "the IPv6 checks are skipped; to run them, boot without ipv6.disable=1 and set net.ipv6.conf.default.disable_ipv6=0"}, nil
	}
	if err != nil {
		return Result{}, &failure{err.Error(), "see the kernel checks above; veth pairs need CONFIG_VETH (modprobe veth)", "the test network"}
	}
	return Result{Status: OK, Detail: fmt.Sprintf(
		"T=%s (%s, %s) and S=%s (%s, %s), one veth pair, no default route",
		e.t.Name(), TargetV4, TargetV6, e.s.Name(), ScannerV4, ScannerV6)}, nil
}

// startService starts the TCP service in T, before the daemon.
func (e *e2e) startService(context.Context) (Result, *failure) {
	l, err := e.t.Listen(netip.AddrPortFrom(netip.IPv6Unspecified(), ServicePort))
	if err != nil {
		return Result{}, &failure{detail: err.Error(), needs: "the service"}
	}
	var served sync.WaitGroup
	served.Go(func() { serve(l) })
	e.onCleanup("service", func() error {
		err := l.Close()
		served.Wait()
		return err
	})
	return Result{Status: OK, Detail: fmt.Sprintf(
		"a TCP service listens on port %d in T, started before the daemon", ServicePort)}, nil
}

func (e *e2e) writeConfig(ctx context.Context) (Result, *failure) {
	conf, detail, err := e.configure(ctx, e.bin, e.dir, e.t)
	if err != nil {
		return Result{}, &failure{err.Error(), detail, "a configuration"}
	}
	e.conf = conf
	return Result{Status: OK, Detail: detail}, nil
}

// startDaemon starts the daemon in T, its output going to e.log and
// daemon.log, and waits until it says it is ready.
func (e *e2e) startDaemon(ctx context.Context) (Result, *failure) {
	argv := []string{e.bin, "-c", e.conf, "-atcp", "-audp"}
	e.log = &daemonLog{}
	var out io.Writer = e.log
	if f, err := os.Create(filepath.Join(e.dir, "daemon.log")); err == nil {
		out = io.MultiWriter(e.log, f)
		e.onCleanup("daemon log", f.Close)
	}
	p, err := e.sys.Start(e.t, argv, e.dir, out)
	if err != nil {
		return Result{}, &failure{detail: strings.Join(argv, " ") + ": " + err.Error(), needs: "the daemon"}
	}
	e.onCleanup("daemon", func() error { return p.Stop(stopGrace) })
	e.daemon = p
	line, err := e.waitLine(ctx, p, readyWait, func(l string) int {
		if strings.Contains(l, readyLine) {
			return found
		}
		return 0
	})
	if err != nil {
		return Result{}, &failure{err.Error(), "see the daemon log below", "the daemon"}
	}
	return Result{Status: OK, Detail: "in T, advanced mode (-atcp -audp): " + trimStamp(line)}, nil
}

// families runs the checks of each family, then of the service. When the
// time runs out, every check not yet run is reported, so that the
// checklist is complete.
func (e *e2e) families(ctx context.Context, later []string) {
	for _, v6 := range []bool{false, true} {
		if ctx.Err() != nil {
			break
		}
		if v6 && e.noV6 {
			for _, n := range FamilyChecks("IPv6") {
				e.add(Result{Name: n, Status: Skip, Detail: "IPv6 is turned off in this kernel"})
			}
			continue
		}
		e.family(ctx, e.s, e.daemon, v6)
	}
	if err := ctx.Err(); err != nil {
		st := Fail
		for _, n := range later {
			if _, ok := e.rep.Find(n); !ok {
				e.add(Result{Name: n, Status: st, Detail: "not run: " + timeoutWords(err)})
				st = Skip
			}
		}
		return
	}
	e.serviceQuiet()
	e.coverage(ctx)
}

// coverage reports which ways in the daemon's bans cover, as its
// `portsentry status` says: input (this host's services) and forward
// (containers published by DNAT, routed hosts), with the blocker the
// daemon chose.
func (e *e2e) coverage(ctx context.Context) {
	out, err := e.sys.Output(ctx, nil, []string{e.bin, "status", "-c", e.conf})
	if err != nil {
		e.add(Result{Name: CheckCoverage, Status: Info, Detail: "portsentry status: " + strings.TrimSpace(Tail(string(out), 1))})
		return
	}
	var blocker, covers string
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "Blocker:"); ok {
			blocker = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(l, "Bans cover:"); ok {
			covers = strings.TrimSpace(v)
		}
	}
	if covers == "" {
		e.add(Result{Name: CheckCoverage, Status: Info, Detail: "not reported by this binary's portsentry status"})
		return
	}
	e.add(Result{Name: CheckCoverage, Status: Info, Detail: "with " + blocker + ": " + covers})
}

// binary is the portsentry executable under test.
func (r *runner) binary() (string, error) {
	bin := r.opts.Binary
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("cannot find this program's own file: %w", err)
		}
		bin = exe
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("%s is not an executable file", abs)
	}
	return abs, nil
}

// tempPrefix starts the name of the temporary directory; the creator's PID
// follows, so that a later run can remove the directory of a killed one.
const tempPrefix = "portsentry-selftest-"

// removeStaleDirs removes the temporary directories of self-tests that
// were killed before their clean-up (their creator no longer runs).
func removeStaleDirs(root string) {
	if root == "" {
		root = os.TempDir()
	}
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), tempPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		if pid, err := strconv.Atoi(pidStr); err == nil && pid > 0 && pid != os.Getpid() && !netns.Runs(pid) {
			_ = os.RemoveAll(filepath.Join(root, e.Name()))
		}
	}
}

// lab makes T and S and joins them.
func (r *runner) lab() (t, s Netns, err error) {
	for _, h := range []struct {
		ns   *Netns
		role string
	}{{&t, "t"}, {&s, "s"}} {
		name := r.id + "-" + h.role
		n, err := r.sys.NewNetns(name)
		if err != nil {
			return nil, nil, fmt.Errorf("namespace %s: %w", name, err)
		}
		*h.ns = n
		r.onCleanup("namespace "+name, n.Remove)
	}
	tAddrs := []netip.Prefix{netip.PrefixFrom(TargetV4, prefixV4), netip.PrefixFrom(TargetV6, prefixV6)}
	sAddrs := []netip.Prefix{netip.PrefixFrom(ScannerV4, prefixV4), netip.PrefixFrom(ScannerV6, prefixV6)}
	if err := r.sys.Link(t, s, tAddrs, sAddrs); err != nil {
		if errors.Is(err, ErrNoIPv6) {
			return t, s, err
		}
		return nil, nil, fmt.Errorf("veth pair: %w", err)
	}
	return t, s, nil
}

// serve answers every connection with the greeting until l is closed.
func serve(l net.Listener) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		wg.Go(func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(dialTimeout))
			_, _ = io.WriteString(c, greeting)
		})
	}
}

// family runs the service, probe, block and hold checks over IPv4 or
// IPv6, from s against the daemon p.
func (r *runner) family(ctx context.Context, s Netns, p Process, v6 bool) {
	f := &famRun{runner: r, s: s, p: p, fam: "IPv4", src: ScannerV4, dst: TargetV4}
	if v6 {
		f.fam, f.src, f.dst = "IPv6", ScannerV6, TargetV6
	}
	f.svc = netip.AddrPortFrom(f.dst, ServicePort)
	names := FamilyChecks(f.fam)
	r.chain(ctx, []check{
		{names[0], f.reach},
		{names[1], f.detect},
		{names[2], f.blocked},
		{names[3], f.holds},
	}, nil)
}

// famRun is the checks of one family under way.
type famRun struct {
	*runner
	s        Netns
	p        Process
	fam      string
	src, dst netip.Addr
	svc      netip.AddrPort
}

// reach: S reaches the service in T.
func (f *famRun) reach(ctx context.Context) (Result, *failure) {
	local, err := dialService(ctx, f.s, f.svc)
	if err != nil {
		return Result{}, &failure{fmt.Sprintf("%s → %s: %v", f.src, f.svc, err),
			"the test network does not carry this traffic; see the daemon log below", "the service reachable"}
	}
	return Result{Status: OK, Detail: fmt.Sprintf("%s → %s: connected, read the service's greeting", local, f.svc)}, nil
}

// detect: a probe of a free port from S is reported.
func (f *famRun) detect(ctx context.Context) (Result, *failure) {
	probe := netip.AddrPortFrom(f.dst, ProbePort)
	answer := sendProbe(ctx, f.s, probe)
	port := strconv.Itoa(ProbePort)
	attack, err := f.waitLine(ctx, f.p, detectWait, func(l string) int {
		if strings.Contains(l, "attackalert:") && strings.Contains(l, "/"+f.src.String()+" to TCP port: "+port) {
			return found
		}
		return 0
	})
	if err != nil {
		return Result{}, &failure{fmt.Sprintf("TCP SYN %s → %s (%s); no attackalert: %v", f.src, probe, answer, err),
			"the packet sensor did not report the probe; see the daemon log below", "the probe detected"}
	}
	return Result{Status: OK, Detail: trimStamp(attack)}, nil
}

// blocked: the daemon says it blocked S.
func (f *famRun) blocked(ctx context.Context) (Result, *failure) {
	blockedVia := "Host " + f.src.String() + " has been blocked"
	scanFrom := "Scan from: [" + f.src.String() + "]"
	notBlocked := "Host " + f.src.String() + " was NOT blocked"
	line, err := f.waitLine(ctx, f.p, detectWait, func(l string) int {
		switch {
		case strings.Contains(l, notBlocked):
			return failed
		case strings.Contains(l, blockedVia), strings.Contains(l, scanFrom) && strings.Contains(l, "blocked: [true]"):
			return found
		}
		return 0
	})
	if err != nil {
		detail := err.Error()
		if errs := f.log.matching(func(l string) bool {
			return strings.Contains(l, "ERROR") && strings.Contains(l, f.src.String())
		}); len(errs) > 0 {
			detail = strings.Join(errs, " | ")
		}
		return Result{}, &failure{detail,
			"the block did not happen; see the attackalert: ERROR lines in the daemon log below", "the scanner blocked"}
	}
	// The wrappers/route line says how; the Scan from line only that it was.
	if how := f.log.matching(func(l string) bool { return strings.Contains(l, blockedVia) }); len(how) > 0 {
		line = how[0]
	}
	return Result{Status: OK, Detail: trimStamp(line)}, nil
}

// holds: S can no longer reach the service.
func (f *famRun) holds(ctx context.Context) (Result, *failure) {
	c, err := f.s.Dial(ctx, f.svc, holdWait)
	if err == nil {
		from := c.LocalAddr().String()
		c.Close()
		return Result{}, &failure{detail: fmt.Sprintf("%s → %s connected after the block", from, f.svc),
			remedy: "the block command ran but did not stop the scanner's traffic: check KILL_ROUTE / BLOCKER in the configuration"}
	}
	if ctx.Err() != nil {
		return Result{}, &failure{detail: "not run: " + timeoutWords(ctx.Err())}
	}
	return Result{Status: OK, Detail: fmt.Sprintf("%s → %s now fails: %s", f.src, f.svc, dialWords(err))}, nil
}

// serviceQuiet checks that the connections to the service, before and
// after the block, were never reported as probes: the service check works.
func (r *runner) serviceQuiet() {
	port := strconv.Itoa(ServicePort)
	bad := r.log.matching(func(l string) bool {
		return strings.HasSuffix(l, " port: "+port) || strings.Contains(l, "port: ["+port+"]")
	})
	if len(bad) > 0 {
		r.add(Result{Name: CheckServiceQuiet, Status: Fail, Detail: trimStamp(bad[0]),
			Remedy: "the service check did not see the service's socket; see sock_diag above"})
		return
	}
	r.add(Result{Name: CheckServiceQuiet, Status: OK, Detail: fmt.Sprintf(
		"no alert for the connections to port %d (a local service owns it)", ServicePort)})
}

// dialService connects to the service and reads its greeting; it returns
// the local address.
func dialService(ctx context.Context, s Netns, to netip.AddrPort) (string, error) {
	c, err := s.Dial(ctx, to, dialTimeout)
	if err != nil {
		return "", errors.New(dialWords(err))
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(dialTimeout))
	b := make([]byte, len(greeting))
	if _, err := io.ReadFull(c, b); err != nil {
		return "", fmt.Errorf("connected, but reading the greeting: %w", err)
	}
	if string(b) != greeting {
		return "", fmt.Errorf("connected, but to something else: it said %q", b)
	}
	return c.LocalAddr().String(), nil
}

// sendProbe connects to a free port and says what came back.
func sendProbe(ctx context.Context, s Netns, to netip.AddrPort) string {
	c, err := s.Dial(ctx, to, probeWait)
	if err == nil {
		c.Close()
		return "it connected: something listens there"
	}
	return dialWords(err)
}

// dialWords says in words how a connection attempt ended.
func dialWords(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "no answer (timed out)"
	case strings.Contains(err.Error(), "connection refused"):
		return "refused"
	}
	return err.Error()
}

func timeoutWords(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "the self-test's time ran out (-timeout)"
	}
	if errors.Is(err, context.Canceled) {
		return "interrupted"
	}
	return err.Error()
}

// Verdicts of a waitLine matcher.
const (
	found  = 1
	failed = -1
)

// waitLine waits up to d for a line of the daemon's output for which match
// returns found (and returns it) or failed (an error quoting it). It gives
// up early when the daemon exits or ctx ends.
func (r *runner) waitLine(ctx context.Context, p Process, d time.Duration, match func(string) int) (string, error) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, l := range r.log.Lines() {
			switch match(l) {
			case found:
				return l, nil
			case failed:
				return "", errors.New(trimStamp(l))
			}
		}
		select {
		case <-p.Done():
			// A last look: the line may have come with the exit.
			for _, l := range r.log.Lines() {
				if match(l) == found {
					return l, nil
				}
			}
			return "", fmt.Errorf("the daemon exited (%v)", p.Err())
		case <-ctx.Done():
			return "", errors.New(timeoutWords(ctx.Err()))
		case <-deadline.C:
			return "", fmt.Errorf("no such line within %v", d)
		case <-tick.C:
		}
	}
}

// trimStamp drops the 2.x timestamp the daemon puts before each line.
func trimStamp(l string) string {
	if i := strings.IndexByte(l, ' '); i > 0 {
		if _, err := time.Parse(logline.Timestamp2x, l[:i]); err == nil {
			return l[i+1:]
		}
	}
	return l
}

// daemonLog is the daemon's output, written by the process while the
// self-test reads it.
type daemonLog struct{ syncbuf.Buffer }

// matching returns the complete lines (timestamps dropped) for which keep
// is true.
func (l *daemonLog) matching(keep func(string) bool) []string {
	var out []string
	for _, line := range l.Lines() {
		if t := trimStamp(line); keep(t) {
			out = append(out, t)
		}
	}
	return out
}
