package alert

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Mailers.
const (
	MailerNone     = ""         // no e-mail
	MailerSendmail = "sendmail" // the local sendmail binary (Postfix, Exim, msmtp…)
	MailerSMTP     = "smtp"     // an SMTP server, directly
)

// Defaults for the zero values of Config.
const (
	DefaultSendmailPath = "/usr/sbin/sendmail"
	DefaultDelay        = 5 * time.Second
	DefaultWindow       = 60 * time.Second
	DefaultMaxPerHour   = 60
	DefaultTimeout      = 10 * time.Second
	DefaultQueueSize    = 4096
	DefaultMaxSources   = 1024
)

// Config says where alerts go and how often. The zero value sends nothing
// (Enabled reports false).
type Config struct {
	// Mailer is MailerSendmail, MailerSMTP, or MailerNone for no e-mail.
	Mailer string
	// SendmailPath is the sendmail binary (absolute); run as
	// "sendmail -t -i" with the message on standard input, never through
	// a shell. Default DefaultSendmailPath.
	SendmailPath string
	// SMTPAddr is the server, host:port (":25" when no port is given).
	SMTPAddr string
	// SMTPUser and SMTPPassword, when SMTPUser is set, log in with AUTH
	// PLAIN. That needs SMTPStartTLS unless the server is on loopback: a
	// password is never sent in clear over a network.
	SMTPUser, SMTPPassword string
	// SMTPStartTLS requires STARTTLS (the server's certificate is
	// verified against the system roots). Without it, plain SMTP.
	SMTPStartTLS bool
	// From is the sender address; default portsentry@Hostname.
	From string
	// To are the recipients' addresses; required for e-mail.
	To []string
	// WebhookURL, when set, receives a JSON POST per message (http or
	// https). Slack- and Mattermost-style hooks show its "text" field.
	WebhookURL string
	// WebhookToken, when set, is sent as "Authorization: Bearer TOKEN";
	// it needs an https URL unless the hook is on loopback.
	WebhookToken string
	// Delay is how long notifications about a new source are gathered
	// before its alert is sent. Default DefaultDelay.
	Delay time.Duration
	// Window is how long after a message further notifications about the
	// source are only gathered, for one summary at its end. Default
	// DefaultWindow.
	Window time.Duration
	// MaxPerHour caps messages in any hour, all sources together. Default
	// DefaultMaxPerHour; negative for no cap.
	MaxPerHour int
	// Timeout bounds each delivery, and the flush at exit. Default
	// DefaultTimeout.
	Timeout time.Duration
	// QueueSize bounds notifications waiting for the worker. Default
	// DefaultQueueSize.
	QueueSize int
	// MaxSources bounds the sources the worker remembers. Default
	// DefaultMaxSources.
	MaxSources int
	// Hostname names this sensor in messages and in SMTP's EHLO; default
	// os.Hostname.
	Hostname string
	// Version is written in messages ("portsentry VERSION on HOST").
	Version string

	// tlsConfig replaces the STARTTLS and https settings: tests trust
	// their own certificate with it.
	tlsConfig *tls.Config
}

// Enabled reports whether the configuration sends anything.
func (c Config) Enabled() bool { return c.Mailer != MailerNone || c.WebhookURL != "" }

// ErrDisabled is returned by New for a configuration that sends nothing.
var ErrDisabled = errors.New("alert: no mailer and no webhook configured")

// FieldError is a Config field that cannot be used. Validate and New
// return one for every mistake in a field, so that a caller that read the
// settings from elsewhere (portsentry.conf's ALERT_* keys) can name its
// own key; the message itself names no Go field.
type FieldError struct {
	Field string // the Config field at fault, e.g. "To"
	Err   error  // what is wrong with it
}

