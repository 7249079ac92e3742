package main

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/portset"
	"github.com/portsentry-go/portsentry/test/internal/labnmap"
)

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-scenarios", "slowscan, forged"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := o.command(), "go run ./test/trustlab -scenarios slowscan,forged"; got != want {
		t.Errorf("command() = %q, want %q", got, want)
	}
	o, err = parseFlags(nil, io.Discard)
	if err != nil || len(o.scenarios) != len(scenarios) {
		t.Errorf("default scenarios: %v, %v", o, err)
	}
	for _, bad := range [][]string{{"-scenarios", "ping"}, {"-scenarios", ""}, {"-scenarios", "forged,forged"}, {"-timeout", "0s"}, {"extra"}} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
}

func TestParseResult(t *testing.T) {
	var ss []sessionResult
	out := "scanlab-ready\n" + resultMark + `[{"family":"IPv4","rounds":3,"failures":1,"alive":false,"error":"line 3: timeout"}]` + "\n"
	if err := parseResult(out, &ss); err != nil || len(ss) != 1 || ss[0].Rounds != 3 || ss[0].Alive {
		t.Errorf("parseResult = %+v, %v", ss, err)
	}
	if err := parseResult("scanlab-ready\n", &ss); err == nil {
		t.Error("parseResult found a result in nothing")
	}
}

// TestAnalyzeRestart sorts attempts by the restart's timeline.
func TestAnalyzeRestart(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	stopped, restarted := at(1000), at(3000)
	as := []attempt{
		{At: at(0), OK: true},
		{At: at(500), OK: true},
		{At: at(900), OK: false, Error: "dial tcp: i/o timeout"}, // before the stop: not counted
		{At: at(1001), OK: true},                                 // served as the listener closed
		{At: at(1100), OK: false, Error: "dial tcp 10.235.0.1:8080: connect: connection refused"},
		{At: at(1200), OK: false, Error: "dial tcp 10.235.0.1:8080: i/o timeout"},
		{At: at(2200), OK: false, Error: "read: connection reset by peer"},
		{At: at(2900), OK: true, Took: 0.3}, // its SYN's retransmission met the new listener
		{At: at(3100), OK: false, Error: "boom", Addr: "fd00:235::1"},
		{At: at(3200), OK: true},
	}
	st := analyzeRestart(as, stopped, restarted)
	want := restartStats{servedBefore: 2, down: 3, refused: 1, timedOut: 1, otherDown: 1, servedAfter: 1, failedAfter: 1, back: 200 * time.Millisecond, errorsAfter: []string{"fd00:235::1: boom"}}
	if fmt.Sprint(st) != fmt.Sprint(want) {
		t.Errorf("analyzeRestart =\n%+v, want\n%+v", st, want)
	}
	var sum restartStats
	sum.add(st)
	sum.add(st)
	if got := sum.downText(); !strings.HasPrefix(got, "6 failed: 2 refused at once") {
		t.Errorf("downText = %q", got)
	}
}

func TestTraceHops(t *testing.T) {
	tr := `traceroute to 10.235.0.1 (10.235.0.1), 30 hops max, 60 byte packets
 1  10.235.1.254  0.061 ms  0.016 ms  0.014 ms
 2  * * *
 3  10.235.0.1  0.080 ms  0.040 ms  0.037 ms
`
	if got := strings.Join(traceHops(tr, false), " "); got != "10.235.1.254 * 10.235.0.1" {
		t.Errorf("traceHops(traceroute) = %q", got)
	}
	mtr := `Start: 2026-12-07T23:11:50+0000
HOST: pstrust                     Loss%   Snt   Last   Avg  Best  Wrst StDev
  1.|-- 10.235.1.254               0.0%     3    0.1   0.1   0.1   0.1   0.0
  2.|-- ???                       100.0     3    0.0   0.0   0.0   0.0   0.0
`
	if got := strings.Join(traceHops(mtr, true), " "); got != "10.235.1.254 ???" {
		t.Errorf("traceHops(mtr) = %q", got)
	}
}

