// Package fleet shares bans between portsentry daemons over NATS
// JetStream: each member publishes the bans it decided on its own evidence
// and the operator's unblocks, and applies the others' through its own
// enforcement (package enforce's Import, after local policy). See
// README.md for the design, the subjects and the stream, and what a
// compromised member can and cannot do.
package fleet

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portsentry-go/portsentry/internal/enforce/bans"
)

// Config is the fleet's part of the configuration (FLEET_*).
type Config struct {
	URLs    []string // FLEET_URL: nats:// (or tls://) URLs of the fleet's servers
	Listen  string   // FLEET_LISTEN: HOST:PORT of the embedded server; "" for none
	Cluster string   // FLEET_CLUSTER: HOST:PORT the embedded server's routes listen on
	Routes  []string // FLEET_ROUTES: HOST:PORT of the other members' FLEET_CLUSTER
	Store   string   // FLEET_STORE: the embedded server's JetStream directory
	Name    string   // FLEET_NAME: this member (ValidMember)
	Token   string   // FLEET_TOKEN
	Creds   string   // FLEET_CREDS: a NATS credentials file
	// FLEET_TLS_CA, FLEET_TLS_CERT, FLEET_TLS_KEY.
	TLSCA, TLSCert, TLSKey string
	// MaxBanTime caps the lifetime of a ban accepted from the fleet,
	// counted from when its member published it (FLEET_MAX_BAN_TIME).
	MaxBanTime time.Duration
	// MaxRate is how many bans and lifts a second one member may publish
	// before the rest are dropped here (FLEET_MAX_RATE), with a burst of
	// as many.
	MaxRate int
}

// Enabled reports whether the configuration joins a fleet.
func (c Config) Enabled() bool { return len(c.URLs) > 0 || c.Listen != "" }

// Sink applies what the fleet says. The daemon's queues Import and Revoke
// for its event loop (package enforce) and returns at once: the consumer
// goes on with the next message while the loop applies this one, so bans
// stream in without a round trip each. done is called with Import's
// result, from the loop; it must not block.
type Sink interface {
	Import(addr netip.Addr, ttl time.Duration, reason, origin string, done func(error))
	Revoke(p netip.Prefix, originPrefix, by string)
}

// Bounds and pacing.
const (
	// maxQueued bounds the bans and lifts waiting to go out while the
	// fleet is unreachable; past it the oldest is dropped (counted).
	maxQueued = 10000
	// maxMembers bounds the members remembered (rate buckets, presence);
	// members beyond share one bucket.
	maxMembers = 65536
	// retry is how soon a failed step (connecting a consumer, creating
	// the stream, publishing) is tried again.
	retry = 250 * time.Millisecond
	// requestTimeout bounds one JetStream request.
	requestTimeout = 2 * time.Second
	// helloEvery is how often a member says it is there; a member not
	// heard from for memberGone is not counted as seen.
	helloEvery = 5 * time.Second
	memberGone = time.Minute
	// streamMaxMsgs bounds the stream whatever its age limit.
	streamMaxMsgs = 1_000_000
	// dedupWindow is JetStream's duplicate window: a publish retried
	// after a lost acknowledgement is stored once.
	dedupWindow = 2 * time.Minute
	// refusedLogs is how many refused or throttled bans are logged one
	// by one per minute; the rest are counted.
	refusedLogs = 10
	// maxConnectErrs bounds the reasons connecting failed logged between
	// two connections.
	maxConnectErrs = 16
)

// Origin is the origin of a ban from member name, as bans.Ban records it.
func Origin(member string) string { return "fleet:" + member }

// OriginPrefix matches every fleet origin (enforce.Revoke).
const OriginPrefix = "fleet:"

