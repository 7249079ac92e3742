// Package resolve turns attacker addresses into host names for the logs
// (RESOLVE_HOST="1"), with a short timeout and a bounded cache. Names come
// from reverse DNS, which the attacker controls: they are checked to be
// plain host names and are only ever written to logs, never to a shell.
package resolve

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Lookup is the reverse lookup used; net.DefaultResolver.LookupAddr in production.
type Lookup func(ctx context.Context, addr string) ([]string, error)

// Resolver resolves with a cache. A nil *Resolver resolves nothing.
type Resolver struct {
	timeout time.Duration
	lookup  Lookup
	max     int

	mu    sync.Mutex
	cache map[netip.Addr]string
}

// New returns a resolver whose lookups give up after timeout and whose cache
// holds at most max names (it is emptied when full: simple, and bounded).
func New(timeout time.Duration, max int, lookup Lookup) *Resolver {
	if lookup == nil {
		lookup = net.DefaultResolver.LookupAddr
	}
	if max <= 0 {
		max = 4096
	}
	return &Resolver{timeout: timeout, lookup: lookup, max: max, cache: make(map[netip.Addr]string)}
}

// Name returns a host name for addr, or addr itself when there is none, it
// is not a valid host name, or the lookup fails or times out. Failures are
// cached too, so a scan from a host with slow DNS costs one timeout.
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
	name = addr.String()
	if names, err := r.lookup(ctx, addr.String()); err == nil && len(names) > 0 {
		if n := strings.TrimSuffix(names[0], "."); ValidName(n) {
			name = n
		}
	}
	r.mu.Lock()
	if len(r.cache) >= r.max {
		clear(r.cache)
	}
	r.cache[addr] = name
	r.mu.Unlock()
	return name
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
