package bans

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// addrEq lets cmp compare netip.Addr values (and so Bans) with ==.
var addrEq = cmpopts.EquateComparable(netip.Addr{})

var t0 = time.Date(2026, 11, 22, 1, 40, 36, 0, time.UTC)

// clock is the injected time; tests move it by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: t0} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func prefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

var hour = Policy{Base: time.Hour, Max: 24 * time.Hour}

func open(t testing.TB, path string, c *clock, o Options) *Store {
	t.Helper()
	o.Now = c.now
	s, err := OpenOptions(path, o)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustClose(t testing.TB, s *Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestPolicyDuration(t *testing.T) {
	tests := []struct {
		p    Policy
		n    int
		want time.Duration
	}{
		{Policy{}, 1, 0},
		{Policy{Max: time.Hour}, 5, 0},
		{hour, 1, time.Hour},
		{hour, 2, 2 * time.Hour},
		{hour, 3, 4 * time.Hour},
		{hour, 5, 16 * time.Hour},
		{hour, 6, 24 * time.Hour},
		{hour, 1000, 24 * time.Hour},
		{Policy{Base: time.Hour}, 100, MaxDuration},
		{Policy{Base: time.Hour, Max: 100 * MaxDuration}, 1 << 30, MaxDuration},
		{Policy{Base: 1<<62 - 1}, 3, MaxDuration},
		{Policy{Base: 2 * time.Hour, Max: time.Hour}, 1, time.Hour},
		{Policy{Base: time.Minute}, 0, time.Minute},
	}
	for _, tt := range tests {
		if got := tt.p.Duration(tt.n); got != tt.want {
			t.Errorf("%+v.Duration(%d) = %v, want %v", tt.p, tt.n, got, tt.want)
		}
	}
}

func TestBan(t *testing.T) {
	c := newClock()
	s := open(t, "", c, Options{Policy: hour})
	got := s.Ban(addr("::ffff:192.0.2.7"), "TCP SYN/Normal scan", 143, "TCP")
	want := Ban{
		Addr: addr("192.0.2.7"), Reason: "TCP SYN/Normal scan", Port: 143, Proto: "TCP",
		Since: t0, Expires: t0.Add(time.Hour), Count: 1,
	}
	if diff := cmp.Diff(want, got, addrEq); diff != "" {
		t.Errorf("Ban (-want +got):\n%s", diff)
	}
	if b, ok := s.Get(addr("192.0.2.7")); !ok || !cmp.Equal(b, want, addrEq) {
		t.Errorf("Get = %+v, %v; want %+v", b, ok, want)
	}
	if _, ok := s.Get(addr("192.0.2.8")); ok {
		t.Error("Get of an address never banned succeeded")
	}
	if got := s.Ban(addr("fe80::1%eth0"), "UDP", 53, "UDP"); got.Addr != addr("fe80::1") {
		t.Errorf("zone kept: %v", got.Addr)
	}
	if s.Len() != 2 {
		t.Errorf("Len = %d, want 2", s.Len())
	}
}

func TestBanPermanentPolicy(t *testing.T) {
	c := newClock()
	s := open(t, "", c, Options{})
	b := s.Ban(addr("192.0.2.7"), "TCP FIN scan", 1, "TCP")
	if !b.Permanent() || b.Remaining(c.now()) != 0 {
		t.Errorf("Base 0 gave %+v, want permanent", b)
	}
	c.advance(10 * MaxDuration)
	if got := s.Expire(); len(got) != 0 {
		t.Errorf("a permanent ban expired: %+v", got)
	}
	if _, ok := s.NextExpiry(); ok {
		t.Error("NextExpiry reported an expiry with only permanent bans")
	}
}

// A second Ban while banned is the same episode: not counted again, only
// extended if the policy now ends it later.
func TestBanWhileBannedExtends(t *testing.T) {
	c := newClock()
	s := open(t, "", c, Options{Policy: hour})
	first := s.Ban(addr("192.0.2.7"), "TCP SYN/Normal scan", 143, "TCP")
	c.advance(30 * time.Minute)
	got := s.Ban(addr("192.0.2.7"), "UDP", 53, "UDP")
	want := first
	want.Expires = t0.Add(90 * time.Minute)
	if diff := cmp.Diff(want, got, addrEq); diff != "" {
		t.Errorf("second Ban (-want +got):\n%s", diff)
	}
}

func TestRepeatOffender(t *testing.T) {
	c := newClock()
	s := open(t, "", c, Options{Policy: hour, Remember: 7 * 24 * time.Hour})
	a := addr("2001:db8::7")
	for i, want := range []time.Duration{time.Hour, 2 * time.Hour, 4 * time.Hour, 8 * time.Hour, 16 * time.Hour, 24 * time.Hour, 24 * time.Hour} {
		b := s.Ban(a, "TCP SYN/Normal scan", 22, "TCP")
		if b.Count != i+1 || b.Expires.Sub(b.Since) != want {
			t.Fatalf("ban %d: count %d lasting %v; want %d lasting %v", i+1, b.Count, b.Expires.Sub(b.Since), i+1, want)
		}
		c.advance(want)
		if got := s.Expire(); len(got) != 1 || got[0].Addr != a {
			t.Fatalf("ban %d: Expire = %+v", i+1, got)
		}
		c.advance(time.Hour) // well behaved for a while
	}
	if st := s.Stats(); st.Bans != 0 || st.Remembered != 1 {
		t.Errorf("Stats = %+v, want 0 bans, 1 remembered", st)
	}
	// After Remember without a ban, the slate is clean.
	c.advance(7 * 24 * time.Hour)
	s.Expire()
	if st := s.Stats(); st.Remembered != 0 {
		t.Errorf("history kept past Remember: %+v", st)
	}
	if b := s.Ban(a, "TCP SYN/Normal scan", 22, "TCP"); b.Count != 1 || b.Expires.Sub(b.Since) != time.Hour {
		t.Errorf("ban after Remember: %+v, want a first ban", b)
	}
}

// A ban past its end is over even before Expire collects it: banning the
// address again starts a new ban, counted.
func TestBanAfterExpiryBeforeExpire(t *testing.T) {
	c := newClock()
	s := open(t, "", c, Options{Policy: hour})
	s.Ban(addr("192.0.2.7"), "UDP", 53, "UDP")
	c.advance(time.Hour)
	b := s.Ban(addr("192.0.2.7"), "UDP", 53, "UDP")
	want := Ban{Addr: addr("192.0.2.7"), Reason: "UDP", Port: 53, Proto: "UDP", Since: c.now(), Expires: c.now().Add(2 * time.Hour), Count: 2}
	if diff := cmp.Diff(want, b, addrEq); diff != "" {
		t.Errorf("Ban (-want +got):\n%s", diff)
	}
	c.advance(2 * time.Hour)
	if b := s.BanFor(addr("192.0.2.7"), time.Minute, "manual"); b.Count != 3 || !b.Since.Equal(c.now()) {
		t.Errorf("BanFor after expiry = %+v, want a third ban starting now", b)
	}
}

func TestRememberNegativeForgetsAtExpiry(t *testing.T) {
	c := newClock()
	s := open(t, "", c, Options{Policy: hour, Remember: -1})
	s.Ban(addr("192.0.2.7"), "UDP", 53, "UDP")
	c.advance(time.Hour)
	s.Expire()
	if b := s.Ban(addr("192.0.2.7"), "UDP", 53, "UDP"); b.Count != 1 {
		t.Errorf("count %d, want 1 when nothing is remembered", b.Count)
	}
}

func TestBanFor(t *testing.T) {
	c := newClock()
	s := open(t, "", c, Options{Policy: hour})
	a := addr("192.0.2.7")
	tests := []struct {
		name string
		d    time.Duration
		want Ban
	}{
		{"new", 10 * time.Minute, Ban{Addr: a, Reason: "manual", Since: t0, Expires: t0.Add(10 * time.Minute), Count: 1}},
		// The operator's word replaces the ban, even shortening it.
		{"shorter", time.Minute, Ban{Addr: a, Reason: "manual", Since: t0, Expires: t0.Add(time.Minute), Count: 1}},
		{"permanent", 0, Ban{Addr: a, Reason: "manual", Since: t0, Count: 1}},
		{"negative is permanent", -time.Hour, Ban{Addr: a, Reason: "manual", Since: t0, Count: 1}},
		{"capped", 100 * MaxDuration, Ban{Addr: a, Reason: "manual", Since: t0, Expires: t0.Add(MaxDuration), Count: 1}},
	}
	for _, tt := range tests {
		got := s.BanFor(a, tt.d, "manual")
		if diff := cmp.Diff(tt.want, got, addrEq); diff != "" {
			t.Errorf("%s: BanFor(%v) (-want +got):\n%s", tt.name, tt.d, diff)
		}
	}
	// A manual ban replaces an automatic one's probe details.
	s.Ban(addr("192.0.2.8"), "TCP SYN/Normal scan", 143, "TCP")
	got := s.BanFor(addr("192.0.2.8"), time.Hour, "operator")
	if got.Port != 0 || got.Proto != "" || got.Reason != "operator" {
		t.Errorf("BanFor over an automatic ban = %+v", got)
	}
}

func TestUnban(t *testing.T) {
	seed := []string{"192.0.2.1", "192.0.2.200", "198.51.100.1", "10.1.2.3", "2001:db8::1", "2001:db8::ffff", "2001:db8:1::1", "fe80::1"}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"192.0.2.1/32", []string{"192.0.2.1"}},
		{"192.0.2.0/24", []string{"192.0.2.1", "192.0.2.200"}},
		{"192.0.2.128/25", []string{"192.0.2.200"}},
		{"192.0.2.77/24", []string{"192.0.2.1", "192.0.2.200"}}, // host bits masked
		{"::ffff:192.0.2.0/120", []string{"192.0.2.1", "192.0.2.200"}},
		{"0.0.0.0/0", []string{"192.0.2.1", "192.0.2.200", "198.51.100.1", "10.1.2.3"}},
		{"2001:db8::1/128", []string{"2001:db8::1"}},
		{"2001:db8::/64", []string{"2001:db8::1", "2001:db8::ffff"}},
		{"2001:db8::/32", []string{"2001:db8::1", "2001:db8::ffff", "2001:db8:1::1"}},
		{"::/0", []string{"2001:db8::1", "2001:db8::ffff", "2001:db8:1::1", "fe80::1"}},
		{"203.0.113.0/24", nil},
		{"192.0.2.2/32", nil},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			c := newClock()
			s := open(t, "", c, Options{Policy: hour})
			for _, a := range seed {
				s.Ban(addr(a), "TCP SYN/Normal scan", 1, "TCP")
				c.advance(time.Second) // Since orders the result
			}
			var got []string
			for _, b := range s.Unban(prefix(tt.prefix)) {
				got = append(got, b.Addr.String())
			}
			if diff := cmp.Diff(tt.want, got, addrEq); diff != "" {
				t.Errorf("removed (-want +got):\n%s", diff)
			}
			if s.Len() != len(seed)-len(tt.want) {
				t.Errorf("Len = %d, want %d", s.Len(), len(seed)-len(tt.want))
			}
			for _, a := range tt.want {
				if _, ok := s.Get(addr(a)); ok {
					t.Errorf("%s still banned", a)
				}
			}
		})
	}
}

