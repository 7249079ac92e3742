package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// Flag styles the daemon accepts for connect mode.
var (
	flags2x = []string{"--connect"}
	flags12 = []string{"-tcp", "-udp"}
)

// modeToken is what $MODE$ expands to for a connect-mode probe: 1.2's name
// (tcp, udp) when started with 1.2's flags, 2.x's ("connect") when started
// with --connect (reference §1: "$MODE$ (1.2: tcp udp …; 2.x: connect/stealth)").
func modeToken(flags []string, proto string) string {
	if len(flags) > 0 && flags[0] == "--connect" {
		return "connect"
	}
	return proto
}

// routeCmd is KILL_ROUTE of the standard config with the tokens replaced.
func routeCmd(c *config, src netip.Addr, port int, mode string) string {
	return fmt.Sprintf("/bin/echo route %s %d %s >> %s", src, port, mode, c.path("actions.log"))
}

// routeRecord is what routeCmd appends to actions.log.
func routeRecord(src netip.Addr, port int, mode string) string {
	return fmt.Sprintf("route %s %d %s", src, port, mode)
}

// hit probes one trap port from S and checks the banner came back.
func hit(t *testing.T, from host, proto string, to netip.Addr, port int) {
	t.Helper()
	r := probe(t, from, proto, to, port, 2*time.Second)
	if !r.Connected {
		t.Fatalf("%s probe %s → [%s]:%d did not get through: %s", proto, from.ns, to, port, r.Error)
	}
	if !strings.Contains(r.Data, banner) {
		t.Errorf("%s [%s]:%d answered %q, want the PORT_BANNER %q", proto, to, port, r.Data, banner)
	}
}

// TestConnectModeBlocks: in connect mode one probe to a trap port blocks the
// source exactly once, over TCP and UDP, IPv4 and IPv6, started with 2.x's
// --connect or 1.2's -tcp -udp: banner sent, log lines, hosts.deny entry,
// KILL_ROUTE with the right tokens, 1.2 history line; a second probe to
// another port is "already blocked" and runs nothing.
func TestConnectModeBlocks(t *testing.T) {
	t.Parallel()
	type tcase struct {
		proto  string
		v6     bool
		p1, p2 int
		flags  []string
	}
	var cases []tcase
	for _, flags := range [][]string{flags2x, flags12} {
		cases = append(cases,
			tcase{"tcp", false, 143, 31337, flags},
			tcase{"tcp", true, 143, 31337, flags},
			tcase{"udp", false, 69, 31337, flags},
			tcase{"udp", true, 69, 31337, flags},
		)
	}
	for _, tc := range cases {
		name := tc.proto + "4"
		if tc.v6 {
			name = tc.proto + "6"
		}
		name += "/" + strings.Join(tc.flags, "")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			l := newLab(t)
			c := newConfig(t)
			d := startDaemon(t, l.T.ns, c.write(t), tc.flags...)
			mode := modeToken(tc.flags, tc.proto)
			src, dst := l.S.addr(tc.v6), l.T.addr(tc.v6)

			hit(t, l.S, tc.proto, dst, tc.p1)
			d.waitFor(t, scanBlocked(src, tc.proto, tc.p1), logWait)
			d.waitFor(t, alertLine(src, tc.proto, tc.p1), logWait)
			wrap := d.waitFor(t, wrappersPrefix(src), logWait)
			if ok := func() bool {
				for _, f := range denyForms(src) {
					if strings.HasSuffix(wrap, wrappersPrefix(src)+`"`+f+`"`) {
						return true
					}
				}
				return false
			}(); !ok {
				t.Errorf("wrappers line %q, want string %q", wrap, denyForms(src)[0])
			}
			d.waitFor(t, routeLine(src, routeCmd(c, src, tc.p1, mode)), logWait)
			waitFileLines(t, c.path("actions.log"), 1, logWait)

			// Second probe, another port: already blocked, nothing runs again.
			r := probe(t, l.S, tc.proto, dst, tc.p2, time.Second)
			if !r.Connected {
				t.Fatalf("second probe did not get through (KILL_ROUTE here only records): %s", r.Error)
			}
			d.waitFor(t, alreadyLine(src), logWait)
			time.Sleep(settle)

			if got, want := fileLines(t, c.path("actions.log")), routeRecord(src, tc.p1, mode); len(got) != 1 || got[0] != want {
				t.Errorf("KILL_ROUTE ran as %q, want exactly once as %q", got, want)
			}
			assertDeny(t, c, src)
			if n := len(d.lines("has been blocked via")); n != 2 {
				t.Errorf("%d \"has been blocked via\" lines, want 2 (wrappers and route, once)", n)
			}
			hist := fileLines(t, c.path("portsentry.history"))
			if len(hist) != 1 {
				t.Fatalf("history = %q, want one 1.2 line per block", hist)
			}
			assertHistory12(t, hist[0], src, tc.p1, tc.proto, start)
			assertLogFormat(t, d)
		})
	}
}

