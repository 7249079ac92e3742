package metrics

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/portsentry-go/portsentry/internal/engine"
	"github.com/portsentry-go/portsentry/internal/event"
)

func allFuncs() Funcs {
	n := func(v float64) func() float64 { return func() float64 { return v } }
	return Funcs{
		PacketsInspected: n(1000), PacketsDropped: n(3), EventsDropped: n(2),
		EngineSources: n(17), BansActive: n(5), KernelTrapDrops: n(99),
		AlertsSent: n(4), AlertsFailed: n(1), AlertsDropped: n(6),
		FleetConnected: n(1), FleetMembers: n(3), FleetLag: n(0.002), FleetPublished: n(4),
		FleetReceived: n(131), FleetRefused: n(2), FleetThrottled: n(1), FleetQueued: n(0),
		CrowdSecPushConnected: n(1), CrowdSecPushed: n(12), CrowdSecPushQueued: n(2), CrowdSecPushDropped: n(0),
		CrowdSecPullConnected: n(0), CrowdSecLastPoll: n(1.7e9), CrowdSecPulled: n(40), CrowdSecApplied: n(35),
		CrowdSecLifted: n(4), CrowdSecSkipped: n(1), CrowdSecFailed: n(0),
		CrowdSecRefused: func(why string) float64 { return map[string]float64{"protected": 3, "peer": 1}[why] },
	}
}

// CrowdSec's metrics read what the pusher and the puller count; the
// refusals by why.
func TestCrowdSecMetrics(t *testing.T) {
	fams := scrape(t, serve(t, New("v", allFuncs())))
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"portsentry_crowdsec_push_connected", nil, 1},
		{"portsentry_crowdsec_alerts_pushed_total", nil, 12},
		{"portsentry_crowdsec_alerts_queued", nil, 2},
		{"portsentry_crowdsec_alerts_dropped_total", nil, 0},
		{"portsentry_crowdsec_pull_connected", nil, 0},
		{"portsentry_crowdsec_last_poll_timestamp_seconds", nil, 1.7e9},
		{"portsentry_crowdsec_decisions_pulled_total", nil, 40},
		{"portsentry_crowdsec_decisions_applied_total", nil, 35},
		{"portsentry_crowdsec_decisions_lifted_total", nil, 4},
		{"portsentry_crowdsec_decisions_skipped_total", nil, 1},
		{"portsentry_crowdsec_decisions_failed_total", nil, 0},
		{"portsentry_crowdsec_decisions_refused_total", map[string]string{"why": "protected"}, 3},
		{"portsentry_crowdsec_decisions_refused_total", map[string]string{"why": "peer"}, 1},
	} {
		if v := value(t, fams, c.name, c.labels); v != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, v, c.want)
		}
	}
	// Without CrowdSec, none of them.
	fams = scrape(t, serve(t, New("v", Funcs{})))
	for name := range fams {
		if strings.HasPrefix(name, "portsentry_crowdsec_") {
			t.Errorf("%s exported without CrowdSec", name)
		}
	}
}

// serve starts the real endpoint on a loopback port and returns its URL.
func serve(t *testing.T, m *Metrics) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- m.ServeListener(ctx, ln, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("ServeListener: %v", err)
		}
	})
	return "http://" + ln.Addr().String() + Path
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return fams
}

// value finds the sample of family name whose labels include want.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no family %s", name)
	}
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Untyped != nil:
			return m.GetUntyped().GetValue()
		}
	}
	t.Fatalf("no sample %s%v", name, want)
	return 0
}

