// Command fleetlab is the fleet benchmark (issue 10): how long a ban made
// on one member takes to be in the kernel's ban sets of the others.
//
//	sudo go run ./test/fleetlab [-bans 1000] [-modes embedded,external,scale] [-out FILE]
//	sudo go run ./test/fleetlab -modes scale [-members 200] [-rate 1000] [-duration 60s] [-readers N]
//	sudo go run ./test/fleetlab -modes partition [-partition 60s] [-runs 3]
//	make fleetlab FLEETLAB_FLAGS='-bans 200'
//
// It needs root and nftables. It builds the daemon from ./cmd/portsentry
// and, for the external cluster, nats-server v2.15.3 from the module
// (github.com/nats-io/nats-server/v2, the go.mod's version), then creates
// network namespaces named psfleet-lab-PID-* (-ns-prefix chooses another
// prefix): members A, B and C, each
// running the real daemon (BLOCKER="nftables", advanced mode, the kernel
// trap), and, for the external cluster, three NATS servers N1..N3, on one
// bridge in a hub namespace, 10.234.0.0/24. No namespace has a link to
// the host; everything is deleted at the end.
//
// Modes:
//
//   - embedded: each member runs its embedded server (FLEET_LISTEN,
//     FLEET_CLUSTER, FLEET_ROUTES), the three forming a cluster, the stream
//     with three replicas;
//   - external: the members point FLEET_URL at an external three-node
//     cluster of nats-server processes with JetStream (the stream again
//     with three replicas).
//
// For each mode, once every member has heard of the other two, A bans
// -bans addresses of 198.18.0.0/15 one after another through its control
// socket (portsentry block, a ban shared like any other), each as soon as
// the previous one is in both B's and C's sets. B's and C's kernel sets
// are watched through nftables' netlink events in their namespaces (what
// `nft monitor` prints): the time from the moment A's control socket was
// asked for the ban (A then bans it in its own kernel set, and shares it)
// to the event announcing the element in B's, and C's, set is one
// propagation. The table gives p50, p99 and the maximum for B and C and
// for the later of the two.
//
// The scale run (-modes scale, scale.go) puts one real daemon, B, among
// -members simulated members on the external cluster: a simulator process
// (fleetlab -simulate, in a namespace of its own) runs one fleet.Member
// (the daemon's own fleet code) per simulated member, sharing -rate bans
// a second in all, round robin, for -duration, each also reading the
// whole stream as a member does; the table gives the propagation from
// each ban shared to the address's event in B's kernel set (p50, p99,
// max), B's CPU (cores, from /proc/PID/stat) and memory (VmRSS, VmHWM),
// what the simulated members read, and the CPU of the NATS servers and
// the simulator over the run.
//
// The partition run (-modes partition, partition.go) is the embedded
// fleet's catch-up: B cut off for -partition while A bans 100 addresses,
// then B killed with kill -9 while A bans 100 more, -runs times.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/nftables"

	"github.com/portsentry-go/portsentry/internal/control"
	"github.com/portsentry-go/portsentry/internal/netns"
)

// nsPrefix starts the names of the lab's namespaces (-ns-prefix): runs
// beside other work that sweeps "psfleet-" choose their own.
var nsPrefix = "psfleet-lab-"

// The scale run's flags.
var (
	scaleMembers  int
	scaleRate     int
	scaleDuration time.Duration
	scaleReaders  int // -1: every simulated member reads
)

// The partition run's flags.
var (
	partitionFor  time.Duration
	partitionRuns int
	daemonDebug   bool
)

