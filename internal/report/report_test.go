package report

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

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
	// Nothing drains the queue: past its size, outcomes are dropped and
	// counted, and Report never blocks the event loop.
	for range queueSize + 10 {
		r.Report(Outcome{Event: probe(1), Verdict: engine.Verdict{Action: engine.Counted}})
	}
	if got := r.Dropped(); got != 10 {
		t.Errorf("Dropped = %d, want 10", got)
	}
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