// TestScanTrigger: SCAN_TRIGGER="3" acts on the third hit from a source, once.
func TestScanTrigger(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	c := newConfig(t)
	c.set("SCAN_TRIGGER", "3")
	d := startDaemon(t, l.T.ns, c.write(t), flags2x...)
	src := l.S.v4

	for _, p := range tcpPorts[:2] {
		r := probe(t, l.S, "tcp", l.T.v4, p, time.Second)
		if !r.Connected {
			t.Fatalf("probe to %d: %s", p, r.Error)
		}
		d.waitFor(t, scanFields(src, "tcp", p), logWait)
	}
	time.Sleep(settle)
	if got := fileLines(t, c.path("actions.log")); len(got) != 0 {
		t.Fatalf("blocked below the trigger (2 hits, SCAN_TRIGGER=3): KILL_ROUTE ran %q", got)
	}
	if got := fileLines(t, c.path("hosts.deny")); len(got) != 0 {
		t.Fatalf("blocked below the trigger: hosts.deny %q", got)
	}
	if ls := d.lines("has been blocked"); len(ls) != 0 {
		t.Fatalf("blocked below the trigger: %q", ls)
	}
	for _, ln := range d.lines("Scan from: [" + src.String() + "]") {
		if strings.Contains(ln, "triggered: [true]") || strings.Contains(ln, "blocked: [true]") {
			t.Errorf("below-trigger event logged as triggered/blocked: %q", ln)
		}
	}

	third := tcpPorts[2]
	probe(t, l.S, "tcp", l.T.v4, third, time.Second)
	d.waitFor(t, scanBlocked(src, "tcp", third), logWait)
	d.waitFor(t, routeLine(src, routeCmd(c, src, third, modeToken(flags2x, "tcp"))), logWait)
	probe(t, l.S, "tcp", l.T.v4, tcpPorts[3], time.Second)
	d.waitFor(t, alreadyLine(src), logWait)
	time.Sleep(settle)
	if got, want := fileLines(t, c.path("actions.log")), routeRecord(src, third, modeToken(flags2x, "tcp")); len(got) != 1 || got[0] != want {
		t.Errorf("KILL_ROUTE ran as %q, want exactly once as %q", got, want)
	}
	assertDeny(t, c, src)
}

