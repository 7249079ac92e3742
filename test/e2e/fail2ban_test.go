package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/portsentry-go/portsentry/internal/netns/netnstest"
)

// f2bLines is fail2ban-regex's summary: "Lines: 2 lines, 0 ignored, 2 matched, 0 missed".
var f2bLines = regexp.MustCompile(`(?m)^Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed`)

// fail2banRegex runs `fail2ban-regex LOG FILTER` and returns the summary
// counts (lines, matched, missed) and the matched host addresses (-o ip).
func fail2banRegex(t *testing.T, log, filter string) (lines, matched, missed int, ips []string) {
	t.Helper()
	tool := requireTool(t, "fail2ban-regex", "fail2ban")
	out, err := exec.Command(tool, log, filter).CombinedOutput()
	if err != nil {
		t.Fatalf("fail2ban-regex %s %s: %v\n%s", log, filter, err, out)
	}
	m := f2bLines.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no \"Lines: ...\" summary in fail2ban-regex output:\n%s", out)
	}
	lines, _ = strconv.Atoi(string(m[1]))
	matched, _ = strconv.Atoi(string(m[3]))
	missed, _ = strconv.Atoi(string(m[4]))
	ipOut, err := exec.Command(tool, "-o", "ip", log, filter).CombinedOutput()
	if err != nil {
		t.Fatalf("fail2ban-regex -o ip %s %s: %v\n%s", log, filter, err, ipOut)
	}
	ips = strings.Fields(string(ipOut))
	if t.Failed() || matched == 0 {
		t.Logf("fail2ban-regex %s %s:\n%s", log, filter, out)
	}
	return lines, matched, missed, ips
}

func containsIP(ips []string, want netip.Addr) bool {
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err == nil && a == want {
			return true
		}
	}
	return false
}

// TestFail2ban: the history the daemon writes is read by Debian's real
// fail2ban: the stock portsentry filter for the default 1.2 format, the 2.x
// filter (testdata) for HISTORY_FORMAT="2.x". Both scanner addresses (IPv4
// and IPv6) must come out as matches.
func TestFail2ban(t *testing.T) {
	t.Parallel()
	stock := "/etc/fail2ban/filter.d/portsentry.conf"
	filter2x, err := filepath.Abs(filepath.Join("testdata", "portsentry-2x-filter.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ format, filter string }{
		{"", stock}, // default: 1.2
		{"1.2", stock},
		{"2.x", filter2x},
	} {
		name := tc.format
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			requireTool(t, "fail2ban-regex", "fail2ban")
			if _, err := os.Stat(tc.filter); err != nil {
				netnstest.SkipOrFail(t, fmt.Sprintf("needs the filter %s: apt-get install fail2ban (%v)", tc.filter, err))
			}
			l := newLab(t)
			c := newConfig(t)
			if tc.format != "" {
				c.set("HISTORY_FORMAT", tc.format)
			}
			d := startDaemon(t, l.T.ns, c.write(t), flags2x...)
			hit(t, l.S, "tcp", l.T.v4, 143)
			d.waitFor(t, routeLine(l.S.v4, routeCmd(c, l.S.v4, 143, modeToken(flags2x, "tcp"))), logWait)
			hit(t, l.S, "udp", l.T.v6, 69)
			d.waitFor(t, routeLine(l.S.v6, routeCmd(c, l.S.v6, 69, modeToken(flags2x, "udp"))), logWait)

			hist := waitFileLines(t, c.path("portsentry.history"), 2, logWait)
			for _, ln := range hist {
				if tc.format == "2.x" {
					if !history2x.MatchString(ln) {
						t.Errorf("history line %q is not in 2.x format (%s)", ln, history2x)
					}
				} else if !history12.MatchString(ln) {
					t.Errorf("history line %q is not in 1.2 format (%s)", ln, history12)
				}
			}
			lines, matched, missed, ips := fail2banRegex(t, c.path("portsentry.history"), tc.filter)
			if matched < 2 {
				t.Errorf("fail2ban matched %d of %d history lines, want ≥ 2 (one block per address)", matched, lines)
			}
			if missed != 0 {
				t.Errorf("fail2ban missed %d of %d history lines", missed, lines)
			}
			for _, a := range []netip.Addr{l.S.v4, l.S.v6} {
				if !containsIP(ips, a) {
					t.Errorf("fail2ban-regex -o ip found %q, want the scanner %s among them", ips, a)
				}
			}
		})
	}
}
