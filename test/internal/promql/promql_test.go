package promql

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSelectors(t *testing.T) {
	tests := []struct {
		expr string
		want []Selector
		err  string
	}{
		{`portsentry_bans_active`, []Selector{{Metric: "portsentry_bans_active"}}, ""},
		{`sum by (action) (rate(portsentry_events_total{instance=~"$instance", action!~"ignored|service"}[$__rate_interval]))`,
			[]Selector{{Metric: "portsentry_events_total", Matchers: []Matcher{{"instance", "=~", "$instance"}, {"action", "!~", "ignored|service"}}}}, ""},
		{`sum(rate(a_total[5m])) by (kind) / ignoring (x) group_left (y) sum(b{c="d"}) > bool 0.5e-3`,
			[]Selector{{Metric: "a_total"}, {Metric: "b", Matchers: []Matcher{{"c", "=", "d"}}}}, ""},
		{`topk(5, x:recorded:rate5m offset 1h) or on(instance) vector(0)`, []Selector{{Metric: "x:recorded:rate5m"}}, ""},
		{`label_values(portsentry_build_info{job="ps"}, instance)`, []Selector{{Metric: "portsentry_build_info", Matchers: []Matcher{{"job", "=", "ps"}}}}, ""},
		{`max_over_time(m{a='x\'y', b="\\d+"}[1h:5m])`, []Selector{{Metric: "m", Matchers: []Matcher{{"a", "=", "x'y"}, {"b", "=", `\d+`}}}}, ""},
		{`histogram_quantile(0.99, sum by (le) (rate(h_bucket[${__interval}])))`, []Selector{{Metric: "h_bucket"}}, ""},
		{`{__name__="x"}`, nil, "without a metric name"},
		{`m{a="b"`, nil, "unclosed {"},
		{`m{a~"b"}`, nil, "want ="},
		{`m{a="b}`, nil, "unclosed string"},
		{`rate(m[5m)`, nil, "unclosed ["},
		{`m # comment`, nil, "unexpected"},
	}
	for _, tt := range tests {
		got, err := Selectors(tt.expr)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Selectors(%q): error %v, want %q", tt.expr, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Selectors(%q): %v", tt.expr, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("Selectors(%q) (-want +got):\n%s", tt.expr, diff)
		}
	}
}

// FuzzSelectors: no expression panics or loops, and every selector found
// has a name.
func FuzzSelectors(f *testing.F) {
	for _, s := range []string{
		`sum by (action) (rate(portsentry_events_total{action!~"ignored|service"}[5m]))`,
		`label_values(a, b)`, `m{a="\"}`, `${x`, `$`, `1e+`, `by(`, `label_values(`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		sels, err := Selectors(expr)
		if err != nil {
			return
		}
		for _, s := range sels {
			if s.Metric == "" {
				t.Errorf("Selectors(%q): a selector without a name", expr)
			}
		}
	})
}
