package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// nsPrefix starts the name of every namespace scanlab creates:
// nsPrefix + creator PID + "-" + role. Leftovers of a run whose creator is
// gone are deleted at start; a live concurrent run's are left alone.
const nsPrefix = "pslab-"

// The lab's addresses. They exist only inside the lab's namespaces, which
// have no default route: nothing can leave them.
var (
	targetV4   = netip.MustParseAddr("10.232.0.1")
	targetV6   = netip.MustParseAddr("fd00:232::1")
	scannerV4  = netip.MustParseAddr("10.232.0.2")
	scannerV6  = netip.MustParseAddr("fd00:232::2")
	innocentV4 = netip.MustParseAddr("10.232.0.3")
	innocentV6 = netip.MustParseAddr("fd00:232::3")
)

// labIf is the name of every host's interface inside its namespace.
const labIf = "eth0"

// host is one namespace of the lab.
type host struct {
	ns     string
	v4, v6 netip.Addr
	mac    string // of labIf
}

// lab is target T, scanner S and innocent I, each with a veth whose other
// end is a port of a bridge in a fourth namespace, the hub.
type lab struct {
	hub     string
	T, S, I host
	created []string // namespaces to delete, in creation order
}

const ipTimeout = 10 * time.Second

func ipCmd(ctx context.Context, args ...string) error {
	_, err := runCmd(ctx, ipTimeout, append([]string{"ip"}, args...)...)
	return err
}

// newLab builds the lab. On error it removes what it made.
func newLab(ctx context.Context) (l *lab, err error) {
	id := fmt.Sprintf("%s%d", nsPrefix, os.Getpid())
	l = &lab{
		hub: id + "-h",
		T:   host{ns: id + "-t", v4: targetV4, v6: targetV6},
		S:   host{ns: id + "-s", v4: scannerV4, v6: scannerV6},
		I:   host{ns: id + "-i", v4: innocentV4, v6: innocentV6},
	}
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	for _, ns := range []string{l.hub, l.T.ns, l.S.ns, l.I.ns} {
		if err := ipCmd(ctx, "netns", "add", ns); err != nil {
			return l, err
		}
		l.created = append(l.created, ns)
	}
	steps := [][]string{
		{"-n", l.hub, "link", "set", "dev", "lo", "up"},
		{"-n", l.hub, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"},
		{"-n", l.hub, "link", "set", "dev", "br0", "up"},
	}
	for _, h := range []struct {
		port string
		h    host
	}{{"to-t", l.T}, {"to-s", l.S}, {"to-i", l.I}} {
		steps = append(steps,
			// Made directly inside the namespaces: no name ever exists in
			// the host's own namespace.
			[]string{"link", "add", labIf, "netns", h.h.ns, "type", "veth", "peer", "name", h.port, "netns", l.hub},
			[]string{"-n", l.hub, "link", "set", "dev", h.port, "master", "br0", "up"},
			[]string{"-n", h.h.ns, "link", "set", "dev", "lo", "up"},
			[]string{"-n", h.h.ns, "addr", "add", h.h.v4.String() + "/24", "dev", labIf},
			[]string{"-n", h.h.ns, "addr", "add", h.h.v6.String() + "/64", "dev", labIf, "nodad"},
			[]string{"-n", h.h.ns, "link", "set", "dev", labIf, "up"},
		)
	}
	for _, s := range steps {
		if err := ipCmd(ctx, s...); err != nil {
			return l, err
		}
	}
	for _, h := range []*host{&l.T, &l.S, &l.I} {
		if h.mac, err = linkMAC(ctx, h.ns, labIf); err != nil {
			return l, err
		}
		if err := checkNoDefaultRoute(ctx, h.ns); err != nil {
			return l, err
		}
	}
	return l, nil
}

// linkMAC returns the hardware address of dev in ns.
func linkMAC(ctx context.Context, ns, dev string) (string, error) {
	out, err := runCmd(ctx, ipTimeout, "ip", "-j", "-n", ns, "link", "show", "dev", dev)
	if err != nil {
		return "", err
	}
	var links []struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 || links[0].Address == "" {
		return "", fmt.Errorf("ip -j -n %s link show dev %s: unexpected output %q", ns, dev, out)
	}
	return links[0].Address, nil
}

// checkNoDefaultRoute makes sure ns can reach nothing but its own /24 and
// /64: the lab must never send a packet anywhere else.
func checkNoDefaultRoute(ctx context.Context, ns string) error {
	for _, fam := range []string{"-4", "-6"} {
		out, err := runCmd(ctx, ipTimeout, "ip", fam, "-n", ns, "route", "show", "default")
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) != "" {
			return fmt.Errorf("namespace %s has a default route (%s): refusing to scan", ns, strings.TrimSpace(out))
		}
	}
	return nil
}

// nsExec returns argv prefixed to run inside ns. ip netns exec execs the
// program, so the process started is the program itself.
func nsExec(ns string, argv ...string) []string {
	return append([]string{"ip", "netns", "exec", ns}, argv...)
}

// close deletes the lab's namespaces (ending any process left in them).
func (l *lab) close() {
	for i := len(l.created) - 1; i >= 0; i-- {
		deleteNetns(l.created[i])
	}
	l.created = nil
}

// removeLeftovers deletes namespaces a crashed or killed earlier run left
// behind. Those of a live concurrent scanlab are left alone.
func removeLeftovers() []string {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil
	}
	var removed []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], nsPrefix) {
			continue
		}
		name := f[0]
		rest := strings.TrimPrefix(name, nsPrefix)
		if pidStr, _, ok := strings.Cut(rest, "-"); ok {
			if pid, err := strconv.Atoi(pidStr); err == nil && pid != os.Getpid() && syscall.Kill(pid, 0) == nil && isScanlab(pid) {
				continue
			}
		}
		deleteNetns(name)
		removed = append(removed, name)
	}
	return removed
}

// removeOwnNamespaces deletes this run's namespaces (an abort's cleanup).
func removeOwnNamespaces() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	own := fmt.Sprintf("%s%d-", nsPrefix, os.Getpid())
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], own) {
			deleteNetns(f[0])
		}
	}
}

// isScanlab reports whether pid looks like a running scanlab (PIDs are
// reused: a namespace whose creator's PID now belongs to something else is
// a leftover).
func isScanlab(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	argv0, _, _ := strings.Cut(string(b), "\x00")
	return strings.Contains(argv0, "scanlab")
}

// deleteNetns ends the processes in a lab namespace, by PID, then deletes it
// (which deletes its veth ends too).
func deleteNetns(name string) {
	if !strings.HasPrefix(name, nsPrefix) {
		panic("scanlab: refusing to delete namespace " + name)
	}
	if out, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
		for _, s := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(s); err == nil && pid > 1 && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	for range 20 {
		if exec.Command("ip", "netns", "del", name).Run() == nil {
			return
		}
		if _, err := os.Stat("/run/netns/" + name); os.IsNotExist(err) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "scanlab: could not delete network namespace %s: run `ip netns del %s`\n", name, name)
}
