// Package promql finds the series selectors of a PromQL expression (as a
// Grafana dashboard writes them), so that a test can check every metric
// and label a dashboard asks for against what the daemon really exports.
// It reads the subset of PromQL that dashboards use: selectors with label
// matchers, range brackets, functions, aggregations with by/without,
// binary operators and numbers; Grafana's $variables and label_values().
// It is not a PromQL parser: it never evaluates, and it rejects what it
// does not read rather than guess.
package promql

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// Matcher is one label matcher of a selector: name, op (=, !=, =~, !~)
// and the value as written, unquoted.
type Matcher struct {
	Name, Op, Value string
}

// Selector is one series selector: a metric name and its matchers.
type Selector struct {
	Metric   string
	Matchers []Matcher
}

// keywords are the words that are not metric names where a name could
// stand.
var keywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"bool": true, "and": true, "or": true, "unless": true, "offset": true, "inf": true, "nan": true,
}

// aggregations may stand before their by/without clause: `sum by (a) (x)`.
var aggregations = map[string]bool{
	"sum": true, "avg": true, "min": true, "max": true, "count": true, "group": true, "stddev": true, "stdvar": true,
	"topk": true, "bottomk": true, "quantile": true, "count_values": true, "limitk": true, "limit_ratio": true,
}

// Selectors returns the selectors of expr, in order. label_values(m, l)
// (a Grafana variable query) gives the selector m.
func Selectors(expr string) ([]Selector, error) {
	var out []Selector
	s := expr
	i := 0
	for i < len(s) {
		c := rune(s[i])
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '[':
			// A range or subquery: [5m], [$__rate_interval], [1h:5m].
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				return nil, fmt.Errorf("unclosed [ at %d", i)
			}
			i += j + 1
		case c == '"' || c == '\'' || c == '`':
			_, n, err := quoted(s[i:])
			if err != nil {
				return nil, err
			}
			i += n
		case c == '{':
			// A selector without a name: not used by dashboards here.
			return nil, fmt.Errorf("selector without a metric name at %d", i)
		case c == '$':
			// A Grafana variable ($var, ${var}): a value, not a name.
			j := i + 1
			if j < len(s) && s[j] == '{' {
				k := strings.IndexByte(s[j:], '}')
				if k < 0 {
					return nil, fmt.Errorf("unclosed ${ at %d", i)
				}
				i = j + k + 1
				continue
			}
			for j < len(s) && isWord(rune(s[j])) {
				j++
			}
			i = j
		case isWordStart(c):
			j := i
			for j < len(s) && (isWord(rune(s[j])) || s[j] == ':') {
				j++
			}
			word := s[i:j]
			k := skipSpace(s, j)
			switch {
			case keywords[strings.ToLower(word)]:
				i = j
				if lw := strings.ToLower(word); lw != "offset" && lw != "bool" && lw != "and" && lw != "or" && lw != "unless" && k < len(s) && s[k] == '(' {
					// by (a, b), on (a), group_left (a): label names.
					e := strings.IndexByte(s[k:], ')')
					if e < 0 {
						return nil, fmt.Errorf("unclosed ( after %s", word)
					}
					i = k + e + 1
				}
			case word == "label_values" && k < len(s) && s[k] == '(':
				e := strings.IndexByte(s[k:], ')')
				if e < 0 {
					return nil, errors.New("unclosed label_values(")
				}
				args := strings.Split(s[k+1:k+e], ",")
				inner, err := Selectors(strings.Join(args[:max(1, len(args)-1)], ","))
				if err != nil {
					return nil, err
				}
				out = append(out, inner...)
				i = k + e + 1
			case aggregations[word] || (k < len(s) && s[k] == '('):
				i = j // a function or an aggregation: its arguments follow
			default:
				sel := Selector{Metric: word}
				i = j
				if k < len(s) && s[k] == '{' {
					ms, n, err := matchers(s[k:])
					if err != nil {
						return nil, fmt.Errorf("%s: %w", word, err)
					}
					sel.Matchers = ms
					i = k + n
				}
				out = append(out, sel)
			}
		case unicode.IsDigit(c) || c == '.':
			j := i
			for j < len(s) && (isWord(rune(s[j])) || s[j] == '.' || ((s[j] == '+' || s[j] == '-') && (s[j-1] == 'e' || s[j-1] == 'E'))) {
				j++
			}
			i = j
		case strings.ContainsRune("()+-*/%^,=!<>", c):
			i++
		default:
			return nil, fmt.Errorf("unexpected %q at %d", c, i)
		}
	}
	return out, nil
}

// matchers reads {name op "value", ...} at the start of s and returns
// them and the bytes read.
func matchers(s string) ([]Matcher, int, error) {
	var out []Matcher
	i := 1
	for {
		i = skipSpace(s, i)
		if i >= len(s) {
			return nil, 0, errors.New("unclosed {")
		}
		if s[i] == '}' {
			return out, i + 1, nil
		}
		j := i
		for j < len(s) && isWord(rune(s[j])) {
			j++
		}
		if j == i {
			return nil, 0, fmt.Errorf("want a label name at %q", s[i:])
		}
		m := Matcher{Name: s[i:j]}
		j = skipSpace(s, j)
		for _, op := range []string{"=~", "!~", "!=", "="} {
			if strings.HasPrefix(s[j:], op) {
				m.Op = op
				break
			}
		}
		if m.Op == "" {
			return nil, 0, fmt.Errorf("label %s: want =, !=, =~ or !~", m.Name)
		}
		j = skipSpace(s, j+len(m.Op))
		v, n, err := quoted(s[j:])
		if err != nil {
			return nil, 0, fmt.Errorf("label %s: %w", m.Name, err)
		}
		m.Value = v
		out = append(out, m)
		i = skipSpace(s, j+n)
		if i < len(s) && s[i] == ',' {
			i++
		}
	}
}

// quoted reads a quoted string at the start of s: its value and the bytes
// read. Escapes are kept as written, but for \" and \\.
func quoted(s string) (string, int, error) {
	if s == "" || (s[0] != '"' && s[0] != '\'' && s[0] != '`') {
		return "", 0, errors.New("want a quoted value")
	}
	q := s[0]
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch {
		case s[i] == q:
			return b.String(), i + 1, nil
		case s[i] == '\\' && q != '`' && i+1 < len(s):
			i++
			if s[i] != q && s[i] != '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(s[i])
		default:
			b.WriteByte(s[i])
		}
	}
	return "", 0, errors.New("unclosed string")
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

func isWordStart(c rune) bool { return c == '_' || c < unicode.MaxASCII && unicode.IsLetter(c) }
func isWord(c rune) bool      { return isWordStart(c) || c < unicode.MaxASCII && unicode.IsDigit(c) }
