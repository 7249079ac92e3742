package config

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestEveryKeyDocumented: every key the parser accepts has exactly one
// entry in keyDocs, and every entry names a key the parser accepts, so
// that portsentry.conf(5) and docs/configuration.md, generated from it,
// cover the parser exactly.
func TestEveryKeyDocumented(t *testing.T) {
	seen := map[string]int{}
	for _, g := range keyDocs {
		for _, d := range g.Docs {
			if len(d.Keys) == 0 || d.Values == "" || d.Meaning == "" {
				t.Errorf("%s: an entry of keyDocs without keys, values or meaning: %+v", g.Title, d)
			}
			for _, k := range d.Keys {
				seen[k]++
				if _, ok := keys[k]; !ok {
					t.Errorf("keyDocs documents %s, which is no key of the parser (internal/config/keys.go): remove or rename its entry", k)
				}
			}
		}
	}
	for _, k := range Keys() {
		switch seen[k] {
		case 0:
			t.Errorf("key %s has no documentation: add an entry for it to keyDocs in internal/config/keydoc.go, then run `go generate ./internal/config` to write portsentry.conf(5) and docs/configuration.md", k)
		case 1:
		default:
			t.Errorf("key %s is documented %d times in keyDocs", k, seen[k])
		}
	}
}

var (
	docRange = regexp.MustCompile(`^(\d+)–(\d+)( \(seconds\))?$`)
	docEnum  = regexp.MustCompile("^`[^`]+`(, `[^`]+`)*$")
)

// TestKeyDocValues: what the documentation says a key takes is what the
// parser takes: both ends of a range and not one past them, every value
// of a list and nothing else.
func TestKeyDocValues(t *testing.T) {
	parse := func(k, v string) error {
		_, err := Parse(strings.NewReader(fmt.Sprintf("%s=%q\n", k, v)), "doc.conf")
		return err
	}
	for _, g := range keyDocs {
		for _, d := range g.Docs {
			for _, k := range d.Keys {
				if m := docRange.FindStringSubmatch(d.Values); m != nil {
					lo, _ := strconv.Atoi(m[1])
					hi, _ := strconv.Atoi(m[2])
					for _, v := range []int{lo, hi} {
						if err := parse(k, strconv.Itoa(v)); err != nil {
							t.Errorf("%s: documented as %s, but %d is refused: %v", k, d.Values, v, err)
						}
					}
					if err := parse(k, strconv.Itoa(hi+1)); err == nil {
						t.Errorf("%s: documented as %s, but %d is accepted", k, d.Values, hi+1)
					}
					if lo > 0 {
						if err := parse(k, strconv.Itoa(lo-1)); err == nil {
							t.Errorf("%s: documented as %s, but %d is accepted", k, d.Values, lo-1)
						}
					}
				} else if docEnum.MatchString(d.Values) {
					var listed []string
					for _, v := range strings.Split(d.Values, ", ") {
						listed = append(listed, strings.Trim(v, "`"))
					}
					for _, v := range listed {
						if err := parse(k, v); err != nil {
							t.Errorf("%s: documented as taking %s, but %q is refused: %v", k, d.Values, v, err)
						}
					}
					for _, v := range []string{"3", "x", "tcpx"} {
						if !slices.Contains(listed, v) && parse(k, v) == nil {
							t.Errorf("%s: documented as taking only %s, but %q is accepted", k, d.Values, v)
						}
					}
				}
				// The default the documents show is the parser's, and valid.
				def, _ := KeyDefault(k)
				if def != "" {
					if err := parse(k, def); err != nil {
						t.Errorf("%s: its default %q is refused: %v", k, def, err)
					}
				}
			}
		}
	}
}