func main() {
	bansN := flag.Int("bans", 1000, "bans A makes in each mode")
	modes := flag.String("modes", "embedded,external", "embedded, external or both")
	out := flag.String("out", "", "also write the table to FILE")
	keep := flag.Bool("keep", false, "keep the work directory")
	flag.StringVar(&nsPrefix, "ns-prefix", nsPrefix, "name the lab's network namespaces `PREFIX`PID-ROLE (and sweep stale PREFIX* ones)")
	flag.IntVar(&scaleMembers, "members", 200, "scale: simulated members")
	flag.IntVar(&scaleRate, "rate", 1000, "scale: bans a second, all simulated members together")
	flag.DurationVar(&scaleDuration, "duration", time.Minute, "scale: how long they ban")
	flag.IntVar(&scaleReaders, "readers", -1, "scale: how many simulated members also read the stream as real members do (-1: all); the others only publish")
	flag.DurationVar(&partitionFor, "partition", time.Minute, "partition: how long B is cut off")
	flag.IntVar(&partitionRuns, "runs", 3, "partition: how many times")
	flag.BoolVar(&daemonDebug, "debug", false, "run the daemons with -d (their NATS servers' lines in daemon.log; with -keep)")
	var sim simArgs
	flag.BoolVar(&sim.on, "simulate", false, "internal: be the simulator")
	flag.StringVar(&sim.urls, "sim-urls", "", "internal")
	flag.IntVar(&sim.members, "sim-members", 0, "internal")
	flag.IntVar(&sim.rate, "sim-rate", 0, "internal")
	flag.DurationVar(&sim.duration, "sim-duration", 0, "internal")
	flag.StringVar(&sim.out, "sim-out", "", "internal")
	flag.IntVar(&sim.readers, "sim-readers", -1, "internal")
	flag.Parse()
	if !validPrefix(nsPrefix) {
		fmt.Fprintf(os.Stderr, "fleetlab: -ns-prefix %q: want 1 to 12 lowercase letters, digits or -\n", nsPrefix)
		os.Exit(2)
	}
	if sim.on {
		if err := sim.run(); err != nil {
			fmt.Fprintln(os.Stderr, "fleetlab simulator:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *bansN, strings.Split(*modes, ","), *out, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "fleetlab:", err)
		os.Exit(1)
	}
}

// validPrefix reports whether p can start a namespace name (netns's
// names are short: PREFIX, a PID and a role).
func validPrefix(p string) bool {
	if p == "" || len(p) > 12 {
		return false
	}
	for _, c := range p {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func run(ctx context.Context, n int, modes []string, outPath string, keep bool) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, nftables)")
	}
	nft, err := exec.LookPath("nft")
	if err != nil {
		return errors.New("needs nft: apt-get install nftables")
	}
	_, _ = netns.Sweep(nsPrefix)
	work, err := os.MkdirTemp("", "fleetlab-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(work)
	}
	bin, natsd := filepath.Join(work, "portsentry"), filepath.Join(work, "nats-server")
	for _, b := range [][2]string{{bin, "./cmd/portsentry"}, {natsd, "github.com/nats-io/nats-server/v2"}} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", b[0], b[1])
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", b[1], err, out)
		}
	}
	commit, _ := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	var table strings.Builder
	command := fmt.Sprintf("-bans %d -modes %s -members %d -rate %d -duration %v", n, strings.Join(modes, ","), scaleMembers, scaleRate, scaleDuration)
	if scaleReaders >= 0 {
		command += fmt.Sprintf(" -readers %d", scaleReaders)
	}
	if slices.Equal(modes, []string{"partition"}) {
		command = fmt.Sprintf("-modes partition -partition %v -runs %d", partitionFor, partitionRuns)
	}
	fmt.Fprintf(&table, "fleetlab %s, commit %s, `sudo go run ./test/fleetlab %s`\n\n",
		time.Now().UTC().Format("2006-01-02"), strings.TrimSpace(string(commit)), command)
	if slices.ContainsFunc(modes, func(m string) bool { return m != "scale" && m != "partition" }) {
		table.WriteString("| NATS | to B p50 | to B p99 | to C p50 | to C p99 | both p50 | both p99 | both max | lost |\n|---|---|---|---|---|---|---|---|---|\n")
	}
	var scale *scaleResult
	var part []partitionRun
	for _, mode := range modes {
		if mode == "partition" {
			if part, err = runPartitionMode(ctx, bin, natsd, filepath.Join(work, mode)); err != nil {
				return fmt.Errorf("partition: %w", err)
			}
			continue
		}
		if mode == "scale" {
			sr, err := runScaleMode(ctx, bin, natsd, filepath.Join(work, mode))
			if err != nil {
				return fmt.Errorf("scale: %w", err)
			}
			scale = &sr
			continue
		}
		r, err := runMode(ctx, mode, n, bin, natsd, nft, filepath.Join(work, mode))
		if err != nil {
			return fmt.Errorf("%s: %w", mode, err)
		}
		fmt.Fprintf(&table, "| %s | %s | %s | %s | %s | %s | %s | %s | %d |\n", r.name,
			ms(pct(r.b, 50)), ms(pct(r.b, 99)), ms(pct(r.c, 50)), ms(pct(r.c, 99)),
			ms(pct(r.both, 50)), ms(pct(r.both, 99)), ms(pct(r.both, 100)), r.lost)
	}
	if scale != nil {
		sr := *scale
		fmt.Fprintf(&table, "\nScale: one real daemon (B) and %d simulated members on an external three-node cluster, %d bans a second for %v (`-modes scale -members %d -rate %d -duration %v -readers %d`)\n\n",
			sr.members, sr.rate, sr.d, sr.members, sr.rate, sr.d, scaleReaders)
		if sr.unpublished > 0 {
			fmt.Fprintf(&table, "%d of the %d bans were still waiting in their simulated members' queues five minutes after the last was due: not counted below.\n\n", sr.unpublished, sr.sent)
		}
		table.WriteString("| bans sent | applied by B | p50 | p99 | max | daemon CPU | daemon RSS (peak) |\n|---|---|---|---|---|---|---|\n")
		fmt.Fprintf(&table, "| %d | %d | %s | %s | %s | %.2f cores | %d MiB (%d MiB) |\n", sr.sent-sr.unpublished, sr.sent-sr.unpublished-sr.lost,
			ms(pct(sr.prop, 50)), ms(pct(sr.prop, 99)), ms(pct(sr.prop, 100)), sr.cpu, sr.rss/1024, sr.hwm/1024)
		fmt.Fprintf(&table, "\nThe %d simulated members published the last of their bans %.1f s after the first (%v of bans)", sr.members, sr.pubSecs, sr.d)
		if readers := scaleReaders; readers != 0 {
			if readers < 0 || readers > sr.members {
				readers = sr.members
			}
			fmt.Fprintf(&table, ", and %d of them, each reading the stream as a member does, read %d of the %d bans of others (%d applied, %d throttled), the last %.1f s after the first ban",
				readers, sr.read, sr.readWant, sr.readApplied, sr.readThrottled, sr.readSecs)
		} else {
			table.WriteString("; none of them read the stream (-readers 0)")
		}
		table.WriteString(".\n")
		fmt.Fprintf(&table, "Over the %.0f s from the simulator's start to B's last ban: the three NATS servers used %.2f cores together, the simulator %.2f, B %.2f.\n",
			sr.secs, sr.serverCPU, sr.simCPU, sr.cpu)
	}
	if part != nil {
		writePartition(&table, part)
	}
	fmt.Print(table.String())
	if outPath != "" {
		return os.WriteFile(outPath, []byte(table.String()), 0o644)
	}
	return nil
}

