package resolve

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

var addr = netip.MustParseAddr("192.0.2.7")

func answer(names []string, err error) Lookup {
	return func(context.Context, string) ([]string, error) { return names, err }
}

func TestName(t *testing.T) {
	tests := []struct {
		name   string
		lookup Lookup
		want   string
	}{
		{"name, trailing dot stripped", answer([]string{"scanner.example.net."}, nil), "scanner.example.net"},
		{"name without dot", answer([]string{"scanner"}, nil), "scanner"},
		{"first of several names", answer([]string{"a.example.", "b.example."}, nil), "a.example"},
		{"underscore and hyphen", answer([]string{"_x-1.example."}, nil), "_x-1.example"},
		{"lookup error", answer(nil, errors.New("no such host")), "192.0.2.7"},
		{"no names", answer(nil, nil), "192.0.2.7"},
		{"empty name", answer([]string{""}, nil), "192.0.2.7"},
		{"only a dot", answer([]string{"."}, nil), "192.0.2.7"},
		// Reverse DNS is the attacker's: anything that could forge or break
		// a log line or a fail2ban match is refused.
		{"space", answer([]string{"evil host.example."}, nil), "192.0.2.7"},
		{"slash", answer([]string{"evil/10.0.0.1."}, nil), "192.0.2.7"},
		{"forged history record", answer([]string{"evil/1.2.3.4 Port: 1 TCP Blocked"}, nil), "192.0.2.7"},
		{"newline", answer([]string{"a.example\n1795311636 - x Host: b/10.0.0.1 Port: 1 TCP Blocked."}, nil), "192.0.2.7"},
		{"carriage return", answer([]string{"a\rb."}, nil), "192.0.2.7"},
		{"tab", answer([]string{"a\tb"}, nil), "192.0.2.7"},
		{"nul", answer([]string{"a\x00b"}, nil), "192.0.2.7"},
		{"brackets", answer([]string{"[10.0.0.1]"}, nil), "192.0.2.7"},
		{"shell text", answer([]string{"$(reboot).example."}, nil), "192.0.2.7"},
		{"non-ascii", answer([]string{"exämple.net."}, nil), "192.0.2.7"},
		{"too long", answer([]string{strings.Repeat("a", 254) + "."}, nil), "192.0.2.7"},
		{"longest allowed", answer([]string{strings.Repeat("a", 253) + "."}, nil), strings.Repeat("a", 253)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New(time.Second, 0, tt.lookup)
			if diff := cmp.Diff(tt.want, r.Name(context.Background(), addr)); diff != "" {
				t.Errorf("Name mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNameAsksForTheAddress(t *testing.T) {
	var asked []string
	r := New(time.Second, 0, func(_ context.Context, a string) ([]string, error) {
		asked = append(asked, a)
		return nil, errors.New("nx")
	})
	for _, a := range []string{"2001:db8::1", "10.0.0.1"} {
		if got := r.Name(context.Background(), netip.MustParseAddr(a)); got != a {
			t.Errorf("Name(%s) = %q, want the address", a, got)
		}
	}
	if diff := cmp.Diff([]string{"2001:db8::1", "10.0.0.1"}, asked); diff != "" {
		t.Errorf("lookups (-want +got):\n%s", diff)
	}
}

func TestNameTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const timeout = 2 * time.Second
		var sawDeadline time.Duration
		r := New(timeout, 0, func(ctx context.Context, _ string) ([]string, error) {
			if d, ok := ctx.Deadline(); ok {
				sawDeadline = time.Until(d)
			}
			<-ctx.Done() // a DNS server that never answers
			return nil, ctx.Err()
		})
		start := time.Now()
		if got := r.Name(context.Background(), addr); got != addr.String() {
			t.Errorf("Name = %q, want the address after a timeout", got)
		}
		// In the bubble time moves only when every goroutine waits: the
		// lookup gave up exactly at the timeout.
		if d := time.Since(start); d != timeout {
			t.Errorf("Name returned after %v, want %v", d, timeout)
		}
		if sawDeadline != timeout {
			t.Errorf("lookup context deadline in %v, want %v", sawDeadline, timeout)
		}
		// The failure is cached: the next probe costs no second timeout.
		start = time.Now()
		if got := r.Name(context.Background(), addr); got != addr.String() {
			t.Errorf("second Name = %q", got)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("second Name waited %v, want no wait", d)
		}
	})
}

func TestNameParentCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		r := New(time.Hour, 0, func(ctx context.Context, _ string) ([]string, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		})
		go func() {
			time.Sleep(time.Second)
			cancel() // shutdown
		}()
		start := time.Now()
		if got := r.Name(ctx, addr); got != addr.String() {
			t.Errorf("Name = %q, want the address", got)
		}
		if d := time.Since(start); d != time.Second {
			t.Errorf("Name returned after %v, want at the cancel (1s)", d)
		}
	})
}

