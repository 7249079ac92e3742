package main

// The scale run (-modes scale): one real daemon B among simulated members
// on one external three-node NATS cluster. A simulator process in its own
// namespace (fleetlab itself, re-run with -simulate) connects -members
// NATS clients, each publishing as its own member, -rate bans a second in
// all (round robin) for -duration; B applies them. Propagation is from
// the simulator's publish call to the address's event in B's kernel set
// (one clock: the same host). The simulated members are fleet.Members,
// as in the daemon: each publishes its share, says it is there, and
// reads the whole stream (its own consumer, from the first message), so
// the cluster serves -members + 1 readers. With -readers N only the first
// N do; the others only publish (a NATS connection each, the fleet's
// message on its member's subject, each publish acknowledged before the
// next) and say they are there: the cluster's delivery load then stays
// what this machine can carry, and the run measures the real daemon.

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portsentry-go/portsentry/internal/enforce/bans"
	"github.com/portsentry-go/portsentry/internal/fleet"
	"github.com/portsentry-go/portsentry/internal/netns"
)

// simAddr is the i-th address the simulator bans: 198.18.0.0/15.
func simAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18 + byte(i>>16&1), byte(i >> 8), byte(i)})
}

// simulate is the simulator process: members fleet.Members (the
// daemon's own fleet code: the same consumer, subjects, presence and
// publisher as a real member) each share every members-th of rate bans
// a second for d, and each reads the whole stream as a real member does.
// It writes the time each ban was shared (Unix ns, one a line, in order)
// to out, and what the simulated members read to out+".readers".
func simulate(urls string, members, readers, rate int, d time.Duration, out string) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	var applied atomic.Uint64
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	if readers < 0 || readers > members {
		readers = members
	}
	sims := make([]simMember, members)
	for i := readers; i < members; i++ {
		p, err := newPublisher(ctx, urls, fmt.Sprintf("sim%d", i))
		if err != nil {
			return err
		}
		sims[i] = p
		wg.Go(func() { p.run(ctx) })
	}
	for i := range readers {
		m, err := fleet.New(fleet.Config{Name: fmt.Sprintf("sim%d", i), URLs: strings.Split(urls, ","), Token: "fleetlab",
			MaxRate: 100000, MaxBanTime: time.Hour}, simSink{&applied}, log)
		if err != nil {
			return err
		}
		sims[i] = m
		wg.Go(func() { m.Run(ctx) })
	}
	// Every reader connected and hearing every member (B included): their
	// consumers are reading by then, or catch up from the first message.
	if err := waitFor(60*time.Second, func() bool {
		for _, m := range sims[:readers] {
			if st := m.Status(); !st.Connected || len(st.Members) < members+1 {
				return false
			}
		}
		for _, m := range sims[readers:] {
			if !m.Status().Connected {
				return false
			}
		}
		return true
	}); err != nil {
		return fmt.Errorf("simulated members not all connected and heard from: %w", err)
	}
	// B reading: its consumer made (B creates the stream first, and its
	// first try may time out while the cluster elects the stream's
	// leader). Bans shared before would wait for it, and the run would
	// time B's start instead of the fleet.
	if err := waitConsumer(ctx, urls, "b-"); err != nil {
		return fmt.Errorf("the real daemon B never read the stream: %w", err)
	}
	n := int(d.Seconds() * float64(rate))
	sent := make([]int64, n)
	start := time.Now()
	every := time.Second / time.Duration(rate)
	for i := range n {
		if w := time.Until(start.Add(time.Duration(i) * every)); w > 0 {
			time.Sleep(w)
		}
		now := time.Now()
		sent[i] = now.UnixNano()
		sims[i%members].Share(bans.Ban{Addr: simAddr(i), Reason: "fleetlab", Since: now, Expires: now.Add(time.Hour), Count: 1})
	}
	// Every ban out (a member publishes its own in order, each once the
	// last is acknowledged, as the daemon does), or five minutes more:
	// past it, what did not go out is written as 0 (the machine could not
	// keep up; the table says so).
	published := func() (all uint64, each []uint64) {
		for _, m := range sims {
			p := m.Status().Published
			all += p
			each = append(each, p)
		}
		return all, each
	}
	_ = waitFor(5*time.Minute, func() bool { p, _ := published(); return p == uint64(n) })
	pubSecs := time.Since(start).Seconds()
	_, each := published()
	var b strings.Builder
	for i, t := range sent {
		if uint64(i/members) >= each[i%members] {
			t = 0 // still in its member's queue: each member publishes in order
		}
		b.WriteString(strconv.FormatInt(t, 10))
		b.WriteByte('\n')
	}
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		return err
	}
	// Each reader reads every ban but its own: until all are read, or
	// none more came for 10 s.
	want := uint64(n) * uint64(readers)
	if readers > 0 {
		want -= uint64(n) / uint64(members) * uint64(readers) // their own
		want -= uint64(min(n%members, readers))
	}
	read := func() (r, throttled uint64) {
		for _, m := range sims {
			st := m.Status()
			r += st.Received
			throttled += st.Throttled
		}
		return r, throttled
	}
	for last, quiet := uint64(0), time.Now(); ; time.Sleep(100 * time.Millisecond) {
		r, _ := read()
		if r > last {
			last, quiet = r, time.Now()
		}
		if r >= want || time.Since(quiet) > 10*time.Second {
			break
		}
	}
	r, throttled := read()
	return os.WriteFile(out+".readers", fmt.Appendf(nil, "%d %d %d %d %.1f %.1f\n", r, want, applied.Load(), throttled, time.Since(start).Seconds(), pubSecs), 0o644)
}

