package resolve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

var addr = netip.MustParseAddr("192.0.2.7")

// fakeDNS is a name service from tables, recording what it is asked.
type fakeDNS struct {
	ptr    []string            // the names of every address
	ptrErr error               // the reverse lookup's error
	fwd    map[string][]string // name (no final dot) → addresses
	fwdErr error               // every forward lookup's error
	// hangPTR and hangFwd make a lookup wait for its context to end: a
	// DNS server that never answers.
	hangPTR, hangFwd bool

	mu    sync.Mutex
	asked []string // "PTR 192.0.2.7", "ip name"
}

func (f *fakeDNS) ask(q string) {
	f.mu.Lock()
	f.asked = append(f.asked, q)
	f.mu.Unlock()
}

func (f *fakeDNS) questions() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.asked...)
}

func (f *fakeDNS) LookupAddr(ctx context.Context, a string) ([]string, error) {
	f.ask("PTR " + a)
	if f.hangPTR {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return f.ptr, f.ptrErr
}

func (f *fakeDNS) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	f.ask(network + " " + host)
	if f.hangFwd {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if f.fwdErr != nil {
		return nil, f.fwdErr
	}
	addrs, ok := f.fwd[host]
	if !ok {
		return nil, errors.New("no such host")
	}
	var out []netip.Addr
	for _, a := range addrs {
		out = append(out, netip.MustParseAddr(a))
	}
	return out, nil
}

// answer is a name service whose reverse lookup gives names (or err), every
// one of them confirmed: its forward lookup gives addr back.
func answer(names []string, err error) *fakeDNS {
	f := &fakeDNS{ptr: names, ptrErr: err, fwd: make(map[string][]string)}
	for _, n := range names {
		f.fwd[strings.TrimSuffix(n, ".")] = []string{addr.String()}
	}
	return f
}

func TestName(t *testing.T) {
	tests := []struct {
		name string
		dns  *fakeDNS
		want string
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
		// a log line or a fail2ban match is refused, even confirmed.
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
		// A name that reads as an address would pass for another host.
		{"IPv4 literal", answer([]string{"10.0.0.1."}, nil), "192.0.2.7"},
		{"the address itself", answer([]string{"192.0.2.7."}, nil), "192.0.2.7"},
		{"short IPv4 form", answer([]string{"10.1."}, nil), "192.0.2.7"},
		{"numeric name", answer([]string{"167772161"}, nil), "192.0.2.7"},
		{"hexadecimal name", answer([]string{"0x0a000001"}, nil), "192.0.2.7"},
		{"numeric top-level label", answer([]string{"host.10"}, nil), "192.0.2.7"},
		{"hexadecimal top-level label", answer([]string{"host.0xff."}, nil), "192.0.2.7"},
		{"digits inside are fine", answer([]string{"10-0-0-1.example."}, nil), "10-0-0-1.example"},
		{"0x alone is a label", answer([]string{"host.0x."}, nil), "host.0x"},
		{"hex-like top-level domain", answer([]string{"host.cafe."}, nil), "host.cafe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New(time.Second, 0, tt.dns)
			if diff := cmp.Diff(tt.want, r.Name(context.Background(), addr)); diff != "" {
				t.Errorf("Name mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestForwardConfirm: a reverse name is shown only if its own addresses
// include the source; each case runs in a synctest bubble, so the timeouts
// are exact.
func TestForwardConfirm(t *testing.T) {
	const timeout = 2 * time.Second
	v6 := netip.MustParseAddr("2001:db8::7")
	nx := errors.New("no such host")
	tests := []struct {
		name    string
		src     netip.Addr
		dns     *fakeDNS
		want    string
		took    time.Duration // how long Name takes, in the bubble
		wantAsk []string
	}{
		{
			name:    "confirmed",
			src:     addr,
			dns:     &fakeDNS{ptr: []string{"scanner.example.net."}, fwd: map[string][]string{"scanner.example.net": {"198.51.100.1", "192.0.2.7"}}},
			want:    "scanner.example.net",
			wantAsk: []string{"PTR 192.0.2.7", "ip scanner.example.net"},
		},
		{
			name:    "confirmed over IPv6",
			src:     v6,
			dns:     &fakeDNS{ptr: []string{"v6.example.net."}, fwd: map[string][]string{"v6.example.net": {"192.0.2.7", "2001:db8::7"}}},
			want:    "v6.example.net",
			wantAsk: []string{"PTR 2001:db8::7", "ip v6.example.net"},
		},
		{
			name:    "confirmed by an IPv4-mapped answer",
			src:     addr,
			dns:     &fakeDNS{ptr: []string{"m.example."}, fwd: map[string][]string{"m.example": {"::ffff:192.0.2.7"}}},
			want:    "m.example",
			wantAsk: []string{"PTR 192.0.2.7", "ip m.example"},
		},
		{
			// The attacker's PTR names someone else's host.
			name:    "unconfirmed",
			src:     addr,
			dns:     &fakeDNS{ptr: []string{"admin-laptop.example.com."}, fwd: map[string][]string{"admin-laptop.example.com": {"198.51.100.9"}}},
			want:    "192.0.2.7",
			wantAsk: []string{"PTR 192.0.2.7", "ip admin-laptop.example.com"},
		},
		{
			name:    "name with no addresses",
			src:     addr,
			dns:     &fakeDNS{ptr: []string{"empty.example."}, fwd: map[string][]string{"empty.example": nil}},
			want:    "192.0.2.7",
			wantAsk: []string{"PTR 192.0.2.7", "ip empty.example"},
		},
		{
			name: "second name confirmed",
			src:  addr,
			dns: &fakeDNS{ptr: []string{"forged.example.", "real.example."}, fwd: map[string][]string{
				"forged.example": {"198.51.100.9"}, "real.example": {"192.0.2.7"},
			}},
			want:    "real.example",
			wantAsk: []string{"PTR 192.0.2.7", "ip forged.example", "ip real.example"},
		},
		{
			name: "at most four names tried",
			src:  addr,
			dns: &fakeDNS{ptr: []string{"a.", "b.", "c.", "d.", "e."}, fwd: map[string][]string{
				"e": {"192.0.2.7"},
			}},
			want:    "192.0.2.7",
			wantAsk: []string{"PTR 192.0.2.7", "ip a", "ip b", "ip c", "ip d"},
		},
		{
			// Even a name service that "confirms" it: an IP literal is
			// never looked up, never a name.
			name:    "name that is an IP literal",
			src:     addr,
			dns:     &fakeDNS{ptr: []string{"10.0.0.1."}, fwd: map[string][]string{"10.0.0.1": {"192.0.2.7"}}},
			want:    "192.0.2.7",
			wantAsk: []string{"PTR 192.0.2.7"},
		},
		{
			name:    "IPv6 literal",
			src:     v6,
			dns:     &fakeDNS{ptr: []string{"2001:db8::1"}, fwd: map[string][]string{"2001:db8::1": {"2001:db8::7"}}},
			want:    "2001:db8::7",
			wantAsk: []string{"PTR 2001:db8::7"},
		},
		{
			name:    "reverse lookup error",
			src:     addr,
			dns:     &fakeDNS{ptrErr: nx},
			want:    "192.0.2.7",
			wantAsk: []string{"PTR 192.0.2.7"},
		},
		{
			name:    "forward lookup error",
			src:     addr,
			dns:     &fakeDNS{ptr: []string{"scanner.example.net."}, fwdErr: errors.New("SERVFAIL")},
			want:    "192.0.2.7",
			wantAsk: []string{"PTR 192.0.2.7", "ip scanner.example.net"},
		},
		{
			name:    "reverse lookup timeout",
			src:     addr,
			dns:     &fakeDNS{hangPTR: true},
			want:    "192.0.2.7",
			took:    timeout,
			wantAsk: []string{"PTR 192.0.2.7"},
		},
		{
			// One timeout for the reverse and forward lookups together;
			// after it no other name is tried.
			name:    "forward lookup timeout",
			src:     addr,
			dns:     &fakeDNS{ptr: []string{"slow.example.", "other.example."}, hangFwd: true},
			want:    "192.0.2.7",
			took:    timeout,
			wantAsk: []string{"PTR 192.0.2.7", "ip slow.example"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := New(timeout, 0, tt.dns)
				start := time.Now()
				if got := r.Name(context.Background(), tt.src); got != tt.want {
					t.Errorf("Name(%v) = %q, want %q", tt.src, got, tt.want)
				}
				if d := time.Since(start); d != tt.took {
					t.Errorf("Name took %v, want %v", d, tt.took)
				}
				if diff := cmp.Diff(tt.wantAsk, tt.dns.questions()); diff != "" {
					t.Errorf("questions (-want +got):\n%s", diff)
				}
				// Cached, confirmed or not: no second question.
				if got := r.Name(context.Background(), tt.src); got != tt.want {
					t.Errorf("second Name(%v) = %q, want %q", tt.src, got, tt.want)
				}
				if n := len(tt.dns.questions()); n != len(tt.wantAsk) {
					t.Errorf("%d questions after a second Name, want %d (cached)", n, len(tt.wantAsk))
				}
			})
		})
	}
}

func TestNameAsksForTheAddress(t *testing.T) {
	dns := &fakeDNS{ptrErr: errors.New("nx")}
	r := New(time.Second, 0, dns)
	for _, a := range []string{"2001:db8::1", "10.0.0.1"} {
		if got := r.Name(context.Background(), netip.MustParseAddr(a)); got != a {
			t.Errorf("Name(%s) = %q, want the address", a, got)
		}
	}
	if diff := cmp.Diff([]string{"PTR 2001:db8::1", "PTR 10.0.0.1"}, dns.questions()); diff != "" {
		t.Errorf("lookups (-want +got):\n%s", diff)
	}
}

// ctxDNS is a name service that never answers, and reports the deadline of
// the context it was asked with.
type ctxDNS struct{ deadline chan time.Duration }

func (d ctxDNS) LookupAddr(ctx context.Context, _ string) ([]string, error) {
	if dl, ok := ctx.Deadline(); ok {
		d.deadline <- time.Until(dl)
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func (d ctxDNS) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return nil, errors.New("not asked")
}

func TestNameTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const timeout = 2 * time.Second
		dns := ctxDNS{deadline: make(chan time.Duration, 1)}
		r := New(timeout, 0, dns)
		start := time.Now()
		if got := r.Name(context.Background(), addr); got != addr.String() {
			t.Errorf("Name = %q, want the address after a timeout", got)
		}
		// In the bubble time moves only when every goroutine waits: the
		// lookup gave up exactly at the timeout.
		if d := time.Since(start); d != timeout {
			t.Errorf("Name returned after %v, want %v", d, timeout)
		}
		select {
		case d := <-dns.deadline:
			if d != timeout {
				t.Errorf("lookup context deadline in %v, want %v", d, timeout)
			}
		default:
			t.Error("lookup context has no deadline")
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
		r := New(time.Hour, 0, &fakeDNS{hangPTR: true})
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
		name string
		dns  *fakeDNS
		want string
	}{
		{"success cached", answer([]string{"scanner.example.net."}, nil), "scanner.example.net"},
		{"failure cached", answer(nil, errors.New("SERVFAIL")), "192.0.2.7"},
		{"refused name cached", answer([]string{"bad name"}, nil), "192.0.2.7"},
		{"unconfirmed name cached", &fakeDNS{ptr: []string{"other.example."}, fwd: map[string][]string{"other.example": {"192.0.2.8"}}}, "192.0.2.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New(time.Second, 0, tt.dns)
			for i := 0; i < 5; i++ {
				if got := r.Name(context.Background(), addr); got != tt.want {
					t.Fatalf("Name #%d = %q, want %q", i+1, got, tt.want)
				}
			}
			if q := tt.dns.questions(); len(q) == 0 || q[0] != "PTR 192.0.2.7" || slices.Contains(q[1:], "PTR 192.0.2.7") {
				t.Errorf("questions %q, want one reverse lookup", q)
			}
		})
	}
}

// hostDNS gives every IPv4 address a confirmed name of its own:
// 10.0.1.2 is h-10-0-1-2.example, and the other way round.
type hostDNS struct{ reverse, forward atomic.Int32 }

func (d *hostDNS) LookupAddr(_ context.Context, a string) ([]string, error) {
	d.reverse.Add(1)
	return []string{"h-" + strings.ReplaceAll(a, ".", "-") + ".example."}, nil
}

func (d *hostDNS) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	d.forward.Add(1)
	a, err := netip.ParseAddr(strings.ReplaceAll(strings.TrimSuffix(strings.TrimPrefix(host, "h-"), ".example"), "-", "."))
	if network != "ip" || err != nil {
		return nil, errors.New("no such host")
	}
	return []netip.Addr{a}, nil
}

func TestCacheBounded(t *testing.T) {
	const max = 8
	dns := new(hostDNS)
	r := New(time.Second, max, dns)
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
	if n, m := dns.reverse.Load(), dns.forward.Load(); n != 1000 || m != 1000 {
		t.Errorf("lookups = %d reverse, %d forward; want 1000 distinct of each", n, m)
	}
}

func TestCacheConcurrent(t *testing.T) {
	r := New(time.Second, 4, new(hostDNS))
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				a := netip.AddrFrom4([4]byte{10, 0, byte(i), byte(j)})
				if got, want := r.Name(context.Background(), a), fmt.Sprintf("h-10-0-%d-%d.example", i, j); got != want {
					t.Errorf("Name = %q, want %q", got, want)
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

// TestCached: Cached answers from the cache only, never asking the name
// service; a nil Resolver names everything by its address.
func TestCached(t *testing.T) {
	f := answer([]string{"scanner.example.net."}, nil)
	r := New(time.Second, 0, f)
	if name, ok := r.Cached(addr); ok {
		t.Errorf("Cached before any lookup = %q, true", name)
	}
	if len(f.questions()) != 0 {
		t.Errorf("Cached asked the name service: %v", f.questions())
	}
	r.Name(context.Background(), addr)
	if name, ok := r.Cached(addr); !ok || name != "scanner.example.net" {
		t.Errorf("Cached after a lookup = %q, %v", name, ok)
	}
	var none *Resolver
	if name, ok := none.Cached(addr); !ok || name != addr.String() {
		t.Errorf("nil Resolver: Cached = %q, %v", name, ok)
	}
}

// TestPool: at most workers lookups run and queue wait; Submit refuses the
// next at once; every accepted lookup gives one Result within the timeout,
// after which the pool takes lookups again; Run returns with its context.
func TestPool(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const timeout = time.Minute
		f := answer(nil, nil)
		f.hangPTR = true
		r := New(timeout, 0, f)
		p := NewPool(2, 3)
		ctx, cancel := context.WithCancel(t.Context())
		ran := make(chan struct{})
		go func() { defer close(ran); p.Run(ctx) }()
		a := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}) }
		var accepted []string
		for i := range 10 {
			if p.Submit(r, a(i)) {
				accepted = append(accepted, a(i).String())
			}
			synctest.Wait() // a worker takes the job before the next
		}
		if len(accepted) != 5 {
			t.Fatalf("accepted %v: want 2 running and 3 waiting", accepted)
		}
		if n := len(f.questions()); n != 2 {
			t.Errorf("%d lookups running, want 2", n)
		}
		var got []string
		for range accepted {
			select {
			case res := <-p.Results():
				if res.Name != res.Addr.String() {
					t.Errorf("%v named %q after a timeout", res.Addr, res.Name)
				}
				got = append(got, res.Addr.String())
			case <-time.After(3 * timeout):
				t.Fatalf("results %v, want one for each of %v", got, accepted)
			}
		}
		slices.Sort(got)
		slices.Sort(accepted)
		if diff := cmp.Diff(accepted, got); diff != "" {
			t.Errorf("results (-want +got):\n%s", diff)
		}
		if !p.Submit(r, a(100)) {
			t.Error("Submit refused with the pool idle")
		}
		cancel()
		<-ran
	})
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

// TestDefaultResolver: with no DNS given, names come from the system's
// resolver, /etc/hosts included, and are confirmed there (here: 127.0.0.1,
// which /etc/hosts names on every usual system; skipped where it has no
// name).
func TestDefaultResolver(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	names, err := net.DefaultResolver.LookupAddr(ctx, lo.String())
	if err != nil || len(names) == 0 {
		t.Skipf("127.0.0.1 has no name here (%v)", err)
	}
	got := New(2*time.Second, 0, nil).Name(context.Background(), lo)
	var valid []string
	for _, n := range names {
		valid = append(valid, strings.TrimSuffix(n, "."))
	}
	if !slices.Contains(valid, got) {
		t.Errorf("Name(%v) = %q, want one of %q", lo, got, valid)
	}
}