// Unban is a pardon: the address's history goes too.
func TestUnbanForgetsHistory(t *testing.T) {
	c := newClock()
	s := open(t, "", c, Options{Policy: hour})
	a := addr("192.0.2.7")
	s.Ban(a, "UDP", 53, "UDP")
	c.advance(time.Hour)
	s.Expire()
	s.Ban(a, "UDP", 53, "UDP")
	s.Unban(prefix("192.0.2.7/32"))
	if b := s.Ban(a, "UDP", 53, "UDP"); b.Count != 1 {
		t.Errorf("count after Unban = %d, want 1", b.Count)
	}
	c.advance(time.Hour)
	s.Expire()
	s.Unban(prefix("192.0.2.0/24")) // a past entry only, by a wide prefix
	if st := s.Stats(); st.Remembered != 0 {
		t.Errorf("Stats after Unban of history = %+v", st)
	}
}

func TestExpireAndNextExpiry(t *testing.T) {
	c := newClock()
	s := open(t, "", c, Options{Policy: hour})
	s.BanFor(addr("192.0.2.3"), 3*time.Minute, "manual")
	s.BanFor(addr("192.0.2.1"), time.Minute, "manual")
	s.BanFor(addr("192.0.2.2"), 2*time.Minute, "manual")
	s.BanFor(addr("192.0.2.9"), 0, "manual")
	if next, ok := s.NextExpiry(); !ok || !next.Equal(t0.Add(time.Minute)) {
		t.Errorf("NextExpiry = %v, %v", next, ok)
	}
	if got := s.Expire(); len(got) != 0 {
		t.Errorf("Expire before time = %+v", got)
	}
	c.advance(2 * time.Minute)
	if got := len(s.Active()); got != 2 {
		t.Errorf("Active lists %d bans, want 2 (expired ones hidden before Expire)", got)
	}
	if got := s.Len(); got != 4 {
		t.Errorf("Len = %d before Expire, want 4", got)
	}
	var got []string
	for _, b := range s.Expire() {
		got = append(got, b.Addr.String())
	}
	if diff := cmp.Diff([]string{"192.0.2.1", "192.0.2.2"}, got, addrEq); diff != "" {
		t.Errorf("Expire (-want +got):\n%s", diff)
	}
	if next, ok := s.NextExpiry(); !ok || !next.Equal(t0.Add(3*time.Minute)) {
		t.Errorf("NextExpiry = %v, %v", next, ok)
	}
}

