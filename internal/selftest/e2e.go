package selftest

import (
	"bytes"
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

	"github.com/portsentry-go/portsentry/internal/report/logline"
)

// Names of the end-to-end checks (per-family ones through FamilyChecks).
const (
	CheckBinary       = "portsentry binary"
	CheckNetwork      = "test network"
	CheckService      = "service in T"
	CheckConfig       = "daemon configuration"
	CheckDaemon       = "daemon start"
	CheckServiceQuiet = "service traffic is not a probe"
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

// endToEnd runs the "End to end" section.
func (r *runner) endToEnd(ctx context.Context) {
	r.section = SectionE2E
	later := []string{CheckNetwork, CheckService, CheckConfig, CheckDaemon}
	for _, fam := range []string{"IPv4", "IPv6"} {
		c := FamilyChecks(fam)
		later = append(later, c[:]...)
	}
	later = append(later, CheckServiceQuiet)
	// skip marks the checks from name on as skipped.
	skip := func(name, why string) {
		i := 0
		for i < len(later) && later[i] != name {
			i++
		}
		for _, n := range later[i:] {
			r.add(Result{Name: n, Status: Skip, Detail: why})
		}
	}

	bin, err := r.binary()
	if err != nil {
		r.add(Result{Name: CheckBinary, Status: Fail, Detail: err.Error(),
			Remedy: "give the binary to test with -bin FILE"})
		skip(CheckNetwork, "needs the binary")
		return
	}
	r.add(Result{Name: CheckBinary, Status: OK, Detail: bin})

	removeStaleDirs(r.opts.TempRoot)
	dir, err := os.MkdirTemp(r.opts.TempRoot, fmt.Sprintf("%s%d-", tempPrefix, os.Getpid()))
	if err != nil {
		r.add(Result{Name: CheckNetwork, Status: Fail, Detail: "temporary directory: " + err.Error(),
			Remedy: "make $TMPDIR writable, or point TMPDIR elsewhere"})
		skip(CheckService, "needs a temporary directory")
		return
	}
	r.rep.TempDir = dir
	r.onCleanup("temporary directory", func() error {
		if r.opts.Keep {
			return nil
		}
		return os.RemoveAll(dir)
	})

	t, s, err := r.lab()
	noV6 := errors.Is(err, ErrNoIPv6)
	if noV6 {
		err = nil
	}
	if err != nil {
		r.add(Result{Name: CheckNetwork, Status: Fail, Detail: err.Error(),
			Remedy: "see the kernel checks above; veth pairs need CONFIG_VETH (modprobe veth)"})
		skip(CheckService, "needs the test network")
		return
	}
	if noV6 {
		r.add(Result{Name: CheckNetwork, Status: Warn, Detail: fmt.Sprintf(
			"T=%s (%s) and S=%s (%s), one veth pair, no default route; IPv6 is turned off in this kernel",
			t.Name(), TargetV4, s.Name(), ScannerV4),
			Remedy: "the IPv6 checks are skipped; to run them, boot without ipv6.disable=1 and set net.ipv6.conf.default.disable_ipv6=0"})
	} else {
		r.add(Result{Name: CheckNetwork, Status: OK, Detail: fmt.Sprintf(
			"T=%s (%s, %s) and S=%s (%s, %s), one veth pair, no default route",
			t.Name(), TargetV4, TargetV6, s.Name(), ScannerV4, ScannerV6)})
	}

	svc := netip.AddrPortFrom(netip.IPv6Unspecified(), ServicePort)
	l, err := t.Listen(svc)
	if err != nil {
		r.add(Result{Name: CheckService, Status: Fail, Detail: err.Error()})
		skip(CheckConfig, "needs the service")
		return
	}
	var served sync.WaitGroup
	served.Go(func() { serve(l) })
	r.onCleanup("service", func() error {
		err := l.Close()
		served.Wait()
		return err
	})
	r.add(Result{Name: CheckService, Status: OK, Detail: fmt.Sprintf(
		"a TCP service listens on port %d in T, started before the daemon", ServicePort)})

	conf, detail, err := r.configure(ctx, bin, dir, t)
	if err != nil {
		r.add(Result{Name: CheckConfig, Status: Fail, Detail: err.Error(), Remedy: detail})
		skip(CheckDaemon, "needs a configuration")
		return
	}
	r.add(Result{Name: CheckConfig, Status: OK, Detail: detail})

	argv := []string{bin, "-c", conf, "-atcp", "-audp"}
	r.log = &logBuf{}
	var out io.Writer = r.log
	if f, err := os.Create(filepath.Join(dir, "daemon.log")); err == nil {
		out = io.MultiWriter(r.log, f)
		r.onCleanup("daemon log", f.Close)
	}
	p, err := r.sys.Start(t, argv, dir, out)
	if err != nil {
		r.add(Result{Name: CheckDaemon, Status: Fail, Detail: strings.Join(argv, " ") + ": " + err.Error()})
		skip(FamilyChecks("IPv4")[0], "needs the daemon")
		return
	}
	r.onCleanup("daemon", func() error { return p.Stop(stopGrace) })
	line, err := r.waitLine(ctx, p, readyWait, func(l string) int {
		if strings.Contains(l, readyLine) {
			return found
		}
		return 0
	})
	if err != nil {
		r.add(Result{Name: CheckDaemon, Status: Fail, Detail: err.Error(),
			Remedy: "see the daemon log below"})
		skip(FamilyChecks("IPv4")[0], "needs the daemon")
		return
	}
	r.add(Result{Name: CheckDaemon, Status: OK, Detail: "in T, advanced mode (-atcp -audp): " + trimStamp(line)})

	for _, v6 := range []bool{false, true} {
		if ctx.Err() != nil {
			break
		}
		if v6 && noV6 {
			for _, n := range FamilyChecks("IPv6") {
				r.add(Result{Name: n, Status: Skip, Detail: "IPv6 is turned off in this kernel"})
			}
			continue
		}
		r.family(ctx, s, p, v6)
	}
	if err := ctx.Err(); err != nil {
		// Whatever has not run yet is reported, so that the checklist is
		// complete.
		st := Fail
		for _, n := range later {
			if _, ok := r.rep.Find(n); !ok {
				r.add(Result{Name: n, Status: st, Detail: "not run: " + timeoutWords(err)})
				st = Skip
			}
		}
		return
	}
	r.serviceQuiet()
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
		if pid, err := strconv.Atoi(pidStr); err == nil && pid > 0 && pid != os.Getpid() && !processRuns(pid) {
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

// family runs the service, probe, block and hold checks over IPv4 or IPv6.
func (r *runner) family(ctx context.Context, s Netns, p Process, v6 bool) {
	fam, src, dst := "IPv4", ScannerV4, TargetV4
	if v6 {
		fam, src, dst = "IPv6", ScannerV6, TargetV6
	}
	names := FamilyChecks(fam)
	skipFrom := func(i int, why string) {
		for _, n := range names[i:] {
			r.add(Result{Name: n, Status: Skip, Detail: why})
		}
	}
	svc := netip.AddrPortFrom(dst, ServicePort)

	local, err := dialService(ctx, s, svc)
	if err != nil {
		r.add(Result{Name: names[0], Status: Fail, Detail: fmt.Sprintf("%s → %s: %v", src, svc, err),
			Remedy: "the test network does not carry this traffic; see the daemon log below"})
		skipFrom(1, "needs the service reachable")
		return
	}
	r.add(Result{Name: names[0], Status: OK, Detail: fmt.Sprintf("%s → %s: connected, read the service's greeting", local, svc)})

	probe := netip.AddrPortFrom(dst, ProbePort)
	answer := sendProbe(ctx, s, probe)
	port := strconv.Itoa(ProbePort)
	attack, err := r.waitLine(ctx, p, detectWait, func(l string) int {
		if strings.Contains(l, "attackalert:") && strings.Contains(l, "/"+src.String()+" to TCP port: "+port) {
			return found
		}
		return 0
	})
	if err != nil {
		r.add(Result{Name: names[1], Status: Fail,
			Detail: fmt.Sprintf("TCP SYN %s → %s (%s); no attackalert: %v", src, probe, answer, err),
			Remedy: "the packet sensor did not report the probe; see the daemon log below"})
		skipFrom(2, "needs the probe detected")
		return
	}
	r.add(Result{Name: names[1], Status: OK, Detail: trimStamp(attack)})

	blockedVia := "Host " + src.String() + " has been blocked"
	scanFrom := "Scan from: [" + src.String() + "]"
	notBlocked := "Host " + src.String() + " was NOT blocked"
	line, err := r.waitLine(ctx, p, detectWait, func(l string) int {
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
		if errs := r.log.matching(func(l string) bool {
			return strings.Contains(l, "ERROR") && strings.Contains(l, src.String())
		}); len(errs) > 0 {
			detail = strings.Join(errs, " | ")
		}
		r.add(Result{Name: names[2], Status: Fail, Detail: detail,
			Remedy: "the block did not happen; see the attackalert: ERROR lines in the daemon log below"})
		skipFrom(3, "needs the scanner blocked")
		return
	}
	// The wrappers/route line says how; the Scan from line only that it was.
	if how := r.log.matching(func(l string) bool { return strings.Contains(l, blockedVia) }); len(how) > 0 {
		line = how[0]
	}
	r.add(Result{Name: names[2], Status: OK, Detail: trimStamp(line)})

	c, err := s.Dial(ctx, svc, holdWait)
	if err == nil {
		from := c.LocalAddr().String()
		c.Close()
		r.add(Result{Name: names[3], Status: Fail,
			Detail: fmt.Sprintf("%s → %s connected after the block", from, svc),
			Remedy: "the block command ran but did not stop the scanner's traffic: check KILL_ROUTE / BLOCKER in the configuration"})
		return
	}
	if ctx.Err() != nil {
		r.add(Result{Name: names[3], Status: Fail, Detail: "not run: " + timeoutWords(ctx.Err())})
		return
	}
	r.add(Result{Name: names[3], Status: OK, Detail: fmt.Sprintf("%s → %s now fails: %s", src, svc, dialWords(err))})
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
		for _, l := range r.log.lines() {
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
			for _, l := range r.log.lines() {
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

// logBuf collects the daemon's output while the self-test reads it.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lines returns the complete lines so far.
func (l *logBuf) lines() []string {
	s := l.String()
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return strings.Split(s[:i], "\n")
	}
	return nil
}

// matching returns the lines (timestamps dropped) for which keep is true.
func (l *logBuf) matching(keep func(string) bool) []string {
	var out []string
	for _, line := range l.lines() {
		if t := trimStamp(line); keep(t) {
			out = append(out, t)
		}
	}
	return out
}
