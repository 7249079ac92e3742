package enforce

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/enforce/block"
	"github.com/portsentry-go/portsentry/internal/event"
	"github.com/portsentry-go/portsentry/internal/report/output"
	"github.com/portsentry-go/portsentry/internal/syncbuf"
)

// A service's port stays in use for the grace period after its socket is
// gone (a restart, a crash), per protocol; then it is free again. Without
// a grace period only the socket counts; an error counts as in use.
func TestServiceCheckGrace(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	listening := map[servedPort]bool{}
	var fail error
	ask := func(ev event.Event) (bool, error) { return listening[servedPort{ev.Proto, ev.Port}], fail }
	s := newServiceCheck(output.New(&syncbuf.Buffer{}, slog.LevelInfo), ask, func() error { return nil }, func() time.Time { return now })
	web := servedPort{event.TCP, 8080}

	check := func(what string, proto event.Proto, port uint16, want bool) {
		t.Helper()
		if got := s.InUse(event.Event{Proto: proto, Port: port}); got != want {
			t.Errorf("%s: InUse(%v, %d) = %v, want %v", what, proto, port, got, want)
		}
	}
	s.SetGrace(time.Minute)
	listening[web] = true
	check("listening", event.TCP, 8080, true)
	delete(listening, web)
	now = now.Add(2 * time.Second)
	check("restarting, 2 s later", event.TCP, 8080, true)
	check("same port, UDP: never served", event.UDP, 8080, false)
	check("another port", event.TCP, 8081, false)
	now = now.Add(time.Minute)
	check("gone for longer than the grace", event.TCP, 8080, false)

	listening[web] = true
	check("back", event.TCP, 8080, true)
	delete(listening, web)
	s.SetGrace(0)
	check("grace off", event.TCP, 8080, false)

	fail = errors.New("sock_diag: broken")
	check("check failing", event.TCP, 9, true)
}

// The kernel's memory of served ports (after a restart of the daemon) is
// taken in for what is left of it, and never beyond the daemon's grace.
func TestServiceCheckRemember(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	none := func(event.Event) (bool, error) { return false, nil }
	s := newServiceCheck(output.New(&syncbuf.Buffer{}, slog.LevelInfo), none, func() error { return nil }, func() time.Time { return now })
	s.Remember([]block.Served{{Port: 80, Left: time.Minute}}) // grace off: nothing
	if s.InUse(event.Event{Proto: event.TCP, Port: 80}) {
		t.Fatal("remembered with the grace period off")
	}
	s.SetGrace(10 * time.Minute)
	s.Remember([]block.Served{{Port: 80, Left: time.Minute}, {UDP: true, Port: 53, Left: time.Hour}})
	check := func(what string, proto event.Proto, port uint16, want bool) {
		t.Helper()
		if got := s.InUse(event.Event{Proto: proto, Port: port}); got != want {
			t.Errorf("%s: InUse(%v, %d) = %v, want %v", what, proto, port, got, want)
		}
	}
	check("TCP 80, just remembered", event.TCP, 80, true)
	check("UDP 80: not remembered", event.UDP, 80, false)
	now = now.Add(59 * time.Second)
	check("TCP 80, 59 s later", event.TCP, 80, true)
	now = now.Add(2 * time.Second)
	check("TCP 80, past what the kernel had left", event.TCP, 80, false)
	check("UDP 53, within the grace", event.UDP, 53, true)
	now = now.Add(10 * time.Minute)
	check("UDP 53, past the daemon's grace (the kernel's was longer)", event.UDP, 53, false)
}