// TestIgnoreFile: a host in IGNORE_FILE is logged as ignored and never
// blocked, whether listed by address or by a CIDR with host bits set, and
// also when the file has CRLF line ends, trailing blanks, upper-case hex and
// no final newline (2.x's flaws). The scanner, not listed, is still blocked.
func TestIgnoreFile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, content string }{
		{"address", "# friends\n127.0.0.1\n10.231.0.130\nfd00:231::1:3\n"},
		{"cidr-host-bits", "10.231.0.200/25\nfd00:231::1:99/112\n"},
		{"messy", "# CRLF, trailing blanks, upper case, no final newline\r\nFD00:231::1:99/112 \t\r\n10.231.0.130"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newLab(t)
			c := newConfig(t)
			writeFile(t, c.path("portsentry.ignore"), tc.content)
			d := startDaemon(t, l.T.ns, c.write(t), flags2x...)

			for _, v6 := range []bool{false, true} {
				f := l.F.addr(v6)
				probe(t, l.F, "tcp", l.T.addr(v6), 143, time.Second)
				ln := d.waitFor(t, scanFields(f, "tcp", 143), logWait)
				if !strings.Contains(ln, "ignored: [true]") {
					t.Errorf("friend %s not logged as ignored: %q", f, ln)
				}
			}
			for _, v6 := range []bool{false, true} {
				s := l.S.addr(v6)
				probe(t, l.S, "tcp", l.T.addr(v6), 540, time.Second)
				d.waitFor(t, scanBlocked(s, "tcp", 540), logWait)
				d.waitFor(t, routeLine(s, routeCmd(c, s, 540, modeToken(flags2x, "tcp"))), logWait)
			}
			time.Sleep(settle)
			for _, ln := range fileLines(t, c.path("actions.log")) {
				if strings.Contains(ln, l.F.v4.String()) || strings.Contains(ln, l.F.v6.String()) {
					t.Errorf("ignored friend was blocked: KILL_ROUTE %q", ln)
				}
			}
			if ls := append(d.lines("blocked via wrappers with string: \"ALL: "+l.F.v4.String()),
				d.lines("blocked via wrappers with string: \"ALL: "+l.F.v6.String())...); len(ls) != 0 {
				t.Errorf("ignored friend was blocked: %q", ls)
			}
			assertDeny(t, c, l.S.v4, l.S.v6)
			if got := fileLines(t, c.path("actions.log")); len(got) != 2 {
				t.Errorf("KILL_ROUTE ran as %q, want once per scanner address", got)
			}
		})
	}
}

// TestBlockModes: BLOCK_TCP="0" only logs; BLOCK_TCP="2" runs KILL_RUN_CMD
// and nothing else.
func TestBlockModes(t *testing.T) {
	t.Parallel()
	t.Run("0-log-only", func(t *testing.T) {
		t.Parallel()
		l := newLab(t)
		c := newConfig(t)
		c.set("BLOCK_TCP", "0")
		c.set("KILL_RUN_CMD", "/bin/echo run $TARGET$ $PORT$ $MODE$ >> "+c.path("actions.log"))
		d := startDaemon(t, l.T.ns, c.write(t), flags2x...)
		hit(t, l.S, "tcp", l.T.v4, 143)
		d.waitFor(t, alertLine(l.S.v4, "tcp", 143), logWait)
		ln := d.waitFor(t, scanFields(l.S.v4, "tcp", 143), logWait)
		time.Sleep(settle)
		if strings.Contains(ln, "blocked: [true]") {
			t.Errorf("BLOCK_TCP=0 event logged as blocked: %q", ln)
		}
		if got := fileLines(t, c.path("actions.log")); len(got) != 0 {
			t.Errorf("BLOCK_TCP=0 ran commands: %q", got)
		}
		if got := fileLines(t, c.path("hosts.deny")); len(got) != 0 {
			t.Errorf("BLOCK_TCP=0 wrote hosts.deny: %q", got)
		}
		if ls := d.lines("has been blocked"); len(ls) != 0 {
			t.Errorf("BLOCK_TCP=0 blocked: %q", ls)
		}
		// UDP still blocks (BLOCK_UDP=1): the setting is per protocol.
		hit(t, l.S, "udp", l.T.v4, 69)
		d.waitFor(t, routeLine(l.S.v4, routeCmd(c, l.S.v4, 69, modeToken(flags2x, "udp"))), logWait)
	})
	t.Run("2-run-cmd-only", func(t *testing.T) {
		t.Parallel()
		l := newLab(t)
		c := newConfig(t)
		c.set("BLOCK_TCP", "2")
		c.set("KILL_RUN_CMD", "/bin/echo run $TARGET$ $PORT$ $MODE$ >> "+c.path("actions.log"))
		d := startDaemon(t, l.T.ns, c.write(t), flags2x...)
		hit(t, l.S, "tcp", l.T.v4, 143)
		d.waitFor(t, alertLine(l.S.v4, "tcp", 143), logWait)
		waitFileLines(t, c.path("actions.log"), 1, logWait)
		time.Sleep(settle)
		got := fileLines(t, c.path("actions.log"))
		if want := fmt.Sprintf("run %s 143 %s", l.S.v4, modeToken(flags2x, "tcp")); len(got) != 1 || got[0] != want {
			t.Errorf("BLOCK_TCP=2 actions %q, want only KILL_RUN_CMD %q", got, want)
		}
		if got := fileLines(t, c.path("hosts.deny")); len(got) != 0 {
			t.Errorf("BLOCK_TCP=2 wrote hosts.deny: %q", got)
		}
	})
}

