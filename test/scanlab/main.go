// Command scanlab is the scan-lab benchmark: it measures what real scanners
// learn from a host protected by portsentry before the block lands.
//
//	sudo go run ./test/scanlab [-blocker nftables|command] [-mode atcp,audp] [-scans syn,fin,udp,syn6,masscan] [-out FILE] [-keep]
//	make scanlab SCANLAB_FLAGS='-mode tcp,udp'
//
// It needs root, nmap, masscan, tcpdump and nftables (apt-get install nmap
// masscan tcpdump nftables). It builds the daemon, then creates network
// namespaces named pslab-PID-*: the target T (the daemon, a real TCP service
// on port 80 and a real UDP service on port 53), the scanner S and an
// innocent host I, on one bridge in a hub namespace, 10.232.0.0/24 and
// fd00:232::/64. The namespaces have no default route: every packet stays
// inside them. They are deleted at the end, also on error and on Ctrl-C;
// leftovers of a killed run are deleted at the next start.
//
// -blocker picks how the daemon blocks:
//
//   - nftables (the default): BLOCKER="nftables", KERNEL_TRAP="1",
//     BAN_TIME="3600". The daemon makes its own table, inet portsentry, in
//     T, whose trap bans a scanner inside the packet path on its first probe
//     of a trap port; the daemon then bans it too, from user space.
//   - command: PortSentry's way, KILL_ROUTE/KILL_ROUTE6 run a shell script
//     that adds the scanner to an nftables set of the lab's own table
//     (inet lab) and records the time.
//   - killroute: what admins upgrading from PortSentry 1.2 keep,
//     BLOCKER="command" with KILL_ROUTE="iptables -I INPUT -s $TARGET$ -j
//     DROP" (ip6tables for KILL_ROUTE6). The block time is read from the
//     capture: T's last reply to S.
//
// -debian12 runs every scan against Debian's PortSentry 1.2 too (the
// portsentry package, fetched with apt-get download into
// .cache/debian-portsentry and run from there, never installed), on the
// same configuration file, one process per mode as Debian runs it, in a
// mount namespace of its own where /etc/portsentry/portsentry.conf is the
// scan's file. IPv4 scans only (1.2 has no IPv6), with the command or
// killroute blocker. -runs repeats every scan (each daemon in turn) and
// the report adds the medians:
//
//	make scanlab SCANLAB_FLAGS='-blocker killroute -debian12 -runs 5 -mode atcp -scans syn'
//
// For each scan a fresh daemon and a fresh ban table are made, tcpdump
// records T's interface, I keeps using T's services every 50 ms, and S runs
// the scanner. The table it prints counts the probes S sent, the replies T
// sent back (everything the scanner learned), when the block landed, and
// whether the innocent host noticed anything. With the command blocker the
// block time is when the script had added S to the ban set (tcpdump's
// timestamps and the script's `date +%s.%N` read the same clock). With the
// kernel trap no program runs at the moment of the ban, so the table gives
// instead the time of the last packet T sent to S (none: the first probe was
// already trapped) and the time of the daemon's log line "Host S has been
// blocked via nftables" (millisecond timestamps, same clock).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/portsentry-go/portsentry/internal/netns"
	"github.com/portsentry-go/portsentry/test/internal/labenv"
	"github.com/portsentry-go/portsentry/test/internal/labproc"
	"github.com/portsentry-go/portsentry/test/internal/labsvc"
)

