package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReportPeriod(t *testing.T) {
	now := time.Date(2026, 11, 22, 14, 27, 0, 0, time.UTC)
	hour := func(d, h int) time.Time { return time.Date(2026, 11, d, h, 0, 0, 0, time.UTC) }
	tests := []struct {
		since, until string
		from, to     time.Time
		err          string
	}{
		{"7d", "", hour(15, 15), hour(22, 15), ""},
		{"36h", "", hour(21, 3), hour(22, 15), ""},
		{"2026-11-20", "", hour(20, 0), hour(22, 15), ""},
		{"2026-11-20T08:00", "2026-11-21", hour(20, 8), hour(21, 0), ""},
		{"2d", "1d", hour(20, 15), hour(21, 15), ""},
		{"yesterday", "", time.Time{}, time.Time{}, `-since "yesterday"`},
		{"7d", "soon", time.Time{}, time.Time{}, `-until "soon"`},
		{"1d", "2d", time.Time{}, time.Time{}, "is not before"},
	}
	for _, tt := range tests {
		from, to, err := reportPeriod(tt.since, tt.until, now)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("reportPeriod(%q, %q): error %v, want %q", tt.since, tt.until, err, tt.err)
			}
			continue
		}
		if err != nil || !from.Equal(tt.from) || !to.Equal(tt.to) {
			t.Errorf("reportPeriod(%q, %q) = %v, %v, %v; want %v, %v", tt.since, tt.until, from, to, err, tt.from, tt.to)
		}
	}
}

// TestReportCommand: the subcommand reads the files the configuration
// names, writes the table, and the page with -html; usage errors exit 2.
func TestReportCommand(t *testing.T) {
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	at := time.Now().Add(-time.Hour).UTC()
	ev := `{"time":"` + at.Format(time.RFC3339Nano) + `","src":"192.0.2.9","port":143,"proto":"tcp","kind":"syn","action":"blocked","host":null}` + "\n"
	for name, content := range map[string]string{
		"events.jsonl":    ev,
		"portsentry.conf": "EVENT_LOG=\"" + p("events.jsonl") + "\"\nHISTORY_FILE=\"" + p("history") + "\"\nBAN_FILE=\"" + p("bans.jsonl") + "\"\n",
	} {
		if err := os.WriteFile(p(name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"report", "-c", p("portsentry.conf"), "-html", p("r.html")}, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d\n%s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "1 probe from 1 source to 1 port; 1 ban made") || !strings.Contains(out.String(), "  192.0.2.9 ") {
		t.Errorf("table:\n%s", out.String())
	}
	page, err := os.ReadFile(p("r.html"))
	if err != nil || !bytes.Contains(page, []byte(`data-label="192.0.2.9"`)) {
		t.Errorf("page: %v\n%.300s", err, page)
	}

	out.Reset()
	if code := run([]string{"report", "-events", p("events.jsonl"), "-history", p("none"), "-bans", p("none"), "-html", "-", "-c", p("missing.conf")}, &out, &errOut); code != exitOK || !strings.HasPrefix(out.String(), "<!DOCTYPE html>") {
		t.Errorf("-html - with every file named and no configuration: exit %d, output %.60q", code, out.String())
	}
	for _, args := range [][]string{{"report", "extra"}, {"report", "-top", "0"}, {"report", "-since", "never"}, {"report", "-c", p("missing.conf")}} {
		errOut.Reset()
		if code := run(args, io.Discard, &errOut); code != exitConfig || !strings.HasPrefix(errOut.String(), "portsentry report: ") {
			t.Errorf("%q: exit %d, %q; want 2 and one line", args, code, errOut.String())
		}
	}
}