// TestKillRunCmdOrder: KILL_RUN_CMD runs after the block by default and
// before it with KILL_RUN_CMD_FIRST="1", once per block.
func TestKillRunCmdOrder(t *testing.T) {
	t.Parallel()
	for _, first := range []string{"0", "1"} {
		t.Run("first="+first, func(t *testing.T) {
			t.Parallel()
			l := newLab(t)
			c := newConfig(t)
			c.set("KILL_RUN_CMD", "/bin/echo run $TARGET$ $PORT$ $MODE$ >> "+c.path("actions.log"))
			c.set("KILL_RUN_CMD_FIRST", first)
			d := startDaemon(t, l.T.ns, c.write(t), flags2x...)
			src := l.S.v6
			hit(t, l.S, "tcp", l.T.v6, 11)
			waitFileLines(t, c.path("actions.log"), 2, logWait)
			probe(t, l.S, "tcp", l.T.v6, 540, time.Second)
			d.waitFor(t, alreadyLine(src), logWait)
			time.Sleep(settle)
			route, run := routeRecord(src, 11, modeToken(flags2x, "tcp")), fmt.Sprintf("run %s 11 %s", src, modeToken(flags2x, "tcp"))
			want := []string{route, run}
			if first == "1" {
				want = []string{run, route}
			}
			if got := fileLines(t, c.path("actions.log")); strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("actions in order %q, want %q", got, want)
			}
			assertDeny(t, c, src)
		})
	}
}

// TestRelativePaths: file names in the config resolve against the config
// file's directory, not the daemon's working directory.
func TestRelativePaths(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	c := newConfig(t)
	writeFile(t, c.path("portsentry.ignore"), l.F.v4.String()+"\n")
	c.set("IGNORE_FILE", "portsentry.ignore")
	c.set("HISTORY_FILE", "portsentry.history")
	c.set("BLOCKED_FILE", "portsentry.blocked")
	c.set("HOSTS_DENY_FILE", "hosts.deny")
	d := startDaemon(t, l.T.ns, c.write(t), flags2x...)

	probe(t, l.F, "tcp", l.T.v4, 143, time.Second)
	if ln := d.waitFor(t, scanFields(l.F.v4, "tcp", 143), logWait); !strings.Contains(ln, "ignored: [true]") {
		t.Errorf("relative IGNORE_FILE not read: friend logged as %q", ln)
	}
	hit(t, l.S, "tcp", l.T.v4, 143)
	d.waitFor(t, routeLine(l.S.v4, routeCmd(c, l.S.v4, 143, modeToken(flags2x, "tcp"))), logWait)
	assertDeny(t, c, l.S.v4)
	hist := waitFileLines(t, c.path("portsentry.history"), 1, logWait)
	assertHistory12(t, hist[0], l.S.v4, 143, "tcp", time.Now().Add(-time.Minute))
}