func main() {
	if code, ok := labsvc.Main(os.Args[1:]); ok {
		os.Exit(code)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options is the parsed command line.
type options struct {
	blocker string   // blockerNFT, blockerCommand or blockerKillRoute
	modes   []string // 1.2 mode names: tcp, udp, atcp, …
	scans   []scanDef
	out     string
	keep    bool
	timeout time.Duration
	// debian12 runs each scan against Debian's PortSentry 1.2 too.
	debian12 bool
	runs     int // each scan, per daemon
}

// The values of -blocker.
const (
	blockerNFT     = "nftables" // BLOCKER="nftables" with the kernel trap
	blockerCommand = "command"  // KILL_ROUTE running the lab's block script
	// blockerKillRoute: KILL_ROUTE running iptables, as 1.2's admins have it.
	blockerKillRoute = "killroute"
)

const (
	defaultMode  = "atcp,audp"
	defaultScans = "syn,fin,udp,syn6,masscan"
	installHint  = "apt-get install nmap masscan tcpdump nftables"
)

var errInterrupted = errors.New("interrupted")

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("scanlab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mode := fs.String("mode", defaultMode, "daemon modes, comma-separated 1.2 names: `atcp,audp` (advanced), tcp,udp (connect), stcp,sudp (stealth)")
	scans := fs.String("scans", defaultScans, "`list` of scans to run, from "+defaultScans)
	o := &options{}
	fs.StringVar(&o.blocker, "blocker", blockerNFT, "how the daemon blocks: `nftables` (BLOCKER=\"nftables\", KERNEL_TRAP=\"1\": the in-kernel trap) or command (KILL_ROUTE running nft, as PortSentry does)")
	fs.StringVar(&o.out, "out", "", "also write the Markdown report to `FILE`")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (captures, daemon logs, scanner output)")
	fs.DurationVar(&o.timeout, "timeout", 20*time.Minute, "give up (and clean up) after this long (the default is per run of the scans, and per daemon with -debian12)")
	fs.BoolVar(&o.debian12, "debian12", false, "run every scan against Debian's PortSentry 1.2 too (apt-get download portsentry; IPv4 scans, -blocker command or killroute)")
	fs.IntVar(&o.runs, "runs", 1, "run every scan `N` times (per daemon); the report adds the medians")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: scanlab [flags]   (as root; needs %s)\n", installHint)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.blocker != blockerNFT && o.blocker != blockerCommand && o.blocker != blockerKillRoute {
		return nil, fmt.Errorf("-blocker: unknown blocker %q (want %s, %s or %s)", o.blocker, blockerNFT, blockerCommand, blockerKillRoute)
	}
	if o.runs < 1 {
		return nil, fmt.Errorf("-runs: %d (want 1 or more)", o.runs)
	}
	if o.debian12 && o.blocker == blockerNFT {
		return nil, errors.New("-debian12: PortSentry 1.2 blocks with commands only: add -blocker killroute (or command)")
	}
	seen := map[string]bool{}
	for _, m := range splitList(*mode) {
		switch m {
		case "tcp", "udp", "stcp", "sudp", "atcp", "audp":
		default:
			return nil, fmt.Errorf("-mode: unknown mode %q (want tcp, udp, stcp, sudp, atcp, audp)", m)
		}
		proto := strings.TrimLeft(m, "sa")
		if seen[proto] {
			return nil, fmt.Errorf("-mode: two modes for %s", proto)
		}
		seen[proto] = true
		o.modes = append(o.modes, m)
	}
	if len(o.modes) == 0 {
		return nil, errors.New("-mode: empty")
	}
	for _, s := range splitList(*scans) {
		d, ok := scanByName(s)
		if !ok {
			return nil, fmt.Errorf("-scans: unknown scan %q (want some of %s)", s, defaultScans)
		}
		o.scans = append(o.scans, d)
	}
	if len(o.scans) == 0 {
		return nil, errors.New("-scans: empty")
	}
	if o.debian12 {
		for _, s := range o.scans {
			if s.v6 {
				return nil, fmt.Errorf("-debian12: PortSentry 1.2 has no IPv6: drop %s from -scans", s.name)
			}
		}
	}
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "timeout" })
	if !explicit {
		daemons := 1
		if o.debian12 {
			daemons = 2
		}
		o.timeout *= time.Duration(o.runs * daemons)
	}
	return o, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// command is the canonical command line that reproduces this run.
