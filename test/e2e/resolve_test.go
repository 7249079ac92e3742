package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/netns"
)

// netnsEtc gives a lab namespace its own /etc files: `ip netns exec NS`
// bind-mounts every file of /etc/netns/NS over the same name in /etc for
// the program it runs. Cleanup removes the folder, and /etc/netns too when
// a test run created it and nothing else is left in it (a marker file
// tells a folder these tests made from the system's own).
func netnsEtc(t *testing.T, ns *netns.NS, files map[string]string) {
	t.Helper()
	const base = "/etc/netns"
	marker := filepath.Join(base, ".pse2e-created")
	if _, err := os.Stat(base); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(base, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, marker, "made by portsentry's e2e tests; removed when empty\n")
	}
	// Folders left by a crashed run (its PID is gone) go, as its
	// namespaces do (netns.Sweep).
	if ents, err := os.ReadDir(base); err == nil {
		for _, e := range ents {
			if pid := netns.Owner(namespaces.Prefix, e.Name()); pid != 0 && pid != os.Getpid() && !netns.Runs(pid) {
				_ = os.RemoveAll(filepath.Join(base, e.Name()))
			}
		}
	}
	dir := filepath.Join(base, ns.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing %s: %v", dir, err)
		}
		if ents, err := os.ReadDir(base); err == nil && len(ents) == 1 && ents[0].Name() == filepath.Base(marker) {
			_ = os.Remove(marker)
			_ = os.Remove(base)
		}
	})
	for name, content := range files {
		writeFile(t, filepath.Join(dir, name), content)
	}
}

// TestResolveHost: with RESOLVE_HOST="1" the attacker's name is written to
// the log and history (from /etc/hosts, which the pure-Go resolver reads
// for reverse lookups), while the block commands get the address only. A
// source without a name is blocked at once, not after the DNS timeout, and
// is logged by address once RESOLVE_TIMEOUT ends the lookup.
func TestResolveHost(t *testing.T) {
	t.Parallel()
	start := time.Now()
	l := newLab(t)
	// T's /etc/hosts names S's IPv4 address. T's resolv.conf points at a
	// DNS server on T's own loopback that never answers (and whose own
	// timeouts, 3 × 10 s, exceed the test's wait): only RESOLVE_TIMEOUT
	// can end a lookup of S's IPv6 address.
	const name = "scanner.test"
	netnsEtc(t, l.T.ns, map[string]string{
		"hosts":       fmt.Sprintf("127.0.0.1 localhost\n::1 localhost\n%s %s\n", l.S.v4, name),
		"resolv.conf": "nameserver 127.0.0.1\noptions timeout:10 attempts:3\n",
	})
	startListener(t, l.T, "udp", "127.0.0.1:53", "")

	c := newConfig(t)
	c.set("RESOLVE_HOST", "1")
	c.set("RESOLVE_TIMEOUT", "2")
	d := startDaemon(t, l.T.ns, c.write(t), flags2x...)
	mode := modeToken(flags2x, "tcp")

	src := l.S.v4
	hit(t, l.S, "tcp", l.T.v4, 143)
	d.waitFor(t, fmt.Sprintf("Scan from: [%s] (%s) protocol: [TCP] port: [143] type: [Connect] IP opts: [unknown] ignored: [false] triggered: [true] noblock: [false] blocked: [true]", src, name), logWait)
	d.waitFor(t, fmt.Sprintf("attackalert: Connect from host: %s/%s to TCP port: 143", name, src), logWait)
	d.waitFor(t, routeLine(src, routeCmd(c, src, 143, mode)), logWait)
	hist := waitFileLines(t, c.path("portsentry.history"), 1, logWait)
	if want := fmt.Sprintf(" Host: %s/%s Port: 143 TCP Blocked", name, src); !strings.HasSuffix(hist[0], want) {
		t.Errorf("history %q, want it to end %q", hist[0], want)
	}
	if m := history12.FindStringSubmatch(hist[0]); m == nil {
		t.Errorf("history line %q is not in PortSentry 1.2 format", hist[0])
	}
	probe(t, l.S, "tcp", l.T.v4, 540, time.Second)
	d.waitFor(t, fmt.Sprintf("attackalert: Host: %s/%s is already blocked Ignoring", name, src), logWait)

	// A source with no name: blocked at once, named by its address.
	unknown := l.S.v6
	hit(t, l.S, "tcp", l.T.v6, 11)
	waitFileLines(t, c.path("actions.log"), 2, logWait)
	// The lookup takes RESOLVE_TIMEOUT (2 s): the event's log lines wait
	// for the name, the block command must not have.
	if ls := d.lines(alertLine(unknown, "tcp", 11)); len(ls) != 0 {
		t.Errorf("%s was logged (%q) by the time its block command had run: either the block waited for the DNS timeout, or the lookup did not reach the silent DNS server", unknown, ls)
	}
	d.waitFor(t, alertLine(unknown, "tcp", 11), logWait)
	d.waitFor(t, scanBlocked(unknown, "tcp", 11), logWait)
	d.waitFor(t, routeLine(unknown, routeCmd(c, unknown, 11, mode)), logWait)
	hist = waitFileLines(t, c.path("portsentry.history"), 2, logWait)
	assertHistory12(t, hist[1], unknown, 11, "tcp", start)

	// The name never reaches a command or hosts.deny.
	time.Sleep(settle)
	want := []string{routeRecord(src, 143, mode), routeRecord(unknown, 11, mode)}
	if got := fileLines(t, c.path("actions.log")); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("KILL_ROUTE ran as %q, want %q (addresses, never the name)", got, want)
	}
	for _, ln := range d.lines("has been blocked via") {
		if strings.Contains(ln, name) {
			t.Errorf("block given the resolved name: %q", ln)
		}
	}
	assertDeny(t, c, src, unknown)
}