// Member is this daemon in the fleet.
type Member struct {
	cfg  Config
	log  *slog.Logger
	sink Sink
	// clientTLS and serverTLS are loaded once, at New.
	clientTLS, serverTLS *tls.Config

	out  queue
	wake chan struct{} // something to publish, or connected again

	connected atomic.Bool
	server    atomic.Pointer[string] // the server connected to
	lag       atomic.Int64           // ns: the last ban applied, how old
	pending   atomic.Uint64          // messages the consumer has not read yet
	published atomic.Uint64
	received  atomic.Uint64
	applied   atomic.Uint64
	refused   atomic.Uint64
	throttled atomic.Uint64
	malformed atomic.Uint64

	mu       sync.Mutex
	seen     map[string]time.Time // members heard from
	buckets  map[string]*bucket
	overall  bucket // members beyond maxMembers
	logMu    sync.Mutex
	logged   int // refused lines logged this minute
	logMin   time.Time
	connErrs map[string]bool // why connecting failed, logged since the last connection

	embedded atomic.Pointer[server.Server]
	ownFirst bool // URLs begin with the embedded server's: keep the order
	// restart asks the consumer to start again from the next message.
	restart chan struct{}
	lastSeq atomic.Uint64 // the last message of the stream read
	epoch   atomic.Uint64 // the consumer's current start (consume)
	// delivering is held by a delivery's handling: a start given up may
	// still be in its callback (ConsumeContext.Stop does not wait for it)
	// when the next start's first delivery comes, and lastSeq must move
	// by one handler at a time.
	delivering sync.Mutex
}

// New checks c and loads its TLS files. It connects to nothing: Run does,
// in the background, so that the daemon never waits for the fleet.
func New(c Config, sink Sink, log *slog.Logger) (*Member, error) {
	if !ValidMember(c.Name) {
		return nil, fmt.Errorf("fleet: member name %q: want 1 to %d letters, digits, - or _", c.Name, MaxMemberName)
	}
	if c.MaxBanTime <= 0 {
		c.MaxBanTime = 24 * time.Hour
	}
	if c.MaxRate <= 0 {
		c.MaxRate = 100
	}
	m := &Member{cfg: c, log: log, sink: sink, wake: make(chan struct{}, 1), restart: make(chan struct{}, 1),
		seen: map[string]time.Time{}, buckets: map[string]*bucket{}, connErrs: map[string]bool{}}
	if c.TLSCA != "" || c.TLSCert != "" {
		var err error
		if m.clientTLS, m.serverTLS, err = loadTLS(c); err != nil {
			return nil, err
		}
	}
	if c.Listen != "" {
		// Its own server first: a member cut off from the others keeps
		// its connection (and its queue moves as soon as the cluster is
		// whole again); the others' servers serve when its own is down.
		own := ownURL(c.Listen, m.clientTLS != nil)
		m.cfg.URLs = []string{own}
		for _, u := range c.URLs {
			if !sameServer(u, c.Listen) {
				m.cfg.URLs = append(m.cfg.URLs, u)
			}
		}
		m.ownFirst = true
	}
	return m, nil
}

func loadTLS(c Config) (client, srv *tls.Config, err error) {
	client = &tls.Config{MinVersion: tls.VersionTLS12}
	srv = &tls.Config{MinVersion: tls.VersionTLS12}
	if c.TLSCA != "" {
		pem, err := os.ReadFile(c.TLSCA)
		if err != nil {
			return nil, nil, fmt.Errorf("FLEET_TLS_CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("FLEET_TLS_CA: %s: no PEM certificate", c.TLSCA)
		}
		// The embedded server's routes dial the other members' as
		// clients: they verify those by RootCAs, as nats-server's own
		// configuration does for a cluster's ca_file.
		client.RootCAs, srv.ClientCAs, srv.RootCAs = pool, pool, pool
		srv.ClientAuth = tls.RequireAndVerifyClientCert
	}
	if c.TLSCert != "" || c.TLSKey != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return nil, nil, fmt.Errorf("FLEET_TLS_CERT, FLEET_TLS_KEY: %w", err)
		}
		client.Certificates, srv.Certificates = []tls.Certificate{cert}, []tls.Certificate{cert}
	}
	if c.Listen != "" && len(srv.Certificates) == 0 {
		return nil, nil, errors.New("FLEET_TLS_CERT: the embedded server (FLEET_LISTEN) needs a certificate for TLS")
	}
	return client, srv, nil
}

