package summary

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portsentry-go/portsentry/internal/enforce/bans"
)

// now is the fixed clock of these tests: a Sunday, mid-hour.
var now = time.Date(2026, 11, 22, 14, 27, 0, 0, time.UTC)

var (
	scanner = netip.MustParseAddr("10.0.0.2")
	other   = netip.MustParseAddr("2001:db8::3")
	third   = netip.MustParseAddr("10.0.0.9")
)

func TestLastDays(t *testing.T) {
	tests := []struct {
		name     string
		now      time.Time
		length   time.Duration
		from, to time.Time
	}{
		{"mid-hour: the hour under way is the last", now, 7 * 24 * time.Hour,
			time.Date(2026, 11, 15, 15, 0, 0, 0, time.UTC), time.Date(2026, 11, 22, 15, 0, 0, 0, time.UTC)},
		{"on the hour", time.Date(2026, 11, 22, 15, 0, 0, 0, time.UTC), 24 * time.Hour,
			time.Date(2026, 11, 21, 15, 0, 0, 0, time.UTC), time.Date(2026, 11, 22, 15, 0, 0, 0, time.UTC)},
		{"half-hour zone: the wall clock's hours", time.Date(2026, 11, 22, 19, 57, 0, 0, time.FixedZone("IST", 5*3600+1800)), time.Hour,
			time.Date(2026, 11, 22, 19, 0, 0, 0, time.FixedZone("IST", 5*3600+1800)), time.Date(2026, 11, 22, 20, 0, 0, 0, time.FixedZone("IST", 5*3600+1800))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from, to := LastDays(tt.now, tt.length)
			if !from.Equal(tt.from) || !to.Equal(tt.to) {
				t.Errorf("LastDays(%v, %v) = %v, %v; want %v, %v", tt.now, tt.length, from, to, tt.from, tt.to)
			}
		})
	}
}

func TestBuckets(t *testing.T) {
	tests := []struct {
		name     string
		from, to time.Time
		width    time.Duration
		n        int
		start    time.Time
	}{
		{"a week: 168 hours", time.Date(2026, 11, 15, 15, 0, 0, 0, time.UTC), time.Date(2026, 11, 22, 15, 0, 0, 0, time.UTC), time.Hour, 168, time.Date(2026, 11, 15, 15, 0, 0, 0, time.UTC)},
		{"uneven ends: whole hours that cover them", time.Date(2026, 11, 22, 10, 30, 0, 0, time.UTC), time.Date(2026, 11, 22, 12, 10, 0, 0, time.UTC), time.Hour, 3, time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)},
		{"90 days: by the day", time.Date(2026, 8, 24, 15, 0, 0, 0, time.UTC), time.Date(2026, 11, 22, 15, 0, 0, 0, time.UTC), 24 * time.Hour, 91, time.Date(2026, 8, 24, 0, 0, 0, 0, time.UTC)},
		{"ten years: by the week", time.Date(2016, 11, 22, 15, 0, 0, 0, time.UTC), time.Date(2026, 11, 22, 15, 0, 0, 0, time.UTC), 7 * 24 * time.Hour, 522, time.Date(2016, 11, 22, 0, 0, 0, 0, time.UTC)},
		{"empty period", now, now, time.Hour, 1, time.Date(2026, 11, 22, 14, 0, 0, 0, time.UTC)},
		{"reversed period is empty", now, now.Add(-time.Hour), time.Hour, 1, time.Date(2026, 11, 22, 14, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Options{From: tt.from, To: tt.to, Now: now}).Summary()
			if s.Bucket != tt.width || len(s.Buckets) != tt.n || !s.Buckets[0].Start.Equal(tt.start) {
				t.Errorf("width %v, %d buckets from %v; want %v, %d from %v", s.Bucket, len(s.Buckets), s.Buckets[0].Start, tt.width, tt.n, tt.start)
			}
			if len(s.Buckets) > maxBuckets {
				t.Errorf("%d buckets, more than %d", len(s.Buckets), maxBuckets)
			}
		})
	}
	// Thirty thousand years still fit.
	s := New(Options{From: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), To: now, Now: now}).Summary()
	if len(s.Buckets) > maxBuckets || len(s.Buckets) < 2 {
		t.Errorf("2026 years: %d buckets of %v", len(s.Buckets), s.Bucket)
	}
}