func (o *options) command() string {
	var names []string
	for _, s := range o.scans {
		names = append(names, s.name)
	}
	cmd := fmt.Sprintf("go run ./test/scanlab -blocker %s -mode %s -scans %s", o.blocker, strings.Join(o.modes, ","), strings.Join(names, ","))
	if o.debian12 {
		cmd += " -debian12"
	}
	if o.runs > 1 {
		cmd += fmt.Sprintf(" -runs %d", o.runs)
	}
	return cmd
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "scanlab:", err)
		return 2
	}
	// The first Ctrl-C (or SIGTERM) cancels the run, which then cleans up
	// in order; a second one kills every process and namespace at once.
	sigCtx, interrupt := context.WithCancelCause(context.Background())
	defer interrupt(nil)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		if _, ok := <-sigs; !ok {
			return
		}
		fmt.Fprintln(stderr, "\nscanlab: interrupted: cleaning up (interrupt again to abort at once)")
		interrupt(errInterrupted)
		if _, ok := <-sigs; ok {
			fmt.Fprintln(stderr, "scanlab: aborting: killing processes, deleting namespaces")
			labproc.KillAll()
			removeOwnNamespaces()
			os.Exit(130)
		}
	}()
	ctx, cancel := context.WithTimeout(sigCtx, o.timeout)
	defer cancel()

	rep, err := benchmark(ctx, o, stderr)
	if errors.Is(err, errModeUnsupported) {
		rep = nil // nothing was measured
	}
	if rep != nil && len(rep.results) > 0 {
		md := rep.markdown()
		fmt.Fprint(stdout, md)
		if o.out != "" {
			if werr := os.WriteFile(o.out, []byte(md), 0o644); werr != nil {
				fmt.Fprintln(stderr, "scanlab:", werr)
				return 1
			}
		}
	}
	if err != nil {
		if errors.Is(context.Cause(sigCtx), errInterrupted) {
			err = errInterrupted
		} else if ctx.Err() != nil {
			err = fmt.Errorf("gave up after -timeout %v: %w", o.timeout, err)
		}
		fmt.Fprintln(stderr, "scanlab:", err)
		return 1
	}
	if rep.failed() {
		return 1
	}
	return 0
}

// preflight checks root and the tools the selected scans need.
func preflight(o *options) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root to create network namespaces: sudo make scanlab (or sudo env PATH=$PATH go run ./test/scanlab)")
	}
	need := []string{"ip", "nft", "tcpdump"}
	for _, s := range o.scans {
		need = append(need, s.tool)
	}
	if o.blocker == blockerKillRoute {
		need = append(need, "iptables", "ip6tables")
	}
	if o.debian12 {
		need = append(need, "unshare", "dpkg-deb", "apt-get")
	}
	var missing []string
	seen := map[string]bool{}
	for _, t := range need {
		if seen[t] {
			continue
		}
		seen[t] = true
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s: %s (and iproute2 for ip)", strings.Join(missing, ", "), installHint)
	}
	return nil
}

// benchmark runs the whole lab. The report holds the scans done so far,
// also when it returns an error.
func benchmark(ctx context.Context, o *options, stderr io.Writer) (*report, error) {
	start := time.Now()
	if err := preflight(o); err != nil {
		return nil, err
	}
	progress := func(format string, a ...any) {
		fmt.Fprintf(stderr, "scanlab: "+format+"\n", a...)
	}
	if removed := removeLeftovers(); len(removed) > 0 {
		progress("removed leftover namespaces %s", strings.Join(removed, " "))
	}
	work, err := os.MkdirTemp("", "pslab-run-")
	if err != nil {
		return nil, err
	}
	if o.keep {
		defer progress("kept the work directory %s", work)
	} else {
		defer os.RemoveAll(work)
	}
	tools, err := lookTools()
	if err != nil {
		return nil, err
	}

	root, err := labenv.RepoRoot("scanlab")
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(work, "portsentry")
	progress("building the daemon: go build -o %s ./cmd/portsentry", bin)
	if err := labenv.BuildDaemon(ctx, root, bin); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}

	rep := &report{
		date:     time.Now().UTC(),
		kernel:   labenv.KernelRelease(),
		versions: toolVersions(ctx, o),
		revision: labenv.GitRevision(root),
		opts:     o,
	}
	defer func() { rep.elapsed = time.Since(start) }()

	progress("creating namespaces %s*-{h,t,s,i}", netns.Own(nsPrefix))
	l, err := newLab(ctx)
	if err != nil {
		return rep, fmt.Errorf("building the lab: %w", err)
	}
	defer l.close()
	defer labproc.KillAll() // processes first, then the namespaces

	services, err := labproc.Start("services in T", true, l.T.ns.Argv(self, labsvc.Serve)...)
	if err != nil {
		return rep, err
	}
	defer services.Stop(0, 3*time.Second)
	if err := services.WaitOutput(ctx, labsvc.ReadyMark, 10*time.Second); err != nil {
		return rep, err
	}

	daemons := []*debian12{nil} // nil: this repository's daemon
	if o.debian12 {
		legacy, err := fetchDebian12(ctx, root)
		if err != nil {
			return rep, err
		}
		rep.debian12 = legacy
		daemons = append(daemons, legacy)
	}
	total, n := o.runs*len(o.scans)*len(daemons), 0
	for run := 1; run <= o.runs; run++ {
		for _, s := range o.scans {
			for _, legacy := range daemons {
				n++
				label := s.name
				if o.runs > 1 || o.debian12 {
					label = fmt.Sprintf("%s, run %d, %s", s.name, run, daemonOurs)
					if legacy != nil {
						label = fmt.Sprintf("%s, run %d, %s", s.name, run, daemon12)
					}
				}
				progress("[%d/%d] %s: %s", n, total, label, s.title)
				dir := filepath.Join(work, fmt.Sprintf("%d-%s", n, s.name))
				if err := os.Mkdir(dir, 0o700); err != nil {
					return rep, err
				}
				r := runScan(ctx, l, o, s, tools, bin, self, dir, legacy, run)
				rep.results = append(rep.results, r)
				progress("[%d/%d] %s: %s", n, total, label, r.summary())
				if errors.Is(r.err, errModeUnsupported) {
					return rep, r.err
				}
				if ctx.Err() != nil {
					return rep, ctx.Err()
				}
			}
		}
	}
	rep.elapsed = time.Since(start)
	return rep, nil
}

