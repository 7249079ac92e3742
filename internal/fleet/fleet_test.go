package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portsentry-go/portsentry/internal/enforce/bans"
	"github.com/portsentry-go/portsentry/internal/syncbuf"
)

// sink records what a member applies, refusing the addresses in refuse.
type sink struct {
	mu      sync.Mutex
	imports map[netip.Addr]imported
	revoked []netip.Prefix
	refuse  map[netip.Addr]bool
}

type imported struct {
	ttl            time.Duration
	reason, origin string
}

func newSink() *sink {
	return &sink{imports: map[netip.Addr]imported{}, refuse: map[netip.Addr]bool{}}
}

func (s *sink) Import(a netip.Addr, ttl time.Duration, reason, origin string, done func(error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refuse[a] {
		done(errors.New("on the ignore list"))
		return
	}
	s.imports[a] = imported{ttl, reason, origin}
	done(nil)
}

func (s *sink) Revoke(p netip.Prefix, originPrefix, by string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revoked = append(s.revoked, p)
	for a, im := range s.imports {
		if p.Contains(a) && strings.HasPrefix(im.origin, originPrefix) {
			delete(s.imports, a)
		}
	}
}

func (s *sink) get(a netip.Addr) (imported, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	im, ok := s.imports[a]
	return im, ok
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.imports)
}

// freePort is a loopback port nothing listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start runs a member until the test ends.
func start(t *testing.T, c Config, s Sink) (*Member, *syncbuf.Buffer) {
	t.Helper()
	log := &syncbuf.Buffer{}
	m, err := New(c, s, slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("%s's log:\n%s", c.Name, log.String())
		}
	})
	return m, log
}

// eventually waits up to 10 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	// Long enough for clustered servers to elect their leaders under the
	// race detector on a busy 2-core machine; a condition met returns at
	// once.
	eventuallyFor(t, 30*time.Second, what, cond)
}

// eventuallyFor waits up to d for cond.
func eventuallyFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ban(addr string, d time.Duration) bans.Ban {
	now := time.Now()
	b := bans.Ban{Addr: netip.MustParseAddr(addr), Reason: "TCP SYN/Normal scan", Port: 143, Proto: "TCP", Since: now, Count: 1}
	if d > 0 {
		b.Expires = now.Add(d)
	}
	return b
}

// Two members on A's embedded server: A's bans and lifts reach B with
// their origin and remaining lifetime, capped by B's FLEET_MAX_BAN_TIME;
// B's refusal is counted; a member started later catches up on every ban
// still in force, and not on bans that have ended or were lifted.
func TestShareImportLiftCatchUp(t *testing.T) {
	listen := freePort(t)
	a, _ := start(t, Config{Name: "a", Listen: listen, Store: t.TempDir(), Token: "s3cret"}, newSink())
	url := "nats://" + listen
	sb := newSink()
	sb.refuse[netip.MustParseAddr("192.0.2.9")] = true
	b, _ := start(t, Config{Name: "b", URLs: []string{url}, Token: "s3cret", MaxBanTime: 30 * time.Minute}, sb)
	eventually(t, "both connected", func() bool { return a.Status().Connected && b.Status().Connected })

	a.Share(ban("192.0.2.7", time.Hour))
	a.Share(ban("192.0.2.8", 10*time.Minute))
	a.Share(ban("192.0.2.9", time.Hour))
	a.Share(ban("2001:db8::7", 0)) // permanent on A: capped on B
	a.Share(ban("192.0.2.10", time.Nanosecond))
	for _, addr := range []string{"192.0.2.7", "192.0.2.8", "2001:db8::7"} {
		eventually(t, "B imports "+addr, func() bool { _, ok := sb.get(netip.MustParseAddr(addr)); return ok })
	}
	im, _ := sb.get(netip.MustParseAddr("192.0.2.7"))
	if im.origin != "fleet:a" || im.reason != "TCP SYN/Normal scan" || im.ttl > 30*time.Minute || im.ttl < 29*time.Minute {
		t.Errorf("192.0.2.7 imported as %+v, want origin fleet:a, capped at 30m", im)
	}
	if im, _ := sb.get(netip.MustParseAddr("192.0.2.8")); im.ttl > 10*time.Minute || im.ttl < 9*time.Minute {
		t.Errorf("192.0.2.8 imported for %v, want its remaining 10m", im.ttl)
	}
	if im, _ := sb.get(netip.MustParseAddr("2001:db8::7")); im.ttl > 30*time.Minute || im.ttl < 29*time.Minute {
		t.Errorf("a permanent ban imported for %v, want FLEET_MAX_BAN_TIME", im.ttl)
	}
	eventually(t, "B counts the refusal", func() bool { return b.Status().Refused == 1 })
	if _, ok := sb.get(netip.MustParseAddr("192.0.2.10")); ok {
		t.Error("a ban over before it arrived was applied")
	}

	a.ShareLift(netip.MustParsePrefix("192.0.2.8/32"))
	eventually(t, "B lifts 192.0.2.8", func() bool { _, ok := sb.get(netip.MustParseAddr("192.0.2.8")); return !ok })

	// B's own bans come back to B as nothing.
	b.Share(ban("198.51.100.1", time.Hour))
	eventually(t, "A publishes, B publishes", func() bool { return a.Status().Published == 6 && b.Status().Published == 1 })

	sc := newSink()
	sc.refuse[netip.MustParseAddr("192.0.2.9")] = true
	c, _ := start(t, Config{Name: "c", URLs: []string{url}, Token: "s3cret"}, sc)
	eventually(t, "C catches up", func() bool { return sc.count() == 3 })
	for _, addr := range []string{"192.0.2.7", "2001:db8::7", "198.51.100.1"} {
		if _, ok := sc.get(netip.MustParseAddr(addr)); !ok {
			t.Errorf("C did not catch up on %s", addr)
		}
	}
	if _, ok := sc.get(netip.MustParseAddr("192.0.2.8")); ok {
		t.Error("C applied a lifted ban")
	}
	st := c.Status()
	if !st.Connected || strings.Join(st.Members, ",") != "a,b,c" {
		t.Errorf("C's status: %+v", st)
	}
}

