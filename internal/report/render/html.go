package render

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"

	"github.com/portsentry-go/portsentry/internal/report/summary"
)

//go:embed report.html.tmpl
var pageText string

var page = template.Must(template.New("report").Parse(pageText))

// Chart geometry, in SVG user units (the page scales the charts to its
// width).
const (
	chartW   = 960
	chartH   = 180
	marginL  = 48 // room for the y axis labels
	marginB  = 22 // room for the x axis labels
	marginT  = 8
	hbarRowH = 22
	hbarL    = 260 // room for the labels of a horizontal bar chart
	hbarW    = 960
)

// htmlTime is how the page writes a time of the period.
const htmlTime = "Jan 2 15:04"

// view is what the template draws.
type view struct {
	S          *summary.Summary
	Title      string
	Period     string
	Generated  string
	Soon       string
	PerHour    column // probes per bucket
	Sources    column // sources per bucket
	TopSources hbars
	TopPorts   hbars
	Kinds      hbars
	SourceRows []sourceRow
	BanRows    []banRow
}

// column is a column chart: one bar per bucket.
type column struct {
	ID, Title, Unit string
	W, H            int
	Bars            []bar
	Max             int
	YTicks          []tick
	XTicks          []tick
	BaseY           float64
	PlotL, PlotR    float64
}

type bar struct {
	X, Y, W, H float64
	Count      int
	Start      string // RFC 3339
	Label      string // the tooltip
}

type tick struct {
	X, Y  float64
	Label string
}

// hbars is a horizontal bar chart: one bar per entry, labelled.
type hbars struct {
	ID, Title, Unit string
	W, H            int
	Rows            []hbar
}

type hbar struct {
	Y, W          float64
	TextY         float64
	Label, Detail string
	Count         int
}

type sourceRow struct {
	Addr, Host, PortList, Kinds, First, Last, Ban string
	Probes, Ports, Blocks                         int
	Banned                                        bool
}

type banRow struct {
	Target, Reason, Since, Ends string
	Count                       int
	Soon, Permanent             bool
}

// HTML writes s as one self-contained HTML page: styles inline, charts as
// inline SVG, no script, nothing fetched. Every text from the files (host
// names, reasons) is escaped by html/template.
func HTML(w io.Writer, s *summary.Summary) error {
	loc := s.Now.Location()
	v := view{
		S:         s,
		Title:     "portsentry report",
		Period:    fmt.Sprintf("%s to %s (%s)", s.From.In(loc).Format("Mon 2 Jan 2006 15:04"), s.To.In(loc).Format("Mon 2 Jan 2006 15:04 MST"), span(s.To.Sub(s.From))),
		Generated: s.Now.In(loc).Format("Mon 2 Jan 2006 15:04:05 MST"),
		Soon:      span(summary.Soon),
	}
	v.PerHour = columns("probes-per-bucket", "Probes per "+unitOf(s.Bucket), "probes", s, loc, func(b summary.Bucket) int { return b.Probes })
	v.Sources = columns("sources-per-bucket", "Sources per "+unitOf(s.Bucket), "sources", s, loc, func(b summary.Bucket) int { return b.Sources })

	var rows []hbar
	for _, src := range s.TopSources {
		label := src.Addr.String()
		rows = append(rows, hbar{Label: label, Detail: src.Host, Count: src.Probes})
	}
	v.TopSources = horizontal("top-sources", "Top sources", "probes", rows)
	rows = nil
	for _, p := range s.TopPorts {
		rows = append(rows, hbar{Label: fmt.Sprintf("%d/%s", p.Port, p.Proto), Detail: plural(p.Sources, "source"), Count: p.Probes})
	}
	v.TopPorts = horizontal("top-ports", "Top ports", "probes", rows)
	rows = nil
	for _, k := range s.Kinds {
		rows = append(rows, hbar{Label: k.Name, Count: k.N})
	}
	v.Kinds = horizontal("kinds", "Probes by kind", "probes", rows)

	for _, src := range s.TopSources {
		v.SourceRows = append(v.SourceRows, sourceRow{
			Addr: src.Addr.String(), Host: src.Host, PortList: src.PortList, Kinds: strings.Join(src.Kinds, ", "),
			First: src.First.In(loc).Format("Jan 2 15:04:05"), Last: src.Last.In(loc).Format("Jan 2 15:04:05"),
			Ban: banned(src.Ban, loc, htmlTime), Banned: src.Ban != nil,
			Probes: src.Probes, Ports: src.Ports, Blocks: src.Blocks,
		})
	}
	for _, b := range s.Bans.Soonest {
		v.BanRows = append(v.BanRows, banRow{
			Target: b.Target(), Reason: reason(b), Since: b.Since.In(loc).Format(htmlTime), Ends: ends(b, loc, htmlTime),
			Count: b.Count, Permanent: b.Permanent(), Soon: !b.Permanent() && b.Expires.Sub(s.Now) <= summary.Soon,
		})
	}
	return page.Execute(w, v)
}

