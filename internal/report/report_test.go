package report

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portsentry-go/portsentry/internal/enforce/bans"
	"github.com/portsentry-go/portsentry/internal/enforce/respond"
	"github.com/portsentry-go/portsentry/internal/engine"
	"github.com/portsentry-go/portsentry/internal/event"
	"github.com/portsentry-go/portsentry/internal/report/history"
	"github.com/portsentry-go/portsentry/internal/report/metrics"
	"github.com/portsentry-go/portsentry/internal/report/output"
	"github.com/portsentry-go/portsentry/internal/syncbuf"
)

var (
	src = netip.MustParseAddr("198.51.100.7") // documentation range
	dst = netip.MustParseAddr("203.0.113.1")
)

func probe(port uint16) event.Event {
	return event.Event{Time: time.Now(), Src: src, Dst: dst, Port: port, Proto: event.TCP, Kind: event.SYN, Mode: event.ModeSTCP}
}

// observed is an Observer that remembers what it was told.
type observed struct {
	mu       sync.Mutex
	decided  []metrics.Action
	records  []Record
	lifted   []bool
	reloaded []bool
}

func (o *observed) Decided(_ event.Event, a metrics.Action) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.decided = append(o.decided, a)
}

func (o *observed) Record(r Record) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.records = append(o.records, r)
}

func (o *observed) Lifted(_ bans.Ban, expired bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.lifted = append(o.lifted, expired)
}

func (o *observed) Imported(bans.Ban, string) {}

func (o *observed) Reloaded(ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.reloaded = append(o.reloaded, ok)
}

func (o *observed) actions() []metrics.Action {
	o.mu.Lock()
	defer o.mu.Unlock()
	var as []metrics.Action
	for _, r := range o.records {
		as = append(as, r.Action)
	}
	return as
}

type fixture struct {
	r       *Reporter
	log     *syncbuf.Buffer
	obs     *observed
	history string
	blocked string
}

