package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestFailingBlockCommand: a KILL_ROUTE that fails (exit 3, with a message
// on stderr, like iptables without its module) is logged as an ERROR that
// names the command, its exit status and its message, and the host as NOT
// blocked; nothing is written to the history or the blocked file (fail2ban
// and a restart would believe it); the next probe from the host runs the
// command again.
func TestFailingBlockCommand(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	c := newConfig(t)
	runs := c.path("runs.log")
	const complaint = "iptables v1.8.9: cannot initialize iptables table filter"
	// Single quotes: a portsentry.conf value ends at the next '"'.
	c.set("KILL_ROUTE", fmt.Sprintf("echo ran $TARGET$ $PORT$ >> %s; echo '%s' >&2; exit 3", runs, complaint))
	d := startDaemon(t, l.T.ns, c.write(t), flags2x...)
	src := l.S.v4
	cmd := func(port int) string {
		return fmt.Sprintf("echo ran %s %d >> %s; echo '%s' >&2; exit 3", src, port, runs, complaint)
	}

	hit(t, l.S, "tcp", l.T.v4, 143)
	notBlocked := regexp.MustCompile(`ERROR.*\b` + regexp.QuoteMeta(src.String()) + `\b.*NOT blocked`)
	waitMatch := func(re *regexp.Regexp, n int) []string {
		t.Helper()
		deadline := time.Now().Add(logWait)
		for {
			var got []string
			for _, ln := range strings.Split(d.stdout.String(), "\n") {
				if re.MatchString(ln) {
					got = append(got, ln)
				}
			}
			if len(got) >= n {
				return got
			}
			if time.Now().After(deadline) || d.exited() {
				t.Fatalf("want %d log lines matching %s, have %q", n, re, got)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitMatch(notBlocked, 1)
	checkError := func(port int) {
		t.Helper()
		for _, ln := range d.lines(cmd(port)) {
			if strings.Contains(ln, "ERROR") && strings.Contains(ln, "exit status 3") && strings.Contains(ln, complaint) {
				return
			}
		}
		t.Errorf("no ERROR line naming the command %q, its exit status 3 and its output %q; lines naming it: %q", cmd(port), complaint, d.lines(cmd(port)))
	}
	checkError(143)
	if ln := d.waitFor(t, scanFields(src, "tcp", 143), logWait); !strings.HasSuffix(ln, "triggered: [true] noblock: [false] blocked: [false]") {
		t.Errorf("event of a failed block logged as %q, want blocked: [false]", ln)
	}
	if ls := d.lines(routeLine(src, cmd(143))); len(ls) != 0 {
		t.Errorf("failed KILL_ROUTE reported as a block: %q", ls)
	}
	time.Sleep(settle)
	if got := fileLines(t, c.path("portsentry.history")); len(got) != 0 {
		t.Errorf("history records a host that was not blocked: %q", got)
	}
	if got := fileLines(t, c.path("portsentry.blocked")); len(got) != 0 {
		t.Errorf("blocked file records a host that was not blocked: %q", got)
	}
	if got := fileLines(t, runs); len(got) != 1 {
		t.Fatalf("KILL_ROUTE ran %d times (%q), want 1", len(got), got)
	}

	// The next probe tries again: not "already blocked".
	hit(t, l.S, "tcp", l.T.v4, 540)
	got := waitFileLines(t, runs, 2, logWait)
	if want := []string{fmt.Sprintf("ran %s 143", src), fmt.Sprintf("ran %s 540", src)}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("KILL_ROUTE runs %q, want %q", got, want)
	}
	waitMatch(notBlocked, 2)
	checkError(540)
	time.Sleep(settle)
	if ls := d.lines(alreadyLine(src)); len(ls) != 0 {
		t.Errorf("host whose block failed treated as blocked: %q", ls)
	}
	if got := fileLines(t, c.path("portsentry.history")); len(got) != 0 {
		t.Errorf("history records a host that was not blocked: %q", got)
	}
	if got := fileLines(t, c.path("portsentry.blocked")); len(got) != 0 {
		t.Errorf("blocked file records a host that was not blocked: %q", got)
	}
	// hosts.deny (KILL_HOSTS_DENY is set too) did succeed: once, not twice.
	if got := fileLines(t, c.path("hosts.deny")); len(got) > 1 {
		t.Errorf("hosts.deny = %q: the retry duplicated the entry", got)
	}
}

// TestPortInUse: a TCP_PORTS/UDP_PORTS port that a real service holds when
// the daemon starts is skipped with a warning naming it; the service keeps
// working for everyone (its clients raise no alarm), and the other ports
// are trapped.
func TestPortInUse(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	const sshReply = "SSH-2.0-OpenSSH_9.2p1 e2e-service\r\n"
	const udpReply = "tftp-ish service reply\n"
	startListener(t, l.T, "tcp", ":143", sshReply)
	startListener(t, l.T, "udp", ":69", udpReply)
	c := newConfig(t)
	d := startDaemon(t, l.T.ns, c.write(t), flags2x...)

	port := func(p int) *regexp.Regexp { return regexp.MustCompile(`(?i)in use.*\b` + fmt.Sprint(p) + `\b`) }
	for _, tc := range []struct {
		proto string
		port  int
	}{{"TCP", 143}, {"UDP", 69}} {
		n := 0
		for _, ln := range d.lines("in use") {
			if port(tc.port).MatchString(ln) && strings.Contains(ln, tc.proto) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("want one warning that %s port %d is in use, have: %q", tc.proto, tc.port, d.lines("in use"))
		}
	}
	if ls := d.lines("in use"); len(ls) != 2 {
		t.Errorf("in-use warnings %q, want exactly the two busy ports", ls)
	}

	// The service answers, over IPv4 and IPv6, and nobody is blocked.
	for _, v6 := range []bool{false, true} {
		if r := probe(t, l.S, "tcp", l.T.addr(v6), 143, 2*time.Second); !r.Connected || r.Data != sshReply {
			t.Errorf("TCP service on 143 via [%s]: %+v, want its reply %q", l.T.addr(v6), r, sshReply)
		}
		if r := probe(t, l.S, "udp", l.T.addr(v6), 69, 2*time.Second); !r.Connected || r.Data != udpReply {
			t.Errorf("UDP service on 69 via [%s]: %+v, want its reply %q", l.T.addr(v6), r, udpReply)
		}
	}
	time.Sleep(settle)
	if ls := d.lines("Scan from:"); len(ls) != 0 {
		t.Errorf("the real services' clients raised alarms: %q", ls)
	}
	if got := fileLines(t, c.path("actions.log")); len(got) != 0 {
		t.Errorf("the real services' clients were blocked: %q", got)
	}

	// The other ports are traps.
	mode := modeToken(flags2x, "tcp")
	hit(t, l.S, "tcp", l.T.v4, 540)
	d.waitFor(t, scanBlocked(l.S.v4, "tcp", 540), logWait)
	d.waitFor(t, routeLine(l.S.v4, routeCmd(c, l.S.v4, 540, mode)), logWait)
	hit(t, l.S, "udp", l.T.v6, 7)
	d.waitFor(t, scanBlocked(l.S.v6, "udp", 7), logWait)
	d.waitFor(t, routeLine(l.S.v6, routeCmd(c, l.S.v6, 7, modeToken(flags2x, "udp"))), logWait)
	assertDeny(t, c, l.S.v4, l.S.v6)
}