// columns draws one bar per bucket of s, value(b) high.
func columns(id, title, unit string, s *summary.Summary, loc *time.Location, value func(summary.Bucket) int) column {
	c := column{ID: id, Title: title, Unit: unit, W: chartW, H: chartH, BaseY: chartH - marginB, PlotL: marginL, PlotR: chartW - 4}
	for _, b := range s.Buckets {
		c.Max = max(c.Max, value(b))
	}
	top := niceMax(c.Max)
	plotH := c.BaseY - marginT
	n := len(s.Buckets)
	if n == 0 {
		return c
	}
	slot := (c.PlotR - c.PlotL) / float64(n)
	gap := min(slot*0.15, 2)
	for i, b := range s.Buckets {
		v := value(b)
		h := plotH * float64(v) / float64(top)
		if v > 0 && h < 1 {
			h = 1 // a bar with something is never invisible
		}
		start := b.Start.In(loc)
		c.Bars = append(c.Bars, bar{
			X: c.PlotL + float64(i)*slot + gap/2, W: slot - gap, Y: c.BaseY - h, H: h, Count: v,
			Start: start.Format(time.RFC3339),
			Label: fmt.Sprintf("%s: %s", start.Format(bucketLabel(s.Bucket)), plural(v, strings.TrimSuffix(unit, "s"))),
		})
	}
	for _, f := range []float64{0, 0.5, 1} {
		if f == 0.5 && top%2 != 0 {
			continue // no half of 1 or 5 on the scale
		}
		c.YTicks = append(c.YTicks, tick{X: c.PlotL - 6, Y: c.BaseY - plotH*f, Label: fmt.Sprint(int(float64(top) * f))})
	}
	// x labels: each midnight for hours (every few days when many), the
	// first of each month for days, else every tenth bucket.
	every := max(1, n/8)
	for i, b := range s.Buckets {
		t := b.Start.In(loc)
		label := ""
		switch {
		case s.Bucket == time.Hour && t.Hour() == 0 && (n <= 24*8 || t.YearDay()%max(1, n/(24*8)) == 0):
			label = t.Format("Mon 2 Jan")
		case s.Bucket == time.Hour && (n <= 12 || n <= 24 && i%3 == 0):
			label = t.Format("15:04")
		case s.Bucket != time.Hour && i%every == 0:
			label = t.Format("2 Jan 2006")
		}
		if label != "" {
			c.XTicks = append(c.XTicks, tick{X: c.PlotL + float64(i)*slot, Y: chartH - 6, Label: label})
		}
	}
	return c
}

// unitOf names a bucket's width: "hour", "day", or "2 weeks".
func unitOf(bucket time.Duration) string {
	switch bucket {
	case time.Hour:
		return "hour"
	case 24 * time.Hour:
		return "day"
	case 7 * 24 * time.Hour:
		return "week"
	}
	return span(bucket)
}

func bucketLabel(bucket time.Duration) string {
	if bucket == time.Hour {
		return "Mon 2 Jan 15:04"
	}
	return "Mon 2 Jan 2006"
}

// niceMax is the top of a chart's scale: the smallest of 1, 2, 5 times
// a power of ten at or above n (at least 1).
func niceMax(n int) int {
	for p := 1; ; p *= 10 {
		for _, m := range []int{1, 2, 5} {
			if m*p >= n {
				return m * p
			}
		}
		if p > 1<<50 {
			return n
		}
	}
}

// horizontal draws one labelled bar per row, the longest for the most.
func horizontal(id, title, unit string, rows []hbar) hbars {
	h := hbars{ID: id, Title: title, Unit: unit, W: hbarW, H: hbarRowH*len(rows) + 4}
	most := 0
	for _, r := range rows {
		most = max(most, r.Count)
	}
	for i, r := range rows {
		r.Y = float64(i*hbarRowH + 2)
		r.TextY = r.Y + hbarRowH/2 + 4
		if most > 0 {
			r.W = (hbarW - hbarL - 80) * float64(r.Count) / float64(most)
			if r.Count > 0 && r.W < 1 {
				r.W = 1
			}
		}
		h.Rows = append(h.Rows, r)
	}
	return h
}