// simSink takes a simulated member's imports: counted, never refused.
type simSink struct{ applied *atomic.Uint64 }

func (s simSink) Import(_ netip.Addr, _ time.Duration, _, _ string, done func(error)) {
	s.applied.Add(1)
	done(nil)
}
func (simSink) Revoke(netip.Prefix, string, string) {}

// waitFor polls cond every 50 ms for up to d.
func waitFor(d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not after %v", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// scaleResult is the scale run's figures.
type scaleResult struct {
	members, rate int
	d             time.Duration
	sent          int
	prop          []time.Duration
	lost          int     // published and not applied by B
	unpublished   int     // not published by the end (the simulator behind)
	cpu           float64 // cores, the daemon's, over the run
	serverCPU     float64 // cores, the three NATS servers together
	simCPU        float64 // cores, the simulator (its members publishing and reading)
	secs          float64 // the run, from the simulator's start to B's last ban
	rss, hwm      int64   // kB at the end, and peak
	// What the simulated members read: bans of others received, of
	// want; applied (their sinks), throttled; seconds from the first
	// ban to the last read.
	read, readWant, readApplied, readThrottled uint64
	readSecs, pubSecs                          float64 // and to the last published
}

// runScale is the scale run; l has B (members[1]) and the three servers
// up, and B has joined the fleet.
func runScale(ctx context.Context, l *lab, b *netns.NS, daemonPID int, urls []string, members, rate int, d time.Duration, dir string) (scaleResult, error) {
	r := scaleResult{members: members, rate: rate, d: d}
	sim := l.sim
	w, err := watch(ctx, b, "")
	if err != nil {
		return r, err
	}
	defer w.stop()
	self, err := os.Executable()
	if err != nil {
		return r, err
	}
	out := filepath.Join(dir, "sent.txt")
	cpu0, err := cpuTicks(daemonPID)
	if err != nil {
		return r, err
	}
	// The three NATS servers, started first (runMode).
	var srv0 int64
	for _, p := range l.procs[:3] {
		n, _ := cpuTicks(p.Process.Pid)
		srv0 += n
	}
	t0 := time.Now()
	cmd := sim.CommandContext(ctx, self, "-simulate", "-sim-urls", strings.Join(urls, ","), "-sim-members", strconv.Itoa(members),
		"-sim-rate", strconv.Itoa(rate), "-sim-duration", d.String(), "-sim-out", out, "-sim-readers", strconv.Itoa(scaleReaders))
	if msg, err := cmd.CombinedOutput(); err != nil {
		return r, fmt.Errorf("simulator: %v\n%s", err, msg)
	}
	simCPU := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	data, err := os.ReadFile(out)
	if err != nil {
		return r, err
	}
	lines := strings.Fields(string(data))
	r.sent = len(lines)
	if rd, err := os.ReadFile(out + ".readers"); err == nil {
		_, _ = fmt.Sscan(string(rd), &r.read, &r.readWant, &r.readApplied, &r.readThrottled, &r.readSecs, &r.pubSecs)
	}
	// Every ban's event, or until none came for 10 s.
	for seen, quiet := 0, time.Now(); ; time.Sleep(100 * time.Millisecond) {
		w.mu.Lock()
		n := len(w.seen)
		w.mu.Unlock()
		if n > seen {
			seen, quiet = n, time.Now()
		}
		if n >= r.sent || time.Since(quiet) > 10*time.Second {
			break
		}
	}
	cpu1, _ := cpuTicks(daemonPID)
	secs := time.Since(t0).Seconds()
	r.cpu = float64(cpu1-cpu0) / 100 / secs
	var srv1 int64
	for _, p := range l.procs[:3] {
		n, _ := cpuTicks(p.Process.Pid)
		srv1 += n
	}
	r.serverCPU = float64(srv1-srv0) / 100 / secs
	r.simCPU = simCPU.Seconds() / secs
	r.secs = secs
	r.rss, r.hwm = memKB(daemonPID)
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, s := range lines {
		ns, _ := strconv.ParseInt(s, 10, 64)
		if ns == 0 {
			r.unpublished++
			continue
		}
		at, ok := w.seen[simAddr(i)]
		if !ok {
			r.lost++
			continue
		}
		r.prop = append(r.prop, at.Sub(time.Unix(0, ns)))
	}
	return r, nil
}

// cpuTicks is utime+stime of pid, in clock ticks (100 a second).
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st, nil
}