// Run serves the fleet until ctx is done: the embedded server if asked,
// the connection (retried forever), the publisher, the consumer and the
// presence messages.
func (m *Member) Run(ctx context.Context) {
	if m.cfg.Listen != "" {
		s, err := startServer(m.cfg, m.serverTLS, m.log)
		if err != nil {
			m.log.Error("fleet: " + err.Error() + "; sharing through FLEET_URL only")
		} else {
			m.embedded.Store(s)
			defer s.Shutdown()
			m.log.Info(fmt.Sprintf("fleet: embedded NATS server listening on %s", m.cfg.Listen))
		}
	}
	nc, err := nats.Connect(strings.Join(m.cfg.URLs, ","), m.natsOptions()...)
	if err != nil {
		m.log.Error("fleet: " + err.Error())
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		m.log.Error("fleet: " + err.Error())
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { m.publish(ctx, nc, js) })
	wg.Go(func() { m.consume(ctx, js) })
	wg.Go(func() { m.hello(ctx, nc) })
	wg.Wait()
}

func (m *Member) natsOptions() []nats.Option {
	o := []nats.Option{
		nats.Name("portsentry " + m.cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(retry),
		nats.ReconnectJitter(100*time.Millisecond, 100*time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.Timeout(requestTimeout),
		// A dead connection (a partition) is found within about 6 s.
		nats.PingInterval(2 * time.Second),
		nats.MaxPingsOutstanding(3),
		// Outgoing bans wait in this package's own bounded queue, not in
		// the client's buffer: publishing fails at once while away.
		nats.ReconnectBufSize(-1),
		// A server that refuses this member (FLEET_TOKEN, FLEET_CREDS,
		// TLS) is asked again like one that is down, not given up on:
		// the operator may fix either side. Why is logged.
		nats.IgnoreAuthErrorAbort(),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) { m.connectFailed(err) }),
		nats.ConnectHandler(func(c *nats.Conn) { m.up(c, false) }),
		nats.ReconnectHandler(func(c *nats.Conn) { m.up(c, true) }),
		nats.DisconnectErrHandler(func(c *nats.Conn, err error) {
			if m.connected.Swap(false) && !c.IsClosed() {
				why := "connection lost"
				if err != nil {
					why = err.Error()
				}
				m.log.Warn("fleet: disconnected from " + *m.server.Load() + " (" + why + "); detection and local bans go on, bans to share wait")
			}
		}),
	}
	if m.ownFirst {
		o = append(o, nats.DontRandomize())
	}
	if m.cfg.Token != "" {
		o = append(o, nats.Token(m.cfg.Token))
	}
	if m.cfg.Creds != "" {
		o = append(o, nats.UserCredentials(m.cfg.Creds))
	}
	if m.clientTLS != nil {
		o = append(o, nats.Secure(m.clientTLS))
	}
	return o
}

// connectFailed logs why connecting failed: each reason once until the
// member connects (at most maxConnectErrs reasons: one for each server
// of FLEET_URL, or a refusal).
func (m *Member) connectFailed(err error) {
	s := err.Error()
	m.logMu.Lock()
	fresh := !m.connErrs[s] && len(m.connErrs) < maxConnectErrs
	if fresh {
		m.connErrs[s] = true
	}
	m.logMu.Unlock()
	if fresh {
		m.log.Warn("fleet: cannot connect (" + s + "); retrying, detection and local bans go on")
	}
}

// up notes a connection made.
func (m *Member) up(c *nats.Conn, again bool) {
	m.logMu.Lock()
	clear(m.connErrs)
	m.logMu.Unlock()
	u := c.ConnectedUrlRedacted()
	m.server.Store(&u)
	m.connected.Store(true)
	if again {
		m.log.Info("fleet: reconnected to " + u)
	} else {
		m.log.Info("fleet: connected to " + u + " as " + m.cfg.Name)
	}
	m.poke(m.wake)
	m.poke(m.restart)
}

func (m *Member) poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Share queues b for the fleet (enforce.Sharer). Never blocks.
func (m *Member) Share(b bans.Ban) {
	data, subj := encodeBan(m.cfg.Name, b.Addr, b.Reason, b.Port, b.Proto, time.Now(), b.Expires, b.Count)
	m.enqueue(subj, data)
}