type result struct {
	name       string
	b, c, both []time.Duration
	lost       int
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(0, min(len(s)-1, i-1))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// lab is the namespaces of one mode.
type lab struct {
	hub     *netns.NS
	members []*netns.NS // A, B, C
	servers []*netns.NS // N1..N3 (external)
	sim     *netns.NS   // the simulated members (scale)
	procs   []*exec.Cmd
	// daemons are the members' processes (A, B, C; B alone in scale),
	// started with daemonArgs.
	daemons    []*exec.Cmd
	daemonArgs [][]string
}

func (l *lab) close() {
	for _, p := range l.procs {
		if p.Process != nil {
			_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
			_ = p.Wait()
		}
	}
	for _, n := range append(append(l.members, l.servers...), l.hub) {
		if n != nil {
			_ = n.Delete()
		}
	}
}

func addr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 234, 0, byte(i)}) }

func (l *lab) start(ns *netns.NS, logPath string, name string, args ...string) (*exec.Cmd, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := ns.Command(name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	l.procs = append(l.procs, cmd)
	return cmd, nil
}

func runMode(ctx context.Context, mode string, n int, bin, natsd, nft, dir string) (r result, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return r, err
	}
	l := &lab{}
	defer l.close()
	if l.hub, err = netns.New(nsPrefix, "hub"); err != nil {
		return r, err
	}
	var ifaces []netns.Iface
	for i, role := range []string{"a", "b", "c"} {
		ns, err := netns.New(nsPrefix, role)
		if err != nil {
			return r, err
		}
		l.members = append(l.members, ns)
		ifaces = append(ifaces, netns.Iface{NS: ns, Name: "eth0", Addrs: netns.OnLink(addr(i + 1))})
	}
	if mode == "external" || mode == "scale" {
		for i := range 3 {
			ns, err := netns.New(nsPrefix, fmt.Sprintf("n%d", i+1))
			if err != nil {
				return r, err
			}
			l.servers = append(l.servers, ns)
			ifaces = append(ifaces, netns.Iface{NS: ns, Name: "eth0", Addrs: netns.OnLink(addr(11 + i))})
		}
	}
	if mode == "scale" {
		ns, err := netns.New(nsPrefix, "sim")
		if err != nil {
			return r, err
		}
		l.servers = append(l.servers, ns) // deleted with them
		l.sim = ns
		ifaces = append(ifaces, netns.Iface{NS: ns, Name: "eth0", Addrs: netns.OnLink(addr(20))})
	}
	if err := netns.Star(l.hub, "br0", ifaces...); err != nil {
		return r, err
	}
	var urls []string
	switch mode {
	case "embedded", "partition":
		r.name = "embedded (3 daemons' servers, clustered)"
		for i := range 3 {
			urls = append(urls, fmt.Sprintf("nats://%s:4222", addr(i+1)))
		}
	case "external", "scale":
		r.name = "external (3 nats-server 2.15.3)"
		for i, ns := range l.servers[:3] {
			var routes []string
			for j := range 3 {
				if j != i {
					routes = append(routes, fmt.Sprintf("nats-route://%s:6222", addr(11+j)))
				}
			}
			a := addr(11 + i)
			if _, err := l.start(ns, filepath.Join(dir, fmt.Sprintf("n%d.log", i+1)), natsd, "-js", "-sd", filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
				"-n", fmt.Sprintf("n%d", i+1), "-a", a.String(), "-p", "4222", "--auth", "fleetlab",
				"--cluster_name", "fleetlab", "--cluster", fmt.Sprintf("nats://%s:6222", a), "--routes", strings.Join(routes, ",")); err != nil {
				return r, err
			}
			urls = append(urls, fmt.Sprintf("nats://%s:4222", a))
		}
	default:
		return r, fmt.Errorf("unknown mode %q", mode)
	}
	var socks []string
	var pids []int
	for i, ns := range l.members {
		if mode == "scale" && i != 1 {
			continue // B alone
		}
		name := string(rune('a' + i))
		mdir := filepath.Join(dir, name)
		if err := os.MkdirAll(mdir, 0o755); err != nil {
			return r, err
		}
		conf := []string{
			`BLOCKER="nftables"`, `BAN_TIME="3600"`, `SCAN_TRIGGER="0"`, `BLOCK_TCP="1"`, `BLOCK_UDP="1"`,
			`BAN_FILE="` + mdir + `/bans"`, `CONTROL_SOCKET="` + mdir + `/sock"`, `HISTORY_FILE="` + mdir + `/history"`,
			`BLOCKED_FILE="` + mdir + `/blocked"`, `FLEET_NAME="` + name + `"`, `FLEET_TOKEN="fleetlab"`,
			`FLEET_MAX_RATE="100000"`, `FLEET_MAX_BAN_TIME="3600"`, `FLEET_URL="` + strings.Join(urls, " ") + `"`,
		}
		if mode == "embedded" || mode == "partition" {
			var routes []string
			for j := range 3 {
				if j != i {
					routes = append(routes, fmt.Sprintf("%s:6222", addr(j+1)))
				}
			}
			conf = append(conf, fmt.Sprintf(`FLEET_LISTEN="%s:4222"`, addr(i+1)), fmt.Sprintf(`FLEET_CLUSTER="%s:6222"`, addr(i+1)),
				`FLEET_ROUTES="`+strings.Join(routes, " ")+`"`, `FLEET_STORE="`+mdir+`/fleet"`)
		}
		confPath := filepath.Join(mdir, "portsentry.conf")
		if err := os.WriteFile(confPath, []byte(strings.Join(conf, "\n")+"\n"), 0o644); err != nil {
			return r, err
		}
		args := []string{"-c", confPath, "-atcp", "-audp"}
		if daemonDebug {
			args = append(args, "-d")
		}
		cmd, err := l.start(ns, filepath.Join(mdir, "daemon.log"), bin, args...)
		if err != nil {
			return r, err
		}
		l.daemons, l.daemonArgs = append(l.daemons, cmd), append(l.daemonArgs, append([]string{bin}, args...))
		pids = append(pids, cmd.Process.Pid)
		socks = append(socks, filepath.Join(mdir, "sock"))
	}
	// The fleet is up when every member has heard of the three.
	deadline := time.Now().Add(60 * time.Second)
	for _, s := range socks {
		for {
			st, err := status(s)
			if err == nil && st.Fleet != nil && st.Fleet.Connected && (len(st.Fleet.Members) == 3 || mode == "scale") {
				break
			}
			if time.Now().After(deadline) {
				return r, fmt.Errorf("the fleet did not form in 60 s (%s: %+v, %v)", s, st.Fleet, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if mode == "partition" {
		lastPartition, err = runPartition(ctx, l, socks, nft, filepath.Join(dir, "b"))
		return r, err
	}
	if mode == "scale" {
		sr, err := runScale(ctx, l, l.members[1], pids[0], urls, scaleMembers, scaleRate, scaleDuration, dir)
		lastScale = sr
		return r, err
	}
	watchB, err := watch(ctx, l.members[1], nft)
	if err != nil {
		return r, err
	}
	defer watchB.stop()
	watchC, err := watch(ctx, l.members[2], nft)
	if err != nil {
		return r, err
	}
	defer watchC.stop()
	cl, err := control.Dial(socks[0])
	if err != nil {
		return r, err
	}
	defer cl.Close()
	// A first ban, not counted: the stream is created on first use.
	warm := netip.MustParseAddr("198.19.255.254")
	if _, err := cl.Block(warm, time.Hour, "fleetlab"); err != nil {
		return r, err
	}
	if _, _, ok := waitBoth(ctx, watchB, watchC, warm, 30*time.Second); !ok {
		return r, errors.New("the first ban did not reach B and C in 30 s")
	}
	for i := range n {
		a := netip.AddrFrom4([4]byte{198, 18, byte(i / 250), byte(1 + i%250)})
		t0 := time.Now()
		if _, err := cl.Block(a, time.Hour, "fleetlab"); err != nil {
			return r, err
		}
		tb, tc, ok := waitBoth(ctx, watchB, watchC, a, 5*time.Second)
		if !ok {
			r.lost++
			continue
		}
		r.b = append(r.b, tb.Sub(t0))
		r.c = append(r.c, tc.Sub(t0))
		r.both = append(r.both, max(tb.Sub(t0), tc.Sub(t0)))
	}
	return r, nil
}

// lastScale carries the scale run's figures out of runMode.
var lastScale scaleResult

func runScaleMode(ctx context.Context, bin, natsd, dir string) (scaleResult, error) {
	nft, _ := exec.LookPath("nft")
	_, err := runMode(ctx, "scale", 0, bin, natsd, nft, dir)
	return lastScale, err
}

func status(sock string) (control.Status, error) {
	c, err := control.Dial(sock)
	if err != nil {
		return control.Status{}, err
	}
	defer c.Close()
	return c.Status()
}

// watcher follows the nftables events of one namespace (netlink, as
// `nft monitor` does) and notes when each IPv4 address entered a set.
type watcher struct {
	mon  *nftables.Monitor
	mu   sync.Mutex
	seen map[netip.Addr]time.Time
	cond *sync.Cond
}

func watch(ctx context.Context, ns *netns.NS, _ string) (*watcher, error) {
	w := &watcher{seen: map[netip.Addr]time.Time{}}
	w.cond = sync.NewCond(&w.mu)
	conn, err := nftables.New(nftables.WithNetNSFd(ns.Fd()))
	if err != nil {
		return nil, err
	}
	w.mon = nftables.NewMonitor(nftables.WithMonitorAction(nftables.MonitorActionNew), nftables.WithMonitorObject(nftables.MonitorObjectElements))
	events, err := conn.AddMonitor(w.mon)
	if err != nil {
		return nil, err
	}
	go w.read(events)
	return w, nil
}

func (w *watcher) read(events chan *nftables.MonitorEvent) {
	for ev := range events {
		now := time.Now()
		elems, ok := ev.Data.([]nftables.SetElement)
		if ev.Type != nftables.MonitorEventTypeNewSetElem || !ok {
			continue
		}
		w.mu.Lock()
		for _, e := range elems {
			if len(e.Key) != 4 {
				continue
			}
			a := netip.AddrFrom4([4]byte(e.Key))
			if _, ok := w.seen[a]; !ok {
				w.seen[a] = now
			}
		}
		w.cond.Broadcast()
		w.mu.Unlock()
	}
	w.mu.Lock()
	w.cond.Broadcast()
	w.mu.Unlock()
}

func (w *watcher) stop() { _ = w.mon.Close() }

// when waits up to d for a to be seen.
func (w *watcher) when(a netip.Addr, d time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(d)
	timer := time.AfterFunc(d, func() { w.mu.Lock(); w.cond.Broadcast(); w.mu.Unlock() })
	defer timer.Stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		if t, ok := w.seen[a]; ok {
			return t, true
		}
		if time.Now().After(deadline) {
			return time.Time{}, false
		}
		w.cond.Wait()
	}
}

func waitBoth(ctx context.Context, b, c *watcher, a netip.Addr, d time.Duration) (tb, tc time.Time, ok bool) {
	if ctx.Err() != nil {
		return tb, tc, false
	}
	tb, okb := b.when(a, d)
	tc, okc := c.when(a, d)
	return tb, tc, okb && okc
}
