package output

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"log/syslog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var at = time.Date(2026, 11, 22, 1, 42, 52, 875e6, time.UTC)

// emit sends one record with a fixed time through h.
func emit(t *testing.T, h slog.Handler, level slog.Level, msg string, attrs ...slog.Attr) {
	t.Helper()
	r := slog.NewRecord(at, level, msg, 0)
	r.AddAttrs(attrs...)
	if err := h.Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
}

func TestStdoutLineFormat(t *testing.T) {
	scan := "Scan from: [10.0.0.5] (10.0.0.5) protocol: [TCP] port: [143] type: [TCP SYN/Normal scan] IP opts: [not set] ignored: [false] triggered: [true] noblock: [false] blocked: [true]"
	tests := []struct {
		name  string
		t     time.Time
		msg   string
		attrs []slog.Attr
		want  string
	}{
		{"2.x line", at, scan, nil, "2026-11-22T01:42:52.875+0000 " + scan + "\n"},
		{"zone kept", at.In(time.FixedZone("EST", -5*3600)), "adminalert: PortSentry is now active and listening.", nil,
			"2026-11-21T20:42:52.875-0500 adminalert: PortSentry is now active and listening.\n"},
		{"attrs", at, "bound", []slog.Attr{slog.Int("port", 143), slog.String("proto", "tcp"), slog.Bool("ok", true)},
			"2026-11-22T01:42:52.875+0000 bound port=143 proto=tcp ok=true\n"},
		{"values with blanks or quotes are quoted", at, "x", []slog.Attr{
			slog.String("err", "exit status 1: permission denied"),
			slog.String("tab", "a\tb"),
			slog.String("q", `say "hi"`),
			slog.String("empty", ""),
		}, "2026-11-22T01:42:52.875+0000 x err=\"exit status 1: permission denied\" tab=\"a\\tb\" q=\"say \\\"hi\\\"\" empty=\"\"\n"},
		{"duration and error values", at, "x", []slog.Attr{slog.Duration("took", 1500*time.Millisecond), slog.Any("err", fmt.Errorf("boom"))},
			"2026-11-22T01:42:52.875+0000 x took=1.5s err=boom\n"},
		{"empty attr skipped", at, "x", []slog.Attr{{}, slog.Int("n", 1)}, "2026-11-22T01:42:52.875+0000 x n=1\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			h := New(&buf, slog.LevelDebug).Handler()
			r := slog.NewRecord(tt.t, slog.LevelInfo, tt.msg, 0)
			r.AddAttrs(tt.attrs...)
			if err := h.Handle(context.Background(), r); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, buf.String()); diff != "" {
				t.Errorf("line mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoggerLine(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, slog.LevelInfo)
	log.Info("attackalert: Host: 10.99.0.1/10.99.0.1 is already blocked Ignoring", "n", 2)
	// The time is now; its shape is what 2.x's fail2ban filter skips with ^[^ ]*.
	re := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4} attackalert: Host: 10\.99\.0\.1/10\.99\.0\.1 is already blocked Ignoring n=2\n$`)
	if !re.MatchString(buf.String()) {
		t.Errorf("line %q does not match %s", buf.String(), re)
	}
}

func TestWithAttrsAndGroups(t *testing.T) {
	var buf bytes.Buffer
	base := New(&buf, slog.LevelDebug)
	emit(t, base.With("component", "engine").With("mode", "atcp").Handler(), slog.LevelInfo, "m", slog.Int("n", 1))
	emit(t, base.WithGroup("g").Handler().WithAttrs([]slog.Attr{slog.String("k", "v")}), slog.LevelInfo, "grouped", slog.Int("x", 1))
	// The parent is not changed by its children.
	emit(t, base.Handler(), slog.LevelInfo, "plain")
	want := "2026-11-22T01:42:52.875+0000 m component=engine mode=atcp n=1\n" +
		"2026-11-22T01:42:52.875+0000 grouped k=v x=1\n" +
		"2026-11-22T01:42:52.875+0000 plain\n"
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
}

func TestLevels(t *testing.T) {
	if !(slog.LevelDebug < LevelVerbose && LevelVerbose < slog.LevelInfo) {
		t.Fatalf("LevelVerbose = %v, want between debug and info", LevelVerbose)
	}
	all := []slog.Level{slog.LevelDebug, LevelVerbose, slog.LevelInfo, slog.LevelWarn, slog.LevelError}
	names := map[slog.Level]string{slog.LevelDebug: "debug", LevelVerbose: "verbose", slog.LevelInfo: "info", slog.LevelWarn: "warn", slog.LevelError: "error"}
	tests := []struct {
		threshold slog.Level
		want      []string
	}{
		{slog.LevelDebug, []string{"debug", "verbose", "info", "warn", "error"}}, // -d
		{LevelVerbose, []string{"verbose", "info", "warn", "error"}},             // -v
		{slog.LevelInfo, []string{"info", "warn", "error"}},                      // default
		{slog.LevelError, []string{"error"}},
	}
	for _, tt := range tests {
		t.Run(tt.threshold.String(), func(t *testing.T) {
			var buf bytes.Buffer
			log := New(&buf, tt.threshold)
			for _, l := range all {
				log.Log(context.Background(), l, names[l])
			}
			var got []string
			for _, line := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
				if f := strings.Fields(line); len(f) == 2 {
					got = append(got, f[1])
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("lines written (-want +got):\n%s", diff)
			}
			for _, l := range all {
				if got, want := log.Enabled(context.Background(), l), l >= tt.threshold; got != want {
					t.Errorf("Enabled(%v) = %v, want %v", l, got, want)
				}
			}
		})
	}
}

func TestLevelVarChangesAtRuntime(t *testing.T) {
	var buf bytes.Buffer
	var lv slog.LevelVar // info
	log := New(&buf, &lv)
	log.Log(context.Background(), LevelVerbose, "hidden")
	lv.Set(LevelVerbose) // a reload turning -v on
	log.Log(context.Background(), LevelVerbose, "shown")
	if strings.Contains(buf.String(), "hidden") || !strings.Contains(buf.String(), "shown") {
		t.Errorf("output %q: LevelVar change not honoured", buf.String())
	}
}

func TestConcurrentLinesWhole(t *testing.T) {
	var buf bytes.Buffer // not safe for concurrent use: the sink must serialise
	log := New(&buf, slog.LevelInfo)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				log.Info(strings.Repeat("x", 100), "g", i, "j", j)
			}
		}()
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 1000 {
		t.Fatalf("%d lines, want 1000", len(lines))
	}
	re := regexp.MustCompile(`^\S+ x{100} g=\d+ j=\d+$`)
	for _, l := range lines {
		if !re.MatchString(l) {
			t.Fatalf("torn line %q", l)
		}
	}
}

// TestSyslog checks priorities and tag on a local datagram socket standing
// in for /dev/log: facility daemon, tag portsentry[PID].
func TestSyslog(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Skipf("no unix datagram sockets: %v", err)
	}
	defer conn.Close()
	sw, err := syslog.Dial("unixgram", sock, syslog.LOG_DAEMON|syslog.LOG_NOTICE, "portsentry")
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	log := slog.New(&handler{w: &syslogWriter{w: sw}, level: slog.LevelDebug})

	// Severity: 3 err, 4 warning, 5 notice, 6 info, 7 debug; daemon is 3<<3.
	tests := []struct {
		level slog.Level
		pri   int
	}{
		{slog.LevelError, 3<<3 | 3},
		{slog.LevelWarn, 3<<3 | 4},
		{slog.LevelInfo, 3<<3 | 5},
		{LevelVerbose, 3<<3 | 6},
		{slog.LevelDebug, 3<<3 | 7},
	}
	re := regexp.MustCompile(`^<(\d+)>.* portsentry\[(\d+)\]: (.*?)\n?$`)
	buf := make([]byte, 4096)
	for _, tt := range tests {
		msg := "adminalert: " + tt.level.String()
		log.Log(context.Background(), tt.level, msg, "k", "v")
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("%v: %v", tt.level, err)
		}
		m := re.FindStringSubmatch(string(buf[:n]))
		if m == nil {
			t.Fatalf("%v: syslog datagram %q not in the expected form", tt.level, buf[:n])
		}
		got := []string{m[1], m[2], m[3]}
		want := []string{fmt.Sprint(tt.pri), fmt.Sprint(os.Getpid()), msg + " k=v"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%v: priority, pid, message (-want +got):\n%s", tt.level, diff)
		}
	}
}