// ShareLift queues the operator's unblock of p for the fleet.
func (m *Member) ShareLift(p netip.Prefix) {
	data, subj := encodeLift(m.cfg.Name, p.Masked(), time.Now())
	m.enqueue(subj, data)
}

func (m *Member) enqueue(subj string, data []byte) {
	if m.out.push(outgoing{subj: subj, data: data}) {
		m.log.Warn(fmt.Sprintf("fleet: %d bans waiting to be shared: dropping the oldest", maxQueued))
	}
	m.poke(m.wake)
}

// publish sends the queue, in order, whenever connected.
func (m *Member) publish(ctx context.Context, nc *nats.Conn, js jetstream.JetStream) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.wake:
		case <-tick.C:
		}
		for nc.IsConnected() {
			it, ok := m.out.peek()
			if !ok {
				break
			}
			pctx, cancel := context.WithTimeout(ctx, requestTimeout)
			_, err := js.Publish(pctx, it.subj, it.data, jetstream.WithExpectStream(StreamName), jetstream.WithMsgID(it.id()))
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				if !failing {
					m.log.Warn("fleet: sharing a ban failed (" + err.Error() + "); retrying, bans wait in the queue")
					failing = true
				}
				sleep(ctx, retry)
				continue
			}
			if failing {
				m.log.Info("fleet: sharing bans again")
				failing = false
			}
			m.out.pop(it)
			m.published.Add(1)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// streamConfig is the stream as the first member to need it creates it:
// one message per subject (a member's last word on an address), none
// older than the longest ban accepted.
func (m *Member) streamConfig(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              StreamName,
		Description:       "portsentry fleet: bans and lifts, one per member and address",
		Subjects:          []string{banSubjectPrefix + ">"},
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxMsgsPerSubject: 1,
		MaxMsgs:           streamMaxMsgs,
		MaxAge:            m.cfg.MaxBanTime,
		MaxMsgSize:        maxMessage,
		Duplicates:        dedupWindow,
		Replicas:          replicas,
	}
}

// ensureStream creates the stream unless it exists: with three replicas
// where the cluster has three servers, else fewer.
func (m *Member) ensureStream(ctx context.Context, js jetstream.JetStream) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	_, err := js.Stream(ctx, StreamName)
	if err == nil || !errors.Is(err, jetstream.ErrStreamNotFound) {
		return err
	}
	replicas := []int{3, 1}
	if m.embedded.Load() != nil && m.cfg.Cluster != "" {
		replicas = []int{min(3, 1+len(m.cfg.Routes))}
	} else if m.embedded.Load() != nil {
		replicas = []int{1}
	}
	for _, r := range replicas {
		if _, err = js.CreateStream(ctx, m.streamConfig(r)); err == nil || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil
		}
	}
	return err
}

