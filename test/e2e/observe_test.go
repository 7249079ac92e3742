package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/netns"
)

// Observability end to end: the Prometheus endpoint (METRICS_ADDRESS), the
// JSON event log (EVENT_LOG) and the batched administrator alerts (ALERT_*),
// each driven by real probes from S against a daemon in T.

// metricsAddr is where the daemon serves /metrics: loopback inside T, so
// every lab has its own and nothing leaves the namespace.
const metricsAddr = "127.0.0.1:9617"

// series is one scrape: the full series name ("name{labels}") → value.
type series map[string]float64

// scrape GETs /metrics from inside ns with the netclient.
func scrape(t *testing.T, ns *netns.NS) series {
	t.Helper()
	cmd := ns.Command(clientPath, "-http", "http://"+metricsAddr+"/metrics", "-wait", "5s")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scraping %s in %s: %v\n%s", metricsAddr, ns, err, stderr.Bytes())
	}
	s := series{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		ln := sc.Text()
		if ln == "" || strings.HasPrefix(ln, "#") {
			continue
		}
		i := strings.LastIndexByte(ln, ' ')
		if i < 0 {
			t.Fatalf("scrape: malformed line %q", ln)
		}
		v, err := strconv.ParseFloat(ln[i+1:], 64)
		if err != nil {
			t.Fatalf("scrape: line %q: %v", ln, err)
		}
		s[ln[:i]] = v
	}
	return s
}

// sum adds the values of every series of metric name whose labels include
// all of want (label="value" pairs); found is false when none matched.
func (s series) sum(name string, want ...string) (total float64, found bool) {
	for k, v := range s {
		base, labels, _ := strings.Cut(k, "{")
		if base != name {
			continue
		}
		ok := true
		for _, w := range want {
			if !strings.Contains(","+strings.TrimSuffix(labels, "}")+",", ","+w+",") {
				ok = false
				break
			}
		}
		if ok {
			total += v
			found = true
		}
	}
	return total, found
}

// dump lists the portsentry_ series, for failure messages.
func (s series) dump() string {
	var ks []string
	for k, v := range s {
		if strings.HasPrefix(k, "portsentry_") {
			ks = append(ks, fmt.Sprintf("%s %v", k, v))
		}
	}
	sort.Strings(ks)
	return strings.Join(ks, "\n")
}

