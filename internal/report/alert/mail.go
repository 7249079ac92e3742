package alert

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"os/exec"
	"strings"
	"time"
)

// sendmail delivers through the local MTA: "sendmail -t -i", the message
// on standard input. -t takes the recipients from the To header; -i keeps
// a line holding a single dot from ending the message.
type sendmail struct{ cfg *Config }

func (s *sendmail) deliver(ctx context.Context, m *message) error {
	// An argv, never a shell: nothing in the message reaches a command line.
	cmd := exec.CommandContext(ctx, s.cfg.SendmailPath, "-t", "-i")
	cmd.Stdin = bytes.NewReader(m.Mail(s.cfg.From, s.cfg.To))
	var stderr limitedBuffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	// A sendmail that leaves a child holding the pipes must not hold the
	// destination past its timeout.
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		if out := strings.TrimSpace(stderr.String()); out != "" {
			return fmt.Errorf("alert: %s: %w: %s", s.cfg.SendmailPath, err, out)
		}
		return fmt.Errorf("alert: %s: %w", s.cfg.SendmailPath, err)
	}
	return nil
}

// limitedBuffer keeps the first 1 KiB written: enough for an error message,
// bounded whatever the program prints.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := 1024 - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// smtpMailer talks to an SMTP server directly.
type smtpMailer struct{ cfg *Config }

func (s *smtpMailer) deliver(ctx context.Context, m *message) error {
	if err := s.send(ctx, m.Mail(s.cfg.From, s.cfg.To)); err != nil {
		return fmt.Errorf("alert: smtp %s: %w", s.cfg.SMTPAddr, err)
	}
	return nil
}

func (s *smtpMailer) send(ctx context.Context, msg []byte) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.cfg.SMTPAddr)
	if err != nil {
		return err
	}
	defer conn.Close()
	// net/smtp takes no context: the deadline bounds every exchange, and a
	// cancellation (Close's deadline) expires it at once.
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	host, _, _ := net.SplitHostPort(s.cfg.SMTPAddr)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello(s.cfg.Hostname); err != nil {
		return err
	}
	if s.cfg.SMTPStartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return errors.New("server does not offer STARTTLS")
		}
		tc := s.cfg.tlsConfig
		if tc == nil {
			tc = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		}
		if err := c.StartTLS(tc); err != nil {
			return err
		}
	}
	if s.cfg.SMTPUser != "" {
		if err := c.Auth(plainAuth{user: s.cfg.SMTPUser, pass: s.cfg.SMTPPassword}); err != nil {
			return err
		}
	}
	if err := c.Mail(s.cfg.From); err != nil {
		return err
	}
	for _, to := range s.cfg.To {
		if err := c.Rcpt(to); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// plainAuth is AUTH PLAIN (RFC 4616). net/smtp's PlainAuth allows clear
// text only to a server named "localhost", "127.0.0.1" or "::1"; this one
// allows any loopback address, the rule Config checks at start.
type plainAuth struct{ user, pass string }

func (a plainAuth) Start(server *smtp.ServerInfo) (string, []byte, error) {
	if !server.TLS && !isLoopback(server.Name) {
		return "", nil, errors.New("refusing AUTH over an unencrypted connection")
	}
	return "PLAIN", []byte("\x00" + a.user + "\x00" + a.pass), nil
}

func (a plainAuth) Next(_ []byte, more bool) ([]byte, error) {
	if more {
		return nil, errors.New("unexpected server challenge")
	}
	return nil, nil
}
