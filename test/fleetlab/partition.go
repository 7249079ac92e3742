package main

// The partition run (-modes partition): the embedded fleet (three real
// daemons, each with FLEET_LISTEN, clustered) and member B cut off, then
// killed. Each of -runs runs:
//
//   - partition: B's link goes down (ip link set eth0 down in B's
//     namespace: its server and its client lose A and C); A bans 100
//     addresses through its control socket; after -partition the link
//     comes back. Measured: from the link's return to the last of the 100
//     in B's kernel set (nftables' netlink events, as the other modes).
//   - then A bans once more and the time until it is in B's set is noted:
//     the elections B's return caused (its raft terms rose while it was
//     alone) stall the stream's writes for some seconds. This ban also
//     tells that the fleet is whole again before B is killed;
//   - kill -9: B's daemon (and so its embedded server) killed with
//     SIGKILL; A bans 100 more; B started again. Measured: from B being
//     ready (its control socket answers status) to the last of the 100 in
//     its kernel set, and from the restart itself.
//
// Each run begins with the fleet whole: a ban from A reaches B.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/portsentry-go/portsentry/internal/control"
)

// partitionBans is how many bans A makes in each phase.
const partitionBans = 100

// partitionRun is one run's figures.
type partitionRun struct {
	cut       time.Duration // how long B was cut off
	afterLink time.Duration // link back to the 100 in B's set
	next      time.Duration // a ban A made once B had the 100, to B's set
	afterKill time.Duration // B ready again to the 100 in its set
	fromStart time.Duration // B restarted to the 100 in its set
}

// lastPartition carries the partition runs out of runMode.
var lastPartition []partitionRun

func runPartitionMode(ctx context.Context, bin, natsd, dir string) ([]partitionRun, error) {
	nft, _ := exec.LookPath("nft")
	_, err := runMode(ctx, "partition", 0, bin, natsd, nft, dir)
	return lastPartition, err
}

// partitionAddr is the i-th address banned in run run's phase phase
// (0: partition, 1: kill -9): in 198.18.0.0/16, distinct for every run.
func partitionAddr(run, phase, i int) netip.Addr {
	n := (run*2+phase)*partitionBans + i
	return netip.AddrFrom4([4]byte{198, 18, byte(n / 250), byte(1 + n%250)})
}

