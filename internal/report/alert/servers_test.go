package alert

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/netip"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests deliver to real servers the test starts on 127.0.0.1, in
// real time, with a short Delay.

// smtpSink is a tiny SMTP server: EHLO/HELO, STARTTLS (when it has a
// certificate), AUTH PLAIN (when it has a user), MAIL, RCPT, DATA, RSET,
// NOOP, QUIT. It keeps what it receives.
type smtpSink struct {
	ln         net.Listener
	tls        *tls.Config
	user, pass string
	msgs       chan smtpMsg
}

type smtpMsg struct {
	from   string
	to     []string
	data   string
	tls    bool
	authed bool
}

func startSMTP(t *testing.T, tc *tls.Config, user, pass string) *smtpSink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpSink{ln: ln, tls: tc, user: user, pass: pass, msgs: make(chan smtpMsg, 64)}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { s.handle(c) })
		}
	})
	return s
}

func (s *smtpSink) handle(c net.Conn) {
	defer func() { c.Close() }()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	say := func(lines ...string) { io.WriteString(c, strings.Join(lines, "\r\n")+"\r\n") }
	say("220 sink ESMTP")
	var cur smtpMsg
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			ext := []string{"250-sink"}
			if s.tls != nil && !cur.tls {
				ext = append(ext, "250-STARTTLS")
			}
			if s.user != "" {
				ext = append(ext, "250-AUTH PLAIN")
			}
			say(append(ext, "250 8BITMIME")...)
		case "HELO", "RSET", "NOOP":
			say("250 ok")
		case "STARTTLS":
			if s.tls == nil {
				say("502 no")
				continue
			}
			say("220 go ahead")
			tc := tls.Server(c, s.tls)
			if tc.Handshake() != nil {
				return
			}
			c, r, cur.tls = tc, bufio.NewReader(tc), true
		case "AUTH":
			mech, b64, _ := strings.Cut(arg, " ")
			raw, _ := base64.StdEncoding.DecodeString(b64)
			if mech == "PLAIN" && string(raw) == "\x00"+s.user+"\x00"+s.pass {
				cur.authed = true
				say("235 ok")
			} else {
				say("535 bad credentials")
			}
		case "MAIL":
			if s.user != "" && !cur.authed {
				say("530 authentication required")
				continue
			}
			cur.from = arg
			say("250 ok")
		case "RCPT":
			cur.to = append(cur.to, arg)
			say("250 ok")
		case "DATA":
			say("354 go")
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				b.WriteString(strings.TrimPrefix(l, ".")) // dot-unstuffing
			}
			cur.data = b.String()
			select {
			case s.msgs <- cur:
			default: // a test that stopped reading must not hang the sink
			}
			cur = smtpMsg{tls: cur.tls, authed: cur.authed}
			say("250 queued")
		case "QUIT":
			say("221 bye")
			return
		default:
			say("502 unknown")
		}
	}
}

// selfSigned returns a server config for 127.0.0.1 and a client config
// that trusts it.
func selfSigned(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "sink"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

// run starts a real alerter (New) and returns it with its log.
func run(t *testing.T, cfg Config) (*Alerter, *syncBuffer) {
	t.Helper()
	if cfg.Delay == 0 {
		// Long enough for a test's burst of Notify calls to land in one
		// batch; the exact batching is TestFullScanIsOneAlert's (synctest).
		cfg.Delay = 200 * time.Millisecond
	}
	cfg.Hostname, cfg.Version = "sensor1", "2.0.0-test"
	logs := &syncBuffer{}
	a, err := New(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return a, logs
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// eventually polls cond for up to 10 s: real servers, real time.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func scan(a *Alerter, src netip.Addr, ports int) {
	for p := 1; p <= ports; p++ {
		a.Notify(Alert{Src: src, Host: "scanner.example.net", Ports: []uint16{uint16(p)},
			Kinds: []string{"TCP SYN/Normal scan"}, Action: ActionBlocked,
			BanExpires: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)})
	}
}

func receive(t *testing.T, s *smtpSink) smtpMsg {
	t.Helper()
	select {
	case m := <-s.msgs:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message reached the SMTP sink")
	}
	return smtpMsg{}
}

func checkMail(t *testing.T, data string, ports int) {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(data))
	if err != nil {
		t.Fatalf("not a mail message: %v\n%s", err, data)
	}
	body, _ := io.ReadAll(msg.Body)
	h := msg.Header
	if h.Get("From") != "portsentry@example.org" || h.Get("To") != "root@example.org, sec@example.org" ||
		h.Get("Auto-Submitted") != "auto-generated" || h.Get("Message-Id") == "" {
		t.Errorf("headers: %v", h)
	}
	if _, err := h.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}
	wantSubject := "[portsentry sensor1] 10.99.0.1 (scanner.example.net) blocked: " + plural(ports, "port")
	if got := h.Get("Subject"); got != wantSubject {
		t.Errorf("Subject %q, want %q", got, wantSubject)
	}
	for _, want := range []string{"Source:      10.99.0.1 (scanner.example.net)", "Action:      blocked",
		"Ban expires: 2030-01-02T03:04:05Z", plural(ports, "distinct port"), "TCP SYN/Normal scan"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("body lacks %q:\n%s", want, body)
		}
	}
}

