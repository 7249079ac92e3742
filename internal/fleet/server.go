package fleet

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// clusterName is the embedded servers' cluster: the same on every member.
const clusterName = "portsentry"

// routeUser is the user name routes between embedded servers present,
// with FLEET_TOKEN as password.
const routeUser = "portsentry"

// Bounds on the embedded server's JetStream: the stream is small (one
// message per banned address per member, a few hundred bytes each), so a
// million bans fit in well under this.
const (
	embeddedMaxStore  = 1 << 30
	embeddedMaxMemory = 64 << 20
)

// startServer runs the embedded NATS server FLEET_LISTEN asks for, with
// JetStream storage in c.Store, clustered with c.Routes when c.Cluster
// is set. It returns once the server takes connections.
func startServer(c Config, serverTLS *tls.Config, log *slog.Logger) (*server.Server, error) {
	host, port, err := splitHostPort(c.Listen)
	if err != nil {
		return nil, fmt.Errorf("FLEET_LISTEN: %w", err)
	}
	o := &server.Options{
		ServerName:             c.Name,
		Host:                   host,
		Port:                   port,
		JetStream:              true,
		StoreDir:               c.Store,
		JetStreamMaxStore:      embeddedMaxStore,
		JetStreamMaxMemory:     embeddedMaxMemory,
		DisableJetStreamBanner: true,
		NoSigs:                 true,
		MaxPayload:             maxMessage * 4,
		Authorization:          c.Token,
	}
	if serverTLS != nil {
		o.TLSConfig, o.TLS = serverTLS, true
		o.TLSVerify = serverTLS.ClientAuth == tls.RequireAndVerifyClientCert
		o.TLSTimeout = 2
	}
	if c.Cluster != "" {
		ch, cp, err := splitHostPort(c.Cluster)
		if err != nil {
			return nil, fmt.Errorf("FLEET_CLUSTER: %w", err)
		}
		// Routes ping every second and a route unanswered three times
		// is closed: a partition is noticed on both sides within about
		// 4 s, so that when it heals the servers dial fresh routes at
		// once (they retry every second). With NATS's default (a ping
		// every 30 s, two missed) the routes of a partition of a minute
		// outlive it: the far side refuses the new ones as duplicates
		// and the old ones resume only at TCP's next retransmission,
		// backed off to tens of seconds (15 s of catch-up after a 60 s
		// partition, measured).
		o.Cluster = server.ClusterOpts{Name: clusterName, Host: ch, Port: cp, PingInterval: time.Second, MaxPingsOut: 3}
		if c.Token != "" {
			o.Cluster.Username, o.Cluster.Password = routeUser, c.Token
		}
		if serverTLS != nil {
			o.Cluster.TLSConfig, o.Cluster.TLSTimeout = serverTLS, 2
		}
		for _, r := range c.Routes {
			u := &url.URL{Scheme: "nats-route", Host: r}
			if c.Token != "" {
				u.User = url.UserPassword(routeUser, c.Token)
			}
			o.Routes = append(o.Routes, u)
		}
	}
	s, err := server.NewServer(o)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS server: %w", err)
	}
	s.SetLoggerV2(serverLog{log}, false, false, false)
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded NATS server: not listening on %s after 10 s", c.Listen)
	}
	return s, nil
}

// splitHostPort reads "HOST:PORT" (HOST may be empty: every address).
func splitHostPort(s string) (string, int, error) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	if h == "" {
		h = "0.0.0.0"
	}
	return h, n, nil
}

// ownURL is the URL a member reaches its embedded server by.
func ownURL(listen string, secure bool) string {
	h, p, err := net.SplitHostPort(listen)
	if err != nil {
		return ""
	}
	switch h {
	case "", "0.0.0.0":
		h = "127.0.0.1"
	case "::":
		h = "::1"
	}
	scheme := "nats"
	if secure {
		scheme = "tls"
	}
	return scheme + "://" + net.JoinHostPort(h, p)
}

// sameServer reports whether URL u names the server listening on listen.
func sameServer(u, listen string) bool {
	pu, err := url.Parse(u)
	if err != nil {
		return false
	}
	h, p, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	return pu.Port() == p && (pu.Hostname() == h || h == "" || h == "0.0.0.0" || h == "::")
}

// serverLog hands the embedded server's lines to the daemon's log at
// debug level: a peer's server being down is normal in a fleet and its
// routes retry every second, so its errors are no news. Fatal lines are
// errors.
type serverLog struct{ log *slog.Logger }

func (l serverLog) Noticef(format string, v ...any) {
	l.log.Debug("fleet: nats: " + fmt.Sprintf(format, v...))
}
func (l serverLog) Warnf(format string, v ...any) {
	l.log.Debug("fleet: nats: " + fmt.Sprintf(format, v...))
}
func (l serverLog) Errorf(format string, v ...any) {
	l.log.Debug("fleet: nats: " + fmt.Sprintf(format, v...))
}
func (l serverLog) Debugf(format string, v ...any) {}
func (l serverLog) Tracef(format string, v ...any) {}
func (l serverLog) Fatalf(format string, v ...any) {
	l.log.Error("fleet: nats: " + strings.TrimSpace(fmt.Sprintf(format, v...)))
}