func TestCache(t *testing.T) {
	tests := []struct {
		name  string
		names []string
		err   error
		want  string
	}{
		{"success cached", []string{"scanner.example.net."}, nil, "scanner.example.net"},
		{"failure cached", nil, errors.New("SERVFAIL"), "192.0.2.7"},
		{"refused name cached", []string{"bad name"}, nil, "192.0.2.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			r := New(time.Second, 0, func(context.Context, string) ([]string, error) {
				calls.Add(1)
				return tt.names, tt.err
			})
			for i := 0; i < 5; i++ {
				if got := r.Name(context.Background(), addr); got != tt.want {
					t.Fatalf("Name #%d = %q, want %q", i+1, got, tt.want)
				}
			}
			if n := calls.Load(); n != 1 {
				t.Errorf("lookup called %d times, want 1", n)
			}
		})
	}
}

func TestCacheBounded(t *testing.T) {
	const max = 8
	var calls atomic.Int32
	r := New(time.Second, max, func(_ context.Context, a string) ([]string, error) {
		calls.Add(1)
		return []string{"h-" + strings.NewReplacer(".", "-", ":", "-").Replace(a) + ".example."}, nil
	})
	for i := 0; i < 1000; i++ {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		want := fmt.Sprintf("h-10-0-%d-%d.example", byte(i>>8), byte(i))
		if got := r.Name(context.Background(), a); got != want {
			t.Fatalf("Name(%v) = %q, want %q", a, got, want)
		}
		r.mu.Lock()
		n := len(r.cache)
		r.mu.Unlock()
		if n > max {
			t.Fatalf("cache holds %d names after %d lookups, cap %d", n, i+1, max)
		}
	}
	if n := calls.Load(); n != 1000 {
		t.Errorf("lookups = %d, want 1000 distinct", n)
	}
}

func TestCacheConcurrent(t *testing.T) {
	r := New(time.Second, 4, answer([]string{"x.example."}, nil))
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				a := netip.AddrFrom4([4]byte{10, 0, byte(i), byte(j)})
				if got := r.Name(context.Background(), a); got != "x.example" {
					t.Errorf("Name = %q", got)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestNilResolver(t *testing.T) {
	var r *Resolver
	for _, a := range []string{"192.0.2.7", "2001:db8::1"} {
		if got := r.Name(context.Background(), netip.MustParseAddr(a)); got != a {
			t.Errorf("nil Resolver Name(%s) = %q", a, got)
		}
	}
}

func TestValidName(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{"host.example.com", true},
		{"a", true},
		{"xn--exmple-cua.net", true},
		{"under_score-1", true},
		{strings.Repeat("a", 253), true},
		{strings.Repeat("a", 254), false},
		{"", false},
		{"a b", false},
		{"a/b", false},
		{"a\nb", false},
		{"a:b", false},
		{"a%b", false},
		{"a;b", false},
		{"é", false},
	}
	for _, tt := range tests {
		if got := ValidName(tt.s); got != tt.want {
			t.Errorf("ValidName(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
}

// FuzzValidName: a name it accepts is safe in every line format: it holds
// nothing that ends a field or a line.
func FuzzValidName(f *testing.F) {
	for _, s := range []string{"host.example.com", "evil/1.2.3.4 Port: 1 TCP Blocked", "a\nb", "", "[x]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !ValidName(s) {
			return
		}
		if s == "" || len(s) > 253 || strings.ContainsAny(s, " /\t\r\n[]()%:\"'$;`\\") {
			t.Errorf("ValidName(%q) = true", s)
		}
		for _, r := range s {
			if r > 0x7e || r < 0x21 {
				t.Errorf("ValidName(%q) accepts %U", s, r)
			}
		}
	})
}
