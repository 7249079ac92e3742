// Package crowdsec speaks to a CrowdSec Local API (LAPI) over HTTP: as a
// machine (watcher) it pushes this host's bans as alerts, each with its
// ban decision (Pusher); as a bouncer it follows the LAPI's decisions in
// stream mode and hands them to enforcement (Puller). It uses net/http
// and encoding/json only: the LAPI's few endpoints need no CrowdSec Go
// module.
//
// Nothing here blocks the daemon: every request has a timeout, the pusher
// waits in a bounded queue with backoff while the LAPI is away, and the
// puller retries at its interval. See README.md.
package crowdsec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Defaults.
const (
	// DefaultPoll is how often the bouncer asks for new decisions, as
	// CrowdSec's own bouncers do.
	DefaultPoll = 10 * time.Second
	// DefaultTimeout bounds each request, connection included.
	DefaultTimeout = 10 * time.Second
	// maxBody bounds a response read: a stream at start carries every
	// active decision (a community blocklist is tens of thousands, about
	// 150 bytes each).
	maxBody = 64 << 20
)

// Errors the client wraps; callers branch on them.
var (
	// ErrUnauthorized: the LAPI refused the machine's credentials or the
	// bouncer's key (401, 403).
	ErrUnauthorized = errors.New("crowdsec: credentials refused")
	// ErrTooLarge: a response was larger than maxBody.
	ErrTooLarge = errors.New("crowdsec: response too large")
)

// Config is how to reach the LAPI, and as whom.
type Config struct {
	// URL is the LAPI's base URL (CROWDSEC_URL), e.g.
	// "http://127.0.0.1:8080/". Plain http only to a loopback host:
	// passwords and keys must not cross a network in clear.
	URL string
	// MachineID and Password are the machine's credentials (cscli
	// machines add): pushing is on when they are set.
	MachineID, Password string
	// BouncerKey is the bouncer's API key (cscli bouncers add): pulling
	// is on when it is set.
	BouncerKey string
	// Poll is the bouncer's interval (default DefaultPoll).
	Poll time.Duration
	// Timeout bounds each request (default DefaultTimeout).
	Timeout time.Duration
	// Version goes into the User-Agent.
	Version string
}

// CheckURL checks a CROWDSEC_URL: http or https, a host, and plain http
// only to a loopback host.
func CheckURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%q: must be an http:// or https:// URL", raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%q: no host", raw)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%q: must be a base URL, without user, query or fragment", raw)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return nil, fmt.Errorf("%q: plain http only to a loopback address (127.0.0.1, ::1, localhost): the credentials would cross the network in clear; use https", raw)
	}
	return u, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Client makes the LAPI's requests. Safe for concurrent use.
type Client struct {
	cfg  Config
	base *url.URL
	http *http.Client

	mu      sync.Mutex
	token   string    // the machine's JWT
	expires time.Time // the token's end
}

// URL is the LAPI's base URL, as logs and status show it.
func (c *Client) URL() string { return c.base.Redacted() }

// Poll is the puller's interval.
func (c *Client) Poll() time.Duration { return c.cfg.Poll }