func TestScrapeEndpoint(t *testing.T) {
	m := New("2.0.0-test", allFuncs())
	url := serve(t, m)

	fams := scrape(t, url)
	// Known series exist at 0 before anything happens.
	for _, c := range []struct {
		name   string
		labels map[string]string
	}{
		{"portsentry_events_total", map[string]string{"kind": "syn", "proto": "tcp", "action": "blocked"}},
		{"portsentry_events_total", map[string]string{"kind": "udp", "proto": "udp", "action": "ignored"}},
		{"portsentry_bans_total", map[string]string{"blocker": "nftables"}},
		{"portsentry_unbans_total", map[string]string{"reason": "expired"}},
		{"portsentry_command_failures_total", map[string]string{"step": "runcmd"}},
		{"portsentry_reloads_total", map[string]string{"result": "failure"}},
	} {
		if v := value(t, fams, c.name, c.labels); v != 0 {
			t.Errorf("%s%v = %v before any call, want 0", c.name, c.labels, v)
		}
	}
	// Nonsense combinations are not exported until counted.
	for _, m := range fams["portsentry_events_total"].GetMetric() {
		var kind, proto string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "kind":
				kind = l.GetValue()
			case "proto":
				proto = l.GetValue()
			}
		}
		if (kind == "udp") != (proto == "udp") {
			t.Errorf("exported kind=%s proto=%s before any such event", kind, proto)
		}
	}
	if got := len(fams["portsentry_events_total"].GetMetric()); got != 7*int(numActions) {
		t.Errorf("%d events_total series, want %d", got, 7*int(numActions))
	}

	for range 3 {
		m.Event(event.SYN, event.TCP, Blocked)
	}
	m.Event(event.UDPProbe, event.UDP, AlreadyBlocked)
	m.Event(event.XMAS, event.TCP, Counted)
	m.Ban("nftables")
	m.Ban("nftables")
	m.Ban("route")
	m.Unban("manual")
	m.CommandFailure("runcmd")
	m.Reload(true)
	m.Reload(false)
	m.Reload(false)

	fams = scrape(t, url)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"portsentry_events_total", map[string]string{"kind": "syn", "proto": "tcp", "action": "blocked"}, 3},
		{"portsentry_events_total", map[string]string{"kind": "udp", "proto": "udp", "action": "already_blocked"}, 1},
		{"portsentry_events_total", map[string]string{"kind": "xmas", "proto": "tcp", "action": "counted"}, 1},
		{"portsentry_events_total", map[string]string{"kind": "syn", "proto": "tcp", "action": "counted"}, 0},
		{"portsentry_bans_total", map[string]string{"blocker": "nftables"}, 2},
		{"portsentry_bans_total", map[string]string{"blocker": "route"}, 1},
		{"portsentry_unbans_total", map[string]string{"reason": "manual"}, 1},
		{"portsentry_command_failures_total", map[string]string{"step": "runcmd"}, 1},
		{"portsentry_reloads_total", map[string]string{"result": "success"}, 1},
		{"portsentry_reloads_total", map[string]string{"result": "failure"}, 2},
		{"portsentry_sensor_packets_inspected_total", nil, 1000},
		{"portsentry_sensor_packets_dropped_total", nil, 3},
		{"portsentry_events_dropped_total", nil, 2},
		{"portsentry_engine_sources", nil, 17},
		{"portsentry_bans_active", nil, 5},
		{"portsentry_kernel_trap_drops_total", nil, 99},
		{"portsentry_alerts_sent_total", nil, 4},
		{"portsentry_alerts_failed_total", nil, 1},
		{"portsentry_alerts_dropped_total", nil, 6},
		{"portsentry_build_info", map[string]string{"version": "2.0.0-test"}, 1},
	} {
		if got := value(t, fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("no %s: runtime collectors missing", name)
		}
	}
	if got := fams["portsentry_engine_sources"].GetType(); got != dto.MetricType_GAUGE {
		t.Errorf("engine_sources is %v, want GAUGE", got)
	}
	if got := fams["portsentry_sensor_packets_dropped_total"].GetType(); got != dto.MetricType_COUNTER {
		t.Errorf("packets_dropped_total is %v, want COUNTER", got)
	}
}

func TestNilFuncsLeaveMetricsOut(t *testing.T) {
	m := New("v", Funcs{EngineSources: func() float64 { return 1 }})
	fams := scrape(t, serve(t, m))
	if _, ok := fams["portsentry_engine_sources"]; !ok {
		t.Error("engine_sources missing although its func is set")
	}
	for _, name := range []string{"portsentry_kernel_trap_drops_total", "portsentry_bans_active", "portsentry_sensor_packets_inspected_total"} {
		if _, ok := fams[name]; ok {
			t.Errorf("%s exported without a func", name)
		}
	}
}

func TestUnusualCombinationCounted(t *testing.T) {
	m := New("v", Funcs{})
	m.Event(event.SYN, event.UDP, Counted)
	m.Event(event.Kind(200), event.TCP, Counted) // out of range: not counted, no panic
	m.Event(event.SYN, event.Proto(9), Counted)
	m.Event(event.SYN, event.TCP, Action(200))
	if got, want := testutil.CollectAndCount(m.events, "portsentry_events_total"), 7*int(numActions)+1; got != want {
		t.Errorf("%d series, want %d: the unusual one only once counted", got, want)
	}
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		byName[f.GetName()] = f
	}
	if got := value(t, byName, "portsentry_events_total", map[string]string{"kind": "syn", "proto": "udp", "action": "counted"}); got != 1 {
		t.Errorf("syn/udp/counted = %v, want 1", got)
	}
	var total float64
	for _, s := range byName["portsentry_events_total"].GetMetric() {
		total += s.GetCounter().GetValue()
	}
	if total != 1 {
		t.Errorf("sum of events_total = %v, want 1: out-of-range values must not be counted", total)
	}
}

