// Package render draws a summary (package summary) for a person: a
// compact text table for the terminal, and one self-contained HTML page
// with charts (inline SVG drawn by html/template; no script, no style
// sheet, font or image fetched from anywhere).
//
// Times are shown in the time zone of the summary's Now.
package render

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/portsentry-go/portsentry/internal/enforce/bans"
	"github.com/portsentry-go/portsentry/internal/report/summary"
)

// levels are the marks of a sparkline, from one probe to the most.
var levels = []rune("▁▂▃▄▅▆▇█")

// mark is the sparkline mark of n against the most, max, on a log scale
// (one scan of a thousand ports must not flatten every other hour): "·"
// for none, the lowest mark for one, the highest for max.
func mark(n, max int) rune {
	if n <= 0 || max <= 0 {
		return '·'
	}
	if max == 1 {
		return levels[len(levels)-1]
	}
	i := int(math.Round(math.Log(float64(n)) / math.Log(float64(max)) * float64(len(levels)-1)))
	return levels[min(max0(i), len(levels)-1)]
}

func max0(i int) int { return max(i, 0) }

// Text writes s as a compact table for a terminal.
func Text(w io.Writer, s *summary.Summary) error {
	loc := s.Now.Location()
	ew := &errWriter{w: w}
	ew.printf("portsentry report: %s to %s (%s)\n", s.From.In(loc).Format("2006-01-02 15:04"), s.To.In(loc).Format("2006-01-02 15:04 MST"), span(s.To.Sub(s.From)))
	ew.printf("%s from %s to %s; %s made", plural(s.Probes, "probe"), plural(s.Sources, "source"), plural(s.Ports, "port"), plural(s.Blocks, "ban"))
	if len(s.Kinds) > 0 {
		var ks []string
		for _, k := range s.Kinds {
			ks = append(ks, fmt.Sprintf("%s %d", k.Name, k.N))
		}
		ew.printf(". Kinds: %s", strings.Join(ks, ", "))
	}
	ew.printf(".\nBans in force at %s: %d (%d permanent, %d ending within %s).\n", s.Now.In(loc).Format("15:04"), s.Bans.Active, s.Bans.Permanent, s.Bans.Expiring, span(summary.Soon))

	maxProbes, maxSources := 0, 0
	for _, b := range s.Buckets {
		maxProbes, maxSources = max(maxProbes, b.Probes), max(maxSources, b.Sources)
	}
	ew.printf("\n%s (log scale; most in one: %d probes, %d sources)\n", per(s.Bucket), maxProbes, maxSources)
	n := rowLen(s.Bucket)
	ew.printf("  %-10s  %-*s  %7s  %7s\n", "", n, "", "probes", "sources")
	for _, r := range rows(s, loc) {
		ew.printf("  %-10s  %s  %7d  %7d\n", r.label, r.marks, r.probes, r.sources)
	}
	if s.Bucket == time.Hour {
		ew.printf("  %-10s  %s\n", "", "0     6     12    18")
	}
	ew.printf("\nTop sources\n")
	if len(s.TopSources) == 0 {
		ew.printf("  none\n")
	} else {
		t := table{head: []string{"SOURCE", "PROBES", "PORTS", "KINDS", "LAST SEEN", "BANNED"}, right: []bool{false, true, true}}
		for _, src := range s.TopSources {
			detail := src.PortList
			if src.Host != "" {
				detail = src.Host + "; " + detail
			}
			t.add(detail, src.Addr.String(), strconv.Itoa(src.Probes), strconv.Itoa(src.Ports), strings.Join(src.Kinds, ","), src.Last.In(loc).Format("01-02 15:04:05"), banned(src.Ban, loc, textTime))
		}
		t.write(ew)
	}

	ew.printf("\nTop ports\n")
	if len(s.TopPorts) == 0 {
		ew.printf("  none\n")
	} else {
		t := table{head: []string{"PORT", "PROBES", "SOURCES"}, right: []bool{false, true, true}}
		for _, p := range s.TopPorts {
			t.add("", fmt.Sprintf("%d/%s", p.Port, p.Proto), strconv.Itoa(p.Probes), strconv.Itoa(p.Sources))
		}
		t.write(ew)
	}

	ew.printf("\nBans in force, ending soonest\n")
	if len(s.Bans.Soonest) == 0 {
		ew.printf("  none\n")
	} else {
		t := table{head: []string{"ADDRESS", "REASON", "SINCE", "ENDS", "BANS"}, right: []bool{false, false, false, false, true}}
		for _, b := range s.Bans.Soonest {
			t.add("", b.Target(), reason(b), b.Since.In(loc).Format(textTime), ends(b, loc, textTime), strconv.Itoa(b.Count))
		}
		t.write(ew)
	}

	if len(s.Inputs) > 0 {
		ew.printf("\nRead:\n")
		for _, in := range s.Inputs {
			ew.printf("  %s %s: %d of %d records used (%s)\n", in.What, in.Path, in.Used, in.Read, in.Note)
		}
	}
	ew.printf("Source addresses are as the probes claimed them: they can be forged.\n")
	return ew.err
}