// NewClient checks cfg and returns its client.
func NewClient(cfg Config) (*Client, error) {
	base, err := CheckURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("crowdsec: %w", err)
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if !strings.HasSuffix(base.Path, "/") {
		base.Path += "/"
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// A daemon's requests go where CROWDSEC_URL says, whatever the
	// environment's proxy variables.
	tr.Proxy = nil
	return &Client{cfg: cfg, base: base, http: &http.Client{
		Transport: tr,
		Timeout:   cfg.Timeout,
		// A redirect would carry the credentials somewhere the
		// administrator did not configure.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

// Config is the client's configuration, defaults filled in.
func (c *Client) Config() Config { return c.cfg }

// apiError is a LAPI error answer.
type apiError struct {
	Message string `json:"message"`
}

// do sends a request with a JSON body (nil: none) and decodes a JSON
// answer into out (nil: discarded). The body read is bounded; the error
// names the endpoint, never a secret.
func (c *Client) do(ctx context.Context, method, path string, header http.Header, body, out any) error {
	u := c.base.JoinPath(path)
	if i := strings.IndexByte(path, '?'); i >= 0 {
		u = c.base.JoinPath(path[:i])
		u.RawQuery = path[i+1:]
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("crowdsec: %s %s: %w", method, u.Path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return fmt.Errorf("crowdsec: %s %s: %w", method, u.Path, err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "portsentry/"+c.cfg.Version)
	resp, err := c.http.Do(req)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return fmt.Errorf("crowdsec: %s %s: %w", method, u.Path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return fmt.Errorf("crowdsec: %s %s: reading the answer: %w", method, u.Path, err)
	}
	if len(data) > maxBody {
		return fmt.Errorf("crowdsec: %s %s: %w (over %d MiB)", method, u.Path, ErrTooLarge, maxBody>>20)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var ae apiError
		msg := resp.Status
		if json.Unmarshal(data, &ae) == nil && ae.Message != "" {
			msg += ": " + printable(ae.Message, 200)
		}
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			return fmt.Errorf("crowdsec: %s %s: %w (%s)", method, u.Path, ErrUnauthorized, msg)
		}
		return fmt.Errorf("crowdsec: %s %s: %s", method, u.Path, msg)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("crowdsec: %s %s: decoding the answer: %w", method, u.Path, err)
		}
	}
	return nil
}

// printable cuts s to n bytes and replaces control characters, for error
// messages that quote the LAPI.
func printable(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// loginRequest and loginResponse are POST /v1/watchers/login.
type loginRequest struct {
	MachineID string   `json:"machine_id"`
	Password  string   `json:"password"`
	Scenarios []string `json:"scenarios"`
}

type loginResponse struct {
	Code   int    `json:"code"`
	Expire string `json:"expire"`
	Token  string `json:"token"`
}

// jwt returns a valid token, logging in when there is none or it ends
// within a minute.
func (c *Client) jwt(ctx context.Context) (string, error) {
	c.mu.Lock()
	tok, exp := c.token, c.expires
	c.mu.Unlock()
	if tok != "" && time.Until(exp) > time.Minute {
		return tok, nil
	}
	var out loginResponse
	in := loginRequest{MachineID: c.cfg.MachineID, Password: c.cfg.Password, Scenarios: []string{Scenario}}
	if err := c.do(ctx, http.MethodPost, "v1/watchers/login", nil, in, &out); err != nil {
		return "", err
	}
	if out.Token == "" {
		return "", errors.New("crowdsec: POST /v1/watchers/login: no token in the answer")
	}
	exp, err := time.Parse(time.RFC3339, out.Expire)
	if err != nil {
		// Unknown: a short life, so it is renewed soon.
		exp = time.Now().Add(5 * time.Minute)
	}
	c.mu.Lock()
	c.token, c.expires = out.Token, exp
	c.mu.Unlock()
	return out.Token, nil
}

// forget drops the token (the LAPI refused it: restarted with a new
// secret, or the machine was deleted).
func (c *Client) forget() {
	c.mu.Lock()
	c.token = ""
	c.mu.Unlock()
}

// postAlerts sends alerts as the machine: POST /v1/alerts. A refused
// token is renewed once.
func (c *Client) postAlerts(ctx context.Context, alerts []alert) error {
	for try := 0; ; try++ {
		tok, err := c.jwt(ctx)
		if err != nil {
			return err
		}
		h := http.Header{"Authorization": {"Bearer " + tok}}
		err = c.do(ctx, http.MethodPost, "v1/alerts", h, alerts, nil)
		if errors.Is(err, ErrUnauthorized) && try == 0 {
			c.forget()
			continue
		}
		return err
	}
}

// Decision is one decision of the stream, as the LAPI sends it.
type Decision struct {
	ID       int64  `json:"id"`
	Origin   string `json:"origin"`
	Type     string `json:"type"`
	Scope    string `json:"scope"`
	Value    string `json:"value"`
	Duration string `json:"duration"`
	Scenario string `json:"scenario"`
}

// Stream is an answer of GET /v1/decisions/stream: decisions new and
// deleted (or expired) since the bouncer's last pull.
type Stream struct {
	New     []Decision `json:"new"`
	Deleted []Decision `json:"deleted"`
}

// stream asks for the decisions since the last pull; startup asks for
// every active decision instead.
func (c *Client) stream(ctx context.Context, startup bool) (Stream, error) {
	var s Stream
	path := "v1/decisions/stream?startup=false"
	if startup {
		path = "v1/decisions/stream?startup=true"
	}
	err := c.do(ctx, http.MethodGet, path, http.Header{"X-Api-Key": {c.cfg.BouncerKey}}, nil, &s)
	return s, err
}
