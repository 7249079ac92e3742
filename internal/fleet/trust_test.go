package fleet

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

// A test CA and the certificates it signs, as PEM files in a directory.

type testCA struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	path string // the CA's certificate, PEM
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{dir: t.TempDir(), cert: cert, key: key}
	ca.path = writePEM(t, ca.dir, name+"-ca.pem", "CERTIFICATE", der)
	return ca
}

// issue signs a certificate for 127.0.0.1, good for a server and a
// client (a member's serves both: its embedded server, its connection
// and its routes), and returns the paths of it and its key.
func (ca *testCA) issue(t *testing.T, name string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &k.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, ca.dir, name+".pem", "CERTIFICATE", der), writePEM(t, ca.dir, name+"-key.pem", "EC PRIVATE KEY", kder)
}

func writePEM(t *testing.T, dir, name, kind string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// clientTLS is a raw client's TLS: trusting ca (nil: the system's), with
// the certificate cert/key when given.
func clientTLS(t *testing.T, ca *testCA, cert, key string) *tls.Config {
	t.Helper()
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != nil {
		c.RootCAs = x509.NewCertPool()
		c.RootCAs.AddCert(ca.cert)
	}
	if cert != "" {
		kp, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		c.Certificates = []tls.Certificate{kp}
	}
	return c
}

// refusedClient checks that a raw NATS client connecting with opts is
// refused: it can neither read the fleet's bans nor publish one.
func refusedClient(t *testing.T, what, url string, opts ...nats.Option) {
	t.Helper()
	nc, err := nats.Connect(url, append(opts, nats.Timeout(2*time.Second))...)
	if err == nil {
		defer nc.Close()
		t.Errorf("%s: connected", what)
		return
	}
	t.Logf("%s: refused: %v", what, err)
}

// Two members with TLS and client certificates from the fleet's CA (A's
// embedded server, B through FLEET_URL) share a ban; a member trusting
// another CA does not trust A's server, and a client without a
// certificate, or with one from another CA, is refused by it: none of
// them reads A's ban or gets one of its own to A.
func TestTLS(t *testing.T) {
	ca, other := newCA(t, "fleet"), newCA(t, "other")
	aCert, aKey := ca.issue(t, "a")
	bCert, bKey := ca.issue(t, "b")
	xCert, xKey := other.issue(t, "x")
	listen := freePort(t)
	url := "tls://" + listen

	a, _ := start(t, Config{Name: "a", Listen: listen, Store: t.TempDir(), TLSCA: ca.path, TLSCert: aCert, TLSKey: aKey}, newSink())
	// Wrong CA: it does not trust A's server (and A does not trust its
	// certificate).
	sx := newSink()
	x, _ := start(t, Config{Name: "x", URLs: []string{url}, TLSCA: other.path, TLSCert: xCert, TLSKey: xKey}, sx)
	// The fleet's CA, but no certificate of its own.
	sy := newSink()
	y, _ := start(t, Config{Name: "y", URLs: []string{url}, TLSCA: ca.path}, sy)
	sb := newSink()
	b, _ := start(t, Config{Name: "b", URLs: []string{url}, TLSCA: ca.path, TLSCert: bCert, TLSKey: bKey}, sb)
	eventually(t, "A and B connected", func() bool { return a.Status().Connected && b.Status().Connected })
	if s := b.Status().Server; !strings.HasPrefix(s, "tls://") {
		t.Errorf("B connected to %q, want tls://", s)
	}

	a.Share(ban("192.0.2.7", time.Hour))
	eventually(t, "B imports A's ban", func() bool { _, ok := sb.get(netip.MustParseAddr("192.0.2.7")); return ok })
	x.Share(ban("192.0.2.66", time.Hour))
	y.Share(ban("192.0.2.67", time.Hour))
	b.Share(ban("192.0.2.8", time.Hour))
	eventually(t, "B's ban published", func() bool { return b.Status().Published == 1 })
	// By now X and Y had many tries (every 250 ms) at A's server.
	for _, m := range []struct {
		name string
		m    *Member
		s    *sink
	}{{"x (another CA)", x, sx}, {"y (no certificate)", y, sy}} {
		st := m.m.Status()
		if st.Connected || st.Published != 0 || st.Queued != 1 || m.s.count() != 0 {
			t.Errorf("%s: connected %v, published %d, queued %d, imported %d; want refused, its ban waiting, nothing read",
				m.name, st.Connected, st.Published, st.Queued, m.s.count())
		}
	}
	eventually(t, "A reads B's ban", func() bool { return a.Status().Received >= 1 })
	if st := a.Status(); st.Received != 1 || strings.Join(st.Members, ",") != "a,b" {
		t.Errorf("A read %d bans of others from %v; want B's only", st.Received, st.Members)
	}

	refusedClient(t, "no TLS", "nats://"+listen)
	refusedClient(t, "TLS without a client certificate", url, nats.Secure(clientTLS(t, ca, "", "")))
	refusedClient(t, "a client certificate of another CA", url, nats.Secure(clientTLS(t, ca, xCert, xKey)))
	refusedClient(t, "trusting another CA", url, nats.Secure(clientTLS(t, other, bCert, bKey)))
	// The control: a raw client with the fleet's certificate connects.
	nc, err := nats.Connect(url, nats.Secure(clientTLS(t, ca, bCert, bKey)))
	if err != nil {
		t.Fatalf("with B's certificate: %v", err)
	}
	nc.Close()
}

// Two members each running an embedded server, clustered over TLS with
// the fleet's CA (routes verify each other's certificate both ways),
// share a ban: the route is up.
func TestTLSCluster(t *testing.T) {
	ca := newCA(t, "fleet")
	aCert, aKey := ca.issue(t, "a")
	bCert, bKey := ca.issue(t, "b")
	la, lb, ca1, cb := freePort(t), freePort(t), freePort(t), freePort(t)
	sa, sb := newSink(), newSink()
	a, _ := start(t, Config{Name: "a", Listen: la, Cluster: ca1, Routes: []string{cb}, URLs: []string{"tls://" + lb},
		Store: t.TempDir(), Token: "s3cret", TLSCA: ca.path, TLSCert: aCert, TLSKey: aKey}, sa)
	b, _ := start(t, Config{Name: "b", Listen: lb, Cluster: cb, Routes: []string{ca1}, URLs: []string{"tls://" + la},
		Store: t.TempDir(), Token: "s3cret", TLSCA: ca.path, TLSCert: bCert, TLSKey: bKey}, sb)
	eventually(t, "both connected", func() bool { return a.Status().Connected && b.Status().Connected })
	// Each talks to its own server: the ban crosses the route. The two
	// servers elect a JetStream leader first (seconds, more when the
	// machine is loaded).
	eventuallyFor(t, 30*time.Second, "A's ban reaches B", func() bool {
		if _, ok := sb.get(netip.MustParseAddr("192.0.2.7")); ok {
			return true
		}
		if a.Status().Published == 0 && a.Status().Queued == 0 {
			a.Share(ban("192.0.2.7", time.Hour))
		}
		return false
	})
	eventually(t, "B's ban reaches A", func() bool {
		if _, ok := sa.get(netip.MustParseAddr("192.0.2.8")); ok {
			return true
		}
		if b.Status().Published == 0 && b.Status().Queued == 0 {
			b.Share(ban("192.0.2.8", time.Hour))
		}
		return false
	})
}

// An operator-mode NATS server (JWT accounts in a memory resolver), as a
// large fleet's cluster would be set up with nsc.
type operatorServer struct {
	url      string
	operator nkeys.KeyPair
	dir      string
}

// memberPermissions are what a member's user needs, and no more: publish
// its own bans and presence, read the stream through its own consumer,
// hear the others' presence. README.md's nsc line says the same.
func memberPermissions(name string) jwt.Permissions {
	var p jwt.Permissions
	p.Pub.Allow.Add(
		banSubjectPrefix+name+".>",
		helloSubjectPrefix+name,
		"$JS.API.STREAM.INFO."+StreamName,
		"$JS.API.STREAM.CREATE."+StreamName,
		"$JS.API.CONSUMER.CREATE."+StreamName+".>",
		"$JS.API.CONSUMER.MSG.NEXT."+StreamName+".>",
		"$JS.API.CONSUMER.DELETE."+StreamName+".>",
		// Rewinding the consumer after a reconnection (no meta leader
		// needed), and finding it again after a restart.
		"$JS.API.CONSUMER.RESET."+StreamName+".>",
		"$JS.API.CONSUMER.INFO."+StreamName+".>",
	)
	p.Sub.Allow.Add("_INBOX.>", helloSubjectPrefix+"*")
	return p
}

// newOperatorServer runs an in-process server trusting a new operator,
// with a system account and the accounts named, JetStream enabled in
// each; it returns the server and the accounts' keys.
func newOperatorServer(t *testing.T, accounts ...string) (*operatorServer, map[string]nkeys.KeyPair) {
	t.Helper()
	op, _ := nkeys.CreateOperator()
	opPub, _ := op.PublicKey()
	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = "fleet-operator"
	resolver := &server.MemAccResolver{}
	account := func(name string, js bool) (nkeys.KeyPair, string) {
		kp, _ := nkeys.CreateAccount()
		pub, _ := kp.PublicKey()
		ac := jwt.NewAccountClaims(pub)
		ac.Name = name
		if js {
			ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		tok, err := ac.Encode(op)
		if err != nil {
			t.Fatal(err)
		}
		if err := resolver.Store(pub, tok); err != nil {
			t.Fatal(err)
		}
		return kp, pub
	}
	_, sysPub := account("SYS", false)
	oc.SystemAccount = sysPub
	keys := map[string]nkeys.KeyPair{}
	for _, a := range accounts {
		keys[a], _ = account(a, true)
	}
	host, port, _ := splitHostPort(freePort(t))
	s, err := server.NewServer(&server.Options{
		Host: host, Port: port, JetStream: true, StoreDir: t.TempDir(), NoSigs: true,
		TrustedOperators: []*jwt.OperatorClaims{oc}, AccountResolver: resolver, SystemAccount: sysPub,
		DisableJetStreamBanner: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("operator-mode server not ready")
	}
	t.Cleanup(s.Shutdown)
	return &operatorServer{url: "nats://" + net.JoinHostPort(host, strconv.Itoa(port)), operator: op, dir: t.TempDir()}, keys
}

// creds writes a credentials file for user name of account acct, with
// perms, and returns its path.
func (o *operatorServer) creds(t *testing.T, acct nkeys.KeyPair, name string, perms jwt.Permissions) string {
	t.Helper()
	u, _ := nkeys.CreateUser()
	upub, _ := u.PublicKey()
	seed, _ := u.Seed()
	uc := jwt.NewUserClaims(upub)
	uc.Name = name
	uc.Permissions = perms
	tok, err := uc.Encode(acct)
	if err != nil {
		t.Fatal(err)
	}
	data, err := jwt.FormatUserConfig(tok, seed)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(o.dir, name+".creds")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Members with credentials files (FLEET_CREDS) of the fleet's account,
// each a user that may publish only under its own name, share bans on an
// operator-mode server. A client without credentials, or with a user
// the operator never signed, is refused; a member of another account
// connects but neither reads the fleet's bans nor adds to them; a member
// cannot publish under another's name.
func TestCredentials(t *testing.T) {
	srv, accts := newOperatorServer(t, "FLEET", "OTHER")
	fleetAcct := accts["FLEET"]
	sa, sb, so := newSink(), newSink(), newSink()
	a, _ := start(t, Config{Name: "a", URLs: []string{srv.url}, Creds: srv.creds(t, fleetAcct, "a", memberPermissions("a"))}, sa)
	b, _ := start(t, Config{Name: "b", URLs: []string{srv.url}, Creds: srv.creds(t, fleetAcct, "b", memberPermissions("b"))}, sb)
	o, _ := start(t, Config{Name: "o", URLs: []string{srv.url}, Creds: srv.creds(t, accts["OTHER"], "o", memberPermissions("o"))}, so)
	eventually(t, "A, B and O connected", func() bool {
		return a.Status().Connected && b.Status().Connected && o.Status().Connected
	})

	a.Share(ban("192.0.2.7", time.Hour))
	eventually(t, "B imports A's ban", func() bool { _, ok := sb.get(netip.MustParseAddr("192.0.2.7")); return ok })
	b.Share(ban("192.0.2.8", time.Hour))
	eventually(t, "A imports B's ban", func() bool { _, ok := sa.get(netip.MustParseAddr("192.0.2.8")); return ok })
	if im, _ := sb.get(netip.MustParseAddr("192.0.2.7")); im.origin != "fleet:a" {
		t.Errorf("B imported A's ban as %+v", im)
	}
	eventually(t, "A hears of B", func() bool { return strings.Join(a.Status().Members, ",") == "a,b" })

	// Another account is another world: O's stream is its own.
	o.Share(ban("192.0.2.66", time.Hour))
	eventually(t, "O published in its own account", func() bool { return o.Status().Published == 1 })
	a.Share(ban("192.0.2.9", time.Hour))
	eventually(t, "B imports A's second ban", func() bool { _, ok := sb.get(netip.MustParseAddr("192.0.2.9")); return ok })
	if n := so.count(); n != 0 {
		t.Errorf("O, of another account, imported %d of the fleet's bans", n)
	}
	if _, ok := sb.get(netip.MustParseAddr("192.0.2.66")); ok {
		t.Error("B imported a ban of another account's member")
	}
	if m := b.Status().Members; strings.Join(m, ",") != "a,b" {
		t.Errorf("B saw members %v; want a,b", m)
	}

	// A's user cannot speak for B: the server refuses the publish, and
	// nothing reaches the stream.
	nc, err := nats.Connect(srv.url, nats.UserCredentials(srv.creds(t, fleetAcct, "a2", memberPermissions("a"))),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})) // the violations: LastError
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	data, subj := encodeBan("b", netip.MustParseAddr("192.0.2.99"), "forged", 0, "", time.Now(), time.Now().Add(time.Hour), 1)
	if _, err := js.Publish(ctx, subj, data); err == nil {
		t.Errorf("A's user published on %s", subj)
	}
	if err := nc.Publish(helloSubjectPrefix+"b", nil); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if le := nc.LastError(); le == nil || !strings.Contains(strings.ToLower(le.Error()), "permissions violation") {
		t.Errorf("publishing B's presence as A: last error %v, want a permissions violation", le)
	}

	refusedClient(t, "no credentials", srv.url)
	// A user whose JWT no account of the operator signed.
	rogue, _ := nkeys.CreateAccount()
	refusedClient(t, "a user of an unknown account", srv.url, nats.UserCredentials(srv.creds(t, rogue, "rogue", memberPermissions("rogue"))))

	// A member without credentials never connects, reads nothing and
	// publishes nothing.
	sn := newSink()
	n, nlog := start(t, Config{Name: "n", URLs: []string{srv.url}}, sn)
	n.Share(ban("192.0.2.77", time.Hour))
	eventually(t, "N says it is refused", func() bool {
		return strings.Contains(nlog.String(), "fleet: cannot connect (nats: Authorization Violation); retrying")
	})
	a.Share(ban("192.0.2.10", time.Hour))
	eventually(t, "B imports A's third ban", func() bool { _, ok := sb.get(netip.MustParseAddr("192.0.2.10")); return ok })
	if st := n.Status(); st.Connected || st.Published != 0 || sn.count() != 0 {
		t.Errorf("N without credentials: %+v, imported %d", st, sn.count())
	}
	if c := strings.Count(nlog.String(), "fleet: cannot connect"); c != 1 || strings.Contains(nlog.String(), "connection closed") {
		t.Errorf("N logged %d refusals, want 1, and kept trying:\n%s", c, nlog.String())
	}
	if _, ok := sb.get(netip.MustParseAddr("192.0.2.99")); ok {
		t.Error("B applied the ban forged under its own name")
	}
	if _, ok := sa.get(netip.MustParseAddr("192.0.2.77")); ok {
		t.Error("A applied a ban of a member without credentials")
	}
}