// consume reads the stream from its first message (every ban in force,
// after a restart) and then as it grows, in order. Whenever the
// connection comes back, the consumer goes quiet (a partition), or a
// delivery is missing, it starts again from the next message it has not
// read.
//
// Starting again does not create a consumer when it can help it: it
// rewinds the one it has (a consumer reset, answered by the server that
// runs the consumer). Creating one goes through the JetStream meta
// leader, and a member that comes back from a partition has, alone,
// campaigned for that leadership: its higher term unseats the leader,
// and the cluster is without one for a raft election timeout (4 to 9 s in
// NATS 2.15, which has no pre-vote). The consumer lives on another
// member's server (newConsumer), whose copy of the stream has every ban
// made during the partition, so it can hand them over as soon as the
// routes are back, election or not. A server without consumer resets
// (Debian's 2.9.10 has none; 2.15.3 has them) or a consumer gone (idle
// past consumerIdle, its server restarted, or out of reach while the
// meta leader answers) gets a new consumer instead.
func (m *Member) consume(ctx context.Context, js jetstream.JetStream) {
	failing := ""
	fail := func(what string, err error) {
		if s := what + ": " + err.Error(); s != failing && !errors.Is(err, context.Canceled) {
			m.log.Debug("fleet: " + s)
			failing = s
		}
		sleep(ctx, retry)
	}
	var cons jetstream.Consumer
	defer func() {
		if cons != nil {
			m.dropConsumer(ctx, js, cons, true)
			if f := m.consumerFile(); f != "" {
				_ = os.Remove(f)
			}
		}
	}()
	var epoch uint64
	idle := 0 // starts in a row that ended on a gap with nothing read
	haveStream := false
	for ctx.Err() == nil {
		if cons == nil {
			// At start: the consumer of this member's last run, if it
			// outlived a kill -9, else a new one once the embedded server
			// knows the meta leader.
			if cons = m.savedConsumer(ctx, js); cons == nil {
				m.awaitMeta(ctx)
			}
		}
		if cons == nil || !m.rewind(ctx, js, cons) {
			// Once there the stream stays (unless an operator deletes
			// it): asking each try would cost a request's timeout per
			// try while cut off, and delay the rewind after.
			if !haveStream {
				if err := m.ensureStream(ctx, js); err != nil {
					fail("stream", err)
					continue
				}
				haveStream = true
			}
			c, err := m.newConsumer(ctx, js)
			if err != nil {
				haveStream = !errors.Is(err, jetstream.ErrStreamNotFound)
				fail("consumer", err)
				continue
			}
			if cons != nil {
				m.dropConsumer(ctx, js, cons, false)
			}
			cons = c
		}
		// Each start has its own deliveries, numbered from 1 by the
		// consumer: a number skipped is a message lost on its way (sent
		// into a route a partition had cut), and the next start fetches
		// it again.
		epoch++
		next, this := uint64(1), epoch
		m.epoch.Store(this)
		var gapped atomic.Bool
		var handled atomic.Int64 // the last delivery handled, Unix ns
		handled.Store(time.Now().UnixNano())
		from := m.lastSeq.Load()
		stopped := make(chan struct{}, 1)
		cc, err := cons.Consume(func(msg jetstream.Msg) {
			m.delivering.Lock()
			defer m.delivering.Unlock()
			if m.epoch.Load() != this {
				return // a delivery of a start given up
			}
			md, err := msg.Metadata()
			if err != nil {
				return
			}
			if md.Sequence.Consumer != next {
				next = 0 // nothing more of this start
				gapped.Store(true)
				m.poke(stopped)
				return
			}
			next++
			m.handle(msg, md)
			handled.Store(time.Now().UnixNano())
		},
			jetstream.PullExpiry(5*time.Second), jetstream.PullHeartbeat(time.Second),
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				if errors.Is(err, jetstream.ErrNoHeartbeat) || errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
					m.poke(stopped)
				}
			}))
		if err != nil {
			fail("consume", err)
			continue
		}
		if failing != "" {
			m.log.Debug("fleet: reading the fleet's bans")
			failing = ""
		}
		m.waitStart(ctx, cons, stopped, &handled)
		cc.Stop()
		// Wait until this start's subscription is gone (and its callback
		// done) before the next rewinds the consumer: a pull request of
		// this start still open at the server would take the rewound
		// messages into an inbox nobody reads, silently, until a new ban
		// showed the gap. The server drops a request whose inbox has no
		// interest, and it reads this connection in order.
		select {
		case <-cc.Closed():
		case <-time.After(time.Second):
		}
		// A gap right after a start, again and again with nothing read,
		// is no route cut by a partition (one start mends that): someone
		// else pulls from this consumer. Pace the starts.
		if gapped.Load() && m.lastSeq.Load() == from {
			if idle++; idle > 1 {
				sleep(ctx, retry)
			}
		} else {
			idle = 0
		}
	}
}

// deliveryCheck is how often a start that has handled nothing for as
// long asks the server whether it delivered more than the member read.
const deliveryCheck = 5 * time.Second

