package e2e

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The log lines of the reference (§4), built for one source.

func protoName(proto string) string { return strings.ToUpper(proto) }

func kindName(proto string) string {
	if proto == "udp" {
		return "UDP"
	}
	return "Connect"
}

// scanFields is the start of a "Scan from" line up to and including the IP
// opts field; the ignored/triggered/noblock/blocked flags follow.
func scanFields(src netip.Addr, proto string, port int) string {
	return fmt.Sprintf("Scan from: [%s] (%s) protocol: [%s] port: [%d] type: [%s] IP opts: [unknown]",
		src, src, protoName(proto), port, kindName(proto))
}

// scanBlocked is the full "Scan from" line of an event that blocked.
func scanBlocked(src netip.Addr, proto string, port int) string {
	return scanFields(src, proto, port) + " ignored: [false] triggered: [true] noblock: [false] blocked: [true]"
}

func alertLine(src netip.Addr, proto string, port int) string {
	if proto == "udp" {
		return fmt.Sprintf("attackalert: UDP scan from host: %s/%s to UDP port: %d", src, src, port)
	}
	return fmt.Sprintf("attackalert: Connect from host: %s/%s to TCP port: %d", src, src, port)
}

func wrappersPrefix(src netip.Addr) string {
	return fmt.Sprintf("attackalert: Host %s has been blocked via wrappers with string: ", src)
}

func routeLine(src netip.Addr, command string) string {
	return fmt.Sprintf("attackalert: Host %s has been blocked via dropped route using command: \"%s\"", src, command)
}

func alreadyLine(src netip.Addr) string {
	return fmt.Sprintf("attackalert: Host: %s/%s is already blocked Ignoring", src, src)
}

// denyForms are the hosts.deny lines accepted for src: the plain address,
// and for IPv6 also TCP wrappers' bracketed form (hosts_access(5)).
// denyForms is the hosts.deny line for src: TCP wrappers read an IPv6
// address only in brackets (hosts_access(5)).
func denyForms(src netip.Addr) []string {
	if src.Is6() {
		return []string{fmt.Sprintf("ALL: [%s] : DENY", src)}
	}
	return []string{fmt.Sprintf("ALL: %s : DENY", src)}
}

func isDenyFor(line string, src netip.Addr) bool {
	for _, f := range denyForms(src) {
		if line == f {
			return true
		}
	}
	return false
}

// assertDeny checks that hosts.deny holds exactly the entries for srcs, in
// order, and kept its comment line.
func assertDeny(t *testing.T, c *config, srcs ...netip.Addr) {
	t.Helper()
	got := fileLines(t, c.path("hosts.deny"))
	if len(got) != len(srcs) {
		t.Fatalf("hosts.deny entries = %q, want one each for %v", got, srcs)
	}
	for i, src := range srcs {
		if !isDenyFor(got[i], src) {
			t.Errorf("hosts.deny line %d = %q, want %q", i+1, got[i], denyForms(src)[0])
		}
	}
	if all := readFile(t, c.path("hosts.deny")); !strings.HasPrefix(all, "# /etc/hosts.deny: e2e copy\n") {
		t.Errorf("hosts.deny lost its original content (must be appended to):\n%s", all)
	}
}

// history12 is a PortSentry 1.2 history line (reference §5).
var history12 = regexp.MustCompile(`^(\d+) - (\d\d/\d\d/\d{4} \d\d:\d\d:\d\d) Host: ([^ /]+)/(\S+) Port: (\d+) (TCP|UDP) Blocked$`)

// assertHistory12 checks one 1.2 history line: the source, port, protocol,
// an epoch within [from, now] and a local date that agrees with it.
func assertHistory12(t *testing.T, line string, src netip.Addr, port int, proto string, from time.Time) {
	t.Helper()
	m := history12.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("history line %q is not in PortSentry 1.2 format (%s)", line, history12)
	}
	epoch, _ := strconv.ParseInt(m[1], 10, 64)
	at := time.Unix(epoch, 0)
	if at.Before(from.Add(-time.Second)) || at.After(time.Now().Add(time.Second)) {
		t.Errorf("history epoch %d (%v) is not between the test's start %v and now", epoch, at, from)
	}
	if want := at.Format("01/02/2006 15:04:05"); m[2] != want {
		t.Errorf("history date %q does not match its epoch %d (local time %q)", m[2], epoch, want)
	}
	if m[3] != src.String() || m[4] != src.String() {
		t.Errorf("history host %q/%q, want %s/%s (RESOLVE_HOST=0)", m[3], m[4], src, src)
	}
	if m[5] != strconv.Itoa(port) || m[6] != protoName(proto) {
		t.Errorf("history port/proto %s %s, want %d %s", m[5], m[6], port, protoName(proto))
	}
}

// logLine is one line of the daemon's stdout: an RFC 3339-style timestamp,
// a space, the message.
var logLine = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d) \S`)

// assertLogFormat checks every stdout line so far.
func assertLogFormat(t *testing.T, d *daemon) {
	t.Helper()
	for _, l := range strings.Split(strings.TrimRight(d.stdout.String(), "\n"), "\n") {
		if !logLine.MatchString(l) {
			t.Errorf("stdout line %q is not \"<timestamp> <message>\" (%s)", l, logLine)
		}
	}
}

// history2x is a PortSentry 2.x history line: timestamp, then the event.
var history2x = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4} Scan from: \[`)