// row is one line of the text chart: a day of hours, or a run of days.
type row struct {
	label           string
	marks           string
	probes, sources int // sources: the most in one bucket of the row
}

// rowLen is how many buckets a row of the text chart holds.
func rowLen(bucket time.Duration) int {
	if bucket == time.Hour {
		return 24
	}
	return 28
}

// rows lays the buckets out: for hours, one row per calendar day, each
// mark at its hour (a day begun or ended within the period is padded); for
// days or weeks, rows of 28 from the first.
func rows(s *summary.Summary, loc *time.Location) []row {
	maxProbes := 0
	for _, b := range s.Buckets {
		maxProbes = max(maxProbes, b.Probes)
	}
	var out []row
	if s.Bucket == time.Hour {
		var cur *row
		var day string
		var marks []rune
		flush := func() {
			if cur != nil {
				for len(marks) < 24 {
					marks = append(marks, ' ')
				}
				cur.marks = string(marks)
				out = append(out, *cur)
			}
		}
		for _, b := range s.Buckets {
			t := b.Start.In(loc)
			if d := t.Format("Mon 01-02"); d != day {
				flush()
				day, cur, marks = d, &row{label: d}, nil
				for len(marks) < t.Hour() {
					marks = append(marks, ' ')
				}
			}
			marks = append(marks, mark(b.Probes, maxProbes))
			cur.probes += b.Probes
			cur.sources = max(cur.sources, b.Sources)
		}
		flush()
		return out
	}
	for i := 0; i < len(s.Buckets); i += 28 {
		r := row{label: s.Buckets[i].Start.In(loc).Format("2006-01-02")}
		var marks []rune
		for _, b := range s.Buckets[i:min(i+28, len(s.Buckets))] {
			marks = append(marks, mark(b.Probes, maxProbes))
			r.probes += b.Probes
			r.sources = max(r.sources, b.Sources)
		}
		r.marks = string(marks)
		out = append(out, r)
	}
	return out
}

func per(bucket time.Duration) string {
	if bucket == time.Hour {
		return "Probes per hour, a row a day"
	}
	return "Probes per " + unitOf(bucket) + ", 28 a row"
}

// span writes a duration as people count it: "7 days", "36 hours".
func span(d time.Duration) string {
	switch {
	case d >= 48*time.Hour && d%(24*time.Hour) == 0:
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	case d >= time.Hour && d%time.Hour == 0:
		return plural(int(d/time.Hour), "hour")
	}
	return d.String()
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// textTime is how the table writes a time of the period.
const textTime = "01-02 15:04"

func banned(b *bans.Ban, loc *time.Location, layout string) string {
	if b == nil {
		return "no"
	}
	if b.Permanent() {
		return "permanently"
	}
	return "until " + b.Expires.In(loc).Format(layout)
}

func ends(b bans.Ban, loc *time.Location, layout string) string {
	if b.Permanent() {
		return "never"
	}
	return b.Expires.In(loc).Format(layout)
}

func reason(b bans.Ban) string {
	if b.Port != 0 || b.Proto != "" {
		return fmt.Sprintf("%s, %d/%s", b.Reason, b.Port, strings.ToLower(b.Proto))
	}
	return b.Reason
}

// table is a text table: a head, rows of cells, and under a row an
// optional detail line, indented.
type table struct {
	head   []string
	right  []bool // columns aligned right (numbers)
	rows   [][]string
	detail []string
}

func (t *table) add(detail string, cells ...string) {
	t.rows = append(t.rows, cells)
	t.detail = append(t.detail, detail)
}

func (t *table) write(w io.Writer) {
	width := make([]int, len(t.head))
	for _, r := range append([][]string{t.head}, t.rows...) {
		for i, c := range r {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	line := func(r []string) {
		var b strings.Builder
		b.WriteString(" ")
		for i, c := range r {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			b.WriteString(" ")
			if i < len(t.right) && t.right[i] {
				b.WriteString(pad + c)
			} else if i < len(r)-1 {
				b.WriteString(c + pad)
			} else {
				b.WriteString(c)
			}
			if i < len(r)-1 {
				b.WriteString(" ")
			}
		}
		fmt.Fprintln(w, b.String())
	}
	line(t.head)
	for i, r := range t.rows {
		line(r)
		if t.detail[i] != "" {
			fmt.Fprintln(w, "    "+t.detail[i])
		}
	}
}

// errWriter keeps the first write error, so that Text checks once.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

func (e *errWriter) printf(format string, args ...any) { fmt.Fprintf(e, format, args...) }
