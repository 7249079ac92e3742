package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
)

// TestReport: `portsentry report` sums up a real attack. The daemon
// (advanced mode, BLOCKER nftables, EVENT_LOG and BAN_FILE on) is scanned
// by real nmap: a SYN scan of 1-1000 from S over IPv4, a UDP scan of five
// ports from S over IPv6, two ports from F. SCAN_TRIGGER is 10 below the
// number of trap ports the SYN scan reaches, so that every probe is in the
// event log (after a ban the daemon writes at most 20 lines per source
// per 10 s) and S is banned near the end of its scan. The table must
// name S's IPv4 address as the top source with exactly the trap ports it
// probed, banned, and the other two sources with their ports and kinds;
// the HTML page, opened in a real headless Chromium (Debian's chromium)
// inside a namespace with no network, must show the same figures, one bar
// per hour with heights that follow the counts, and fetch nothing.
func TestReport(t *testing.T) {
	t.Parallel()
	chromium := requireTool(t, "chromium", "chromium")
	// The trap ports of the SYN scan of 1-1000 (SCAN_TRIGGER is at most
	// 1000): not excluded (113, 139), not the web service's (80).
	var trap []int
	for p := 1; p <= 1000; p++ {
		if p != 80 && p != 113 && p != 139 {
			trap = append(trap, p)
		}
	}
	k := newStBase(t, stAdvanced, labTable)
	k.run(t, func(c *config) {
		c.set("BLOCKER", "nftables")
		c.set("KERNEL_TRAP", "0")
		c.set("KILL_ROUTE", "")
		c.set("SCAN_TRIGGER", strconv.Itoa(len(trap)-10))
		c.set("EVENT_LOG", c.path("events.jsonl"))
		c.set("BAN_FILE", c.path("bans.jsonl"))
		c.set("BAN_TIME", "3600")
	})
	udpPorts := []int{7, 9, 69, 111, 161}
	k.nmapXML(t, k.S, "-sS", "-p", "1-1000", k.T.v4.String())
	k.nmapXML(t, k.S, "-6", "-sU", "-p", joinInts(udpPorts), k.T.v6.String())
	k.nmapXML(t, k.F, "-sS", "-p", "22,23", k.T.v4.String())

	// What the daemon recorded: every trap port S probed, but for a probe
	// lost on the way now and then (a run loses one in a thousand or
	// none); the report must count exactly what was recorded.
	sPorts := waitEventPorts(t, k.c.path("events.jsonl"), k.S.v4, len(trap))
	if sPorts < len(trap)-2 {
		t.Fatalf("the event log has %d of the %d trap ports S probed", sPorts, len(trap))
	}
	// In this mode a run records one probe fewer than sent per source
	// now and then (seen on this VM: the first of a new source, it seems;
	// not the report's to fix): the table must say exactly what was
	// recorded, and the record must be the scan but for that one.
	s6Ports := waitEventPorts(t, k.c.path("events.jsonl"), k.S.v6, len(udpPorts))
	fPorts := waitEventPorts(t, k.c.path("events.jsonl"), k.F.v4, 2)
	if s6Ports < len(udpPorts)-1 || fPorts < 1 {
		t.Fatalf("the event log has %d UDP ports from %s (want %d or one fewer) and %d from %s (want 2 or 1)", s6Ports, k.S.v6, len(udpPorts), fPorts, k.F.v4)
	}
	t.Logf("recorded: %d of %d TCP ports from %s, %d of %d UDP ports from %s, %d of 2 from %s", sPorts, len(trap), k.S.v4, s6Ports, len(udpPorts), k.S.v6, fPorts, k.F.v4)
	k.d.waitFor(t, nativeLine(k.S.v4, "for "), logWait)
	time.Sleep(settle)

	report := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(binPath, append([]string{"report", "-c", k.conf}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Fatalf("portsentry report %s: %v\nstderr: %s\nstdout: %s", strings.Join(args, " "), err, stderr.Bytes(), out)
		}
		return string(out)
	}
	table := report()
	t.Logf("portsentry report:\n%s", table)

	rows := topSources(t, table)
	if len(rows) != 3 {
		t.Fatalf("top sources %+v, want S (IPv4 and IPv6) and F", rows)
	}
	top := rows[0]
	if top.addr != k.S.v4.String() || top.ports != sPorts || top.probes < sPorts || top.kinds != "syn" || !strings.HasPrefix(top.banned, "until ") {
		t.Errorf("top source %+v, want %s with %d ports, at least as many probes, kind syn, banned until", top, k.S.v4, sPorts)
	}
	want := map[string]sourceRow{
		k.S.v6.String(): {ports: s6Ports, kinds: "udp", banned: "no"},
		k.F.v4.String(): {ports: fPorts, kinds: "syn", banned: "no"},
	}
	for _, r := range rows[1:] {
		w, ok := want[r.addr]
		if !ok || r.ports != w.ports || r.kinds != w.kinds || r.probes < r.ports || r.banned != w.banned {
			t.Errorf("source %+v, want %+v", r, w)
		}
		delete(want, r.addr)
	}
	total := 0
	for _, r := range rows {
		total += r.probes
	}
	head := fmt.Sprintf("%d probes from 3 sources to %d ports; 1 ban made.", total, distinctPorts(t, k.c.path("events.jsonl")))
	if !strings.Contains(table, head) || !strings.Contains(table, ": 1 (0 permanent, 1 ending within 24 hours).") {
		t.Errorf("report's head lacks %q or the ban in force", head)
	}
	if _, bans, _ := strings.Cut(table, "Bans in force, ending soonest\n"); !strings.Contains(bans, "  "+k.S.v4.String()+"  TCP SYN/Normal scan, ") {
		t.Errorf("the bans table lacks %s", k.S.v4)
	}
	if !strings.Contains(table, "  event log "+k.c.path("events.jsonl")+": ") || !strings.Contains(table, "(before the event log's first line only)") {
		t.Error("report does not say what it read")
	}

	// The page, over the last 3 hours: 3 bars an hour chart.
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	if out := report("-since", "3h", "-html", page); !strings.Contains(out, head) {
		t.Errorf("report -html printed another table:\n%s", out)
	}
	checkPage(t, chromium, page, pageWant{top: k.S.v4.String(), topPorts: sPorts, probes: total, sources: 3, bars: 3})
}

