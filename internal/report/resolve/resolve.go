// Package resolve turns attacker addresses into host names for the logs
// (RESOLVE_HOST="1"), with a short timeout and a bounded cache. A Pool
// looks names up in the background, a few at a time, so that a slow name
// server never holds up the log: when its queue is full, the address is
// used instead.
//
// Names come from reverse DNS, which the attacker controls: the owner of an
// address writes its PTR record, and could make it say "10.0.0.1" or
// "admin-laptop.example.com". So a name is used only when it is
// forward-confirmed: its own A/AAAA records, which the owner of the name's
// zone writes, include the address. A name that is not confirmed, that is
// not a plain host name, or that reads as an address is never shown: the
// address is, as if there were no name. Names are only ever written to logs,
// never to a shell.
package resolve

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// maxNames bounds the reverse names tried per address, each costing one
// forward lookup: a PTR answer can list any number.
const maxNames = 4

// DNS is the name service a Resolver asks: net.DefaultResolver in
// production, a fake in tests.
type DNS interface {
	// LookupAddr returns the names of addr (PTR records).
	LookupAddr(ctx context.Context, addr string) ([]string, error)
	// LookupNetIP returns the addresses of host (A and AAAA records for
	// network "ip").
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Resolver resolves with a cache. A nil *Resolver resolves nothing.
type Resolver struct {
	timeout time.Duration
	dns     DNS
	max     int

	mu    sync.Mutex
	cache map[netip.Addr]string
}

// New returns a resolver whose lookups for one address (the reverse one and
// the forward ones that confirm it, together) give up after timeout and
// whose cache holds at most max names (it is emptied when full: simple, and
// bounded). A nil dns is net.DefaultResolver.
func New(timeout time.Duration, max int, dns DNS) *Resolver {
	if dns == nil {
		dns = net.DefaultResolver
	}
	if max <= 0 {
		max = 4096
	}
	return &Resolver{timeout: timeout, dns: dns, max: max, cache: make(map[netip.Addr]string)}
}

// Name returns a host name for addr, or addr itself when there is none, it
// is not a valid host name, it reads as an address, its own addresses do not
// include addr, or a lookup fails or times out. Failures are cached too, so
// a scan from a host with slow DNS costs one timeout.
func (r *Resolver) Name(ctx context.Context, addr netip.Addr) string {
	if r == nil {
		return addr.String()
	}
	r.mu.Lock()
	name, ok := r.cache[addr]
	r.mu.Unlock()
	if ok {
		return name
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	name = r.confirmed(ctx, addr)
	if name == "" {
		name = addr.String()
	}
	r.mu.Lock()
	if len(r.cache) >= r.max {
		clear(r.cache)
	}
	r.cache[addr] = name
	r.mu.Unlock()
	return name
}

// Cached returns addr's name (or addr itself, for a lookup that found none)
// if it was looked up already; it never asks the name service. A nil
// *Resolver has addr as the name of everything.
func (r *Resolver) Cached(addr netip.Addr) (string, bool) {
	if r == nil {
		return addr.String(), true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	name, ok := r.cache[addr]
	return name, ok
}

// Pool looks names up in the background: a few workers, a bounded queue.
// A caller never waits for the name service: Submit refuses a lookup when
// the queue is full (the caller then uses the address), and each accepted
// lookup ends within its Resolver's timeout.
type Pool struct {
	workers int
	jobs    chan job
	results chan Result
}

type job struct {
	r    *Resolver
	addr netip.Addr
}

// Result is a name a Pool looked up.
type Result struct {
	Addr netip.Addr
	Name string // as Resolver.Name gives it: addr itself when there is none
}

// NewPool returns a pool that runs workers lookups at a time and keeps at
// most queue more waiting.
func NewPool(workers, queue int) *Pool {
	workers = max(workers, 1)
	return &Pool{workers: workers, jobs: make(chan job, max(queue, 0)), results: make(chan Result, workers)}
}

// Submit queues a lookup of addr's name with r. It returns false, at once,
// when the queue is full.
func (p *Pool) Submit(r *Resolver, addr netip.Addr) bool {
	select {
	case p.jobs <- job{r, addr}:
		return true
	default:
		return false
	}
}

// Results delivers one Result for each lookup Submit accepted, as the
// lookups end. Whoever submits must take them: a worker waits until its
// result is taken (or Run ends).
func (p *Pool) Results() <-chan Result { return p.results }

// Run runs the workers until ctx is done and they have stopped; lookups in
// progress end with ctx, and their results are not delivered.
func (p *Pool) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range p.workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case j := <-p.jobs:
					res := Result{Addr: j.addr, Name: j.r.Name(ctx, j.addr)}
					select {
					case p.results <- res:
					case <-ctx.Done():
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// confirmed returns the first of addr's reverse names (up to maxNames) that
// is a plain host name, does not read as an address, and whose forward
// lookup gives addr back; "" if none does.
func (r *Resolver) confirmed(ctx context.Context, addr netip.Addr) string {
	names, err := r.dns.LookupAddr(ctx, addr.String())
	if err != nil {
		return ""
	}
	want := addr.Unmap().WithZone("")
	for i, n := range names {
		if i == maxNames || ctx.Err() != nil {
			break
		}
		n = strings.TrimSuffix(n, ".")
		if !ValidName(n) || looksLikeAddress(n) {
			continue
		}
		// Not rooted: the pure-Go resolver looks a rooted name up in
		// DNS only, never in /etc/hosts. The search domains it may then
		// add lead to zones of this site, not of the attacker.
		addrs, err := r.dns.LookupNetIP(ctx, "ip", n)
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if a.Unmap().WithZone("") == want {
				return n
			}
		}
	}
	return ""
}

// looksLikeAddress reports whether a host name could be read as an IP
// address, by people or by tools: one that parses as an address, or whose
// last label is a number, decimal or 0x hexadecimal (no top-level domain
// is: RFC 3696, section 2), which inet_aton reads as an address ("10.1" is
// 10.0.0.1, "0x7f000001" is 127.0.0.1).
func looksLikeAddress(n string) bool {
	if _, err := netip.ParseAddr(n); err == nil {
		return true
	}
	last := n[strings.LastIndexByte(n, '.')+1:]
	digits := "0123456789"
	if len(last) > 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X') {
		last, digits = last[2:], "0123456789abcdefABCDEF"
	}
	return last != "" && strings.Trim(last, digits) == ""
}

// ValidName reports whether s is a plain host name: letters, digits,
// hyphens, underscores and dots, at most 253 bytes. Anything else (spaces,
// slashes, control characters) could forge or break a log line.
func ValidName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}
