// Package detect picks the blocker a host can use.
//
// The daemon lists the mechanisms it prefers, best first (nftables, which
// can ban inside the packet path; then iptables for hosts without it; then
// blackhole routes, which need nothing but the kernel's routing table), and
// Choose opens the first one that works. A mechanism that is merely missing
// (its open function fails with block.ErrUnavailable) is skipped; any other
// failure stops the search, because falling back quietly from a broken
// nftables setup to weaker route blocking would hide a fault the operator
// must see.
package detect

import (
	"errors"
	"fmt"
	"strings"

	"github.com/portsentry-go/portsentry/internal/enforce/block"
)

// Kind names a blocking mechanism, as the configuration spells it.
type Kind string

// The mechanisms this program has blockers for.
const (
	NFTables Kind = "nftables"
	IPTables Kind = "iptables"
	Route    Kind = "route"
)

// DefaultOrder is the order to try when the configuration names none: the
// strongest mechanism first.
var DefaultOrder = []Kind{NFTables, IPTables, Route}

// ErrUnknownKind is wrapped when order names a kind that open has no
// function for: a configuration or wiring mistake, not a host property, so
// Choose stops there instead of skipping it.
var ErrUnknownKind = errors.New("detect: unknown blocker kind")

// Reason records why one kind could not be used.
type Reason struct {
	Kind Kind
	Err  error
}

// UnavailableError is returned by Choose when every kind it tried was
// unavailable. It wraps each reason's error, so errors.Is(err,
// block.ErrUnavailable) holds.
type UnavailableError struct {
	Reasons []Reason
}

func (e *UnavailableError) Error() string {
	if len(e.Reasons) == 0 {
		return "detect: no blocker kind to try"
	}
	var b strings.Builder
	b.WriteString("detect: no blocker available: ")
	for i, r := range e.Reasons {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: %v", r.Kind, r.Err)
	}
	return b.String()
}

// Unwrap returns every reason's error, and block.ErrUnavailable itself so
// that an empty order also matches it.
func (e *UnavailableError) Unwrap() []error {
	errs := make([]error, 0, len(e.Reasons)+1)
	for _, r := range e.Reasons {
		errs = append(errs, r.Err)
	}
	return append(errs, block.ErrUnavailable)
}

// Choose tries the kinds in order, calling open[kind], and returns the first
// blocker that opens together with its kind.
//
// A kind whose open function fails with an error wrapping
// block.ErrUnavailable is skipped and its reason kept. Any other error ends
// the search and is returned, prefixed with the kinds skipped before it.
// When every kind is unavailable (or order is empty) the error is an
// *UnavailableError listing every reason. A kind missing from open is an
// error wrapping ErrUnknownKind.
func Choose(order []Kind, open map[Kind]func() (block.Blocker, error)) (block.Blocker, Kind, error) {
	var skipped []Reason
	for _, k := range order {
		f := open[k]
		if f == nil {
			return nil, "", withSkipped(fmt.Errorf("%w %q", ErrUnknownKind, k), skipped)
		}
		b, err := f()
		switch {
		case err == nil && b == nil:
			// An open function must return a blocker or an error; taking
			// nil as success would crash the daemon at its first ban.
			return nil, "", withSkipped(fmt.Errorf("detect: %s: opened no blocker and no error", k), skipped)
		case err == nil:
			return b, k, nil
		case errors.Is(err, block.ErrUnavailable):
			skipped = append(skipped, Reason{Kind: k, Err: err})
		default:
			return nil, "", withSkipped(fmt.Errorf("detect: %s: %w", k, err), skipped)
		}
	}
	return nil, "", &UnavailableError{Reasons: skipped}
}

// withSkipped adds the reasons of the kinds skipped before err, so that an
// operator reading one line learns why the earlier ones were not used.
func withSkipped(err error, skipped []Reason) error {
	if len(skipped) == 0 {
		return err
	}
	u := &UnavailableError{Reasons: skipped}
	return fmt.Errorf("%w (after skipping: %s)", err, strings.TrimPrefix(u.Error(), "detect: no blocker available: "))
}