func TestActiveSortedBySince(t *testing.T) {
	c := newClock()
	s := open(t, "", c, Options{Policy: hour})
	for _, a := range []string{"192.0.2.9", "2001:db8::1", "192.0.2.1"} {
		s.Ban(addr(a), "UDP", 1, "UDP")
		c.advance(time.Second)
	}
	s.BanFor(addr("10.0.0.1"), 0, "manual") // the latest, though the lowest address
	var got []string
	for _, b := range s.Active() {
		got = append(got, b.Addr.String())
	}
	if diff := cmp.Diff([]string{"192.0.2.9", "2001:db8::1", "192.0.2.1", "10.0.0.1"}, got, addrEq); diff != "" {
		t.Errorf("Active (-want +got):\n%s", diff)
	}
}

func TestMaxBansDropsSoonestExpiring(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "bans.jsonl")
	s := open(t, path, c, Options{Policy: hour, MaxBans: 3})
	s.BanFor(addr("192.0.2.1"), 0, "manual")
	s.BanFor(addr("192.0.2.2"), 2*time.Hour, "manual")
	s.BanFor(addr("192.0.2.3"), time.Hour, "manual")
	s.BanFor(addr("192.0.2.4"), 3*time.Hour, "manual")
	want := []string{"192.0.2.1", "192.0.2.2", "192.0.2.4"}
	check := func(s *Store) {
		t.Helper()
		var got []string
		for _, b := range s.Active() {
			got = append(got, b.Addr.String())
		}
		if diff := cmp.Diff(want, got, addrEq); diff != "" {
			t.Errorf("Active (-want +got):\n%s", diff)
		}
	}
	check(s)
	if st := s.Stats(); st.Evicted != 1 || st.Remembered != 1 {
		t.Errorf("Stats = %+v, want 1 evicted and remembered", st)
	}
	// The dropped ban counts for escalation, and the drop survives a restart.
	mustClose(t, s)
	s = open(t, path, c, Options{Policy: hour, MaxBans: 3})
	check(s)
	s.Unban(prefix("192.0.2.4/32"))
	if b := s.Ban(addr("192.0.2.3"), "UDP", 1, "UDP"); b.Count != 2 {
		t.Errorf("count of a dropped ban's address = %d, want 2", b.Count)
	}
}