// waitScrape scrapes until ok accepts the result or the wait runs out, and
// returns the last scrape with ok's complaint ("" when accepted).
func waitScrape(t *testing.T, ns *netns.NS, ok func(series) string) (series, string) {
	t.Helper()
	deadline := time.Now().Add(logWait)
	for {
		s := scrape(t, ns)
		why := ok(s)
		if why == "" || time.Now().After(deadline) {
			return s, why
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestMetricsEndpoint: with METRICS_ADDRESS set, /metrics counts a real
// scan (the triggering event as blocked, the next as already_blocked), the
// ban, the active bans and the build, and a SIGHUP as a successful reload
// without resetting the counters.
func TestMetricsEndpoint(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	c := newConfig(t)
	c.set("METRICS_ADDRESS", metricsAddr)
	d := startDaemon(t, l.T.ns, c.write(t), flags2x...)
	d.waitFor(t, "metrics on http://"+metricsAddr+"/metrics", logWait)

	// Before any probe: the labelled counters exist at 0.
	s0 := scrape(t, l.T.ns)
	for _, m := range []struct {
		name   string
		labels []string
	}{
		{"portsentry_events_total", []string{`action="blocked"`, `proto="tcp"`}},
		{"portsentry_bans_total", nil},
		{"portsentry_reloads_total", []string{`result="success"`}},
		{"portsentry_reloads_total", []string{`result="failure"`}},
	} {
		if v, ok := s0.sum(m.name, m.labels...); !ok || v != 0 {
			t.Errorf("before any probe %s%v = %v (present %v), want present at 0\n%s", m.name, m.labels, v, ok, s0.dump())
		}
	}

	src := l.S.v4
	hit(t, l.S, "tcp", l.T.v4, 143)
	d.waitFor(t, routeLine(src, routeCmd(c, src, 143, modeToken(flags2x, "tcp"))), logWait)
	hit(t, l.S, "tcp", l.T.v4, 31337)
	d.waitFor(t, alreadyLine(src), logWait)

	check := func(s series) string {
		var why []string
		if v, _ := s.sum("portsentry_events_total", `action="blocked"`, `proto="tcp"`); v < 1 {
			why = append(why, fmt.Sprintf(`events_total{action="blocked",proto="tcp"} = %v, want ≥ 1`, v))
		}
		ab, _ := s.sum("portsentry_events_total", `action="already_blocked"`, `proto="tcp"`)
		pe, _ := s.sum("portsentry_events_total", `action="pending"`, `proto="tcp"`)
		if ab+pe < 1 {
			why = append(why, fmt.Sprintf(`events_total{action="already_blocked"|"pending",proto="tcp"} = %v+%v, want ≥ 1`, ab, pe))
		}
		if v, _ := s.sum("portsentry_events_total", `kind="connect"`, `proto="tcp"`); v < 2 {
			why = append(why, fmt.Sprintf(`events_total{kind="connect",proto="tcp"} = %v, want ≥ 2 (two probes)`, v))
		}
		if v, _ := s.sum("portsentry_events_total", `proto="udp"`); v != 0 {
			why = append(why, fmt.Sprintf(`events_total{proto="udp"} = %v, want 0 (no UDP probe)`, v))
		}
		if v, _ := s.sum("portsentry_bans_total"); v < 1 {
			why = append(why, fmt.Sprintf("bans_total = %v, want ≥ 1", v))
		}
		if v, ok := s.sum("portsentry_bans_active"); !ok || v < 1 {
			why = append(why, fmt.Sprintf("bans_active = %v (present %v), want ≥ 1", v, ok))
		}
		if v, ok := s.sum("portsentry_build_info"); !ok || v != 1 {
			why = append(why, fmt.Sprintf("build_info = %v (present %v), want 1", v, ok))
		}
		return strings.Join(why, "; ")
	}
	s1, why := waitScrape(t, l.T.ns, check)
	if why != "" {
		t.Fatalf("after the scan: %s\n%s", why, s1.dump())
	}
	if v, _ := s1.sum("portsentry_bans_total"); v != 1 {
		t.Errorf("bans_total = %v after one block, want exactly 1\n%s", v, s1.dump())
	}
	if v, _ := s1.sum("portsentry_events_total", `action="blocked"`); v != 1 {
		t.Errorf(`events_total{action="blocked"} = %v after one block, want exactly 1`+"\n%s", v, s1.dump())
	}
	if v, _ := s1.sum("portsentry_reloads_total"); v != 0 {
		t.Errorf("reloads_total = %v before any SIGHUP, want 0", v)
	}

	d.signal(t, syscall.SIGHUP)
	d.waitFor(t, "configuration reloaded", logWait)
	s2, why := waitScrape(t, l.T.ns, func(s series) string {
		if v, _ := s.sum("portsentry_reloads_total", `result="success"`); v != 1 {
			return fmt.Sprintf(`reloads_total{result="success"} = %v, want 1`, v)
		}
		return ""
	})
	if why != "" {
		t.Fatalf("after SIGHUP: %s\n%s", why, s2.dump())
	}
	if v, _ := s2.sum("portsentry_reloads_total", `result="failure"`); v != 0 {
		t.Errorf(`reloads_total{result="failure"} = %v after a good reload, want 0`, v)
	}
	if os.Getenv("PSE2E_DUMP") != "" {
		t.Logf("scrape after SIGHUP:\n%s", s2.dump())
	}
	// A reload is not a restart: the counters go on.
	if why := check(s2); why != "" {
		t.Errorf("after SIGHUP the counters changed: %s\n%s", why, s2.dump())
	}
}

// eventLine is one line of EVENT_LOG as the tests read it; pointers are the
// fields that may be null.
type eventLine struct {
	Time       string  `json:"time"`
	Hostname   string  `json:"hostname"`
	Version    string  `json:"version"`
	Src        string  `json:"src"`
	Dst        *string `json:"dst"`
	Port       int     `json:"port"`
	Proto      string  `json:"proto"`
	Kind       string  `json:"kind"`
	Type       string  `json:"type"`
	Mode       string  `json:"mode"`
	IPOpts     *bool   `json:"ip_opts"`
	Action     string  `json:"action"`
	Hits       int     `json:"hits"`
	Host       *string `json:"host"`
	Blocker    *string `json:"blocker"`
	BanExpires *string `json:"ban_expires"`
	BanCount   int     `json:"ban_count"`
	Origin     *string `json:"origin"`
}

// eventKeys are the keys every line must carry (null or not).
var eventKeys = []string{"time", "hostname", "version", "src", "dst", "port", "proto", "kind", "type",
	"mode", "ip_opts", "action", "hits", "host", "blocker", "ban_expires", "ban_count", "origin"}

// readEvents parses every line of the event log, failing on any that is not
// a complete JSON object.
func readEvents(t *testing.T, p string) []eventLine {
	t.Helper()
	var out []eventLine
	for i, ln := range fileLines(t, p) {
		var keys map[string]json.RawMessage
		if err := json.Unmarshal([]byte(ln), &keys); err != nil {
			t.Fatalf("%s line %d is not a JSON object: %v\n%s", p, i+1, err, ln)
		}
		for _, k := range eventKeys {
			if _, ok := keys[k]; !ok {
				t.Errorf("%s line %d lacks key %q: %s", p, i+1, k, ln)
			}
		}
		var e eventLine
		dec := json.NewDecoder(strings.NewReader(ln))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("%s line %d: %v\n%s", p, i+1, err, ln)
		}
		out = append(out, e)
	}
	return out
}

func strp(p *string) string {
	if p == nil {
		return "<null>"
	}
	return *p
}

// TestEventLog: EVENT_LOG (relative to the config's directory) gets one
// complete JSON line per event: an ignored friend, the scanner's
// triggering probe as "blocked" with its ban, and the scanner's next probes
// (TCP and UDP) as "already_blocked".
func TestEventLog(t *testing.T) {
	t.Parallel()
	start := time.Now()
	l := newLab(t)
	c := newConfig(t)
	writeFile(t, c.path("portsentry.ignore"), "127.0.0.1\n::1\n"+l.F.v4.String()+"\n")
	c.set("EVENT_LOG", "events.jsonl")
	d := startDaemon(t, l.T.ns, c.write(t), flags2x...)
	logPath := c.path("events.jsonl")

	probe(t, l.F, "tcp", l.T.v4, 540, time.Second)
	d.waitFor(t, scanFields(l.F.v4, "tcp", 540), logWait)
	src := l.S.v4
	hit(t, l.S, "tcp", l.T.v4, 143)
	d.waitFor(t, routeLine(src, routeCmd(c, src, 143, modeToken(flags2x, "tcp"))), logWait)
	d.waitFor(t, scanBlocked(src, "tcp", 143), logWait)
	hit(t, l.S, "tcp", l.T.v4, 31337)
	hit(t, l.S, "udp", l.T.v4, 69)
	d.waitForN(t, alreadyLine(src), 2, logWait)
	waitFileLines(t, logPath, 4, logWait)
	time.Sleep(settle)

	if os.Getenv("PSE2E_DUMP") != "" {
		t.Logf("%s:\n%s", logPath, readFile(t, logPath))
	}
	evs := readEvents(t, logPath)
	if len(evs) != 4 {
		t.Fatalf("%d event lines, want 4 (friend, blocked, 2 already blocked):\n%s", len(evs), readFile(t, logPath))
	}
	type want struct {
		src    netip.Addr
		port   int
		proto  string
		kind   string
		action string
	}
	wants := []want{
		{l.F.v4, 540, "tcp", "connect", "ignored"},
		{src, 143, "tcp", "connect", "blocked"},
		{src, 31337, "tcp", "connect", "already_blocked"},
		{src, 69, "udp", "udp", "already_blocked"},
	}
	for i, e := range evs {
		w := wants[i]
		if e.Src != w.src.String() || e.Port != w.port || e.Proto != w.proto || e.Kind != w.kind || e.Action != w.action {
			t.Errorf("event %d: src=%s port=%d proto=%s kind=%s action=%s, want src=%s port=%d proto=%s kind=%s action=%s",
				i+1, e.Src, e.Port, e.Proto, e.Kind, e.Action, w.src, w.port, w.proto, w.kind, w.action)
		}
		if ts, err := time.Parse(time.RFC3339Nano, e.Time); err != nil {
			t.Errorf("event %d: time %q: %v", i+1, e.Time, err)
		} else if ts.Before(start.Add(-time.Second)) || ts.After(time.Now().Add(time.Second)) {
			t.Errorf("event %d: time %s outside the test (%s …)", i+1, ts, start)
		}
		if e.Hostname == "" || e.Version == "" || e.Type == "" || e.Mode == "" {
			t.Errorf("event %d: empty hostname/version/type/mode: %+v", i+1, e)
		}
		if e.Dst == nil || *e.Dst != l.T.v4.String() {
			t.Errorf("event %d: dst %s, want %s", i+1, strp(e.Dst), l.T.v4)
		}
		if e.Host != nil {
			t.Errorf("event %d: host %q with RESOLVE_HOST=0, want null", i+1, *e.Host)
		}
		if w.action == "blocked" {
			if e.Blocker == nil || *e.Blocker == "" {
				t.Errorf("event %d (blocked): blocker null, want what applied the ban", i+1)
			}
			if e.BanCount != 1 {
				t.Errorf("event %d (blocked): ban_count %d, want 1", i+1, e.BanCount)
			}
			if e.Hits < 1 {
				t.Errorf("event %d (blocked): hits %d, want ≥ 1", i+1, e.Hits)
			}
		} else {
			if e.Blocker != nil || e.BanExpires != nil || e.BanCount != 0 {
				t.Errorf("event %d (%s): blocker %s ban_expires %s ban_count %d, want null, null, 0",
					i+1, e.Action, strp(e.Blocker), strp(e.BanExpires), e.BanCount)
			}
		}
	}
}

// mailer writes a sendmail stand-in into dir: each invocation stores its
// arguments and its standard input as dir/mail-PID.args and
// dir/mail-PID.eml (the .eml renamed into place only once complete).
func mailer(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "sendmail")
	script := "#!/bin/sh\n" +
		"d='" + dir + "'\n" +
		"printf '%s\\n' \"$*\" > \"$d/mail-$$.args\"\n" +
		"cat > \"$d/tmp-$$\" && mv \"$d/tmp-$$\" \"$d/mail-$$.eml\"\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// mails returns the complete messages the stand-in received, oldest first.
func mails(t *testing.T, dir string) []string {
	t.Helper()
	ms, err := filepath.Glob(filepath.Join(dir, "mail-*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(ms, func(i, j int) bool {
		a, _ := os.Stat(ms[i])
		b, _ := os.Stat(ms[j])
		return a.ModTime().Before(b.ModTime())
	})
	var out []string
	for _, m := range ms {
		out = append(out, readFile(t, m))
		if args := strings.TrimSpace(readFile(t, strings.TrimSuffix(m, ".eml")+".args")); args != "-t -i" {
			t.Errorf("sendmail run as %q, want \"-t -i\"", args)
		}
	}
	return out
}

// waitMails waits until n messages arrived.
func waitMails(t *testing.T, dir string, n int, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ms := mails(t, dir)
		if len(ms) >= n || time.Now().After(deadline) {
			return ms
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAlertsBatched: with ALERT_MAILER="sendmail" and ALERT_DELAY="1", a
// quick scan over several TCP and UDP trap ports gives the administrator
// ONE message about the scanner, sent no sooner than the delay; a second
// scanner (S's IPv6 address) gets a message of its own.
func TestAlertsBatched(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	c := newConfig(t)
	out := t.TempDir()
	c.set("ALERT_MAILER", "sendmail")
	c.set("ALERT_SENDMAIL", mailer(t, out))
	c.set("ALERT_EMAIL_TO", "root@localhost")
	c.set("ALERT_EMAIL_FROM", "portsentry@localhost")
	c.set("ALERT_DELAY", "1")
	d := startDaemon(t, l.T.ns, c.write(t), flags2x...)

	v4, v6 := l.S.v4, l.S.v6
	begin := time.Now()
	for _, p := range []struct {
		proto string
		port  int
	}{{"tcp", 143}, {"udp", 69}, {"tcp", 540}, {"udp", 7}, {"tcp", 31337}} {
		r := probe(t, l.S, p.proto, l.T.v4, p.port, 300*time.Millisecond)
		if !r.Connected {
			t.Fatalf("%s probe to %d did not get through: %s", p.proto, p.port, r.Error)
		}
	}
	d.waitFor(t, routeLine(v4, routeCmd(c, v4, 143, modeToken(flags2x, "tcp"))), logWait)

	ms := waitMails(t, out, 1, logWait)
	if len(ms) == 0 {
		t.Fatalf("no alert within %v of the scan", logWait)
	}
	if el := time.Since(begin); el < time.Second {
		t.Errorf("first alert after %v, before ALERT_DELAY=1s", el)
	}
	time.Sleep(3*time.Second - time.Since(begin))
	ms = mails(t, out)
	if len(ms) != 1 {
		t.Fatalf("%d messages 3 s after one scanner's scan, want exactly 1:\n%s", len(ms), strings.Join(ms, "\n-----\n"))
	}
	checkMail(t, ms[0], v4)

	begin6 := time.Now()
	hit(t, l.S, "tcp", l.T.v6, 11)
	d.waitFor(t, routeLine(v6, routeCmd(c, v6, 11, modeToken(flags2x, "tcp"))), logWait)
	ms = waitMails(t, out, 2, logWait)
	if len(ms) != 2 {
		t.Fatalf("%d messages after a second scanner, want 2:\n%s", len(ms), strings.Join(ms, "\n-----\n"))
	}
	if el := time.Since(begin6); el < time.Second {
		t.Errorf("second alert after %v, before ALERT_DELAY=1s", el)
	}
	time.Sleep(settle)
	if ms = mails(t, out); len(ms) != 2 {
		t.Fatalf("%d messages, want 2:\n%s", len(ms), strings.Join(ms, "\n-----\n"))
	}
	checkMail(t, ms[1], v6)
	if os.Getenv("PSE2E_DUMP") != "" {
		t.Logf("messages:\n%s", strings.Join(ms, "\n-----\n"))
	}
	if strings.Contains(ms[1], v4.String()) {
		t.Errorf("message about %s also names %s:\n%s", v6, v4, ms[1])
	}
}

// checkMail checks a message is a mail to the configured address about src.
func checkMail(t *testing.T, m string, src netip.Addr) {
	t.Helper()
	head, body, ok := strings.Cut(strings.ReplaceAll(m, "\r\n", "\n"), "\n\n")
	if !ok {
		t.Errorf("message has no header/body separator:\n%s", m)
		return
	}
	for _, h := range []string{"To: root@localhost", "From: portsentry@localhost", "Subject: "} {
		if !strings.Contains("\n"+head, "\n"+h) {
			t.Errorf("message header lacks %q:\n%s", h, head)
		}
	}
	if !strings.Contains(body, src.String()) {
		t.Errorf("message body does not name the scanner %s:\n%s", src, m)
	}
}
