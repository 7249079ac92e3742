package main

// The scale run (-modes scale): one real daemon B among simulated members
// on one external three-node NATS cluster. A simulator process in its own
// namespace (fleetlab itself, re-run with -simulate) connects -members
// NATS clients, each publishing as its own member, -rate bans a second in
// all (round robin) for -duration; B applies them. Propagation is from
// the simulator's publish call to the address's event in B's kernel set
// (one clock: the same host). The simulated members publish and say they
// are there; they do not read the stream themselves.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portsentry-go/portsentry/internal/netns"
)

// simAddr is the i-th address the simulator bans: 198.18.0.0/15.
func simAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18 + byte(i>>16&1), byte(i >> 8), byte(i)})
}

// simulate is the simulator process: it writes the publish time of each
// ban (Unix ns, one a line, in order) to out.
func simulate(urls string, members, rate int, d time.Duration, out string) error {
	var conns []*nats.Conn
	var jss []jetstream.JetStream
	for i := range members {
		nc, err := nats.Connect(urls, nats.Token("fleetlab"), nats.Name(fmt.Sprintf("sim%d", i)))
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
		if err != nil {
			return err
		}
		conns = append(conns, nc)
		jss = append(jss, js)
	}
	for i, nc := range conns {
		_ = nc.Publish(fmt.Sprintf("portsentry.fleet.hello.sim%d", i), nil)
	}
	// The stream is created by the first member that needs it (B): wait.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := jss[0].Stream(ctx, "PORTSENTRY_FLEET")
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no fleet stream after 30 s: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var futures []jetstream.PubAckFuture
	n := int(d.Seconds() * float64(rate))
	sent := make([]int64, n)
	start := time.Now()
	every := time.Second / time.Duration(rate)
	for i := range n {
		if w := time.Until(start.Add(time.Duration(i) * every)); w > 0 {
			time.Sleep(w)
		}
		m := i % members
		a := simAddr(i)
		now := time.Now()
		msg := fmt.Sprintf(`{"v":1,"op":"ban","member":"sim%d","addr":"%s","reason":"fleetlab","at":"%s","expires":"%s","count":1}`,
			m, a, now.UTC().Format(time.RFC3339Nano), now.Add(time.Hour).UTC().Format(time.RFC3339Nano))
		subj := fmt.Sprintf("portsentry.fleet.ban.sim%d.%02x%02x%02x%02x", m, a.As4()[0], a.As4()[1], a.As4()[2], a.As4()[3])
		sent[i] = now.UnixNano()
		f, err := jss[m].PublishAsync(subj, []byte(msg))
		if err != nil {
			return fmt.Errorf("publish %d: %w", i, err)
		}
		futures = append(futures, f)
		if i%(rate*5) == 0 {
			for j, nc := range conns {
				_ = nc.Publish(fmt.Sprintf("portsentry.fleet.hello.sim%d", j), nil)
			}
		}
	}
	for _, js := range jss {
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(30 * time.Second):
			return errors.New("publishes not acknowledged after 30 s")
		}
	}
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publish %d: %w", i, err)
		}
	}
	var b strings.Builder
	for _, t := range sent {
		b.WriteString(strconv.FormatInt(t, 10))
		b.WriteByte('\n')
	}
	return os.WriteFile(out, []byte(b.String()), 0o644)
}

// scaleResult is the scale run's figures.
type scaleResult struct {
	members, rate int
	d             time.Duration
	sent          int
	prop          []time.Duration
	lost          int
	cpu           float64 // cores, the daemon's, over the run
	rss, hwm      int64   // kB at the end, and peak
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
	t0 := time.Now()
	cmd := sim.CommandContext(ctx, self, "-simulate", "-sim-urls", strings.Join(urls, ","), "-sim-members", strconv.Itoa(members),
		"-sim-rate", strconv.Itoa(rate), "-sim-duration", d.String(), "-sim-out", out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return r, fmt.Errorf("simulator: %v\n%s", err, msg)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return r, err
	}
	lines := strings.Fields(string(data))
	r.sent = len(lines)
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
	r.cpu = float64(cpu1-cpu0) / 100 / time.Since(t0).Seconds()
	r.rss, r.hwm = memKB(daemonPID)
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, s := range lines {
		ns, _ := strconv.ParseInt(s, 10, 64)
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
}

func (s simArgs) run() error { return simulate(s.urls, s.members, s.rate, s.duration, s.out) }