var mailTo = []string{"root@example.org", "Security <sec@example.org>"}

func TestSMTP(t *testing.T) {
	s := startSMTP(t, nil, "", "")
	a, _ := run(t, Config{Mailer: MailerSMTP, SMTPAddr: s.ln.Addr().String(), From: "portsentry@example.org", To: mailTo})
	scan(a, srcA, 1000)
	m := receive(t, s)
	if !strings.HasPrefix(m.from, "FROM:<portsentry@example.org>") || strings.Join(m.to, " ") != "TO:<root@example.org> TO:<sec@example.org>" {
		t.Errorf("envelope %q → %q", m.from, m.to)
	}
	checkMail(t, m.data, 1000)
	eventually(t, "Sent = 1", func() bool { return a.Stats().Sent == 1 })
	select {
	case extra := <-s.msgs:
		t.Errorf("a second message for one scan: %q", extra.data)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestSMTPStartTLSAndAuth(t *testing.T) {
	server, client := selfSigned(t)
	s := startSMTP(t, server, "alice", "s3cret")
	cfg := Config{Mailer: MailerSMTP, SMTPAddr: s.ln.Addr().String(), SMTPStartTLS: true,
		SMTPUser: "alice", SMTPPassword: "s3cret", From: "portsentry@example.org", To: mailTo, tlsConfig: client}
	a, _ := run(t, cfg)
	scan(a, srcA, 3)
	m := receive(t, s)
	if !m.tls || !m.authed {
		t.Errorf("tls %v authed %v, want both", m.tls, m.authed)
	}
	checkMail(t, m.data, 3)
}

func TestSMTPFailures(t *testing.T) {
	server, client := selfSigned(t)
	for _, c := range []struct {
		name, want string
		sink       *smtpSink
		cfg        func(*Config)
	}{
		{"no STARTTLS offered", "does not offer STARTTLS", startSMTP(t, nil, "", ""),
			func(c *Config) { c.SMTPStartTLS = true }},
		{"untrusted certificate", "certificate", startSMTP(t, server, "", ""),
			func(c *Config) { c.SMTPStartTLS = true; c.tlsConfig = &tls.Config{ServerName: "127.0.0.1"} }},
		{"wrong password", "535", startSMTP(t, server, "alice", "s3cret"),
			func(c *Config) {
				c.SMTPStartTLS = true
				c.tlsConfig = client
				c.SMTPUser, c.SMTPPassword = "alice", "wrong"
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := Config{Mailer: MailerSMTP, SMTPAddr: c.sink.ln.Addr().String(), From: "portsentry@example.org", To: mailTo}
			c.cfg(&cfg)
			a, logs := run(t, cfg)
			scan(a, srcA, 1)
			eventually(t, "a failure", func() bool { return a.Stats().Failed == 1 })
			// The failure is counted before its line is logged.
			eventually(t, "the failure logged", func() bool { return strings.Contains(logs.String(), c.want) })
			if strings.Contains(logs.String(), "wrong") || strings.Contains(logs.String(), "s3cret") {
				t.Errorf("a password reached the log:\n%s", logs)
			}
		})
	}
}

func TestSMTPRefusesClearAuthToRemote(t *testing.T) {
	// Checked at start (Config), and again at AUTH time in case the
	// server's name resolves elsewhere.
	if _, _, err := (plainAuth{"u", "p"}).Start(&smtp.ServerInfo{Name: "mail.example.org"}); err == nil {
		t.Error("AUTH PLAIN in clear to a remote server allowed")
	}
	if _, _, err := (plainAuth{"u", "p"}).Start(&smtp.ServerInfo{Name: "127.0.0.5"}); err != nil {
		t.Errorf("AUTH PLAIN to loopback refused: %v", err)
	}
	if _, _, err := (plainAuth{"u", "p"}).Start(&smtp.ServerInfo{Name: "mail.example.org", TLS: true}); err != nil {
		t.Errorf("AUTH PLAIN over TLS refused: %v", err)
	}
}

// writeScript writes an executable shell script into a fresh directory.
func writeScript(t *testing.T, body string) (script, dir string) {
	t.Helper()
	dir = t.TempDir()
	script = filepath.Join(dir, "sendmail")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script, dir
}

func TestSendmail(t *testing.T) {
	script, dir := writeScript(t, `printf '%s\n' "$@" > "$(dirname "$0")/argv"
cat > "$(dirname "$0")/stdin.tmp" && mv "$(dirname "$0")/stdin.tmp" "$(dirname "$0")/stdin"
`)
	a, _ := run(t, Config{Mailer: MailerSendmail, SendmailPath: script, From: "portsentry@example.org", To: mailTo})
	scan(a, srcA, 4000)
	eventually(t, "sendmail to run", func() bool { return a.Stats().Sent == 1 })
	argv, _ := os.ReadFile(filepath.Join(dir, "argv"))
	if string(argv) != "-t\n-i\n" {
		t.Errorf("argv %q, want -t -i", argv)
	}
	data, err := os.ReadFile(filepath.Join(dir, "stdin"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "\r") {
		t.Error("CR in a message for sendmail: it wants plain newlines")
	}
	checkMail(t, string(data), 4000)
	if s := a.Stats(); s.Sent != 1 {
		t.Errorf("Stats %+v", s)
	}
}

func TestSendmailFailure(t *testing.T) {
	script, _ := writeScript(t, "cat >/dev/null; echo 'sendmail: fatal: no route' >&2; exit 75\n")
	a, logs := run(t, Config{Mailer: MailerSendmail, SendmailPath: script, To: mailTo})
	scan(a, srcA, 1)
	eventually(t, "a failure", func() bool { return a.Stats().Failed == 1 })
	eventually(t, "the failure logged", func() bool {
		return strings.Contains(logs.String(), "exit status 75: sendmail: fatal: no route")
	})
}

func TestWebhook(t *testing.T) {
	type req struct {
		auth, ctype, agent string
		body               webhookBody
		raw                map[string]any
	}
	got := make(chan req, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var q req
		q.auth, q.ctype, q.agent = r.Header.Get("Authorization"), r.Header.Get("Content-Type"), r.Header.Get("User-Agent")
		if err := json.Unmarshal(b, &q.body); err != nil {
			t.Errorf("body: %v", err)
		}
		json.Unmarshal(b, &q.raw)
		got <- q
	}))
	t.Cleanup(srv.Close)
	a, _ := run(t, Config{WebhookURL: srv.URL + "/hooks/T000/secret", WebhookToken: "tok3n"})
	scan(a, srcA, 150)
	var q req
	select {
	case q = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook call")
	}
	if q.auth != "Bearer tok3n" || q.ctype != "application/json" || q.agent != "portsentry/2.0.0-test" {
		t.Errorf("headers: auth %q type %q agent %q", q.auth, q.ctype, q.agent)
	}
	b := q.body
	if b.Type != "alert" || b.Src != "10.99.0.1" || b.Host == nil || *b.Host != "scanner.example.net" ||
		b.Action != "blocked" || b.PortCount != 150 || b.Probes != 150 || len(b.Ports) != webhookPorts ||
		b.Ports[0] != 1 || b.BanExpires == nil || *b.BanExpires != "2030-01-02T03:04:05Z" || b.Sensor != "sensor1" ||
		b.Since != nil || !strings.Contains(b.Text, "10.99.0.1 (scanner.example.net) blocked: 150 ports") {
		t.Errorf("body %+v", b)
	}
	for _, k := range []string{"text", "type", "sensor", "version", "time", "src", "host", "action", "actions",
		"ban_expires", "kinds", "port_count", "ports", "probes", "first_seen", "last_seen", "since", "held", "lost"} {
		if _, ok := q.raw[k]; !ok {
			t.Errorf("key %q missing", k)
		}
	}
}

func TestWebhookFailures(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/redirect") {
			http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
			return
		}
		http.Error(w, "no", http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + closed.Addr().String() + "/hooks/secretpath"
	closed.Close()
	for _, c := range []struct{ url, want string }{
		{srv.URL + "/hooks/secretpath", "500 Internal Server Error"},
		{srv.URL + "/hooks/secretpath/redirect", "307"},
		{deadURL, "connection refused"},
	} {
		a, logs := run(t, Config{WebhookURL: c.url})
		scan(a, srcA, 1)
		eventually(t, "a failure", func() bool { return a.Stats().Failed == 1 })
		eventually(t, "the failure logged", func() bool { return strings.Contains(logs.String(), c.want) })
		if strings.Contains(logs.String(), "secretpath") {
			t.Errorf("the hook's URL path reached the log:\n%s", logs)
		}
	}
}

// TestHungWebhook: a webhook that never answers delays nothing: Notify
// returns at once, the e-mail goes out, and Close gives up at its deadline.
func TestHungWebhook(t *testing.T) {
	release := make(chan struct{})
	calls := make(chan struct{}, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls <- struct{}{}
		<-release
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: lets srv.Close finish
	s := startSMTP(t, nil, "", "")
	a, _ := run(t, Config{WebhookURL: srv.URL, Mailer: MailerSMTP, SMTPAddr: s.ln.Addr().String(), To: mailTo,
		From: "portsentry@example.org", Timeout: time.Hour})
	scan(a, srcA, 10)
	select {
	case <-calls:
	case <-time.After(10 * time.Second):
		t.Fatal("webhook never called")
	}
	receive(t, s) // the e-mail is not held up by the hung webhook
	done := make(chan struct{})
	go func() {
		for i := range 200_000 {
			scan(a, netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 1)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Notify blocked behind a hung webhook")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := a.Close(ctx); err == nil {
		t.Error("Close returned nil although the webhook still hangs")
	}
	if st := a.Stats(); st.Failed == 0 || st.Dropped == 0 {
		t.Errorf("Stats %+v: want the aborted delivery failed and the flood partly dropped", st)
	}
}