// week returns a builder for the seven days before now.
func week(top int) *Builder {
	from, to := LastDays(now, 7*24*time.Hour)
	return New(Options{From: from, To: to, Now: now, Top: top})
}

func TestSummary(t *testing.T) {
	b := week(2)
	hourAgo := now.Add(-time.Hour)
	// The scanner: a SYN scan of ports 1-100 an hour ago, blocked on the
	// first probe, then five UDP probes of 53 now.
	for p := 1; p <= 100; p++ {
		b.Add(Probe{Time: hourAgo.Add(time.Duration(p) * time.Millisecond), Src: scanner, Host: "scan.example", Port: uint16(p), Proto: "tcp", Kind: "syn", Blocked: p == 1})
	}
	for i := 0; i < 5; i++ {
		b.Add(Probe{Time: now.Add(time.Duration(i) * time.Second), Src: scanner, Port: 53, Proto: "udp", Kind: "udp"})
	}
	// Another source: 22 and 80, three times each, yesterday; a third
	// source once on 22, from the history (no kind).
	for i := 0; i < 3; i++ {
		for _, p := range []uint16{22, 80} {
			b.Add(Probe{Time: now.Add(-24 * time.Hour), Src: other, Port: p, Proto: "tcp", Kind: "fin"})
		}
	}
	b.Add(Probe{Time: now.Add(-2 * time.Hour), Src: third, Port: 22, Proto: "tcp", Blocked: true})
	// Outside the period, or without a source: not counted.
	for _, p := range []Probe{
		{Time: now.Add(-8 * 24 * time.Hour), Src: third, Port: 1, Proto: "tcp"},
		{Time: now.Add(time.Hour), Src: third, Port: 1, Proto: "tcp"},
		{Time: now, Port: 1, Proto: "tcp"},
	} {
		if b.Add(p) {
			t.Errorf("Add(%+v) counted a probe outside the period", p)
		}
	}
	b.SetBans([]bans.Ban{
		{Addr: scanner, Reason: "TCP SYN/Normal scan", Port: 1, Proto: "TCP", Since: hourAgo, Expires: hourAgo.Add(4 * time.Hour), Count: 1},
		{Addr: third, Reason: "manual", Since: hourAgo}, // permanent
		{Addr: netip.MustParseAddr("192.0.2.1"), Reason: "TCP FIN scan", Since: now.Add(-48 * time.Hour), Expires: now.Add(48 * time.Hour), Count: 3},
		{Addr: netip.MustParseAddr("192.0.2.2"), Reason: "UDP", Since: now.Add(-3 * time.Hour), Expires: now.Add(-time.Minute), Count: 1}, // over
	})
	s := b.Summary()

	// Ports: TCP 1-100 (22 and 80 among them) and 53/UDP.
	if s.Probes != 112 || s.Blocks != 2 || s.Sources != 3 || s.Ports != 101 {
		t.Errorf("probes %d, blocks %d, sources %d, ports %d; want 112, 2, 3, 101", s.Probes, s.Blocks, s.Sources, s.Ports)
	}
	if diff := cmp.Diff([]Count{{"syn", 100}, {"fin", 6}, {"udp", 5}, {"?", 1}}, s.Kinds); diff != "" {
		t.Errorf("kinds (-want +got):\n%s", diff)
	}
	if len(s.Buckets) != 168 {
		t.Fatalf("%d buckets, want 168", len(s.Buckets))
	}
	nonZero := map[string][2]int{}
	total := 0
	for _, bk := range s.Buckets {
		total += bk.Probes
		if bk.Probes > 0 {
			nonZero[bk.Start.Format("01-02 15h")] = [2]int{bk.Probes, bk.Sources}
		}
	}
	want := map[string][2]int{"11-21 14h": {6, 1}, "11-22 12h": {1, 1}, "11-22 13h": {100, 1}, "11-22 14h": {5, 1}}
	if diff := cmp.Diff(want, nonZero); diff != "" || total != s.Probes {
		t.Errorf("buckets with probes (-want +got):\n%s\ntotal %d, want %d", diff, total, s.Probes)
	}

	if len(s.TopSources) != 2 {
		t.Fatalf("%d top sources, want 2 (Top)", len(s.TopSources))
	}
	top := s.TopSources[0]
	if top.Addr != scanner || top.Host != "scan.example" || top.Probes != 105 || top.Ports != 101 || top.Blocks != 1 ||
		top.PortList != "tcp 1-100; udp 53" || !top.First.Equal(hourAgo.Add(time.Millisecond)) || !top.Last.Equal(now.Add(4*time.Second)) {
		t.Errorf("top source %+v", top)
	}
	if diff := cmp.Diff([]string{"syn", "udp"}, top.Kinds); diff != "" {
		t.Errorf("top source's kinds (-want +got):\n%s", diff)
	}
	if top.Ban == nil || !top.Ban.Expires.Equal(hourAgo.Add(4*time.Hour)) {
		t.Errorf("top source's ban %+v, want the one in force", top.Ban)
	}
	if s.TopSources[1].Addr != other || s.TopSources[1].Ban != nil || s.TopSources[1].PortList != "tcp 22, 80" {
		t.Errorf("second source %+v", s.TopSources[1])
	}
	// 22/TCP and 53/UDP have 5 probes each: more sources first.
	if diff := cmp.Diff([]Port{{22, "tcp", 5, 3}, {53, "udp", 5, 1}}, s.TopPorts); diff != "" {
		t.Errorf("top ports (-want +got):\n%s", diff)
	}

	if s.Bans.Active != 3 || s.Bans.Permanent != 1 || s.Bans.Expiring != 1 {
		t.Errorf("bans %+v; want 3 in force, 1 permanent, 1 expiring within a day", s.Bans)
	}
	var soonest []string
	for _, bn := range s.Bans.Soonest {
		soonest = append(soonest, bn.Addr.String())
	}
	if diff := cmp.Diff([]string{"10.0.0.2", "192.0.2.1"}, soonest); diff != "" {
		t.Errorf("bans ending soonest (-want +got):\n%s", diff)
	}
}