func TestPersistRoundTrip(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "sub", "bans.jsonl") // directory created
	s := open(t, path, c, Options{Policy: hour})
	s.Ban(addr("192.0.2.7"), "TCP SYN/Normal scan", 143, "TCP")
	s.Ban(addr("2001:db8::7"), `odd "reason"`+"\n\x00\xff é", 53, "UDP")
	s.BanFor(addr("198.51.100.1"), 0, "manual")
	s.BanFor(addr("198.51.100.2"), time.Minute, "manual")
	s.BanFor(addr("10.0.0.1"), time.Minute, "manual")
	s.Unban(prefix("10.0.0.0/8"))
	c.advance(time.Minute)
	s.Expire() // 198.51.100.2 becomes history
	c.advance(time.Nanosecond)
	want := s.Active()
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	// No Close: the process dies here.
	s.j.f.Close()
	s.j.lock.Close()
	s.j = nil

	s2 := open(t, path, c, Options{Policy: hour})
	got := s2.Active()
	// Invalid UTF-8 is recorded as U+FFFD.
	if r := want[2].Reason; r != `odd "reason"`+"\n\x00\ufffd é" {
		t.Errorf("reason recorded as %q", r)
	}
	if diff := cmp.Diff(want, got, addrEq); diff != "" {
		t.Errorf("after restart (-want +got):\n%s", diff)
	}
	if st := s2.Stats(); st.Remembered != 1 {
		t.Errorf("history lost: %+v", st)
	}
	if b := s2.Ban(addr("198.51.100.2"), "UDP", 1, "UDP"); b.Count != 2 {
		t.Errorf("repeat offender after restart: count %d, want 2", b.Count)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", fi.Mode().Perm())
	}
}