// A client without the token can neither read nor publish.
func TestNoCredentialsRefused(t *testing.T) {
	listen := freePort(t)
	a, _ := start(t, Config{Name: "a", Listen: listen, Store: t.TempDir(), Token: "s3cret"}, newSink())
	eventually(t, "A connected", func() bool { return a.Status().Connected })
	for _, opts := range [][]nats.Option{nil, {nats.Token("wrong")}} {
		nc, err := nats.Connect("nats://"+listen, opts...)
		if err == nil {
			nc.Close()
			t.Fatalf("connected without the token (%d options)", len(opts))
		}
		if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Errorf("refused with %v, want an authorization violation", err)
		}
	}
}

// A member publishing faster than FLEET_MAX_RATE is throttled: the
// others apply about a second's worth, count the rest, and say so.
func TestRateThrottled(t *testing.T) {
	listen := freePort(t)
	a, _ := start(t, Config{Name: "a", Listen: listen, Store: t.TempDir()}, newSink())
	sb := newSink()
	b, blog := start(t, Config{Name: "b", URLs: []string{"nats://" + listen}, MaxRate: 5}, sb)
	eventually(t, "both connected", func() bool { return a.Status().Connected && b.Status().Connected })
	start := time.Now()
	for i := range 100 {
		a.Share(ban(fmt.Sprintf("192.0.2.%d", i+1), time.Hour))
	}
	eventually(t, "B reads all 100", func() bool { return b.Status().Received == 100 })
	elapsed := time.Since(start)
	st := b.Status()
	// A burst of 5, then 5 a second for as long as the publishing took.
	max := 5 + int(elapsed.Seconds()*5) + 1
	if n := sb.count(); n < 5 || n > max || st.Throttled != uint64(100-n) {
		t.Errorf("B applied %d and throttled %d of 100 sent within %v; want 5 to %d applied, the rest throttled", n, st.Throttled, elapsed, max)
	}
	if !strings.Contains(blog.String(), "fleet: member a publishes more than FLEET_MAX_RATE=5 bans a second") {
		t.Errorf("no warning in B's log:\n%s", blog.String())
	}
}

// With its server unreachable a member keeps its bans in the queue and
// starts without waiting; they go out once the server is there.
func TestQueueWhileUnreachable(t *testing.T) {
	listen := freePort(t)
	a, _ := start(t, Config{Name: "a", URLs: []string{"nats://" + listen}}, newSink())
	for i := range 20 {
		a.Share(ban(fmt.Sprintf("192.0.2.%d", i+1), time.Hour))
	}
	time.Sleep(300 * time.Millisecond)
	if st := a.Status(); st.Connected || st.Queued != 20 || st.Published != 0 {
		t.Fatalf("unreachable: %+v", st)
	}
	sb := newSink()
	start(t, Config{Name: "b", Listen: listen, Store: t.TempDir()}, sb)
	eventually(t, "A's queued bans reach B", func() bool { return sb.count() == 20 })
	if st := a.Status(); st.Queued != 0 || st.Published != 20 {
		t.Errorf("after reconnecting: %+v", st)
	}
}

func TestQueueBounded(t *testing.T) {
	var q queue
	for i := range maxQueued + 5 {
		began := q.push(outgoing{subj: fmt.Sprint(i)})
		if began != (i == maxQueued) {
			t.Fatalf("push %d: drops begin %v", i, began)
		}
	}
	n, dropped := q.len()
	first, _ := q.peek()
	if n != maxQueued || dropped != 5 || first.subj != "5" {
		t.Fatalf("len %d dropped %d first %q", n, dropped, first.subj)
	}
	for range maxQueued {
		it, _ := q.peek()
		q.pop(it)
	}
	if n, _ := q.len(); n != 0 {
		t.Fatalf("%d left", n)
	}
}