// tools holds the absolute paths of the programs scanlab runs.
type tools struct {
	nft, tcpdump, nmap, masscan, date string
	iptables, ip6tables               string // for -blocker killroute
}

func lookTools() (tools, error) {
	var t tools
	var err error
	for _, x := range []struct {
		dst      *string
		name     string
		optional bool
	}{
		{&t.nft, "nft", false}, {&t.tcpdump, "tcpdump", false}, {&t.date, "date", false},
		{&t.nmap, "nmap", true}, {&t.masscan, "masscan", true},
		{&t.iptables, "iptables", true}, {&t.ip6tables, "ip6tables", true},
	} {
		if *x.dst, err = exec.LookPath(x.name); err != nil && !x.optional {
			return t, fmt.Errorf("%s: %w (%s)", x.name, err, installHint)
		}
		if *x.dst != "" {
			*x.dst, _ = filepath.Abs(*x.dst)
		}
	}
	return t, nil
}

// toolVersions returns the first line naming a version of each scanner and
// of tcpdump.
func toolVersions(ctx context.Context, o *options) []string {
	seen := map[string]bool{}
	var out []string
	for _, t := range append([]string{"tcpdump"}, func() []string {
		var s []string
		for _, d := range o.scans {
			s = append(s, d.tool)
		}
		return s
	}()...) {
		if seen[t] {
			continue
		}
		seen[t] = true
		out = append(out, labenv.ToolVersion(ctx, t))
	}
	return out
}

// blockRecord is one line the block script wrote: which set, which address,
// when the nft command had returned.
type blockRecord struct {
	set  string
	addr netip.Addr
	at   time.Time
}

func readBlocks(path string) ([]blockRecord, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var recs []blockRecord
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return recs, fmt.Errorf("%s: bad line %q", path, line)
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil {
			return recs, fmt.Errorf("%s: bad address in %q", path, line)
		}
		t, err := parseEpoch(f[2])
		if err != nil {
			return recs, fmt.Errorf("%s: bad time in %q: %v", path, line, err)
		}
		recs = append(recs, blockRecord{set: f[0], addr: a, at: t})
	}
	return recs, nil
}

// parseEpoch parses date +%s.%N.
func parseEpoch(s string) (time.Time, error) {
	secStr, fracStr, _ := strings.Cut(s, ".")
	sec, err := strconv.ParseInt(secStr, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	var ns int64
	if fracStr != "" {
		if len(fracStr) > 9 {
			fracStr = fracStr[:9]
		}
		fracStr += strings.Repeat("0", 9-len(fracStr))
		if ns, err = strconv.ParseInt(fracStr, 10, 64); err != nil {
			return time.Time{}, err
		}
	}
	return time.Unix(sec, ns), nil
}

// mentions reports whether text contains the address a as a whole token.
func mentions(text string, a netip.Addr) bool {
	s := a.String()
	for i := 0; i < len(text); {
		j := strings.Index(text[i:], s)
		if j < 0 {
			return false
		}
		j += i
		end := j + len(s)
		if (j == 0 || !isAddrChar(text[j-1])) && (end == len(text) || !isAddrChar(text[end])) {
			return true
		}
		i = j + 1
	}
	return false
}

func isAddrChar(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '.' || c == ':'
}