// A restart restores what remains of each ban, not its full length; bans
// that ended while the daemon was down are gone, their count kept.
func TestRestartRestoresRemainingTime(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "bans.jsonl")
	s := open(t, path, c, Options{Policy: hour})
	s.Ban(addr("192.0.2.1"), "TCP SYN/Normal scan", 1, "TCP") // ends t0+1h
	s.BanFor(addr("192.0.2.2"), 3*time.Hour, "manual")        // ends t0+3h
	s.BanFor(addr("192.0.2.3"), 0, "manual")
	mustClose(t, s)

	c.advance(20 * time.Minute)
	s = open(t, path, c, Options{Policy: hour})
	now := c.now()
	rem := map[string]time.Duration{}
	for _, b := range s.Active() {
		rem[b.Addr.String()] = b.Remaining(now)
	}
	want := map[string]time.Duration{"192.0.2.1": 40 * time.Minute, "192.0.2.2": 160 * time.Minute, "192.0.2.3": 0}
	if diff := cmp.Diff(want, rem, addrEq); diff != "" {
		t.Errorf("remaining after 20m down (-want +got):\n%s", diff)
	}
	mustClose(t, s)

	c.advance(2 * time.Hour) // t0+2h20m: the first ban ended while down
	s = open(t, path, c, Options{Policy: hour})
	if _, ok := s.Get(addr("192.0.2.1")); ok {
		t.Error("a ban that ended while down was restored")
	}
	if next, ok := s.NextExpiry(); !ok || !next.Equal(t0.Add(3*time.Hour)) {
		t.Errorf("NextExpiry = %v, %v; want %v", next, ok, t0.Add(3*time.Hour))
	}
	if b := s.Ban(addr("192.0.2.1"), "TCP SYN/Normal scan", 1, "TCP"); b.Count != 2 || b.Expires.Sub(b.Since) != 2*time.Hour {
		t.Errorf("repeat offender after restart: %+v", b)
	}
}

func TestLoadDropsHistoryPastRemember(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "bans.jsonl")
	s := open(t, path, c, Options{Policy: hour, Remember: 24 * time.Hour})
	s.Ban(addr("192.0.2.1"), "UDP", 1, "UDP")
	mustClose(t, s)
	c.advance(26 * time.Hour)
	s = open(t, path, c, Options{Policy: hour, Remember: 24 * time.Hour})
	if st := s.Stats(); st.Bans != 0 || st.Remembered != 0 {
		t.Errorf("Stats = %+v, want nothing", st)
	}
}

func TestSecondOpenLocked(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "bans.jsonl")
	s := open(t, path, c, Options{})
	if _, err := Open(path, Policy{}, c.now); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	mustClose(t, s)
	s2, err := Open(path, Policy{}, c.now)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s2.Close()
}

func TestCompaction(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "bans.jsonl")
	s := open(t, path, c, Options{Policy: hour, CompactAfter: 100})
	for i := range 10_000 {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8 & 7), byte(i)})
		s.Ban(a, "UDP", 1, "UDP")
		if i%2 == 0 {
			s.Unban(netip.PrefixFrom(a, 32))
		}
		if i%50 == 0 {
			if err := s.Sync(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	want := s.Active()
	lines := countLines(t, path)
	// 2048 addresses live at most: the journal stays within twice that,
	// plus one batch of appends.
	if lines > 2*2048+200 {
		t.Errorf("journal has %d lines for %d bans", lines, len(want))
	}
	mustClose(t, s)
	s = open(t, path, c, Options{Policy: hour})
	if diff := cmp.Diff(want, s.Active(), addrEq); diff != "" {
		t.Errorf("after reload (-want +got):\n%s", diff)
	}
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range b {
		if c == '\n' {
			n++
		}
	}
	return n
}

// A write that fails (a full disk) is reported by Sync, and the next Sync
// rewrites the file whole, so nothing is lost once the disk recovers.
func TestSyncRecoversFromWriteError(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "bans.jsonl")
	s := open(t, path, c, Options{Policy: hour})
	s.Ban(addr("192.0.2.1"), "UDP", 1, "UDP")
	good := s.j.f
	bad, err := os.Open(os.DevNull) // read-only: every write fails
	if err != nil {
		t.Fatal(err)
	}
	s.j.f = bad
	s.Ban(addr("192.0.2.2"), "UDP", 1, "UDP")
	// The compaction that follows the failed write succeeds, so Sync
	// reports success only if everything is on disk.
	if err := s.Sync(); err != nil {
		t.Fatalf("Sync after recovery: %v", err)
	}
	good.Close()
	s.Ban(addr("192.0.2.3"), "UDP", 1, "UDP")
	mustClose(t, s)
	s = open(t, path, c, Options{Policy: hour})
	if s.Len() != 3 {
		t.Errorf("Len after recovery = %d, want 3", s.Len())
	}
}