func newFixture(t *testing.T, s Settings) *fixture {
	dir := t.TempDir()
	f := &fixture{log: &syncbuf.Buffer{}, obs: &observed{}}
	if s.HistoryFile == "" {
		s.HistoryFile = filepath.Join(dir, "history")
	}
	s.BlockedFile = filepath.Join(dir, "blocked")
	f.history, f.blocked = s.HistoryFile, s.BlockedFile
	f.r = New(output.New(f.log, slog.LevelInfo), s)
	f.r.observers = append(f.r.observers, f.obs)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { f.r.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return f
}

// waitLog waits for a line containing want.
func (f *fixture) waitLog(t *testing.T, want string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(f.log.String(), want); {
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q; log:\n%s", want, f.log.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

func TestOutcomeLines(t *testing.T) {
	tests := []struct {
		name    string
		o       Outcome
		want    []string // lines that must be logged, in this order
		history bool     // the history records the source
	}{
		{
			name: "below the trigger",
			o:    Outcome{Verdict: engine.Verdict{Action: engine.Counted, Count: 1}},
			want: []string{"type: [TCP SYN/Normal scan] IP opts: [unknown] ignored: [false] triggered: [false] noblock: [unset] blocked: [unset]"},
		},
		{
			name: "already blocked, with a summary of the lines held back",
			o:    Outcome{Verdict: engine.Verdict{Action: engine.AlreadyBlocked}, Suppressed: 5},
			want: []string{
				"attackalert: Host: 198.51.100.7/198.51.100.7 sent 5 more packets while blocked (not logged one by one)",
				"attackalert: Host: 198.51.100.7/198.51.100.7 is already blocked Ignoring",
				"ignored: [false] triggered: [unset] noblock: [unset] blocked: [true]",
			},
		},
		{
			name:    "log-only mode reports and records, for fail2ban",
			o:       Outcome{Verdict: engine.Verdict{Action: engine.Report, Count: 1}},
			want:    []string{"attackalert: TCP SYN/Normal scan from host: 198.51.100.7/198.51.100.7 to TCP port: 143", "triggered: [true] noblock: [true] blocked: [false]"},
			history: true,
		},
		{
			name: "refused block: said, never recorded",
			o:    Outcome{Verdict: engine.Verdict{Action: engine.Report, Count: 1}, Refused: true},
			want: []string{"attackalert: Host 198.51.100.7 is a local or ignored address: not blocking it", "triggered: [true] noblock: [true] blocked: [false]"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Settings{})
			tt.o.Event = probe(143)
			f.r.Report(tt.o)
			f.waitLog(t, tt.want[len(tt.want)-1])
			log := f.log.String()
			at := 0
			for _, w := range tt.want {
				i := strings.Index(log[at:], w)
				if i < 0 {
					t.Fatalf("line %q missing or out of order; log:\n%s", w, log)
				}
				at += i + len(w)
			}
			hist := read(t, f.history)
			if got := strings.Contains(hist, "Host: 198.51.100.7/198.51.100.7 Port: 143 TCP Blocked"); got != tt.history {
				t.Errorf("history records the source: %v, want %v; history:\n%s", got, tt.history, hist)
			}
			want, _ := metrics.FromEngine(tt.o.Verdict.Action)
			if got := f.obs.actions(); !slices.Equal(got, []metrics.Action{want}) {
				t.Errorf("observers got %v, want [%v]", got, want)
			}
		})
	}
}

func TestResponded(t *testing.T) {
	ban := bans.Ban{Addr: src, Since: time.Now(), Expires: time.Now().Add(time.Hour), Count: 1}
	t.Run("blocked", func(t *testing.T) {
		f := newFixture(t, Settings{History2x: true})
		f.r.Responded(Response{
			Event: probe(22), Verdict: engine.Verdict{Action: engine.Respond, Count: 1}, Name: src.String(),
			Result: respond.Result{Blocked: true, Lines: []string{"attackalert: Host 198.51.100.7 has been blocked via nftables"}},
			Ban:    &ban, Blocker: "nftables",
		})
		f.waitLog(t, "blocked: [true]")
		if h := read(t, f.history); !strings.Contains(h, " Scan from: [198.51.100.7]") {
			t.Errorf("HISTORY_FORMAT=2.x history lacks the Scan from line:\n%s", h)
		}
		if b := read(t, f.blocked); !strings.Contains(b, "Host: 198.51.100.7/198.51.100.7 Port: 22 TCP Blocked") {
			t.Errorf("blocked file lacks the 1.2 record:\n%s", b)
		}
		f.obs.mu.Lock()
		defer f.obs.mu.Unlock()
		if len(f.obs.records) != 1 || f.obs.records[0].Action != metrics.Blocked || f.obs.records[0].Ban == nil || f.obs.records[0].Blocker != "nftables" {
			t.Errorf("observers got %+v, want one Blocked record with its ban", f.obs.records)
		}
	})
	t.Run("failed", func(t *testing.T) {
		f := newFixture(t, Settings{})
		f.r.Responded(Response{
			Event: probe(22), Verdict: engine.Verdict{Action: engine.Respond, Count: 1}, Name: src.String(),
			Result: respond.Result{Lines: []string{"attackalert: ERROR: KILL_ROUTE failed"}, FailedSteps: []respond.StepKind{respond.Route}},
		})
		f.waitLog(t, "attackalert: ERROR: Host 198.51.100.7 was NOT blocked; its next probe will try again")
		if h, b := read(t, f.history), read(t, f.blocked); h != "" || b != "" {
			t.Errorf("a failed block was recorded: history %q, blocked %q", h, b)
		}
		if got := f.obs.actions(); !slices.Equal(got, []metrics.Action{metrics.BlockFailed}) {
			t.Errorf("observers got %v, want [block_failed]", got)
		}
	})
}

func TestLiftedAndReloaded(t *testing.T) {
	f := newFixture(t, Settings{})
	f.r.Lifted(bans.Ban{Addr: src}, true)
	f.r.Lifted(bans.Ban{Addr: src}, false)
	f.r.Reloaded("modes: stcp", nil)
	f.r.Reloaded("", errors.New("portsentry.conf:3: BLOCK_TCP: bad value"))
	for _, w := range []string{
		"attackalert: Host 198.51.100.7 unblocked: ban expired",
		"attackalert: Host 198.51.100.7 unblocked: unblocked by hand",
		"adminalert: configuration reloaded: modes: stcp",
		"adminalert: ERROR: reload refused, keeping the running configuration: portsentry.conf:3: BLOCK_TCP: bad value",
	} {
		f.waitLog(t, w)
	}
	f.obs.mu.Lock()
	defer f.obs.mu.Unlock()
	if !slices.Equal(f.obs.lifted, []bool{true, false}) || !slices.Equal(f.obs.reloaded, []bool{true, false}) {
		t.Errorf("observers: lifted %v, reloaded %v", f.obs.lifted, f.obs.reloaded)
	}
}

func TestFullQueueDropsAndCounts(t *testing.T) {
	r := New(output.New(&syncbuf.Buffer{}, slog.LevelInfo), Settings{})
	// Nothing drains the queue: past its size less the slots kept for
	// records, lines are dropped and counted, and Report never blocks the
	// event loop.
	for range queueSize + 10 {
		r.Report(Outcome{Event: probe(1), Verdict: engine.Verdict{Action: engine.Counted}})
	}
	if got, want := r.Dropped(), uint64(reserved+10); got != want {
		t.Errorf("Dropped = %d, want %d", got, want)
	}
}

// reportFrom is a log-only report (a history line) from the i-th source.
func reportFrom(i int) Outcome {
	ev := probe(143)
	ev.Src = netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
	return Outcome{Event: ev, Verdict: engine.Verdict{Action: engine.Report, Count: 1}}
}

// historyHosts lists the sources of a 1.2 history, in order.
func historyHosts(t *testing.T, path string) []string {
	t.Helper()
	var out []string
	for l := range strings.Lines(read(t, path)) {
		_, rest, _ := strings.Cut(l, " Host: ")
		host, _, _ := strings.Cut(rest, " Port: ")
		out = append(out, host[strings.LastIndexByte(host, '/')+1:])
	}
	return out
}

func wantHosts(n int) []string {
	out := make([]string, 0, n)
	for i := range n {
		out = append(out, reportFrom(i).Event.Src.String())
	}
	return out
}

// TestRecordsNeverDropped: in log-only mode a report is the history line
// fail2ban acts on, and the engine will not report the source again: it is
// never dropped, whatever the queue holds. Lines that are only logging are
// dropped first; past the queue, Report waits for room.
func TestRecordsNeverDropped(t *testing.T) {
	tests := []struct {
		name    string
		lines   int // log lines queued first, while nothing drains the queue
		records int // then reports
		dropped uint64
	}{
		{name: "records behind a queue full of lines", lines: queueSize + 10, records: 5, dropped: reserved + 10},
		{name: "more records than the queue holds", records: queueSize + 100},
		{name: "lines, then more records than the room left", lines: queueSize, records: queueSize, dropped: reserved},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hist := filepath.Join(t.TempDir(), "history")
			r := New(output.New(&syncbuf.Buffer{}, slog.LevelInfo), Settings{HistoryFile: hist})
			for range tt.lines {
				r.Report(Outcome{Event: probe(1), Verdict: engine.Verdict{Action: engine.Counted, Count: 1}})
			}
			reported := make(chan struct{})
			go func() {
				defer close(reported)
				for i := range tt.records {
					r.Report(reportFrom(i))
				}
			}()
			// Until Run starts, Report either returns or waits with the
			// queue full.
			for len(r.queue) < queueSize {
				select {
				case <-reported:
				case <-time.After(time.Millisecond):
					continue
				}
				break
			}
			ctx, cancel := context.WithCancel(context.Background())
			ran := make(chan struct{})
			go func() { defer close(ran); r.Run(ctx) }()
			<-reported
			cancel()
			<-ran
			if got := r.Dropped(); got != tt.dropped {
				t.Errorf("Dropped = %d, want %d", got, tt.dropped)
			}
			if diff := cmp.Diff(wantHosts(tt.records), historyHosts(t, hist)); diff != "" {
				t.Errorf("history (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRecordsKeptAtShutdown: what is queued, or waiting for its name, when
// Run ends is written before it returns; a report made after it returned is
// written too (by Report itself when the queue is full, else by Close).
func TestRecordsKeptAtShutdown(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, r *Reporter, dns *fakeDNS, hist string)
		want int // reports in the history at the end
	}{
		{
			name: "queued when Run ends",
			run: func(t *testing.T, r *Reporter, _ *fakeDNS, _ string) {
				for i := range 3 {
					r.Report(reportFrom(i))
				}
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				r.Run(ctx)
			},
			want: 3,
		},
		{
			name: "waiting for its name when Run ends",
			run: func(t *testing.T, r *Reporter, dns *fakeDNS, _ string) {
				ctx, cancel := context.WithCancel(context.Background())
				ran := make(chan struct{})
				go func() { defer close(ran); r.Run(ctx) }()
				r.Report(reportFrom(0))
				<-dns.asked // its lookup hangs
				cancel()
				<-ran
			},
			want: 1,
		},
		{
			name: "reported after Run returned",
			run: func(t *testing.T, r *Reporter, _ *fakeDNS, hist string) {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				r.Run(ctx)
				for i := range queueSize + 1 {
					r.Report(reportFrom(i)) // the last finds the queue full
				}
				if n := len(historyHosts(t, hist)); n != 1 {
					t.Errorf("%d reports written by Report with the queue full, want 1", n)
				}
			},
			want: queueSize + 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hist := filepath.Join(t.TempDir(), "history")
			dns := &fakeDNS{hang: true, asked: make(chan string, queueSize+2)}
			r := New(output.New(&syncbuf.Buffer{}, slog.LevelInfo), Settings{})
			r.dns = dns
			r.Reconfigure(Settings{HistoryFile: hist, Resolve: true, ResolveTimeout: time.Hour})
			tt.run(t, r, dns, hist)
			r.Close()
			got := historyHosts(t, hist)
			if len(got) != tt.want {
				t.Fatalf("%d reports in the history, want %d", len(got), tt.want)
			}
			// Every report made is there (in whatever order: the name
			// pool answers different sources in parallel).
			for i := range tt.want {
				if h := reportFrom(i).Event.Src.String(); !slices.Contains(got, h) {
					t.Errorf("report %d (%s) missing from the history %v", i, h, got)
				}
			}
		})
	}
}

// fakeDNS names addresses from a table, confirmed by their forward
// lookups; with hang, or for an address in slow, it never answers (the
// lookup ends at its timeout). asked, when not nil, is told every reverse
// lookup.
type fakeDNS struct {
	hang  bool
	slow  map[string]bool
	names map[string]string // address → name
	asked chan string
}

func (f *fakeDNS) LookupAddr(ctx context.Context, a string) ([]string, error) {
	if f.asked != nil {
		f.asked <- a
	}
	if f.hang || f.slow[a] {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if n, ok := f.names[a]; ok {
		return []string{n + "."}, nil
	}
	return nil, errors.New("no such host")
}

func (f *fakeDNS) LookupNetIP(ctx context.Context, _, host string) ([]netip.Addr, error) {
	for a, n := range f.names {
		if n == host {
			return []netip.Addr{netip.MustParseAddr(a)}, nil
		}
	}
	return nil, errors.New("no such host")
}

// TestSlowNameServer: a name server that never answers for some sources
// holds up only their lines (until RESOLVE_TIMEOUT, then they show the
// address, in their order); other sources' lines go on, and when the
// lookups in progress fill the pool, new sources are logged by address at
// once.
func TestSlowNameServer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const timeout = time.Minute
		slow, named := "10.0.0.1", "10.0.0.2"
		dns := &fakeDNS{slow: map[string]bool{slow: true}, names: map[string]string{named: "scanner.example.net"}}
		const others = 30 // sources whose lookups hang too
		for i := range others {
			dns.slow[fmt.Sprintf("10.0.1.%d", i)] = true
		}
		hist := filepath.Join(t.TempDir(), "history")
		log := &syncbuf.Buffer{}
		r := New(output.New(log, slog.LevelInfo), Settings{})
		r.dns = dns
		r.Reconfigure(Settings{HistoryFile: hist, Resolve: true, ResolveTimeout: timeout})
		ctx, cancel := context.WithCancel(t.Context())
		ran := make(chan struct{})
		go func() { defer close(ran); r.Run(ctx) }()

		from := func(a string, port uint16, act engine.Action) Outcome {
			ev := probe(port)
			ev.Src = netip.MustParseAddr(a)
			return Outcome{Event: ev, Verdict: engine.Verdict{Action: act, Count: 1}}
		}
		r.Report(from(slow, 1, engine.Counted))
		r.Report(from(slow, 2, engine.Report))
		r.Report(from(named, 3, engine.Counted))
		for i := range others {
			r.Report(from(fmt.Sprintf("10.0.1.%d", i), 4, engine.Counted))
		}
		synctest.Wait()
		lines := log.String()
		if !strings.Contains(lines, "Scan from: [10.0.0.2] (scanner.example.net)") {
			t.Errorf("a named source's line waited for another source's lookup; log:\n%s", lines)
		}
		if strings.Contains(lines, "[10.0.0.1]") {
			t.Errorf("a line was logged before its source's lookup ended; log:\n%s", lines)
		}
		byAddress := 0
		for i := range others {
			a := fmt.Sprintf("10.0.1.%d", i)
			if strings.Contains(lines, "Scan from: ["+a+"] ("+a+")") {
				byAddress++
			}
		}
		if min := others - resolveWorkers - resolveQueue; byAddress < min {
			t.Errorf("%d sources logged by address with the pool full, want at least %d; log:\n%s", byAddress, min, lines)
		}

		// Every lookup ends within its timeout, the queued ones after the
		// ones running.
		time.Sleep((resolveQueue/resolveWorkers + 1) * timeout)
		synctest.Wait()
		lines = log.String()
		first := strings.Index(lines, "Scan from: [10.0.0.1] (10.0.0.1) protocol: [TCP] port: [1]")
		second := strings.Index(lines, "attackalert: TCP SYN/Normal scan from host: 10.0.0.1/10.0.0.1 to TCP port: 2")
		if first < 0 || second < first {
			t.Errorf("the slow source's lines missing or out of order; log:\n%s", lines)
		}
		for i := range others {
			if a := fmt.Sprintf("10.0.1.%d", i); !strings.Contains(lines, "Scan from: ["+a+"] ("+a+")") {
				t.Errorf("no line for %s", a)
			}
		}
		if diff := cmp.Diff([]string{slow}, historyHosts(t, hist)); diff != "" {
			t.Errorf("history (-want +got):\n%s", diff)
		}
		cancel()
		<-ran
	})
}

// TestFileBounds: the blocked file rotates itself; the history file never
// does (fail2ban reads it, logrotate rotates it).
func TestFileBounds(t *testing.T) {
	f := newFixture(t, Settings{})
	c := f.r.cur.Load()
	if c.blocked == nil || c.blocked.MaxSize != history.BlockedMaxSize {
		t.Errorf("blocked file %+v: want MaxSize %d", c.blocked, history.BlockedMaxSize)
	}
	if c.history == nil || c.history.MaxSize != 0 {
		t.Errorf("history file %+v: want no MaxSize", c.history)
	}
}

// Traffic for a service is no probe: not recorded for the observers (the
// event stream would otherwise get a line per client connection), while a
// probe reported after it is.
func TestServiceNotRecorded(t *testing.T) {
	f := newFixture(t, Settings{})
	svc := probe(80)
	f.r.Report(Outcome{Event: svc, Verdict: engine.Verdict{Action: engine.Service}})
	f.r.Report(Outcome{Event: probe(143), Verdict: engine.Verdict{Action: engine.Counted, Count: 1}})
	f.waitLog(t, "port: [143]")
	if got := f.obs.actions(); !slices.Equal(got, []metrics.Action{metrics.Counted}) {
		t.Errorf("records %v, want only the probe's [%v]", got, metrics.Counted)
	}
}

// TestLastDetection: the last probe detected, for systemd's status line:
// what the engine counts or reports, and a response once it has run; not
// an ignored source, a service's client or a forged probe; a response's
// record does not take back a later probe's place.
func TestLastDetection(t *testing.T) {
	r := New(output.New(&syncbuf.Buffer{}, slog.LevelInfo), Settings{})
	if _, err := r.Open(Destinations{LastDetection: true}); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.LastDetection(); ok {
		t.Fatal("a detection before any probe")
	}
	at := time.Date(2026, 12, 7, 14, 0, 0, 0, time.UTC)
	ev := func(port uint16, s int) event.Event {
		e := probe(port)
		e.Time = at.Add(time.Duration(s) * time.Second)
		return e
	}
	want := func(port uint16) {
		t.Helper()
		got, ok := r.LastDetection()
		if !ok || got.Port != port {
			t.Errorf("last detection port %d (%v), want %d", got.Port, ok, port)
		}
	}
	r.Decided(ev(1, 1), engine.Counted)
	want(1)
	r.Decided(ev(2, 2), engine.Ignored)
	r.Decided(ev(3, 3), engine.Service)
	r.Forged(ev(4, 4))
	want(1)
	r.Decided(ev(5, 5), engine.Respond) // told when the response has run
	want(1)
	r.Flooded(ev(6, 6))
	want(6)
	r.Responded(Response{Event: ev(5, 5), Verdict: engine.Verdict{Action: engine.Respond}, Name: src.String(), Result: respond.Result{Blocked: true}})
	want(6)
	r.Responded(Response{Event: ev(7, 7), Verdict: engine.Verdict{Action: engine.Respond}, Name: src.String(), Result: respond.Result{Blocked: true}})
	want(7)

	// Not asked for: nothing kept, and no observer added.
	r2 := New(output.New(&syncbuf.Buffer{}, slog.LevelInfo), Settings{})
	if _, err := r2.Open(Destinations{}); err != nil {
		t.Fatal(err)
	}
	r2.Decided(ev(1, 1), engine.Counted)
	if _, ok := r2.LastDetection(); ok || r2.wantRecords() {
		t.Errorf("LastDetection kept without being asked for")
	}
}