func runPartition(ctx context.Context, l *lab, socks []string, nft, bdir string) ([]partitionRun, error) {
	watchB, err := watch(ctx, l.members[1], nft)
	if err != nil {
		return nil, err
	}
	defer watchB.stop()
	a, err := control.Dial(socks[0])
	if err != nil {
		return nil, err
	}
	defer a.Close()
	// whole waits until a ban from A reaches B (the fleet works again)
	// and returns how long that took.
	probe := 0
	whole := func(d time.Duration) (time.Duration, error) {
		probe++
		x := netip.AddrFrom4([4]byte{198, 19, 255, byte(probe)})
		t0 := time.Now()
		if _, err := a.Block(x, time.Hour, "fleetlab"); err != nil {
			return 0, err
		}
		t, ok := watchB.when(x, d)
		if !ok {
			return 0, fmt.Errorf("a ban from A did not reach B within %v", d)
		}
		return t.Sub(t0), nil
	}
	banAll := func(run, phase int) ([]netip.Addr, error) {
		var out []netip.Addr
		for i := range partitionBans {
			x := partitionAddr(run, phase, i)
			if _, err := a.Block(x, time.Hour, "fleetlab"); err != nil {
				return nil, err
			}
			out = append(out, x)
		}
		return out, nil
	}
	// last waits for every address of want in B's set and returns when
	// the last one came.
	last := func(want []netip.Addr, d time.Duration) (time.Time, error) {
		var end time.Time
		deadline := time.Now().Add(d)
		for _, x := range want {
			t, ok := watchB.when(x, time.Until(deadline))
			if !ok {
				n := 0
				for _, y := range want {
					if _, ok := watchB.when(y, 0); !ok {
						n++
					}
				}
				return end, fmt.Errorf("B's kernel set misses %d of %d addresses after %v", n, len(want), d)
			}
			if t.After(end) {
				end = t
			}
		}
		return end, nil
	}
	link := func(state string) error {
		if out, err := l.members[1].Command("ip", "link", "set", "eth0", state).CombinedOutput(); err != nil {
			return fmt.Errorf("ip link set eth0 %s in B: %v: %s", state, err, out)
		}
		return nil
	}
	var runs []partitionRun
	for run := range partitionRuns {
		if _, err := whole(60 * time.Second); err != nil {
			return runs, err
		}
		var r partitionRun
		// The partition.
		if err := link("down"); err != nil {
			return runs, err
		}
		down := time.Now()
		want, err := banAll(run, 0)
		if err != nil {
			_ = link("up")
			return runs, err
		}
		sleepCtx(ctx, time.Until(down.Add(partitionFor)))
		for _, x := range want {
			if _, ok := watchB.when(x, 0); ok {
				_ = link("up")
				return runs, fmt.Errorf("B applied %s while cut off", x)
			}
		}
		if err := link("up"); err != nil {
			return runs, err
		}
		up := time.Now()
		r.cut = up.Sub(down)
		end, err := last(want, 2*time.Minute)
		if err != nil {
			return runs, fmt.Errorf("run %d, after the partition: %w", run+1, err)
		}
		r.afterLink = end.Sub(up)
		fmt.Fprintf(os.Stderr, "run %d: cut off %.1f s, all %d in B's set %.2f s after the link came back\n", run+1, r.cut.Seconds(), partitionBans, r.afterLink.Seconds())
		// A ban made now waits for the elections B's return caused.
		if r.next, err = whole(60 * time.Second); err != nil {
			return runs, err
		}
		fmt.Fprintf(os.Stderr, "run %d: a ban A made then reached B in %.2f s\n", run+1, r.next.Seconds())
		// kill -9 and restart.
		bp := l.daemons[1]
		_ = syscall.Kill(-bp.Process.Pid, syscall.SIGKILL)
		_ = bp.Wait()
		if want, err = banAll(run, 1); err != nil {
			return runs, err
		}
		args := l.daemonArgs[1]
		start := time.Now()
		cmd, err := l.start(l.members[1], filepath.Join(bdir, fmt.Sprintf("daemon.restart%d.log", run+1)), args[0], args[1:]...)
		if err != nil {
			return runs, err
		}
		l.daemons[1] = cmd
		var ready time.Time
		for {
			if _, err := status(socks[1]); err == nil {
				ready = time.Now()
				break
			}
			if time.Since(start) > 30*time.Second {
				return runs, errors.New("B did not answer on its control socket within 30 s of its restart")
			}
			time.Sleep(5 * time.Millisecond)
		}
		if end, err = last(want, 2*time.Minute); err != nil {
			return runs, fmt.Errorf("run %d, after kill -9: %w", run+1, err)
		}
		r.afterKill, r.fromStart = max(0, end.Sub(ready)), end.Sub(start)
		fmt.Fprintf(os.Stderr, "run %d: killed, all %d in B's set %.2f s after it was ready (%.2f s after its restart)\n", run+1, partitionBans, r.afterKill.Seconds(), r.fromStart.Seconds())
		runs = append(runs, r)
	}
	return runs, nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// writePartition adds the partition runs' table: each run, then the
// median and the maximum.
func writePartition(w *strings.Builder, runs []partitionRun) {
	fmt.Fprintf(w, "\nPartition: embedded fleet, B cut off for %v while A bans %d, then killed with kill -9 while A bans %d more (`-modes partition -partition %v -runs %d`)\n\n",
		partitionFor, partitionBans, partitionBans, partitionFor, partitionRuns)
	w.WriteString("| run | B cut off | all in B's set after the link is back | A's next ban in B's set after | after kill -9: all in B's set after B is ready | (after its restart) |\n|---|---|---|---|---|---|\n")
	sec := func(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
	for i, r := range runs {
		fmt.Fprintf(w, "| %d | %.0f s | %s | %s | %s | %s |\n", i+1, r.cut.Seconds(), sec(r.afterLink), sec(r.next), sec(r.afterKill), sec(r.fromStart))
	}
	col := func(f func(partitionRun) time.Duration) []time.Duration {
		var ds []time.Duration
		for _, r := range runs {
			ds = append(ds, f(r))
		}
		slices.Sort(ds)
		return ds
	}
	link := col(func(r partitionRun) time.Duration { return r.afterLink })
	next := col(func(r partitionRun) time.Duration { return r.next })
	kill := col(func(r partitionRun) time.Duration { return r.afterKill })
	start := col(func(r partitionRun) time.Duration { return r.fromStart })
	if len(runs) > 0 {
		fmt.Fprintf(w, "| median | | %s | %s | %s | %s |\n| max | | %s | %s | %s | %s |\n",
			sec(pct(link, 50)), sec(pct(next, 50)), sec(pct(kill, 50)), sec(pct(start, 50)),
			sec(link[len(link)-1]), sec(next[len(next)-1]), sec(kill[len(kill)-1]), sec(start[len(start)-1]))
	}
}