func TestLint(t *testing.T) {
	m := New("v", allFuncs())
	probs, err := testutil.GatherAndLint(m.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range probs {
		// The Go runtime collector is the library's; only our names count.
		if strings.HasPrefix(p.Metric, "portsentry_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
}

func TestNames(t *testing.T) {
	// The README documents every name; a renamed metric must fail here.
	m := New("v", allFuncs())
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, f := range fams {
		if !strings.HasPrefix(f.GetName(), "portsentry_") {
			continue
		}
		if !strings.Contains(readme, "`"+f.GetName()+"`") {
			t.Errorf("%s is not documented in README.md", f.GetName())
		}
	}
}

func TestFromEngine(t *testing.T) {
	want := map[engine.Action]Action{
		engine.Ignored:         Ignored,
		engine.Counted:         Counted,
		engine.AlreadyBlocked:  AlreadyBlocked,
		engine.AlreadyReported: AlreadyReported,
		engine.Report:          Reported,
		engine.Service:         Service,
		engine.Pending:         Pending,
	}
	for a := engine.Ignored; a <= engine.Pending; a++ {
		got, ok := FromEngine(a)
		w, mapped := want[a]
		if ok != mapped || got != w {
			t.Errorf("FromEngine(%v) = %v, %v; want %v, %v", a, got, ok, w, mapped)
		}
	}
	if _, ok := FromEngine(engine.Respond); ok {
		t.Error("Respond mapped: its outcome (blocked, block_failed) is counted when known")
	}
}

func TestNilMetrics(t *testing.T) {
	var m *Metrics
	m.Event(event.SYN, event.TCP, Blocked)
	m.Ban("x")
	m.Unban("expired")
	m.CommandFailure("route")
	m.Reload(true)
}

func TestServeStopsAndRefusesBadAddress(t *testing.T) {
	m := New("v", Funcs{})
	if err := m.Serve(t.Context(), "", nil); err != ErrNoAddress {
		t.Errorf("Serve(\"\") = %v, want ErrNoAddress", err)
	}
	if err := m.Serve(t.Context(), "127.0.0.1:notaport", nil); err == nil || !strings.HasPrefix(err.Error(), "metrics: ") {
		t.Errorf("Serve(bad) = %v, want a metrics: error", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- m.ServeListener(ctx, ln, nil) }()
	url := "http://" + ln.Addr().String()
	resp, err := http.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET / = %s, want 404: only %s is served", resp.Status, Path)
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("ServeListener after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeListener did not return after cancel")
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("listener still open after Serve returned")
	}
}

func BenchmarkEvent(b *testing.B) {
	m := New("v", Funcs{})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m.Event(event.Kind(i%7), event.TCP, Action(i%int(numActions)))
	}
}

func TestEventAllocs(t *testing.T) {
	m := New("v", Funcs{})
	if n := testing.AllocsPerRun(1000, func() { m.Event(event.SYN, event.TCP, Blocked) }); n != 0 {
		t.Errorf("Event allocates %v times, want 0", n)
	}
}

// TestKindLabels pins the "kind" label of every kind: dashboards and the
// JSON event stream (package jsonlog) spell them so.
func TestKindLabels(t *testing.T) {
	m := New("v", Funcs{})
	kinds := map[event.Kind]string{
		event.Connect: "connect", event.SYN: "syn", event.FIN: "fin", event.NULL: "null",
		event.XMAS: "xmas", event.OddTCP: "odd", event.UDPProbe: "udp",
	}
	for k := range kinds {
		proto := event.TCP
		if k == event.UDPProbe {
			proto = event.UDP
		}
		for range int(k) + 1 {
			m.Event(k, proto, Counted)
		}
	}
	fams := scrape(t, serve(t, m))
	for k, name := range kinds {
		proto := "tcp"
		if k == event.UDPProbe {
			proto = "udp"
		}
		if got := value(t, fams, "portsentry_events_total", map[string]string{"kind": name, "proto": proto, "action": "counted"}); got != float64(k)+1 {
			t.Errorf("kind=%q: %v, want %v", name, got, int(k)+1)
		}
	}
}
