package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/portsentry-go/portsentry/test/internal/promql"
)

// targetLabels are the labels Prometheus adds to every series it scrapes.
var targetLabels = []string{"instance", "job"}

// TestGrafanaDashboard: every query of the shipped Grafana dashboard
// (packaging/grafana/portsentry.json), panels and variables alike, asks
// for metrics and labels that a real daemon exports: the daemon runs with
// the native blocker, METRICS_ADDRESS and alerts on, a scan is seen and
// blocked, and its /metrics is scraped. A metric renamed in the daemon,
// or a label value misspelt in the dashboard, fails here.
func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	k := newKLab(t, func(c *config) {
		c.set("METRICS_ADDRESS", metricsAddr)
		c.set("ALERT_MAILER", "sendmail")
		c.set("ALERT_SENDMAIL", mailer(t, t.TempDir()))
		c.set("ALERT_EMAIL_TO", "root@localhost")
		c.set("ALERT_EMAIL_FROM", "portsentry@localhost")
		// A fleet of one (its embedded server on T's loopback), so that
		// the fleet's metrics are exported too.
		c.set("FLEET_LISTEN", "127.0.0.1:4222")
		c.set("FLEET_STORE", c.path("fleet"))
		c.set("FLEET_NAME", "t")
	})
	k.d.waitFor(t, "metrics on http://"+metricsAddr+"/metrics", logWait)
	k.nmapXML(t, k.S, "-sS", "-p", "20-30", k.T.v4.String())
	k.d.waitFor(t, nativeLine(k.S.v4, "permanently"), logWait)

	// What the daemon exports: metric → label → values.
	exported := map[string]map[string][]string{}
	for s := range scrape(t, k.T.ns) {
		name, labels, _ := strings.Cut(strings.TrimSuffix(s, "}"), "{")
		if exported[name] == nil {
			exported[name] = map[string][]string{}
		}
		for _, kv := range splitLabels(labels) {
			k, v, _ := strings.Cut(kv, "=")
			if v = strings.Trim(v, `"`); !slices.Contains(exported[name][k], v) {
				exported[name][k] = append(exported[name][k], v)
			}
		}
	}

	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	b, err := os.ReadFile(filepath.Join(repoDir, "packaging", "grafana", "portsentry.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	type query struct{ where, expr string }
	var queries []query
	for _, p := range dash.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			queries = append(queries, query{"panel " + p.Title, tg.Expr})
		}
	}
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(map[string]any)
		expr, _ := q["query"].(string)
		queries = append(queries, query{"variable " + v.Name, expr})
	}
	if len(queries) < 10 {
		t.Fatalf("the dashboard has %d queries: not the one shipped?", len(queries))
	}

	metricsUsed := map[string]bool{}
	for _, q := range queries {
		sels, err := promql.Selectors(q.expr)
		if err != nil || len(sels) == 0 {
			t.Errorf("%s: query %q: %v (%d selectors)", q.where, q.expr, err, len(sels))
			continue
		}
		for _, s := range sels {
			labels, ok := exported[s.Metric]
			if !ok {
				t.Errorf("%s: %s is not exported by the daemon", q.where, s.Metric)
				continue
			}
			metricsUsed[s.Metric] = true
			for _, m := range s.Matchers {
				if slices.Contains(targetLabels, m.Name) {
					continue
				}
				values, ok := labels[m.Name]
				if !ok {
					t.Errorf("%s: %s has no label %q (it has %v)", q.where, s.Metric, m.Name, keys(labels))
					continue
				}
				if strings.Contains(m.Value, "$") {
					continue // a Grafana variable
				}
				for _, want := range alternatives(m) {
					if !slices.Contains(values, want) {
						t.Errorf("%s: %s{%s} never has the value %q (it has %v)", q.where, s.Metric, m.Name, want, values)
					}
				}
			}
		}
	}
	// Every portsentry metric is on the dashboard somewhere.
	for name := range exported {
		if strings.HasPrefix(name, "portsentry_") && !metricsUsed[name] {
			t.Errorf("%s is exported but on no panel", name)
		}
	}
}

// splitLabels splits `a="x",b="y,z"` at the commas between labels.
func splitLabels(s string) []string {
	var out []string
	in := false
	start := 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\':
			i++
		case s[i] == '"':
			in = !in
		case s[i] == ',' && !in:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

var plainValue = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

// alternatives are the literal values a matcher names: the value of = and
// !=, each plain word of a|b|c for =~ and !~ (a pattern is not checked).
func alternatives(m promql.Matcher) []string {
	if m.Op == "=" || m.Op == "!=" {
		return []string{m.Value}
	}
	var out []string
	for _, a := range strings.Split(m.Value, "|") {
		if plainValue.MatchString(a) {
			out = append(out, a)
		}
	}
	return out
}

func keys(m map[string][]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
