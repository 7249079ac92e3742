// Package output writes the daemon's log: plain PortSentry-style lines to
// standard output (each prefixed with 2.x's timestamp, so 2.x's fail2ban
// filter reads a redirected stdout), to syslog as portsentry[PID], facility
// daemon, or, when systemd connected standard output to the journal, to the
// journal with each line's priority and fields of its own (journal.go). It
// is an slog.Handler so that every component takes a *slog.Logger and none
// of them knows where lines go.
package output

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"strings"
	"sync"
	"time"

	"github.com/portsentry-go/portsentry/internal/report/logline"
)

// LevelVerbose sits between debug and info: what -v adds (one line per
// bound port, reloads in detail).
const LevelVerbose = slog.LevelInfo - 2

// writer is where formatted lines go; f, when not nil, holds the line's
// journal fields (Event, Source).
type writer interface {
	write(level slog.Level, t time.Time, line string, f *fields) error
}

type handler struct {
	w      writer
	level  slog.Leveler
	attrs  string  // preformatted " key=value" pairs from With
	fields *fields // journal fields from With
}

// New returns a logger writing to w with a timestamp on each line.
func New(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(&handler{w: &streamWriter{w: w}, level: level})
}

// NewSyslog returns a logger writing to the local syslog daemon.
func NewSyslog(level slog.Leveler) (*slog.Logger, error) {
	sw, err := syslog.New(syslog.LOG_DAEMON|syslog.LOG_NOTICE, Identifier)
	if err != nil {
		return nil, fmt.Errorf("output: cannot reach syslog: %w", err)
	}
	return slog.New(&handler{w: &syslogWriter{w: sw}, level: level}), nil
}

func (h *handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *handler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	b.WriteString(h.attrs)
	f := h.fields
	r.Attrs(func(a slog.Attr) bool {
		if jf, ok := journalFields(a); ok {
			f = &jf
			return true
		}
		appendAttr(&b, a)
		return true
	})
	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	return h.w.write(r.Level, t, b.String(), f)
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.attrs)
	f := h.fields
	for _, a := range as {
		if jf, ok := journalFields(a); ok {
			f = &jf
			continue
		}
		appendAttr(&b, a)
	}
	return &handler{w: h.w, level: h.level, attrs: b.String(), fields: f}
}

// WithGroup is accepted but flattens: PortSentry lines have no groups.
func (h *handler) WithGroup(string) slog.Handler { return h }

func appendAttr(b *strings.Builder, a slog.Attr) {
	if a.Equal(slog.Attr{}) {
		return
	}
	v := a.Value.Resolve().String()
	if strings.ContainsAny(v, " \t\"\r\n") || v == "" {
		v = fmt.Sprintf("%q", v)
	}
	b.WriteString(" " + a.Key + "=" + v)
}

type streamWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *streamWriter) write(_ slog.Level, t time.Time, line string, _ *fields) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := io.WriteString(s.w, t.Format(logline.Timestamp2x)+" "+line+"\n")
	return err
}

type syslogWriter struct{ w *syslog.Writer }

func (s *syslogWriter) write(level slog.Level, _ time.Time, line string, _ *fields) error {
	switch priority(level) {
	case 3:
		return s.w.Err(line)
	case 4:
		return s.w.Warning(line)
	case 5:
		return s.w.Notice(line)
	case 6:
		return s.w.Info(line)
	}
	return s.w.Debug(line)
}
