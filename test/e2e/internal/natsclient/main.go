// Command natsclient is the fleet end-to-end test's intruder: it connects
// to a NATS server, with the token given or none, and tries to read and to
// publish the fleet's bans. It prints one JSON line: what worked.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

type result struct {
	Connected bool   `json:"connected"`
	Published bool   `json:"published"`
	Read      bool   `json:"read"`
	Error     string `json:"error,omitempty"`
}

func main() {
	url := flag.String("url", "", "server URL")
	token := flag.String("token", "", "token (none: no credentials)")
	flag.Parse()
	var r result
	defer func() { _ = json.NewEncoder(os.Stdout).Encode(r) }()
	opts := []nats.Option{nats.Timeout(2 * time.Second), nats.MaxReconnects(0)}
	if *token != "" {
		opts = append(opts, nats.Token(*token))
	}
	nc, err := nats.Connect(*url, opts...)
	if err != nil {
		r.Error = err.Error()
		return
	}
	defer nc.Close()
	r.Connected = true
	js, err := jetstream.New(nc)
	if err != nil {
		r.Error = err.Error()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, "portsentry.fleet.ban.intruder.c0000201", []byte(`{}`)); err == nil {
		r.Published = true
	} else {
		r.Error = err.Error()
	}
	if s, err := js.Stream(ctx, "PORTSENTRY_FLEET"); err == nil {
		if _, err := s.GetLastMsgForSubject(ctx, "portsentry.fleet.ban.>"); err == nil {
			r.Read = true
		}
	}
}