// readOnly returns a file every write to fails, as on a full disk.
func readOnly(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestSyncBacksOff: after a write error, the rewrite that mends the file is
// tried at once, then no sooner than 1 s, 2 s, 4 s … 5 min after each
// failure, not at every Sync; the failure is returned once per run, Err
// tells it meanwhile, and nothing is lost once the disk has room again.
func TestSyncBacksOff(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "bans.jsonl")
	s := open(t, path, c, Options{Policy: hour})
	s.Ban(addr("192.0.2.1"), "UDP", 1, "UDP")
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	full, attempts := true, 0
	s.j.createTemp = func(dir, pattern string) (*os.File, error) {
		attempts++
		if full {
			return nil, errors.New("no space left on device")
		}
		return os.CreateTemp(dir, pattern)
	}
	steps := []struct {
		name      string
		breakFile bool          // the next write to the journal fails
		full      bool          // rewrites fail
		advance   time.Duration // before the Sync
		attempts  int           // rewrites tried so far
		reported  bool          // Sync returned an error
		whole     bool          // the file holds every change (Err is nil)
	}{
		{name: "a write fails: rewritten at once, which fails: reported", breakFile: true, full: true, attempts: 1, reported: true},
		{name: "at once again: no rewrite, not reported again", full: true, attempts: 1},
		{name: "999 ms later: still waiting", full: true, advance: 999 * time.Millisecond, attempts: 1},
		{name: "1 s after the failure: tried again", full: true, advance: time.Millisecond, attempts: 2},
		{name: "1 s after the second: waiting 2 s now", full: true, advance: time.Second, attempts: 2},
		{name: "2 s after it: tried", full: true, advance: time.Second, attempts: 3},
		{name: "4 s", full: true, advance: 4 * time.Second, attempts: 4},
		{name: "8 s", full: true, advance: 8 * time.Second, attempts: 5},
		{name: "16 s", full: true, advance: 16 * time.Second, attempts: 6},
		{name: "32 s", full: true, advance: 32 * time.Second, attempts: 7},
		{name: "64 s", full: true, advance: 64 * time.Second, attempts: 8},
		{name: "128 s", full: true, advance: 128 * time.Second, attempts: 9},
		{name: "256 s", full: true, advance: 256 * time.Second, attempts: 10},
		{name: "capped at 5 min: not at 299 s", full: true, advance: 299 * time.Second, attempts: 10},
		{name: "capped at 5 min: at 300 s", full: true, advance: time.Second, attempts: 11},
		{name: "5 min again", full: true, advance: 5 * time.Minute, attempts: 12},
		{name: "room again, but the wait is not over", advance: time.Minute, attempts: 12},
		{name: "room again: rewritten, the run ends", advance: 4 * time.Minute, attempts: 13, whole: true},
		{name: "whole: appends, no rewrite", advance: time.Second, attempts: 13, whole: true},
		{name: "a new failure begins a new run: reported again", breakFile: true, full: true, advance: time.Second, attempts: 14, reported: true},
		{name: "and mended at its first retry", advance: time.Second, attempts: 15, whole: true},
	}
	for i, st := range steps {
		full = st.full
		if st.breakFile {
			s.j.f = readOnly(t)
		}
		c.advance(st.advance)
		s.Ban(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), "UDP", 1, "UDP")
		err := s.Sync()
		if (err != nil) != st.reported || attempts != st.attempts {
			t.Fatalf("step %d (%s): Sync = %v, %d rewrites; want error %v, %d rewrites", i, st.name, err, attempts, st.reported, st.attempts)
		}
		if whole := s.Err() == nil; whole != st.whole {
			t.Fatalf("step %d (%s): Err = %v, want whole %v", i, st.name, s.Err(), st.whole)
		}
	}
	want := s.Active()
	mustClose(t, s)
	s = open(t, path, c, Options{Policy: hour})
	if diff := cmp.Diff(want, s.Active(), addrEq); diff != "" {
		t.Errorf("after reload (-want +got):\n%s", diff)
	}
}

