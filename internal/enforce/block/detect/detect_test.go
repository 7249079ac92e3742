package detect

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portsentry-go/portsentry/internal/enforce/block"
)

// fakeBlocker is a blocker that remembers its name, so a test can tell
// which open function's result Choose returned.
type fakeBlocker struct{ name string }

func (fakeBlocker) Add(netip.Addr, time.Duration) {}
func (fakeBlocker) Delete(netip.Addr)             {}
func (fakeBlocker) Commit() error                 { return nil }
func (fakeBlocker) List() ([]block.Entry, error)  { return nil, nil }
func (fakeBlocker) Close() error                  { return nil }

var errBroken = errors.New("setup failed")

// opener is what one kind's open function does in a test case.
type opener int

const (
	opens       opener = iota // returns a blocker
	unavailable               // fails wrapping block.ErrUnavailable
	broken                    // fails with another error
	nilNil                    // returns nil, nil
)

func TestChoose(t *testing.T) {
	for _, tc := range []struct {
		name      string
		order     []Kind
		open      map[Kind]opener
		wantKind  Kind
		wantCalls []Kind
		wantErr   []error  // errors.Is targets
		wantText  []string // substrings of the error
	}{{
		name:      "first opens",
		order:     DefaultOrder,
		open:      map[Kind]opener{NFTables: opens, IPTables: opens, Route: opens},
		wantKind:  NFTables,
		wantCalls: []Kind{NFTables},
	}, {
		name:      "skips unavailable",
		order:     DefaultOrder,
		open:      map[Kind]opener{NFTables: unavailable, IPTables: unavailable, Route: opens},
		wantKind:  Route,
		wantCalls: []Kind{NFTables, IPTables, Route},
	}, {
		name:      "order is the caller's",
		order:     []Kind{Route, NFTables},
		open:      map[Kind]opener{NFTables: opens, Route: opens},
		wantKind:  Route,
		wantCalls: []Kind{Route},
	}, {
		name:      "none available lists every reason",
		order:     DefaultOrder,
		open:      map[Kind]opener{NFTables: unavailable, IPTables: unavailable, Route: unavailable},
		wantCalls: []Kind{NFTables, IPTables, Route},
		wantErr:   []error{block.ErrUnavailable},
		wantText:  []string{"nftables: nftables missing", "iptables: iptables missing", "route: route missing"},
	}, {
		name:      "other error stops the search",
		order:     DefaultOrder,
		open:      map[Kind]opener{NFTables: unavailable, IPTables: broken, Route: opens},
		wantCalls: []Kind{NFTables, IPTables},
		wantErr:   []error{errBroken},
		wantText:  []string{"detect: iptables: setup failed", "nftables: nftables missing"},
	}, {
		name:     "unknown kind",
		order:    []Kind{"ipfw", Route},
		open:     map[Kind]opener{Route: opens},
		wantErr:  []error{ErrUnknownKind},
		wantText: []string{`"ipfw"`},
	}, {
		name:      "nil blocker without error",
		order:     []Kind{IPTables},
		open:      map[Kind]opener{IPTables: nilNil},
		wantCalls: []Kind{IPTables},
		wantText:  []string{"opened no blocker"},
	}, {
		name:     "empty order",
		order:    nil,
		open:     map[Kind]opener{Route: opens},
		wantErr:  []error{block.ErrUnavailable},
		wantText: []string{"no blocker kind to try"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var calls []Kind
			open := map[Kind]func() (block.Blocker, error){}
			for k, o := range tc.open {
				open[k] = func() (block.Blocker, error) {
					calls = append(calls, k)
					switch o {
					case opens:
						return fakeBlocker{string(k)}, nil
					case unavailable:
						return nil, fmt.Errorf("%s missing: %w", k, block.ErrUnavailable)
					case broken:
						return nil, errBroken
					}
					return nil, nil
				}
			}
			b, kind, err := Choose(tc.order, open)
			if diff := cmp.Diff(tc.wantCalls, calls); diff != "" {
				t.Errorf("open functions called (-want +got):\n%s", diff)
			}
			wantFail := tc.wantErr != nil || tc.wantText != nil
			if !wantFail {
				if err != nil {
					t.Fatalf("Choose: %v", err)
				}
				if kind != tc.wantKind || b != (fakeBlocker{string(tc.wantKind)}) {
					t.Errorf("Choose = %v, %q; want the %q blocker", b, kind, tc.wantKind)
				}
				return
			}
			if err == nil {
				t.Fatalf("Choose = %v, %q, nil; want an error", b, kind)
			}
			if b != nil || kind != "" {
				t.Errorf("Choose returned %v, %q with its error", b, kind)
			}
			for _, target := range tc.wantErr {
				if !errors.Is(err, target) {
					t.Errorf("error %q does not wrap %q", err, target)
				}
			}
			for _, s := range tc.wantText {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
}

// TestUnavailableErrorReasons checks that a caller can read the reasons
// as values, not only as text.
func TestUnavailableErrorReasons(t *testing.T) {
	open := map[Kind]func() (block.Blocker, error){
		IPTables: func() (block.Blocker, error) { return nil, fmt.Errorf("no binary: %w", block.ErrUnavailable) },
		Route:    func() (block.Blocker, error) { return nil, fmt.Errorf("no CAP_NET_ADMIN: %w", block.ErrUnavailable) },
	}
	_, _, err := Choose([]Kind{IPTables, Route}, open)
	var u *UnavailableError
	if !errors.As(err, &u) {
		t.Fatalf("error %v is not an *UnavailableError", err)
	}
	var kinds []Kind
	for _, r := range u.Reasons {
		kinds = append(kinds, r.Kind)
	}
	if diff := cmp.Diff([]Kind{IPTables, Route}, kinds); diff != "" {
		t.Errorf("reasons (-want +got):\n%s", diff)
	}
	const want = "detect: no blocker available: iptables: no binary: block: mechanism unavailable; route: no CAP_NET_ADMIN: block: mechanism unavailable"
	if err.Error() != want {
		t.Errorf("error text\n got %q\nwant %q", err, want)
	}
}