// memKB is VmRSS and VmHWM of pid.
func memKB(pid int) (rss, hwm int64) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v
		case "VmHWM:":
			hwm = v
		}
	}
	return rss, hwm
}

// simArgs are the simulator's flags (fleetlab -simulate …).
type simArgs struct {
	on       bool
	urls     string
	members  int
	rate     int
	duration time.Duration
	out      string
	readers  int
}

func (s simArgs) run() error {
	return simulate(s.urls, s.members, s.readers, s.rate, s.duration, s.out)
}

// simMember is a simulated member: a fleet.Member, or a publisher.
type simMember interface {
	Share(bans.Ban)
	Status() fleet.Status
}

// publisher is a simulated member that only publishes: its own NATS
// connection, the fleet's ban message on its member's subject, each
// publish acknowledged before the next (as a member does), and its
// presence every few seconds. It reads nothing.
type publisher struct {
	name      string
	nc        *nats.Conn
	js        jetstream.JetStream
	queue     chan bans.Ban
	published atomic.Uint64
}

func newPublisher(ctx context.Context, urls, name string) (*publisher, error) {
	nc, err := nats.Connect(urls, nats.Token("fleetlab"), nats.Name(name), nats.MaxReconnects(-1))
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &publisher{name: name, nc: nc, js: js, queue: make(chan bans.Ban, 1<<16)}, nil
}

// Share queues b; a full queue (the machine far behind) blocks the
// simulator, which then says so by its late publishes.
func (p *publisher) Share(b bans.Ban) { p.queue <- b }

func (p *publisher) Status() fleet.Status {
	return fleet.Status{Name: p.name, Connected: p.nc.IsConnected(), Published: p.published.Load()}
}

// run publishes the queue until ctx ends.
func (p *publisher) run(ctx context.Context) {
	defer p.nc.Close()
	hello := time.NewTicker(5 * time.Second)
	defer hello.Stop()
	_ = p.nc.Publish("portsentry.fleet.hello."+p.name, nil)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hello.C:
			_ = p.nc.Publish("portsentry.fleet.hello."+p.name, nil)
		case b := <-p.queue:
			a := b.Addr.As4()
			msg := fmt.Sprintf(`{"v":1,"op":"ban","member":%q,"addr":"%s","reason":%q,"at":"%s","expires":"%s","count":%d}`,
				p.name, b.Addr, b.Reason, b.Since.UTC().Format(time.RFC3339Nano), b.Expires.UTC().Format(time.RFC3339Nano), b.Count)
			subj := fmt.Sprintf("portsentry.fleet.ban.%s.%x", p.name, a[:])
			for ctx.Err() == nil {
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := p.js.Publish(pctx, subj, []byte(msg))
				cancel()
				if err == nil {
					p.published.Add(1)
					break
				}
			}
		}
	}
}

// waitConsumer waits, for up to a minute, until the fleet's stream has a
// consumer whose name begins with prefix (a member's: its name, "-", a
// random suffix).
func waitConsumer(ctx context.Context, urls, prefix string) error {
	nc, err := nats.Connect(urls, nats.Token("fleetlab"), nats.Name("fleetlab-wait"))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	return waitFor(time.Minute, func() bool {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		st, err := js.Stream(cctx, fleet.StreamName)
		if err != nil {
			return false
		}
		names := st.ConsumerNames(cctx)
		for name := range names.Name() {
			if strings.HasPrefix(name, prefix) {
				return true
			}
		}
		return false
	})
}
