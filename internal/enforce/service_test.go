package enforce

import (
	"errors"
	"log/slog"
	"strings"
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

// A port no socket owns counts as in use while the kernel remembers it
// as served (a port it publishes by DNAT): the kernel's sets are read
// again only for a packet captured after the last reading began, so a
// port published by the packet itself is found, and a batch of probes
// captured together costs one reading. A failing reading keeps the last
// known ports.
func TestServiceCheckKernel(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	now := t0
	none := func(event.Event) (bool, error) { return false, nil }
	log := &syncbuf.Buffer{}
	s := newServiceCheck(output.New(log, slog.LevelInfo), none, func() error { return nil }, func() time.Time { return now })
	var kernel []block.Served
	var fail error
	reads := 0
	s.ReadKernel(func() ([]block.Served, error) { reads++; return kernel, fail })
	check := func(what string, seen time.Time, proto event.Proto, port uint16, want bool, wantReads int) {
		t.Helper()
		if got := s.InUse(event.Event{Time: seen, Proto: proto, Port: port}); got != want {
			t.Errorf("%s: InUse(%v, %d) = %v, want %v", what, proto, port, got, want)
		}
		if reads != wantReads {
			t.Errorf("%s: %d readings of the kernel, want %d", what, reads, wantReads)
		}
	}
	now = t0.Add(time.Millisecond) // the daemon decides a little after the capture
	check("nothing served", t0, event.TCP, 800, false, 1)
	// The kernel DNATs a client's first packet to port 800 while the
	// daemon looks at probes captured with the first one.
	kernel = []block.Served{{Port: 800, Left: time.Minute}}
	check("same capture as the last reading", t0, event.TCP, 800, false, 1)
	check("same capture, another port", t0, event.TCP, 23, false, 1)
	seen := now.Add(time.Millisecond)
	now = seen.Add(time.Millisecond)
	check("captured after the last reading: published", seen, event.TCP, 800, true, 2)
	check("same port, UDP", seen, event.UDP, 800, false, 2)
	now = now.Add(30 * time.Second)
	check("a later client of the known port: no reading", now.Add(-time.Millisecond), event.TCP, 800, true, 2)
	// Its memory ends as the kernel's does.
	kernel = nil
	now = now.Add(31 * time.Second)
	check("past what the kernel had left", now.Add(-time.Millisecond), event.TCP, 800, false, 3)

	kernel = []block.Served{{UDP: true, Port: 53, Left: time.Hour}}
	now = now.Add(time.Second)
	check("UDP 53 published", now.Add(-time.Millisecond), event.UDP, 53, true, 4)
	fail = errors.New("netlink: broken")
	now = now.Add(time.Second)
	check("failing: the last reading stands", now.Add(-time.Millisecond), event.UDP, 53, true, 4)
	check("failing: a port not in it", now.Add(-time.Millisecond), event.TCP, 22, false, 5)
	check("failing again", now.Add(time.Millisecond), event.TCP, 22, false, 6)
	if n := strings.Count(log.String(), "reading the ports the kernel remembers as served"); n != 1 {
		t.Errorf("%d warnings about the failing reading, want 1:\n%s", n, log.String())
	}
	s.ReadKernel(nil)
	check("kernel off", now.Add(time.Second), event.UDP, 53, false, 6)
}
