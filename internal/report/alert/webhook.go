package alert

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// webhook POSTs each message as JSON.
type webhook struct {
	cfg    *Config
	host   string // for errors: the URL itself may be the hook's secret
	client *http.Client
}

func newWebhook(cfg *Config) *webhook {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.tlsConfig != nil {
		tr.TLSClientConfig = cfg.tlsConfig
	}
	u, _ := url.Parse(cfg.WebhookURL) // checked by Config
	return &webhook{
		cfg:  cfg,
		host: u.Host,
		client: &http.Client{
			Transport: tr,
			// A redirect would carry the token, or the alert, somewhere
			// the administrator did not configure.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

func (w *webhook) deliver(ctx context.Context, m *message) error {
	body, err := m.JSON()
	if err != nil {
		return fmt.Errorf("alert: webhook: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("alert: webhook %s: %w", w.host, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "portsentry/"+w.cfg.Version)
	if w.cfg.WebhookToken != "" {
		req.Header.Set("Authorization", "Bearer "+w.cfg.WebhookToken)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		// *url.Error quotes the whole URL; keep only its cause.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return fmt.Errorf("alert: webhook %s: %w", w.host, err)
	}
	defer resp.Body.Close()
	// Read a little so the connection can be reused; never a lot.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("alert: webhook %s: %s", w.host, resp.Status)
	}
	return nil
}