// waitStart returns when a start of the consumer is over: ctx done, the
// start stopped (a gap, a lost heartbeat, the consumer gone), a restart
// asked for (a reconnection), or deliveries lost. A rewind can race a
// pull request of the start before it still open at the server, which
// then hands the rewound messages to an inbox nobody reads: the consumer
// counts them delivered, nothing arrives, and only a later ban would show
// the gap. So while the start is idle, the consumer's last delivered
// message is compared with the last one read, deliveryCheck and twice
// deliveryCheck after the start (a request each, only when nothing came
// for as long; a start's later deliveries go to its own pull requests).
func (m *Member) waitStart(ctx context.Context, cons jetstream.Consumer, stopped chan struct{}, handled *atomic.Int64) {
	check := time.NewTicker(deliveryCheck)
	defer check.Stop()
	checks := check.C
	for n := 0; ; {
		select {
		case <-ctx.Done():
			return
		case <-stopped:
			return
		case <-m.restart:
			return
		case <-checks:
			if n++; n == 2 {
				checks = nil
			}
			if time.Since(time.Unix(0, handled.Load())) < deliveryCheck {
				continue
			}
			ictx, cancel := context.WithTimeout(ctx, time.Second)
			ci, err := cons.Info(ictx)
			cancel()
			if err == nil && ci.Delivered.Stream > m.lastSeq.Load() {
				m.log.Debug(fmt.Sprintf("fleet: the server delivered up to %d, read %d: starting again", ci.Delivered.Stream, m.lastSeq.Load()))
				return
			}
		}
	}
}

// awaitMeta waits, for at most two seconds, until the embedded server
// (if any) is current with the JetStream meta leader: a request to create
// a consumer before then waits for an answer that never comes (a
// restarted server learns who leads within about half a second; without
// this, the first attempt timed out and the catch-up after a kill -9 took
// a second longer).
func (m *Member) awaitMeta(ctx context.Context) {
	s := m.embedded.Load()
	if s == nil {
		return
	}
	for deadline := time.Now().Add(2 * time.Second); !s.JetStreamIsCurrent() && time.Now().Before(deadline) && ctx.Err() == nil; {
		sleep(ctx, 10*time.Millisecond)
	}
}

// consumerIdle is how long a consumer nobody pulls from lives on. Longer
// than the partitions it should outlast (the member rewinds it when it is
// back); a member killed leaves its consumer behind for this long.
const consumerIdle = 10 * time.Minute

// rewind sets cons to deliver from the next message not read yet. It
// reports false if the consumer's server does not answer (the consumer
// is gone, out of reach, or the server predates resets).
func (m *Member) rewind(ctx context.Context, js jetstream.JetStream, cons jetstream.Consumer) bool {
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err := js.ResetConsumerToSequence(rctx, StreamName, cons.CachedInfo().Name, m.lastSeq.Load()+1)
	return err == nil
}

// newConsumer creates a consumer from the next message not read yet (the
// first, at start): in memory, one replica, no acknowledgements (the
// member keeps its place itself). A member with a clustered embedded
// server wants it on another member's server: its own is the one that a
// partition of this host leaves behind, and after a restart the one still
// catching up.
func (m *Member) newConsumer(ctx context.Context, js jetstream.JetStream) (jetstream.Consumer, error) {
	cfg := jetstream.ConsumerConfig{
		// The member's name first: whose consumer it is, for an operator
		// looking at the stream.
		Name: m.cfg.Name + "-" + rand.Text(),
		// From the first message, so that it can be rewound to any
		// (a consumer that starts later refuses to go back before its
		// start); rewound before it delivers anything.
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		FilterSubject:     banSubjectPrefix + ">",
		InactiveThreshold: consumerIdle,
		Replicas:          1,
		MemoryStorage:     true,
	}
	own := ""
	if m.embedded.Load() != nil && m.cfg.Cluster != "" {
		own = m.cfg.Name // the embedded server's name
	}
	for try := 0; ; try++ {
		// A short timeout: after a partition heals the next try must come
		// soon, not after a long wait for an answer that never comes.
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		cons, err := js.CreateConsumer(cctx, StreamName, cfg)
		cancel()
		if err != nil {
			return nil, err
		}
		ci := cons.CachedInfo()
		if own != "" && ci.Cluster != nil && ci.Cluster.Leader == own && try < placeTries {
			m.dropConsumer(ctx, js, cons, true)
			continue
		}
		if m.lastSeq.Load() > 0 && !m.rewind(ctx, js, cons) {
			m.dropConsumer(ctx, js, cons, false)
			return nil, errors.New("a new consumer did not take its start")
		}
		if f := m.consumerFile(); f != "" {
			_ = os.WriteFile(f, []byte(ci.Name+"\n"), 0o600)
		}
		return cons, nil
	}
}