// TestCloseRetriesAtOnce: Close does not wait for the next retry: it tries
// to mend the file once more and returns the outcome.
func TestCloseRetriesAtOnce(t *testing.T) {
	for _, full := range []bool{false, true} {
		t.Run(fmt.Sprintf("full=%v", full), func(t *testing.T) {
			c := newClock()
			path := filepath.Join(t.TempDir(), "bans.jsonl")
			s, err := OpenOptions(path, Options{Policy: hour, Now: c.now})
			if err != nil {
				t.Fatal(err)
			}
			s.Ban(addr("192.0.2.1"), "UDP", 1, "UDP")
			diskFull := true
			s.j.createTemp = func(dir, pattern string) (*os.File, error) {
				if diskFull {
					return nil, errors.New("no space left on device")
				}
				return os.CreateTemp(dir, pattern)
			}
			s.j.f = readOnly(t)
			if err := s.Sync(); err == nil {
				t.Fatal("Sync on a full disk returned nil")
			}
			s.Ban(addr("192.0.2.2"), "UDP", 1, "UDP")
			diskFull = full
			if err := s.Close(); (err != nil) != full {
				t.Fatalf("Close = %v, want an error %v", err, full)
			}
			if full {
				return
			}
			s = open(t, path, c, Options{Policy: hour})
			if s.Len() != 2 {
				t.Errorf("after Close mended the file: %d bans, want 2", s.Len())
			}
		})
	}
}

// TestRewriteDoesNotHoldTheLock: while a snapshot is being written (a slow
// or stuck disk), the Store still answers and records; what changed
// meanwhile reaches the new file at the next Sync.
func TestRewriteDoesNotHoldTheLock(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "bans.jsonl")
	s := open(t, path, c, Options{Policy: hour})
	for i := range 10 {
		s.Ban(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), "UDP", 1, "UDP")
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	s.j.createTemp = func(dir, pattern string) (*os.File, error) {
		close(entered)
		<-release
		return os.CreateTemp(dir, pattern)
	}
	compacted := make(chan error, 1)
	go func() { compacted <- s.Compact() }()
	<-entered
	changed := make(chan struct{})
	go func() {
		defer close(changed)
		s.Ban(addr("203.0.113.1"), "TCP SYN/Normal scan", 22, "TCP")
		s.Unban(prefix("192.0.2.0/31"))
		s.Get(addr("192.0.2.5"))
		s.Active()
	}()
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		close(release)
		<-compacted
		t.Fatal("Ban, Unban, Get and Active waited for the snapshot's I/O")
	}
	close(release)
	if err := <-compacted; err != nil {
		t.Fatal(err)
	}
	s.j.createTemp = os.CreateTemp
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	want := s.Active()
	if len(want) != 9 {
		t.Fatalf("%d bans, want 9", len(want))
	}
	// The process dies: only what Sync wrote counts.
	s.j.f.Close()
	s.j.lock.Close()
	s.j = nil
	s = open(t, path, c, Options{Policy: hour})
	if diff := cmp.Diff(want, s.Active(), addrEq); diff != "" {
		t.Errorf("after restart (-want +got):\n%s", diff)
	}
}

// TestPendingBounded: changes wait in memory for the next Sync, at most
// maxPending bytes of them; past that the next Sync rewrites the file from
// the Store, and nothing is lost.
func TestPendingBounded(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "bans.jsonl")
	s := open(t, path, c, Options{Policy: hour})
	n := 2 * maxPending / 100 // records are over 100 bytes
	for i := range n {
		s.Ban(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), "TCP SYN/Normal scan", 22, "TCP")
		if len(s.j.pending) > maxPending {
			t.Fatalf("after %d bans %d bytes pending, more than %d", i+1, len(s.j.pending), maxPending)
		}
	}
	if !s.j.broken {
		t.Fatal("pending overflowed but the next Sync is not a rewrite")
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	s.j.f.Close()
	s.j.lock.Close()
	s.j = nil
	s = open(t, path, c, Options{Policy: hour})
	if s.Len() != n {
		t.Errorf("after restart %d bans, want %d", s.Len(), n)
	}
}

