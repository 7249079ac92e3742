package render

import (
	"bytes"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/portsentry-go/portsentry/internal/enforce/bans"
	"github.com/portsentry-go/portsentry/internal/report/summary"
)

var now = time.Date(2026, 11, 22, 14, 27, 0, 0, time.UTC)

// sample is a day: a SYN scan of 1-1024 an hour ago from a source with a
// hostile name, a few UDP probes from another now, one ban in force.
func sample(t *testing.T) *summary.Summary {
	t.Helper()
	from, to := summary.LastDays(now, 24*time.Hour)
	b := summary.New(summary.Options{From: from, To: to, Now: now, Top: 5})
	scanner := netip.MustParseAddr("10.0.0.2")
	for p := 1; p <= 1024; p++ {
		b.Add(summary.Probe{Time: now.Add(-time.Hour), Src: scanner, Host: `<script>alert("x")</script>`, Port: uint16(p), Proto: "tcp", Kind: "syn", Blocked: p == 1})
	}
	for i := 0; i < 3; i++ {
		b.Add(summary.Probe{Time: now, Src: netip.MustParseAddr("2001:db8::3"), Port: 53, Proto: "udp", Kind: "udp"})
	}
	b.SetBans([]bans.Ban{{Addr: scanner, Reason: "TCP SYN/Normal scan", Port: 1, Proto: "TCP", Since: now.Add(-time.Hour), Expires: now.Add(3 * time.Hour), Count: 1}})
	b.AddInput(summary.Input{What: "event log", Path: "/var/log/portsentry/events.jsonl", Read: 1027, Used: 1027, Note: "every probe"})
	return b.Summary()
}

func TestText(t *testing.T) {
	var buf bytes.Buffer
	if err := Text(&buf, sample(t)); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"portsentry report: 2026-11-21 15:00 to 2026-11-22 15:00 UTC (24 hours)\n",
		"1027 probes from 2 sources to 1025 ports; 1 ban made. Kinds: syn 1024, udp 3.\n",
		"Bans in force at 14:27: 1 (0 permanent, 1 ending within 24 hours).\n",
		"  SOURCE       PROBES  PORTS  KINDS  LAST SEEN       BANNED\n",
		"  10.0.0.2       1024   1024  syn    11-22 13:27:00  until 11-22 17:27\n",
		"    <script>alert(\"x\")</script>; tcp 1-1024\n",
		"  2001:db8::3       3      1  udp    11-22 14:27:00  no\n",
		"  53/udp       3        1\n",
		"  10.0.0.2  TCP SYN/Normal scan, 1/tcp  11-22 13:27  11-22 17:27     1\n",
		"  event log /var/log/portsentry/events.jsonl: 1027 of 1027 records used (every probe)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q\n%s", want, out)
		}
	}
	// The chart: a row for each day the period touches, each mark at its
	// hour: the 15:00-23:00 of the 21st, the 00:00-14:00 of the 22nd.
	var rows []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "  Sat 11-21") || strings.HasPrefix(l, "  Sun 11-22") {
			rows = append(rows, l)
		}
	}
	if len(rows) != 2 {
		t.Fatalf("chart rows %q, want 2", rows)
	}
	day1 := []rune(rows[0])[14 : 14+24]
	day2 := []rune(rows[1])[14 : 14+24]
	if string(day1) != strings.Repeat(" ", 15)+strings.Repeat("·", 9) {
		t.Errorf("21st: %q, want 15 blanks then 9 empty hours", string(day1))
	}
	if string(day2) != strings.Repeat("·", 13)+"█▂"+strings.Repeat(" ", 9) {
		t.Errorf("22nd: %q, want 13 empty hours, the scan's hour full, the hour under way low (3 of 1024, log scale)", string(day2))
	}
	if !strings.HasSuffix(rows[1], "1027        1") {
		t.Errorf("22nd's totals: %q, want 1027 probes, 1 source at most in an hour", rows[1])
	}
}

func TestMark(t *testing.T) {
	tests := []struct {
		n, max int
		want   rune
	}{
		{0, 10, '·'}, {1, 1, '█'}, {1, 1000, '▁'}, {1000, 1000, '█'}, {31, 1000, '▄'}, {5, 0, '·'},
	}
	for _, tt := range tests {
		if got := mark(tt.n, tt.max); got != tt.want {
			t.Errorf("mark(%d, %d) = %q, want %q", tt.n, tt.max, got, tt.want)
		}
	}
}