// TestParsePacketTrace reads nmap -T1's probes and replies: probes 1 and 2
// answered with an RST, the third (which made the daemon act) too, the
// fourth dropped; a retransmission to a port is the latest probe to it.
func TestParsePacketTrace(t *testing.T) {
	out := `Starting Nmap 7.93 ( https://nmap.org ) at 2026-12-07 23:12 UTC
SENT (0.0520s) TCP 10.235.0.99:57934 > 10.235.0.1:7 S ttl=41 id=24410 iplen=44  seq=3121 win=1024 <mss 1460>
RCVD (0.0522s) TCP 10.235.0.1:7 > 10.235.0.99:57934 RA ttl=64 id=0 iplen=40  seq=0 win=0
SENT (15.0600s) TCP 10.235.0.99:57934 > 10.235.0.1:3 S ttl=52 id=1 iplen=44  seq=3121 win=1024 <mss 1460>
RCVD (15.0602s) TCP 10.235.0.1:3 > 10.235.0.99:57934 RA ttl=64 id=0 iplen=40  seq=0 win=0
SENT (30.0700s) TCP 10.235.0.99:57934 > 10.235.0.1:9 S ttl=44 id=2 iplen=44  seq=3121 win=1024 <mss 1460>
RCVD (30.0702s) TCP 10.235.0.1:9 > 10.235.0.99:57934 RA ttl=64 id=0 iplen=40  seq=0 win=0
SENT (45.0800s) TCP 10.235.0.99:57934 > 10.235.0.1:1 S ttl=39 id=3 iplen=44  seq=3121 win=1024 <mss 1460>
RCVD (45.1000s) TCP 10.235.0.7:1 > 10.235.0.99:57934 RA ttl=64 id=0 iplen=40  seq=0 win=0
Nmap done: 1 IP address (1 host up) scanned in 60.10 seconds
`
	got := parsePacketTrace(out, "10.235.0.1")
	want := []probe{{7, 0.052, "RA"}, {3, 15.06, "RA"}, {9, 30.07, "RA"}, {1, 45.08, ""}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("parsePacketTrace = %v, want %v", got, want)
	}
	lines := []string{
		"2026-12-07T23:12:30.071+0000 attackalert: TCP SYN/Normal scan from host: 10.235.0.99/10.235.0.99 to TCP port: 9",
		"2026-12-07T23:12:30.071+0000 attackalert: TCP SYN/Normal scan from host: 10.235.0.99/10.235.0.99 to TCP port: 1",
	}
	if p := attackPort(lines); p != 9 {
		t.Errorf("attackPort = %d, want 9", p)
	}
	if p := attackPort(nil); p != 0 {
		t.Errorf("attackPort(nil) = %d", p)
	}
}

func TestClassify(t *testing.T) {
	exclude, err := portset.Parse("113,139")
	if err != nil {
		t.Fatal(err)
	}
	ports := []labnmap.Port{{ID: 22, Proto: "tcp", State: "open"}, {ID: 113, Proto: "tcp", State: "closed"}, {ID: 900, Proto: "tcp", State: "closed"}}
	k := classify(ports, []int{22, 80}, exclude)
	if got, want := k.text(3), "3: 22/tcp open (T's services, which C uses); 113/tcp closed (ADVANCED_EXCLUDE_TCP, no trap); 900/tcp closed (trap ports)"; got != want {
		t.Errorf("text = %q, want %q", got, want)
	}
	if got := classify(nil, nil, exclude).text(0); got != "0" {
		t.Errorf("text of nothing = %q", got)
	}
}

// TestReport renders a result: the scenario named once, the verdict only
// where there is a target, an error as its own row, and the summary.
func TestReport(t *testing.T) {
	r := &result{s: scenarios[0], rows: []row{
		{measure: "a|b", target: "0", result: "1", met: false},
		{measure: "info", result: "x"},
	}, err: fmt.Errorf("gone\nmore")}
	want := "| forged | a\\|b | 0 | 1 | no |\n|  | info |  | x |  |\n|  | error | | gone | |\n"
	if got := r.table(); got != want {
		t.Errorf("table =\n%s\nwant\n%s", got, want)
	}
	if got := r.summary(); got != "0 of 1 targets met; NOT MET: a|b: 1 (ERROR: gone)" {
		t.Errorf("summary = %q", got)
	}
	rep := &report{results: []*result{r}, command: "go run ./test/trustlab -scenarios forged", lab: "Lab."}
	md := rep.markdown()
	for _, want := range []string{"| scenario | measure | target | result | met |", "`go run ./test/trustlab -scenarios forged`", "- forged: error: gone / more"} {
		if !strings.Contains(md, want) {
			t.Errorf("the report lacks %q:\n%s", want, md)
		}
	}
	if !rep.failed() {
		t.Error("a report with an error is not failed")
	}
}
