package e2e

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReload: SIGHUP re-reads the configuration and the ignore file without
// a restart. A new trap port works, a newly ignored host is ignored, the new
// PORT_BANNER is served, and a host blocked before the reload stays blocked
// (no second KILL_ROUTE). A bad file is refused whole, naming file:line and
// key, and the running configuration keeps detecting.
func TestReload(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	c := newConfig(t)
	c.set("TCP_PORTS", "143")
	c.set("UDP_PORTS", "69")
	conf := c.write(t)
	d := startDaemon(t, l.T.ns, conf, flags2x...)
	mode := modeToken(flags2x, "tcp")

	// Before: 540 is no trap, and S is blocked through 143.
	if r := probe(t, l.S, "tcp", l.T.v4, 540, time.Second); r.Connected {
		t.Fatalf("port 540 answered before it was configured: %+v", r)
	}
	hit(t, l.S, "tcp", l.T.v4, 143)
	d.waitFor(t, routeLine(l.S.v4, routeCmd(c, l.S.v4, 143, mode)), logWait)

	// Edit: a second port, a new banner, and F on the ignore list.
	const banner2 = "reloaded banner: go away"
	c.set("TCP_PORTS", "143,540")
	c.set("PORT_BANNER", banner2)
	c.write(t)
	writeFile(t, c.path("portsentry.ignore"), "# e2e\n127.0.0.1\n::1\n"+l.F.v4.String()+"\n")
	d.signal(t, syscall.SIGHUP)
	d.waitFor(t, "configuration reloaded", logWait)
	if ls := d.lines("reload refused"); len(ls) != 0 {
		t.Fatalf("good configuration refused: %q", ls)
	}

	// 540 now traps: a fresh source (S's IPv6 address) is blocked there,
	// and gets the new banner.
	r := probe(t, l.S, "tcp", l.T.v6, 540, 2*time.Second)
	if !r.Connected {
		t.Fatalf("port 540 does not answer after the reload: %s", r.Error)
	}
	if !strings.Contains(r.Data, banner2) || strings.Contains(r.Data, banner) {
		t.Errorf("port 540 after the reload sent %q, want the new PORT_BANNER %q only", r.Data, banner2)
	}
	d.waitFor(t, scanBlocked(l.S.v6, "tcp", 540), logWait)
	d.waitFor(t, routeLine(l.S.v6, routeCmd(c, l.S.v6, 540, mode)), logWait)

	// F is now ignored.
	probe(t, l.F, "tcp", l.T.v4, 143, time.Second)
	if ln := d.waitFor(t, scanFields(l.F.v4, "tcp", 143), logWait); !strings.Contains(ln, "ignored: [true]") {
		t.Errorf("host added to the ignore file before SIGHUP not ignored: %q", ln)
	}

	// S stays blocked: "already blocked", and the kept port 143 serves the
	// new banner too.
	r = probe(t, l.S, "tcp", l.T.v4, 143, 2*time.Second)
	if !r.Connected || !strings.Contains(r.Data, banner2) {
		t.Errorf("port 143 after the reload: %+v, want the new PORT_BANNER %q", r, banner2)
	}
	d.waitFor(t, alreadyLine(l.S.v4), logWait)
	time.Sleep(settle)
	want := []string{routeRecord(l.S.v4, 143, mode), routeRecord(l.S.v6, 540, mode)}
	if got := fileLines(t, c.path("actions.log")); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("KILL_ROUTE ran as %q, want %q (S blocked once across the reload, F never)", got, want)
	}
	if ls := d.lines("has been blocked via wrappers with string: \"ALL: " + l.F.v4.String()); len(ls) != 0 {
		t.Errorf("ignored F was blocked: %q", ls)
	}
	assertDeny(t, c, l.S.v4, l.S.v6)

	// A bad file: the unknown key is on the last line; the file also asks
	// for port 11, which must not be bound since the file is refused whole.
	c.set("TCP_PORTS", "11,143,540")
	c.set("PORT_BANNER", "never served")
	c.write(t)
	good := readFile(t, conf)
	badLine := strings.Count(good, "\n") + 1
	if err := os.WriteFile(conf, []byte(good+"PORT_BANER=\"typo\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.signal(t, syscall.SIGHUP)
	ln := d.waitFor(t, "reload refused", logWait)
	for _, want := range []string{fmt.Sprintf("%s:%d:", conf, badLine), "PORT_BANER"} {
		if !strings.Contains(ln, want) {
			t.Errorf("reload refusal %q does not name %q", ln, want)
		}
	}
	if n := len(d.lines("configuration reloaded")); n != 1 {
		t.Errorf("%d \"configuration reloaded\" lines after a refused reload, want still 1", n)
	}
	if d.exited() {
		t.Fatalf("daemon exited after a bad reload: %v", d.err)
	}

	// Detection was not dropped: a new source (F's IPv6 address, not on the
	// ignore list) is blocked on 540 with the running banner; F's IPv4
	// address is still ignored; the bad file's port 11 was not bound.
	r = probe(t, l.F, "tcp", l.T.v6, 540, 2*time.Second)
	if !r.Connected {
		t.Fatalf("port 540 stopped answering after a refused reload: %s", r.Error)
	}
	if !strings.Contains(r.Data, banner2) {
		t.Errorf("after a refused reload port 540 sent %q, want the running PORT_BANNER %q", r.Data, banner2)
	}
	d.waitFor(t, scanBlocked(l.F.v6, "tcp", 540), logWait)
	d.waitFor(t, routeLine(l.F.v6, routeCmd(c, l.F.v6, 540, mode)), logWait)
	probe(t, l.F, "tcp", l.T.v4, 540, time.Second)
	if ln := d.waitFor(t, scanFields(l.F.v4, "tcp", 540), logWait); !strings.Contains(ln, "ignored: [true]") {
		t.Errorf("after a refused reload F is no longer ignored: %q", ln)
	}
	if r := probe(t, l.S, "tcp", l.T.v4, 11, time.Second); r.Connected {
		t.Errorf("port 11 of the refused file was bound: %+v", r)
	}
	time.Sleep(settle)
	want = append(want, routeRecord(l.F.v6, 540, mode))
	if got := fileLines(t, c.path("actions.log")); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("KILL_ROUTE ran as %q, want %q", got, want)
	}
	assertDeny(t, c, l.S.v4, l.S.v6, l.F.v6)
}