// find returns the elements under n for which ok is true, in document order.
func find(n *html.Node, ok func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	for c := range n.Descendants() {
		if c.Type == html.ElementNode && ok(c) {
			out = append(out, c)
		}
	}
	return out
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func byID(doc *html.Node, id string) *html.Node {
	if ns := find(doc, func(n *html.Node) bool { return attr(n, "id") == id }); len(ns) == 1 {
		return ns[0]
	}
	return nil
}

func text(n *html.Node) string {
	var b strings.Builder
	for c := range n.Descendants() {
		if c.Type == html.TextNode {
			b.WriteString(c.Data)
		}
	}
	return b.String()
}

func TestHTML(t *testing.T) {
	s := sample(t)
	var buf bytes.Buffer
	if err := HTML(&buf, s); err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	// Self-contained: no script, nothing that a browser would fetch.
	if n := find(doc, func(n *html.Node) bool {
		return n.Data == "script" || n.Data == "link" || n.Data == "img" || n.Data == "iframe"
	}); len(n) > 0 {
		t.Errorf("page has %d script, link, img or iframe elements", len(n))
	}
	if n := find(doc, func(n *html.Node) bool { return attr(n, "src") != "" || attr(n, "href") != "" }); len(n) > 0 {
		t.Errorf("page has %d elements with src or href", len(n))
	}
	if strings.Contains(buf.String(), "url(") || strings.Contains(buf.String(), "@import") || strings.Contains(buf.String(), "http://") || strings.Contains(buf.String(), "https://") {
		t.Error("page names something to fetch")
	}
	if !strings.Contains(buf.String(), "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") {
		t.Error("the hostile host name is not shown escaped")
	}

	for id, want := range map[string]string{"total-probes": "1027", "total-sources": "2", "total-ports": "1025", "total-blocks": "1", "bans-active": "1", "bans-expiring": "1"} {
		if n := byID(doc, id); n == nil || text(n) != want {
			t.Errorf("#%s: %v, want %q", id, n, want)
		}
	}
	for _, id := range []string{"probes-per-bucket", "sources-per-bucket"} {
		chart := byID(doc, id)
		if chart == nil {
			t.Fatalf("no #%s", id)
		}
		bars := find(chart, func(n *html.Node) bool { return n.Data == "rect" && attr(n, "class") == "bar" })
		if len(bars) != len(s.Buckets) || len(bars) != 24 {
			t.Fatalf("#%s: %d bars, want one per hour (24)", id, len(bars))
		}
		var tallest float64
		for i, b := range bars {
			h, _ := strconv.ParseFloat(attr(b, "height"), 64)
			n, _ := strconv.Atoi(attr(b, "data-count"))
			want := s.Buckets[i].Probes
			if id == "sources-per-bucket" {
				want = s.Buckets[i].Sources
			}
			if n != want || (n > 0) != (h >= 1) || (n == 0) != (h == 0) {
				t.Errorf("#%s bar %d: count %d height %v; want count %d, visible when not 0", id, i, n, h, want)
			}
			tallest = max(tallest, h)
			if start := attr(b, "data-start"); start != s.Buckets[i].Start.Format(time.RFC3339) {
				t.Errorf("#%s bar %d starts %s, want %s", id, i, start, s.Buckets[i].Start.Format(time.RFC3339))
			}
		}
		if id == "probes-per-bucket" {
			if h, _ := strconv.ParseFloat(attr(bars[22], "height"), 64); h != tallest {
				t.Errorf("the scan's hour (bar 22) is %v high, the tallest %v", h, tallest)
			}
		}
	}
	top := byID(doc, "top-sources")
	if top == nil {
		t.Fatal("no #top-sources chart")
	}
	bars := find(top, func(n *html.Node) bool { return n.Data == "rect" })
	if len(bars) != 2 || attr(bars[0], "data-label") != "10.0.0.2" || attr(bars[0], "data-count") != "1024" {
		t.Errorf("top sources chart: %d bars, first %v", len(bars), bars)
	}
	rows := find(byID(doc, "sources"), func(n *html.Node) bool { return n.Data == "tr" })
	if len(rows) != 3 || !strings.HasPrefix(text(rows[1]), "10.0.0.2") || !strings.Contains(text(rows[1]), "tcp 1-1024") {
		t.Errorf("sources table rows: %d, first %q", len(rows), text(rows[1]))
	}
	if b := byID(doc, "bans"); b == nil || !strings.Contains(text(b), "TCP SYN/Normal scan, 1/tcp") {
		t.Error("bans table missing the ban")
	}
}

// TestHTMLEmpty: a quiet period is a page that says so, not an error.
func TestHTMLEmpty(t *testing.T) {
	from, to := summary.LastDays(now, 7*24*time.Hour)
	s := summary.New(summary.Options{From: from, To: to, Now: now}).Summary()
	var buf bytes.Buffer
	if err := HTML(&buf, s); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`id="top-sources-none"`, `id="bans-none"`, `data-bars="168"`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("empty page lacks %s", want)
		}
	}
	buf.Reset()
	if err := Text(&buf, s); err != nil || !strings.Contains(buf.String(), "0 probes from 0 sources") {
		t.Errorf("empty table: %v\n%s", err, buf.String())
	}
}
