package crowdsec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portsentry-go/portsentry/internal/report/output"
	"github.com/portsentry-go/portsentry/internal/syncbuf"
)

// fakeLAPI is a CrowdSec Local API in memory: the three endpoints this
// package uses, with the checks the real one makes (credentials, token,
// key), and failures on demand.
type fakeLAPI struct {
	t *testing.T
	*httptest.Server
	mu       sync.Mutex
	machine  string // "id:password"
	key      string
	token    string
	logins   int
	alerts   []alert
	failPost int // the next failPost POST /v1/alerts answer 503
	refuse   bool
	stream   []string // answers of the stream, in turn (the last repeats)
	startups []bool   // the startup parameter of each stream request
	hang     chan struct{}
}

func newLAPI(t *testing.T) *fakeLAPI {
	f := &fakeLAPI{t: t, machine: "portsentry:secret", key: "bouncerkey", token: "jwt-1"}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() {
		f.mu.Lock()
		if f.hang != nil {
			close(f.hang)
		}
		f.mu.Unlock()
		f.Close()
	})
	return f
}

func (f *fakeLAPI) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	hang := f.hang
	f.mu.Unlock()
	if hang != nil {
		<-hang
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fail := func(code int, msg string) {
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"message":%q}`, msg)
	}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/watchers/login":
		var in loginRequest
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			fail(400, err.Error())
			return
		}
		f.logins++
		if in.MachineID+":"+in.Password != f.machine {
			fail(401, "incorrect Username or Password")
			return
		}
		fmt.Fprintf(w, `{"code":200,"expire":%q,"token":%q}`, time.Now().Add(time.Hour).UTC().Format(time.RFC3339), f.token)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/alerts":
		if r.Header.Get("Authorization") != "Bearer "+f.token {
			fail(401, "token is expired")
			return
		}
		if f.failPost > 0 || f.refuse {
			f.failPost--
			fail(503, "database locked")
			return
		}
		var in []alert
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			fail(400, err.Error())
			return
		}
		f.alerts = append(f.alerts, in...)
		ids := make([]string, len(in))
		for i := range in {
			ids[i] = fmt.Sprint(len(f.alerts) - len(in) + i + 1)
		}
		json.NewEncoder(w).Encode(ids)
	case r.Method == http.MethodGet && r.URL.Path == "/v1/decisions/stream":
		f.startups = append(f.startups, r.URL.Query().Get("startup") == "true")
		if r.Header.Get("X-Api-Key") != f.key {
			fail(403, "access forbidden")
			return
		}
		if len(f.stream) == 0 {
			io.WriteString(w, `{"new":null,"deleted":null}`)
			return
		}
		io.WriteString(w, f.stream[0])
		if len(f.stream) > 1 {
			f.stream = f.stream[1:]
		}
	default:
		fail(404, "no such endpoint")
	}
}

func (f *fakeLAPI) received() []alert {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]alert(nil), f.alerts...)
}

func testLog() (*slog.Logger, *syncbuf.Buffer) {
	b := &syncbuf.Buffer{}
	return output.New(b, slog.LevelInfo), b
}

func client(t *testing.T, f *fakeLAPI, mod func(*Config)) *Client {
	t.Helper()
	cfg := Config{URL: f.URL, MachineID: "portsentry", Password: "secret", BouncerKey: "bouncerkey", Poll: 20 * time.Millisecond, Timeout: 2 * time.Second, Version: "test"}
	if mod != nil {
		mod(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitLong(t, what, 5*time.Second, cond)
}

// waitLong polls cond for up to d.
func waitLong(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCheckURL(t *testing.T) {
	for _, tc := range []struct {
		url, err string
	}{
		{"http://127.0.0.1:8080", ""},
		{"http://127.0.0.1:8080/", ""},
		{"http://[::1]:8080/", ""},
		{"http://localhost:8080", ""},
		{"https://lapi.example.org/", ""},
		{"https://lapi.example.org/crowdsec/", ""},
		{"http://192.0.2.1:8080/", "plain http only to a loopback address"},
		{"http://lapi.example.org/", "plain http only to a loopback address"},
		{"ftp://127.0.0.1/", "must be an http:// or https:// URL"},
		{"127.0.0.1:8080", "not a URL"},
		{"lapi:8080", "must be an http:// or https:// URL"},
		{"https://", "no host"},
		{"https://user:pw@lapi.example.org/", "without user"},
		{"https://lapi.example.org/?x=1", "without user, query"},
		{"http://%zz", "not a URL"},
	} {
		_, err := CheckURL(tc.url)
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("CheckURL(%q) = %v, want %q", tc.url, err, tc.err)
		}
	}
}

// TestPush: bans become alerts with their ban decision, as CrowdSec 1.4
// wants them: an address for its time left, a /64 as a Range, a
// permanent ban for a year; one login serves many pushes.
func TestPush(t *testing.T) {
	f := newLAPI(t)
	log, _ := testLog()
	p := NewPusher(client(t, f, nil), log)
	now := time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC)
	p.now = func() time.Time { return now }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)

	p.Push(Ban{Prefix: netip.MustParsePrefix("198.51.100.7/32"), Reason: "TCP SYN/Normal scan", Port: 143, Proto: "TCP", Since: now.Add(-time.Minute), Expires: now.Add(time.Hour)})
	waitFor(t, "the first alert", func() bool { return len(f.received()) == 1 })
	p.Push(Ban{Prefix: netip.MustParsePrefix("2001:db8:1:2::/64"), Reason: "UDP", Since: now})
	p.Push(Ban{Prefix: netip.MustParsePrefix("198.51.100.8/32"), Reason: "UDP", Since: now, Expires: now.Add(time.Millisecond)}) // over before it is sent
	p.Push(Ban{Prefix: netip.MustParsePrefix("198.51.100.9/32"), Reason: "UDP", Since: now, Expires: now.Add(time.Hour)})
	waitFor(t, "three alerts", func() bool { return len(f.received()) == 3 })

	got := f.received()
	at := now.Add(-time.Minute).Format(time.RFC3339)
	want0 := alert{
		Scenario: "portsentry/scan", Message: "portsentry: TCP SYN/Normal scan from 198.51.100.7 to TCP port 143",
		EventsCount: 1, StartAt: at, StopAt: at, Leakspeed: "0",
		Events:    []event{{Timestamp: at, Meta: []meta{{"service", "portsentry"}, {"source_ip", "198.51.100.7"}, {"reason", "TCP SYN/Normal scan"}, {"port", "143"}, {"proto", "TCP"}}}},
		Source:    source{Scope: "Ip", Value: "198.51.100.7", IP: "198.51.100.7"},
		Decisions: []decision{{Origin: "crowdsec", Type: "ban", Scope: "Ip", Value: "198.51.100.7", Duration: "1h0m0s", Scenario: "portsentry/scan"}},
	}
	if diff := cmp.Diff(want0, got[0]); diff != "" {
		t.Errorf("first alert (-want +got):\n%s", diff)
	}
	if d := got[1].Decisions[0]; d.Scope != "Range" || d.Value != "2001:db8:1:2::/64" || d.Duration != "8760h0m0s" || got[1].Source.Range != "2001:db8:1:2::/64" {
		t.Errorf("permanent /64 ban pushed as %+v, source %+v", d, got[1].Source)
	}
	if v := got[2].Decisions[0].Value; v != "198.51.100.9" {
		t.Errorf("third alert is for %s, want 198.51.100.9 (the ban already over is not pushed)", v)
	}
	if f.logins != 1 {
		t.Errorf("%d logins for three pushes, want 1", f.logins)
	}
	waitFor(t, "the queue emptied", func() bool { return p.Stats().Queued == 0 })
	if st := p.Stats(); st.Pushed != 3 || st.Dropped != 0 || !st.Connected() || !st.LastPush.Equal(now) || st.LastError != "" {
		t.Errorf("Stats = %+v, want 3 pushed (the ban over before it was sent is not), connected, last push at %v", st, now)
	}
}

// TestPushFailures: with the LAPI failing, bans wait and go once it
// answers; the failure is logged once and its end once. A token the
// LAPI stopped accepting is renewed; credentials it refuses are logged.
func TestPushFailures(t *testing.T) {
	f := newLAPI(t)
	log, out := testLog()
	p := NewPusher(client(t, f, nil), log)
	p.retryMin = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.failPost = 3
	go p.Run(ctx)
	for i := range 5 {
		p.Push(Ban{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)}), 32), Reason: "UDP", Since: time.Now(), Expires: time.Now().Add(time.Hour)})
	}
	waitFor(t, "five alerts after three failures", func() bool { return len(f.received()) == 5 })
	waitFor(t, "the recovery logged", func() bool { return strings.Contains(out.String(), "CrowdSec: pushing bans to "+f.URL+"/ again") })
	if n := strings.Count(out.String(), "pushing bans to"); n != 2 {
		t.Errorf("%d lines about pushing, want the failure and the recovery:\n%s", n, out.String())
	}
	if !strings.Contains(out.String(), "503 Service Unavailable: database locked") {
		t.Errorf("the LAPI's error is not logged:\n%s", out.String())
	}

	// The LAPI restarted with a new secret: the old token is refused once.
	f.mu.Lock()
	f.token = "jwt-2"
	f.mu.Unlock()
	p.Push(Ban{Prefix: netip.MustParsePrefix("198.51.100.77/32"), Reason: "UDP", Since: time.Now(), Expires: time.Now().Add(time.Hour)})
	waitFor(t, "the alert after a new login", func() bool { return len(f.received()) == 6 })

	// Wrong credentials: an error saying so, and nothing sent.
	f2 := newLAPI(t)
	log2, out2 := testLog()
	p2 := NewPusher(client(t, f2, func(c *Config) { c.Password = "wrong" }), log2)
	go p2.Run(ctx)
	p2.Push(Ban{Prefix: netip.MustParsePrefix("198.51.100.78/32"), Reason: "UDP", Since: time.Now(), Expires: time.Now().Add(time.Hour)})
	if st := p2.Stats(); st.Connected() || !st.LastPush.IsZero() {
		t.Errorf("before its first push: %+v, want not connected", st)
	}
	waitFor(t, "the refusal logged", func() bool { return strings.Contains(out2.String(), "credentials refused") })
	if st := p2.Stats(); st.Connected() || !strings.Contains(st.LastError, "401 Unauthorized") || st.LastErrorAt.IsZero() || st.Queued != 1 || st.Pushed != 0 {
		t.Errorf("with its credentials refused: %+v, want not connected, the 401 as last error, the ban waiting", st)
	}
	if st := p.Stats(); !st.Connected() || st.LastError != "" || st.Pushed != 6 {
		t.Errorf("after the failures: %+v, want connected, no error, 6 pushed", st)
	}
	if !strings.Contains(out2.String(), "401 Unauthorized: incorrect Username or Password") || strings.Contains(out2.String(), "wrong") {
		t.Errorf("refusal line (must give the LAPI's reason, never the password):\n%s", out2.String())
	}
	if len(f2.received()) != 0 {
		t.Error("alerts accepted without a login")
	}
}

// TestPushQueueBounded: with the LAPI away, at most QueueSize bans wait;
// the oldest go first, counted, and the rest are sent when it is back.
func TestPushQueueBounded(t *testing.T) {
	f := newLAPI(t)
	f.refuse = true
	log, _ := testLog()
	p := NewPusher(client(t, f, nil), log)
	const extra = 10
	for i := range QueueSize + extra {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		p.Push(Ban{Prefix: netip.PrefixFrom(a, 32), Reason: "UDP", Since: time.Now(), Expires: time.Now().Add(time.Hour)})
	}
	if st := p.Stats(); st.Queued != QueueSize || st.Dropped != extra {
		t.Fatalf("Stats = %+v, want %d queued and %d dropped", st, QueueSize, extra)
	}
	f.mu.Lock()
	f.refuse = false
	f.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)
	// 41 requests of 100 alerts: seconds under the race detector.
	waitLong(t, "the queue sent", time.Minute, func() bool { return len(f.received()) == QueueSize })
	if first := f.received()[0].Source.Value; first != "10.0.0.10" {
		t.Errorf("first alert sent is for %s, want 10.0.0.10 (the %d oldest dropped)", first, extra)
	}
}

// TestTimeout: a LAPI that never answers costs a request at most its
// timeout.
func TestTimeout(t *testing.T) {
	f := newLAPI(t)
	f.hang = make(chan struct{})
	c := client(t, f, func(c *Config) { c.Timeout = 200 * time.Millisecond })
	start := time.Now()
	_, err := c.stream(context.Background(), true)
	if err == nil || time.Since(start) > 2*time.Second {
		t.Errorf("stream against a hung LAPI: %v after %v", err, time.Since(start))
	}
}

// fakeTarget records what the puller asks of enforcement.
type fakeTarget struct {
	mu      sync.Mutex
	banned  map[netip.Addr]time.Duration
	log     []string
	protect netip.Addr
}

var errProtected = errors.New("protected")

func newTarget() *fakeTarget { return &fakeTarget{banned: map[netip.Addr]time.Duration{}} }

func (ft *fakeTarget) target() Target {
	return Target{
		Import: func(a netip.Addr, ttl time.Duration, reason string) error {
			ft.mu.Lock()
			defer ft.mu.Unlock()
			if a == ft.protect {
				return errProtected
			}
			ft.log = append(ft.log, fmt.Sprintf("import %v %v %s", a, ttl.Round(time.Second), reason))
			ft.banned[a] = ttl
			return nil
		},
		Withdraw: func(a netip.Addr) (bool, error) {
			ft.mu.Lock()
			defer ft.mu.Unlock()
			_, ok := ft.banned[a]
			delete(ft.banned, a)
			ft.log = append(ft.log, fmt.Sprintf("withdraw %v %v", a, ok))
			return ok, nil
		},
		Held: func() []netip.Addr {
			ft.mu.Lock()
			defer ft.mu.Unlock()
			var out []netip.Addr
			for a := range ft.banned {
				out = append(out, a)
			}
			return out
		},
		Refused: func(err error) string {
			if errors.Is(err, errProtected) {
				return "protected"
			}
			return ""
		},
	}
}

func (ft *fakeTarget) take() []string {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	l := ft.log
	ft.log = nil
	return l
}

// TestPull: one pull after another, what the puller asks of enforcement.
func TestPull(t *testing.T) {
	d := func(id int, typ, scope, value, dur string) string {
		return fmt.Sprintf(`{"duration":%q,"id":%d,"origin":"cscli","scenario":"manual 'ban' from 'cscli'","scope":%q,"type":%q,"value":%q}`, dur, id, scope, typ, value)
	}
	steps := []struct {
		name   string
		answer string
		want   []string
		line   string // in the log
	}{
		{"startup: bans of addresses only; a stale ban of ours lifted",
			`{"new":[` + strings.Join([]string{
				d(1, "ban", "Ip", "203.0.113.7", "3h59m58.5s"),
				d(2, "ban", "ip", "2001:db8::7", "10m"),
				d(3, "captcha", "Ip", "203.0.113.8", "1h"),
				d(4, "ban", "Range", "203.0.113.0/24", "1h"),
				d(5, "ban", "Ip", "not-an-address", "1h"),
				d(6, "ban", "Ip", "203.0.113.9", "-5s"),
				d(7, "ban", "Ip", "fe80::1%eth0", "1h"),
				d(8, "ban", "Ip", "192.0.2.1", "1h"), // protected here
				d(9, "ban", "Ip", "::ffff:203.0.113.10", "1h"),
			}, ",") + `],"deleted":[` + d(99, "ban", "Ip", "203.0.113.99", "-1h") + `]}`,
			[]string{
				"import 203.0.113.7 3h59m59s manual 'ban' from 'cscli'",
				"import 2001:db8::7 10m0s manual 'ban' from 'cscli'",
				"import 203.0.113.10 1h0m0s manual 'ban' from 'cscli'",
				"withdraw 198.51.100.50 true",
			},
			"CrowdSec decisions at start: 3 addresses banned, 1 lifted, 1 refused by local policy (ignore list, this host, its infrastructure, peers), 5 skipped (not an IP ban), 0 failed"},
		{"a second decision on an address; deletion of the first lifts nothing",
			`{"new":[` + d(10, "ban", "Ip", "203.0.113.7", "5h") + `],"deleted":null}`,
			[]string{"import 203.0.113.7 5h0m0s manual 'ban' from 'cscli'"}, ""},
		{"the first deleted: the address keeps its second",
			`{"new":null,"deleted":[` + d(1, "ban", "Ip", "203.0.113.7", "-1s") + `]}`,
			nil, ""},
		{"the second deleted: lifted; an unknown deletion ignored",
			`{"new":[],"deleted":[` + d(10, "ban", "Ip", "203.0.113.7", "-1s") + `,` + d(55, "ban", "Ip", "203.0.113.55", "-1s") + `]}`,
			[]string{"withdraw 203.0.113.7 true"},
			"CrowdSec decisions: 0 addresses banned, 1 lifted"},
		{"a broken answer: logged, nothing applied",
			`{"new":[{"id":"x"}]`,
			nil, "decoding the answer"},
		{"after the failure",
			`{"new":[` + d(11, "ban", "Ip", "198.51.100.11", "1m") + `],"deleted":null}`,
			[]string{"import 198.51.100.11 1m0s manual 'ban' from 'cscli'"}, "reading decisions from"},
	}
	f := newLAPI(t)
	log, out := testLog()
	ft := newTarget()
	ft.protect = netip.MustParseAddr("192.0.2.1")
	ft.banned[netip.MustParseAddr("198.51.100.50")] = time.Hour // on CrowdSec's word before a restart
	p := NewPuller(client(t, f, nil), ft.target(), log)
	for i, st := range steps {
		f.mu.Lock()
		f.stream = []string{st.answer}
		f.mu.Unlock()
		p.poll(context.Background())
		if diff := cmp.Diff(st.want, ft.take()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", st.name, diff)
		}
		if st.line != "" && !strings.Contains(out.String(), st.line) {
			t.Errorf("%s: no line with %q:\n%s", st.name, st.line, out.String())
		}
		f.mu.Lock()
		startup := f.startups[i]
		f.mu.Unlock()
		if startup != (i == 0) {
			t.Errorf("%s: startup=%v", st.name, startup)
		}
		if ps := p.Stats(); strings.HasPrefix(st.name, "a broken answer") != (ps.LastError != "") || ps.Connected() == (ps.LastError != "") {
			t.Errorf("%s: Stats %+v", st.name, ps)
		}
	}
	// 9+1+1 decisions read (the broken answer none); 3+1+1 bans applied,
	// 1+1 lifted; the protected address refused; 5 skipped; 4 followed
	// (2, 8, 9 and 11).
	want := PullStats{Pulled: 11, Applied: 5, Lifted: 2, Refused: map[string]uint64{"protected": 1}, Skipped: 5, Followed: 4}
	got := p.Stats()
	if got.LastPoll.IsZero() || time.Since(got.LastPoll) > time.Minute {
		t.Errorf("last poll at %v", got.LastPoll)
	}
	got.LastPoll = time.Time{}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
	if n := strings.Count(out.String(), "reading decisions from"); n != 2 {
		t.Errorf("%d lines about reading decisions, want the failure and the recovery:\n%s", n, out.String())
	}
}

// TestPullRefused: a wrong bouncer key is logged with what to check, once
// however many polls fail, and the startup pull is asked for again.
func TestPullRefused(t *testing.T) {
	f := newLAPI(t)
	log, out := testLog()
	p := NewPuller(client(t, f, func(c *Config) { c.BouncerKey = "wrong" }), newTarget().target(), log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	waitFor(t, "three polls", func() bool { f.mu.Lock(); defer f.mu.Unlock(); return len(f.startups) >= 3 })
	cancel()
	<-done
	if n := strings.Count(out.String(), "check CROWDSEC_BOUNCER_KEY"); n != 1 {
		t.Errorf("%d refusal lines, want 1:\n%s", n, out.String())
	}
	if strings.Contains(out.String(), "wrong") {
		t.Errorf("the key is in the log:\n%s", out.String())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, s := range f.startups {
		if !s {
			t.Errorf("poll %d asked for changes only, before any startup pull succeeded", i)
		}
	}
}

// TestTooLarge: an answer over maxBody is refused, not read whole.
func TestTooLarge(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"new":[`)
		chunk := strings.Repeat(`{"id":1,"type":"ban","scope":"Ip","value":"192.0.2.1","duration":"1h"},`, 1000)
		for range maxBody/len(chunk) + 1 {
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	c, err := NewClient(Config{URL: srv.URL, BouncerKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.stream(context.Background(), true); !errors.Is(err, ErrTooLarge) {
		t.Errorf("stream = %v, want ErrTooLarge", err)
	}
}

// FuzzStream: whatever a LAPI answers, the puller neither panics nor
// follows more than MaxDecisions decisions, and imports only IP bans.
func FuzzStream(f *testing.F) {
	f.Add([]byte(`{"new":[{"duration":"3h59m","id":1,"origin":"cscli","scenario":"x","scope":"Ip","type":"ban","value":"192.0.2.1"}],"deleted":null}`))
	f.Add([]byte(`{"new":null,"deleted":[{"id":1,"scope":"Ip","type":"ban","value":"192.0.2.1","duration":"-1s"}]}`))
	f.Add([]byte(`{"new":[{"id":2,"scope":"range","type":"ban","value":"10.0.0.0/8","duration":"1h"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s Stream
		if json.Unmarshal(data, &s) != nil {
			return
		}
		ft := newTarget()
		log, _ := testLog()
		p := NewPuller(nil, ft.target(), log)
		p.apply(s, true)
		p.apply(s, false)
		if len(p.ids) > MaxDecisions || len(p.count) > len(p.ids) {
			t.Fatalf("%d decisions followed for %d addresses", len(p.ids), len(p.count))
		}
		for a, ttl := range ft.banned {
			if !a.IsValid() || a.Is4In6() || a.Zone() != "" || ttl <= 0 {
				t.Fatalf("imported %v for %v", a, ttl)
			}
		}
	})
}