// consumers lists the stream's consumers and the servers they run on.
func consumers(t *testing.T, url, token string) map[string]string {
	t.Helper()
	nc, err := nats.Connect(url, nats.Token(token))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	l := s.ListConsumers(ctx)
	for ci := range l.Info() {
		out[ci.Name] = ""
		if ci.Cluster != nil {
			out[ci.Name] = ci.Cluster.Leader
		}
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// Starting again (a reconnection, a consumer gone quiet) rewinds the
// member's consumer to the next message it has not read, without making
// a new one: after a partition the JetStream meta leader that creating
// one needs may be in an election.
func TestStartAgainRewinds(t *testing.T) {
	listen := freePort(t)
	url := "nats://" + listen
	a, _ := start(t, Config{Name: "a", Listen: listen, Store: t.TempDir(), Token: "s3cret"}, newSink())
	sb := newSink()
	b, _ := start(t, Config{Name: "b", URLs: []string{url}, Token: "s3cret"}, sb)
	eventually(t, "both connected", func() bool { return a.Status().Connected && b.Status().Connected })
	for i := range 3 {
		a.Share(ban(fmt.Sprintf("192.0.2.%d", i+1), time.Hour))
	}
	eventually(t, "B imports 3", func() bool { return sb.count() == 3 })
	before := consumers(t, url, "s3cret")
	if len(before) != 2 {
		t.Fatalf("consumers %v, want A's and B's", before)
	}

	// As if B had read only the first ban: starting again brings the
	// other two back, from the same consumer.
	sb.mu.Lock()
	delete(sb.imports, netip.MustParseAddr("192.0.2.2"))
	delete(sb.imports, netip.MustParseAddr("192.0.2.3"))
	sb.mu.Unlock()
	b.lastSeq.Store(1)
	b.poke(b.restart)
	eventually(t, "B reads the two again", func() bool { return sb.count() == 3 })
	a.Share(ban("192.0.2.4", time.Hour))
	eventually(t, "B imports a new one", func() bool { _, ok := sb.get(netip.MustParseAddr("192.0.2.4")); return ok })
	if after := consumers(t, url, "s3cret"); !maps.Equal(before, after) {
		t.Errorf("consumers %v after starting again, want the same %v", after, before)
	}
}

// With three clustered embedded servers a member's consumer runs on
// another member's server: its own is the one a partition of its host
// leaves behind.
func TestConsumerOffOwnServer(t *testing.T) {
	names := []string{"a", "b", "c"}
	var listen, cluster []string
	for range names {
		listen, cluster = append(listen, freePort(t)), append(cluster, freePort(t))
	}
	var ms []*Member
	var sinks []*sink
	for i, n := range names {
		var routes, urls []string
		for j := range names {
			urls = append(urls, "nats://"+listen[j])
			if j != i {
				routes = append(routes, cluster[j])
			}
		}
		s := newSink()
		m, _ := start(t, Config{Name: n, Listen: listen[i], Cluster: cluster[i], Routes: routes, URLs: urls, Store: t.TempDir(), Token: "s3cret"}, s)
		ms, sinks = append(ms, m), append(sinks, s)
	}
	ms[0].Share(ban("192.0.2.1", time.Hour))
	for i := 1; i < 3; i++ {
		eventually(t, names[i]+" imports A's ban", func() bool { return sinks[i].count() == 1 })
	}
	// A consumer for each member, none on its member's server (one placed
	// there is made again at once). A member may leave a second one
	// behind, when the answer to its creation came after the request's
	// timeout on a busy machine: idle, it goes after consumerIdle.
	var cs map[string]string
	offOwn := func() bool {
		cs = consumers(t, "nats://"+listen[0], "s3cret")
		owners := map[string]bool{}
		for name, srv := range cs {
			member, _, _ := strings.Cut(name, "-")
			if srv == "" || srv == member {
				return false
			}
			owners[member] = true
		}
		return len(owners) == 3
	}
	deadline := time.Now().Add(30 * time.Second)
	for !offOwn() {
		if time.Now().After(deadline) {
			t.Fatalf("consumers (name: server) %v, want one or more a member, each on another member's server", cs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The consumer file is the member's own, but a damaged one must not name
// anything else.
func TestValidConsumer(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"b-" + strings.Repeat("A", 26), true},
		{"web_1-ABC234", true},
		{"", false},
		{"b.x", false},
		{"b>", false},
		{"b *", false},
		{strings.Repeat("a", MaxMemberName+28), false},
	} {
		if got := validConsumer(tc.name); got != tc.ok {
			t.Errorf("validConsumer(%q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
}