// Error returns "alert: FIELD: message".
func (e *FieldError) Error() string { return "alert: " + e.Field + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// Validate checks c as New would; every error but ErrDisabled is a
// *FieldError.
func (c Config) Validate() error {
	_, err := c.withDefaults()
	return err
}

func (c Config) withDefaults() (Config, error) {
	if !c.Enabled() {
		return c, ErrDisabled
	}
	if c.Hostname == "" {
		c.Hostname, _ = os.Hostname()
		if c.Hostname == "" {
			c.Hostname = "localhost"
		}
	}
	if strings.ContainsAny(c.Hostname, " \t\r\n<>") {
		return c, fieldErr("Hostname", "%q: not a host name", c.Hostname)
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{{"Delay", &c.Delay, DefaultDelay}, {"Window", &c.Window, DefaultWindow}, {"Timeout", &c.Timeout, DefaultTimeout}} {
		if *d.v < 0 {
			return c, fieldErr(d.name, "%v: negative", *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.MaxPerHour == 0 {
		c.MaxPerHour = DefaultMaxPerHour
	}
	if c.QueueSize <= 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.MaxSources <= 0 {
		c.MaxSources = DefaultMaxSources
	}
	switch c.Mailer {
	case MailerNone:
	case MailerSendmail, MailerSMTP:
		if err := c.mailDefaults(); err != nil {
			return c, err
		}
	default:
		return c, fieldErr("Mailer", "%q: want %q, %q or empty", c.Mailer, MailerSendmail, MailerSMTP)
	}
	if c.WebhookURL != "" {
		u, err := url.Parse(c.WebhookURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			// The URL is not quoted back: a hook's URL is often its secret.
			return c, fieldErr("WebhookURL", "want an http:// or https:// URL")
		}
		if c.WebhookToken != "" && u.Scheme != "https" && !isLoopback(u.Hostname()) {
			return c, fieldErr("WebhookToken", "needs an https URL (or a loopback one): the token would cross the network in clear")
		}
		if strings.ContainsAny(c.WebhookToken, "\r\n") {
			return c, fieldErr("WebhookToken", "line break in token")
		}
	}
	return c, nil
}

func (c *Config) mailDefaults() error {
	if len(c.To) == 0 {
		return fieldErr("To", "no recipient for e-mail")
	}
	// Parsing the addresses keeps header injection out: a parsed address
	// holds no line break, and only its bare form is used.
	to := make([]string, 0, len(c.To))
	for _, s := range c.To {
		a, err := mail.ParseAddress(s)
		if err != nil {
			return fieldErr("To", "%q: %w", s, err)
		}
		to = append(to, a.Address)
	}
	c.To = to
	if c.From == "" {
		c.From = "portsentry@" + c.Hostname
	}
	from, err := mail.ParseAddress(c.From)
	if err != nil {
		return fieldErr("From", "%q: %w", c.From, err)
	}
	c.From = from.Address
	if c.Mailer == MailerSendmail {
		if c.SendmailPath == "" {
			c.SendmailPath = DefaultSendmailPath
		}
		if !filepath.IsAbs(c.SendmailPath) {
			return fieldErr("SendmailPath", "%q: not an absolute path", c.SendmailPath)
		}
		return nil
	}
	if c.SMTPAddr == "" {
		return fieldErr("SMTPAddr", "no SMTP server")
	}
	host, _, err := net.SplitHostPort(c.SMTPAddr)
	if err != nil {
		host = c.SMTPAddr
		c.SMTPAddr = net.JoinHostPort(strings.Trim(host, "[]"), "25")
		if _, _, err := net.SplitHostPort(c.SMTPAddr); err != nil {
			return fieldErr("SMTPAddr", "%q: %w", host, err)
		}
	}
	if c.SMTPUser != "" && !c.SMTPStartTLS && !isLoopback(strings.Trim(host, "[]")) {
		return fieldErr("SMTPUser", "needs STARTTLS (or a server on loopback): the password would cross the network in clear")
	}
	return nil
}

// isLoopback reports whether host is a loopback address or "localhost".
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