func TestStaleTempFilesRemoved(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bans.jsonl")
	stale := path + ".tmp-123"
	if err := os.WriteFile(stale, []byte(`{"op":"format","v":1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	open(t, path, newClock(), Options{})
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temporary file kept: %v", err)
	}
}

func TestInMemory(t *testing.T) {
	s := open(t, "", newClock(), Options{Policy: hour})
	s.Ban(addr("192.0.2.1"), "UDP", 1, "UDP")
	for name, f := range map[string]func() error{"Sync": s.Sync, "Compact": s.Compact, "Close": s.Close} {
		if err := f(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestClosedStoreKeepsAnswering(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "bans.jsonl")
	s := open(t, path, c, Options{Policy: hour})
	mustClose(t, s)
	s.Ban(addr("192.0.2.1"), "UDP", 1, "UDP")
	if s.Len() != 1 {
		t.Error("closed store lost a ban in memory")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.Sync(); !errors.Is(err, ErrClosed) {
		t.Errorf("Sync after Close: %v, want ErrClosed", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "bans.jsonl")
	s := open(t, path, c, Options{Policy: hour, CompactAfter: 64, MaxBans: 500})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				a := netip.AddrFrom4([4]byte{10, byte(g), byte(i >> 8), byte(i)})
				switch i % 5 {
				case 0:
					s.Unban(netip.PrefixFrom(a, 24).Masked())
				case 1:
					s.Active()
					s.Expire()
				case 2:
					if err := s.Sync(); err != nil {
						t.Error(err)
					}
				default:
					s.Ban(a, "UDP", uint16(i), "UDP")
				}
				c.advance(time.Second)
			}
		})
	}
	wg.Wait()
	want := s.Active()
	mustClose(t, s)
	s = open(t, path, c, Options{Policy: hour, MaxBans: 500})
	if diff := cmp.Diff(want, s.Active(), addrEq); diff != "" {
		t.Errorf("after reload (-want +got):\n%s", diff)
	}
}

func ExampleStore() {
	s, err := Open("", Policy{Base: time.Hour, Max: 24 * time.Hour}, nil)
	if err != nil {
		panic(err)
	}
	defer s.Close()
	a := netip.MustParseAddr("192.0.2.7")
	b := s.Ban(a, "TCP SYN/Normal scan", 143, "TCP")
	fmt.Println(b.Addr, b.Count, b.Expires.Sub(b.Since))
	// Output: 192.0.2.7 1 1h0m0s
}

// TestImport: a ban from elsewhere is recorded with its origin for the
// time asked (capped at MaxDuration); an address already banned keeps its
// own ban, reason and origin, only extended when the import ends later; a
// manual ban makes it this host's own; its expiry forgets the origin.
func TestImport(t *testing.T) {
	c := newClock()
	s := open(t, "", c, Options{Policy: hour})
	a, local := addr("192.0.2.1"), addr("192.0.2.2")

	b, changed := s.Import(a, 2*time.Hour, "crowdsecurity/ssh-bf", "crowdsec")
	want := Ban{Addr: a, Reason: "crowdsecurity/ssh-bf", Origin: "crowdsec", Since: t0, Expires: t0.Add(2 * time.Hour), Count: 1}
	if diff := cmp.Diff(want, b, addrEq); diff != "" || !changed {
		t.Fatalf("Import (changed %v) (-want +got):\n%s", changed, diff)
	}
	if _, changed := s.Import(a, time.Hour, "other", "fleet:b"); changed {
		t.Error("a shorter import changed the ban")
	}
	b, changed = s.Import(a, 3*time.Hour, "other", "fleet:b")
	if !changed || !b.Expires.Equal(t0.Add(3*time.Hour)) || b.Origin != "crowdsec" || b.Reason != "crowdsecurity/ssh-bf" {
		t.Errorf("a longer import: %+v (changed %v), want the crowdsec ban extended to 3h", b, changed)
	}

	s.Ban(local, "UDP", 53, "UDP")
	b, _ = s.Import(local, 30*time.Minute, "x", "crowdsec")
	if b.Origin != "" || b.Reason != "UDP" || !b.Expires.Equal(t0.Add(time.Hour)) {
		t.Errorf("import over a local ban: %+v, want the local ban unchanged", b)
	}
	b, _ = s.Import(local, 5*time.Hour, "x", "crowdsec")
	if b.Origin != "" || b.Reason != "UDP" || !b.Expires.Equal(t0.Add(5*time.Hour)) {
		t.Errorf("a longer import over a local ban: %+v, want it local, ending at 5h", b)
	}
	b = s.BanFor(a, time.Hour, "manual")
	if b.Origin != "" {
		t.Errorf("a manual ban over an import kept origin %q", b.Origin)
	}

	if b, changed := s.Import(addr("192.0.2.3"), 0, "x", "crowdsec"); changed || b.Addr.IsValid() {
		t.Errorf("Import for 0 recorded %+v", b)
	}
	b, _ = s.Import(addr("192.0.2.4"), 100*MaxDuration, "x", "crowdsec")
	if got := b.Expires.Sub(t0); got != MaxDuration {
		t.Errorf("Import for 100 years lasts %v, want MaxDuration", got)
	}
	c.advance(4 * time.Hour)
	s.Expire()
	b, _ = s.Import(addr("192.0.2.1"), time.Hour, "y", "fleet:c")
	if b.Count != 2 || b.Origin != "fleet:c" || b.Reason != "y" {
		t.Errorf("import after expiry: %+v", b)
	}
}