func TestPortList(t *testing.T) {
	set := func(ps ...any) map[portKey]struct{} {
		m := map[portKey]struct{}{}
		for i := 0; i < len(ps); i += 2 {
			m[portKey{ps[i].(string), uint16(ps[i+1].(int))}] = struct{}{}
		}
		return m
	}
	var many []any
	for p := 1; p < 40; p += 2 {
		many = append(many, "tcp", p)
	}
	tests := []struct {
		name string
		in   map[portKey]struct{}
		want string
	}{
		{"one", set("tcp", 22), "tcp 22"},
		{"range and singles", set("tcp", 1, "tcp", 2, "tcp", 3, "tcp", 80, "tcp", 65535), "tcp 1-3, 80, 65535"},
		{"both protocols, TCP first", set("udp", 53, "tcp", 0, "udp", 54), "tcp 0; udp 53-54"},
		{"cut after eight ranges", set(many...), "tcp 1, 3, 5, 7, 9, 11, 13, 15 (+12 ports)"},
		{"none", set(), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := portList(tt.in); got != tt.want {
				t.Errorf("portList = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestRead: the event log where it reaches, the history before it, the
// bans in force; ignored and service events left out; damage reported.
func TestRead(t *testing.T) {
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	ev := func(at time.Time, src string, port int, action string) string {
		return fmt.Sprintf(`{"time":%q,"src":%q,"port":%d,"proto":"tcp","kind":"syn","action":%q,"host":null}`, at.UTC().Format(time.RFC3339Nano), src, port, action)
	}
	evStart := now.Add(-2 * time.Hour)
	write := func(name string, lines ...string) {
		if err := os.WriteFile(p(name), []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("events.jsonl",
		ev(evStart, "10.0.0.2", 1, "blocked"),
		ev(evStart.Add(time.Second), "10.0.0.2", 2, "already_blocked"),
		ev(evStart.Add(2*time.Second), "10.0.0.7", 3, "ignored"),
		ev(evStart.Add(3*time.Second), "10.0.0.8", 80, "service"),
		"torn {",
	)
	h12 := func(at time.Time, addr string, port int) string {
		return fmt.Sprintf("%d - %s Host: %s/%s Port: %d TCP Blocked", at.Unix(), at.Format("01/02/2006 15:04:05"), addr, addr, port)
	}
	write("portsentry.history",
		h12(now.Add(-3*time.Hour), "10.0.0.5", 111),  // before the event log: used
		h12(evStart.Add(time.Second), "10.0.0.2", 1), // the event log has it: not again
		"2026-11-22T11:00:00.000+0000 Scan from: [10.0.0.6] (10.0.0.6) protocol: [UDP] port: [53] type: [UDP] IP opts: [unknown] ignored: [true] triggered: [false] noblock: [false]", // ignored host
	)
	write("bans.jsonl",
		`{"op":"format","v":1}`,
		fmt.Sprintf(`{"op":"ban","addr":"10.0.0.2","reason":"TCP SYN/Normal scan","port":1,"proto":"TCP","since":%q,"expires":%q,"count":1}`, evStart.Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339)),
	)
	b := week(10)
	bad, err := Read(b, Files{EventLog: p("events.jsonl"), History: p("portsentry.history"), BanFile: p("bans.jsonl")})
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) != 1 || !strings.Contains(bad[0].Error(), "events.jsonl:5:") {
		t.Errorf("damage reported: %v, want events.jsonl:5", bad)
	}
	s := b.Summary()
	var srcs []string
	for _, src := range s.TopSources {
		srcs = append(srcs, fmt.Sprintf("%s %d", src.Addr, src.Probes))
	}
	if diff := cmp.Diff([]string{"10.0.0.2 2", "10.0.0.5 1"}, srcs); diff != "" {
		t.Errorf("sources (-want +got):\n%s", diff)
	}
	if s.Blocks != 2 || s.Bans.Active != 1 || s.TopSources[0].Ban == nil {
		t.Errorf("blocks %d, bans %+v, top ban %v", s.Blocks, s.Bans, s.TopSources[0].Ban)
	}
	var ins []string
	for _, in := range s.Inputs {
		ins = append(ins, fmt.Sprintf("%s %s %d/%d", in.What, filepath.Base(in.Path), in.Used, in.Read))
	}
	if diff := cmp.Diff([]string{"event log events.jsonl 2/4", "history portsentry.history 1/3", "ban file bans.jsonl 1/1"}, ins); diff != "" {
		t.Errorf("inputs (-want +got):\n%s", diff)
	}
	if !strings.Contains(s.Inputs[1].Note, "before the event log") || !strings.Contains(s.Inputs[1].Note, "1.2 records are blocks") {
		t.Errorf("history note %q", s.Inputs[1].Note)
	}

	// Without the event log, the history is the record.
	b = week(10)
	if _, err := Read(b, Files{History: p("portsentry.history"), EventLog: p("none.jsonl")}); err != nil {
		t.Fatal(err)
	}
	if s := b.Summary(); s.Probes != 2 || s.Inputs[1].Note == "" {
		t.Errorf("history alone: %d probes, want 2 (the ignored host left out); inputs %+v", s.Probes, s.Inputs)
	}
	// A file that cannot be read is an error.
	if _, err := Read(week(1), Files{History: dir}); err == nil {
		t.Error("a directory as history: no error")
	}
}
