package alert

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"net/mail"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s (-want +got; go test -update to accept):\n%s", path, diff)
	}
}

var tm = time.Date(2026, 11, 22, 1, 40, 36, 0, time.UTC)

func testMessages() map[string]*message {
	var ports portSet
	for p := 1; p <= 1024; p++ {
		ports.add(uint16(p))
	}
	alert := &message{
		Time: tm.Add(5 * time.Second), Sensor: "sensor1", Version: "2.0.0",
		Src: netip.MustParseAddr("10.99.0.1"), Host: "scanner.example.net",
		Actions: []string{ActionBlocked}, Kinds: []string{"TCP SYN/Normal scan"},
		BanExpires: tm.Add(time.Hour), PortCount: ports.n, Ports: ports.lowest(webhookPorts), Probes: 1100,
		First: tm, Last: tm.Add(4 * time.Second), Held: 2, Lost: 17,
	}
	summary := &message{
		Summary: true, Time: tm.Add(65 * time.Second), Sensor: "sensor1", Version: "2.0.0",
		Src: netip.MustParseAddr("2001:db8::66"), Actions: []string{ActionReported},
		Kinds: []string{"UDP"}, MoreKinds: 0, PortCount: 3, Ports: []uint16{7, 9, 53}, Probes: 3,
		First: tm.Add(10 * time.Second), Last: tm.Add(50 * time.Second), Since: tm.Add(5 * time.Second),
	}
	return map[string]*message{"alert": alert, "summary": summary}
}

func TestMessageGolden(t *testing.T) {
	for name, m := range testMessages() {
		golden(t, name+".golden.txt", []byte(m.Subject()+"\n\n"+m.Body()))
		js, err := m.JSON()
		if err != nil {
			t.Fatal(err)
		}
		var pretty bytes.Buffer
		json.Indent(&pretty, js, "", "  ")
		golden(t, name+".golden.json", append(pretty.Bytes(), '\n'))
	}
}

// TestHeaderInjection: a hostile name (from reverse DNS) or scan type can
// neither add a header nor break a line in the mail.
func TestHeaderInjection(t *testing.T) {
	m := testMessages()["alert"]
	m.Host = "evil.example\r\nBcc: victim@example.org\x1b[31m"
	m.Kinds = []string{"TCP\nX-Injected: 1"}
	data := m.Mail("portsentry@example.org", []string{"root@example.org"})
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if msg.Header.Get("Bcc") != "" {
		t.Error("Bcc header injected")
	}
	if s := msg.Header.Get("Subject"); strings.ContainsAny(s, "\r\n\x1b") {
		t.Errorf("Subject %q", s)
	}
	if bytes.ContainsAny(data, "\r\x1b") {
		t.Errorf("control characters in the mail:\n%q", data)
	}
	// What the worker keeps is cleaned when merged.
	a := newAlerter(testConfig(t, nil), nil, nil)
	a.add(Alert{Src: srcA, Host: m.Host, Kinds: m.Kinds}, tm)
	got := a.table[srcA]
	if strings.ContainsAny(got.host, "\r\n\x1b") || strings.ContainsAny(got.b.kinds[0], "\r\n") {
		t.Errorf("kept host %q kinds %q", got.host, got.b.kinds)
	}
}

func TestValidate(t *testing.T) {
	ok := Config{Mailer: MailerSendmail, To: []string{"root@example.org"}, Hostname: "h"}
	for _, c := range []struct {
		name string
		mod  func(*Config)
		want string // "" for valid
	}{
		{"sendmail", func(c *Config) {}, ""},
		{"nothing", func(c *Config) { c.Mailer = "" }, "no mailer and no webhook"},
		{"webhook only", func(c *Config) { c.Mailer, c.WebhookURL = "", "https://hooks.example.org/x" }, ""},
		{"bad mailer", func(c *Config) { c.Mailer = "postfix" }, `Mailer: "postfix"`},
		{"no recipient", func(c *Config) { c.To = nil }, "To: no recipient"},
		{"bad recipient", func(c *Config) { c.To = []string{"root"} }, `To: "root"`},
		{"injected recipient", func(c *Config) { c.To = []string{"a@b.org\r\nBcc: c@d.org"} }, "To: "},
		{"bad from", func(c *Config) { c.From = "not an address" }, "From: "},
		{"relative sendmail", func(c *Config) { c.SendmailPath = "sendmail" }, "not an absolute path"},
		{"smtp without server", func(c *Config) { c.Mailer = MailerSMTP }, "SMTPAddr: no SMTP server"},
		{"smtp default port", func(c *Config) { c.Mailer, c.SMTPAddr = MailerSMTP, "mail.example.org" }, ""},
		{"smtp ipv6 default port", func(c *Config) { c.Mailer, c.SMTPAddr = MailerSMTP, "[2001:db8::25]" }, ""},
		{"auth in clear", func(c *Config) { c.Mailer, c.SMTPAddr, c.SMTPUser = MailerSMTP, "mail.example.org:587", "u" }, "SMTPUser: needs STARTTLS"},
		{"auth with starttls", func(c *Config) {
			c.Mailer, c.SMTPAddr, c.SMTPUser, c.SMTPStartTLS = MailerSMTP, "mail.example.org:587", "u", true
		}, ""},
		{"auth loopback", func(c *Config) { c.Mailer, c.SMTPAddr, c.SMTPUser = MailerSMTP, "127.0.0.1:25", "u" }, ""},
		{"bad webhook", func(c *Config) { c.WebhookURL = "ftp://x/secret" }, "WebhookURL: want an http"},
		{"token in clear", func(c *Config) { c.WebhookURL, c.WebhookToken = "http://hooks.example.org/", "t" }, "WebhookToken: needs an https"},
		{"token loopback", func(c *Config) { c.WebhookURL, c.WebhookToken = "http://[::1]:8080/", "t" }, ""},
		{"negative delay", func(c *Config) { c.Delay = -time.Second }, "Delay: -1s: negative"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := ok
			cfg.To = append([]string(nil), ok.To...)
			c.mod(&cfg)
			err := cfg.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Errorf("Validate = %v, want nil", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("Validate = %v, want %q", err, c.want)
			case err != nil && !strings.HasPrefix(err.Error(), "alert: "):
				t.Errorf("error %q lacks the component prefix", err)
			case err != nil && strings.Contains(err.Error(), "secret"):
				t.Errorf("error %q quotes the webhook URL", err)
			}
			var fe *FieldError
			if err != nil && err != ErrDisabled && !errors.As(err, &fe) {
				t.Errorf("error %q is not a *FieldError", err)
			}
		})
	}
	if _, err := New(Config{}, nil); err != ErrDisabled {
		t.Errorf("New(Config{}) = %v, want ErrDisabled", err)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Config{Mailer: MailerSMTP, SMTPAddr: "mail.example.org", To: []string{"Root <root@example.org>"}, Hostname: "sensor1"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.SMTPAddr != "mail.example.org:25" || c.From != "portsentry@sensor1" || c.To[0] != "root@example.org" ||
		c.Delay != DefaultDelay || c.Window != DefaultWindow || c.MaxPerHour != DefaultMaxPerHour ||
		c.Timeout != DefaultTimeout || c.QueueSize != DefaultQueueSize || c.MaxSources != DefaultMaxSources {
		t.Errorf("defaults: %+v", c)
	}
}