// placeTries is how many times a consumer placed on the member's own
// server is made again: the meta leader picks among the stream's servers
// at random, so nine tries leave it there about once in 20 000 with three
// servers (once in 500 with two).
const placeTries = 8

// consumerFile is where a member with an embedded server notes the name
// of its consumer, in FLEET_STORE beside the server's data, so that after
// a kill -9 it rewinds that consumer to the stream's first message rather
// than making a new one (which waits for the meta leader: still in an
// election if the member had just come back from a partition). "" for
// none.
func (m *Member) consumerFile() string {
	if m.cfg.Listen == "" || m.cfg.Store == "" {
		return ""
	}
	return filepath.Join(m.cfg.Store, "consumer")
}

// savedConsumer is the consumer consumerFile names, if it still exists
// (its server answers for it, no meta leader needed); else nil.
func (m *Member) savedConsumer(ctx context.Context, js jetstream.JetStream) jetstream.Consumer {
	f := m.consumerFile()
	if f == "" {
		return nil
	}
	b, err := os.ReadFile(f)
	if err != nil {
		return nil
	}
	name := strings.TrimSpace(string(b))
	if !validConsumer(name) {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	cons, err := js.Consumer(cctx, StreamName, name)
	if err != nil {
		return nil
	}
	return cons
}

// validConsumer reports whether name can be a consumer of this package's
// making (a member's name, "-", base32): a damaged file names none.
func validConsumer(name string) bool {
	if name == "" || len(name) > MaxMemberName+1+26 {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// dropConsumer deletes cons, best effort (it would go after consumerIdle
// anyway): now if wait, else in the background.
func (m *Member) dropConsumer(ctx context.Context, js jetstream.JetStream, cons jetstream.Consumer, wait bool) {
	name := cons.CachedInfo().Name
	del := func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_ = js.DeleteConsumer(dctx, StreamName, name)
		cancel()
	}
	if wait {
		del()
	} else {
		go del()
	}
}

// handle applies one message of the stream. The consumer's goroutine.
func (m *Member) handle(msg jetstream.Msg, md *jetstream.MsgMetadata) {
	if md.Sequence.Stream <= m.lastSeq.Load() {
		return // read already, before a restart of the consumer
	}
	m.lastSeq.Store(md.Sequence.Stream)
	m.pending.Store(md.NumPending)
	b, err := decode(msg.Subject(), msg.Data())
	if err != nil {
		m.malformed.Add(1)
		m.logLimited("fleet: ignoring a message: " + err.Error())
		return
	}
	m.see(b.Member, time.Now())
	if b.Member == m.cfg.Name {
		return
	}
	m.received.Add(1)
	// The server's time, not the member's: a member cannot date its
	// messages into the future to lengthen its bans or dodge the rate.
	at := md.Timestamp
	if b.At.Before(at) {
		at = b.At
	}
	if !m.allow(b.Member, md.Timestamp) {
		m.throttled.Add(1)
		return
	}
	origin := Origin(b.Member)
	if b.Lift {
		m.sink.Revoke(b.Prefix, OriginPrefix, origin)
		return
	}
	now := time.Now()
	end := at.Add(m.cfg.MaxBanTime)
	if !b.Expires.IsZero() && b.Expires.Before(end) {
		end = b.Expires
	}
	ttl := end.Sub(now)
	if ttl <= 0 {
		return // over: a ban replayed after its end
	}
	addr := b.Addr()
	m.sink.Import(addr, ttl, b.Reason, origin, func(err error) {
		if err != nil {
			m.refused.Add(1)
			m.logLimited(fmt.Sprintf("fleet: ban of %s from %s not applied: %v", addr, origin, err))
			return
		}
		m.applied.Add(1)
		m.lag.Store(int64(time.Since(at)))
	})
}

// logLimited logs s unless refusedLogs lines were logged this minute.
// The line is written off the caller's goroutine (the daemon's event
// loop, for a refusal).
func (m *Member) logLimited(s string) {
	m.logMu.Lock()
	now := time.Now()
	if now.Sub(m.logMin) >= time.Minute {
		m.logMin, m.logged = now, 0
	}
	m.logged++
	ok := m.logged <= refusedLogs
	m.logMu.Unlock()
	if ok {
		m.log.Info(s)
	}
}

// hello says this member is there, and listens for the others.
func (m *Member) hello(ctx context.Context, nc *nats.Conn) {
	sub, err := nc.Subscribe(helloSubjectPrefix+"*", func(msg *nats.Msg) {
		if name, ok := strings.CutPrefix(msg.Subject, helloSubjectPrefix); ok && ValidMember(name) {
			m.see(name, time.Now())
		}
	})
	if err == nil {
		defer sub.Unsubscribe()
	}
	t := time.NewTicker(helloEvery)
	defer t.Stop()
	for {
		_ = nc.Publish(helloSubjectPrefix+m.cfg.Name, nil)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *Member) see(name string, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.seen[name]; ok || len(m.seen) < maxMembers {
		m.seen[name] = now
	}
}

// allow takes a token from member's bucket at t (the server's time of
// its message, so that a replay is judged as the live stream was).
func (m *Member) allow(member string, t time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.buckets[member]
	if b == nil {
		if len(m.buckets) < maxMembers {
			b = &bucket{}
			m.buckets[member] = b
		} else {
			b = &m.overall
		}
	}
	ok := b.take(t, float64(m.cfg.MaxRate))
	if !ok && t.Sub(b.warned) >= time.Minute {
		b.warned = t
		m.log.Warn(fmt.Sprintf("fleet: member %s publishes more than FLEET_MAX_RATE=%d bans a second: its bans beyond are dropped here", member, m.cfg.MaxRate))
	}
	return ok
}

// bucket is a token bucket of rate tokens a second, holding at most rate.
type bucket struct {
	tokens float64
	last   time.Time
	warned time.Time
}

func (b *bucket) take(t time.Time, rate float64) bool {
	if b.last.IsZero() {
		b.tokens = rate
	} else if d := t.Sub(b.last); d > 0 {
		b.tokens = min(rate, b.tokens+d.Seconds()*rate)
	}
	if t.After(b.last) {
		b.last = t
	}
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}

// Status is the fleet as portsentry status shows it.
type Status struct {
	Name      string
	Connected bool
	Server    string   // the server connected to, last
	Embedded  string   // FLEET_LISTEN, when the embedded server runs
	Members   []string // heard from within the last minute, this one included
	Lag       time.Duration
	Pending   uint64 // messages not read yet
	Published uint64
	Received  uint64
	Applied   uint64
	Refused   uint64
	Throttled uint64
	Queued    int
	Dropped   uint64 // bans dropped from a full queue
}

// Status describes the member now.
func (m *Member) Status() Status {
	st := Status{Name: m.cfg.Name, Connected: m.connected.Load(), Lag: time.Duration(m.lag.Load()),
		Pending: m.pending.Load(), Published: m.published.Load(), Received: m.received.Load(),
		Applied: m.applied.Load(), Refused: m.refused.Load(), Throttled: m.throttled.Load()}
	if s := m.server.Load(); s != nil {
		st.Server = *s
	}
	if m.embedded.Load() != nil {
		st.Embedded = m.cfg.Listen
	}
	st.Queued, st.Dropped = m.out.len()
	now := time.Now()
	m.mu.Lock()
	for name, t := range m.seen {
		if now.Sub(t) < memberGone {
			st.Members = append(st.Members, name)
		}
	}
	m.mu.Unlock()
	if !slices.Contains(st.Members, m.cfg.Name) {
		st.Members = append(st.Members, m.cfg.Name)
	}
	slices.Sort(st.Members)
	return st
}