// sourceRow is one row of the table's top sources.
type sourceRow struct {
	addr          string
	probes, ports int
	kinds, banned string
}

// topSources reads the "Top sources" table of a report.
func topSources(t *testing.T, report string) []sourceRow {
	t.Helper()
	_, rest, ok := strings.Cut(report, "Top sources\n")
	if !ok {
		t.Fatalf("no Top sources table in\n%s", report)
	}
	var out []sourceRow
	for _, l := range strings.Split(rest, "\n")[1:] {
		if l == "" {
			break
		}
		if strings.HasPrefix(l, "    ") {
			continue // the detail line: name and ports
		}
		f := strings.Fields(l)
		if len(f) < 7 {
			t.Fatalf("odd source row %q", l)
		}
		probes, _ := strconv.Atoi(f[1])
		ports, _ := strconv.Atoi(f[2])
		out = append(out, sourceRow{addr: f[0], probes: probes, ports: ports, kinds: f[3], banned: strings.Join(f[6:], " ")})
	}
	return out
}

// waitEventPorts waits until the event log at p has n distinct ports
// from src, or the wait runs out, and returns how many it has.
func waitEventPorts(t *testing.T, p string, src netip.Addr, n int) int {
	t.Helper()
	deadline := time.Now().Add(logWait)
	for {
		ports := map[uint16]bool{}
		for _, l := range fileLines(t, p) {
			var e struct {
				Src  string `json:"src"`
				Port uint16 `json:"port"`
			}
			if json.Unmarshal([]byte(l), &e) == nil && e.Src == src.String() {
				ports[e.Port] = true
			}
		}
		if len(ports) >= n || time.Now().After(deadline) {
			return len(ports)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// distinctPorts counts the distinct ports (per protocol) of the event log
// at p: the test's own count, to hold the report's against.
func distinctPorts(t *testing.T, p string) int {
	t.Helper()
	ports := map[string]bool{}
	for _, l := range fileLines(t, p) {
		var e struct {
			Port   int    `json:"port"`
			Proto  string `json:"proto"`
			Action string `json:"action"`
		}
		if json.Unmarshal([]byte(l), &e) == nil && e.Action != "ignored" && e.Action != "service" {
			ports[fmt.Sprint(e.Proto, e.Port)] = true
		}
	}
	return len(ports)
}

// pageWant is what the page must show.
type pageWant struct {
	top             string // the top source's address
	topPorts        int
	probes, sources int
	bars            int // per chart of buckets
}

// measure runs in a copy of the page (never in the page itself, which has
// no script): it reads what the browser laid out and shows, and writes it
// as JSON into <pre id="measure">.
const measure = `<script>
(function () {
  function box(e) { var r = e.getBoundingClientRect(); return {w: r.width, h: r.height, right: r.right}; }
  function bars(sel) {
    return Array.prototype.map.call(document.querySelectorAll(sel), function (b) {
      var r = box(b); return {count: +b.getAttribute('data-count'), label: b.getAttribute('data-label'), w: r.w, h: r.h};
    });
  }
  var row = document.querySelector('#sources tbody tr');
  var out = {
    resources: performance.getEntriesByType('resource').length,
    innerWidth: window.innerWidth,
    scrollWidth: document.documentElement.scrollWidth,
    probes: document.getElementById('total-probes').innerText,
    sources: document.getElementById('total-sources').innerText,
    perHour: bars('#probes-per-bucket rect.bar'),
    sourcesPerHour: bars('#sources-per-bucket rect.bar'),
    top: bars('#top-sources rect.bar'),
    topRow: row ? row.innerText : '',
    topRowBox: row ? box(row) : null
  };
  var pre = document.createElement('pre');
  pre.id = 'measure';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>
`

type measured struct {
	Resources   int    `json:"resources"`
	InnerWidth  int    `json:"innerWidth"`
	ScrollWidth int    `json:"scrollWidth"`
	Probes      string `json:"probes"`
	Sources     string `json:"sources"`
	PerHour     []struct {
		Count int     `json:"count"`
		H     float64 `json:"h"`
	} `json:"perHour"`
	SourcesPerHour []struct {
		Count int     `json:"count"`
		H     float64 `json:"h"`
	} `json:"sourcesPerHour"`
	Top []struct {
		Count int     `json:"count"`
		Label string  `json:"label"`
		W     float64 `json:"w"`
	} `json:"top"`
	TopRow    string `json:"topRow"`
	TopRowBox *struct {
		W, H, Right float64
	} `json:"topRowBox"`
}

// checkPage opens the page in headless Chromium, in a network namespace
// of its own with nothing but loopback: the DOM as rendered (--dump-dom),
// what a measuring copy reads of the layout, and a screenshot.
func checkPage(t *testing.T, chromium, page string, want pageWant) {
	t.Helper()
	ns := namespaces.New(t, "b")
	dir := filepath.Dir(page)
	run := func(args ...string) []byte {
		t.Helper()
		profile := t.TempDir()
		cmd := ns.Command(chromium, append([]string{
			"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--user-data-dir=" + profile, "--window-size=1280,2000", "--hide-scrollbars",
		}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+profile)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		cmd.WaitDelay = 5 * time.Second
		var out bytes.Buffer
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatalf("chromium: %v", err)
		}
		// A browser that hangs is killed: the test fails, it does not stall.
		timer := time.AfterFunc(90*time.Second, func() { cmd.Process.Kill() })
		defer timer.Stop()
		err := cmd.Wait()
		if err != nil {
			t.Fatalf("chromium %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
		}
		return out.Bytes()
	}

	// The DOM as Chromium built it from the page.
	dom, err := html.Parse(bytes.NewReader(run("--dump-dom", "file://"+page)))
	if err != nil {
		t.Fatal(err)
	}
	byID := func(id string) *html.Node {
		for n := range dom.Descendants() {
			for _, a := range n.Attr {
				if a.Key == "id" && a.Val == id {
					return n
				}
			}
		}
		t.Fatalf("the page has no #%s", id)
		return nil
	}
	textOf := func(n *html.Node) string {
		var b strings.Builder
		for c := range n.Descendants() {
			if c.Type == html.TextNode {
				b.WriteString(c.Data)
			}
		}
		return b.String()
	}
	if got := textOf(byID("total-probes")); got != strconv.Itoa(want.probes) {
		t.Errorf("page shows %s probes, want %d", got, want.probes)
	}
	for _, id := range []string{"probes-per-bucket", "sources-per-bucket"} {
		n := 0
		for c := range byID(id).Descendants() {
			if c.Data == "rect" {
				n++
			}
		}
		if n != want.bars {
			t.Errorf("#%s has %d bars, want %d (one an hour)", id, n, want.bars)
		}
	}
	for n := range dom.Descendants() {
		if n.Type == html.ElementNode && n.Data == "script" {
			t.Error("the page has a script")
		}
	}

	// What the browser lays out and shows, read by a measuring copy.
	src, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	mpage := filepath.Join(dir, "measure.html")
	if err := os.WriteFile(mpage, bytes.Replace(src, []byte("</body>"), []byte(measure+"</body>"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	mdom, err := html.Parse(bytes.NewReader(run("--dump-dom", "file://"+mpage)))
	if err != nil {
		t.Fatal(err)
	}
	var raw string
	for n := range mdom.Descendants() {
		for _, a := range n.Attr {
			if a.Key == "id" && a.Val == "measure" && n.FirstChild != nil {
				raw = n.FirstChild.Data
			}
		}
	}
	var m measured
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatalf("reading the measures %q: %v", raw, err)
	}
	if m.Resources != 0 {
		t.Errorf("the page fetched %d resources, want none", m.Resources)
	}
	if m.ScrollWidth > m.InnerWidth {
		t.Errorf("the page is %d px wide in a %d px window", m.ScrollWidth, m.InnerWidth)
	}
	if m.Probes != strconv.Itoa(want.probes) || m.Sources != strconv.Itoa(want.sources) {
		t.Errorf("page shows %s probes from %s sources, want %d from %d", m.Probes, m.Sources, want.probes, want.sources)
	}
	if len(m.PerHour) != want.bars || len(m.SourcesPerHour) != want.bars {
		t.Fatalf("%d and %d bars laid out, want %d each", len(m.PerHour), len(m.SourcesPerHour), want.bars)
	}
	sum, most, tallest := 0, 0, 0.0
	for _, b := range m.PerHour {
		sum += b.Count
		most = max(most, b.Count)
		tallest = max(tallest, b.H)
		if (b.Count > 0) != (b.H > 0.5) {
			t.Errorf("a bar of %d probes is shown %.1f px high", b.Count, b.H)
		}
	}
	if sum != want.probes {
		t.Errorf("the hour bars add up to %d probes, want %d", sum, want.probes)
	}
	for _, b := range m.PerHour {
		if b.Count == most && b.H != tallest {
			t.Errorf("the hour with the most probes (%d) is %.1f px high, the tallest %.1f", most, b.H, tallest)
		}
	}
	if len(m.Top) != want.sources || m.Top[0].Label != want.top {
		t.Fatalf("top sources chart %+v, want %d bars, %s first", m.Top, want.sources, want.top)
	}
	for _, b := range m.Top[1:] {
		if b.W >= m.Top[0].W || b.W <= 0 {
			t.Errorf("top source bar %s is %.1f px wide, the top one %.1f: want shorter, visible", b.Label, b.W, m.Top[0].W)
		}
	}
	if !strings.HasPrefix(m.TopRow, want.top) || !strings.Contains(m.TopRow, "\t"+strconv.Itoa(want.topPorts)+"\t") ||
		m.TopRowBox == nil || m.TopRowBox.H <= 0 || m.TopRowBox.Right > float64(m.InnerWidth) {
		t.Errorf("the sources table's first row shows %q in %+v, want %s with %d ports, within the window", m.TopRow, m.TopRowBox, want.top, want.topPorts)
	}

	// A screenshot, for a person to look at (REPORT_SCREENSHOT=FILE keeps
	// it); here it must be a real picture of the window's size.
	shot := filepath.Join(dir, "report.png")
	run("--screenshot="+shot, "file://"+page)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if img, err := png.Decode(f); err != nil || img.Bounds().Dx() != 1280 || img.Bounds().Dy() != 2000 {
		t.Errorf("screenshot: %v; want a 1280x2000 PNG", err)
	}
	if keep := os.Getenv("REPORT_SCREENSHOT"); keep != "" {
		if b, err := os.ReadFile(shot); err == nil {
			os.WriteFile(keep, b, 0o644)
		}
	}
}
