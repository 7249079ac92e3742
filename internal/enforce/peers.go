package enforce

import (
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/portsentry-go/portsentry/internal/enforce/block"
	"github.com/portsentry-go/portsentry/internal/engine"
	"github.com/portsentry-go/portsentry/internal/event"
	"github.com/portsentry-go/portsentry/internal/report/logline"
)

// peerTrigger is how many distinct ports probes that claim a peer's
// address from another distance must reach, within SCAN_TRIGGER_WINDOW,
// before the peer is banned all the same. Such probes are forged, or the
// peer scanning with a tool that writes its own TTL (nmap's raw probes
// leave with a random one): either way they were dropped, so nothing was
// learnt, and a real scan reaches this many ports in moments while a
// forger must now send that many packets, not one.
const peerTrigger = 64

// peerSources bounds the sources counted towards peerTrigger.
const peerSources = 4096

// peerRefresh is how long a reading of the kernel's peers serves: they
// are read again only when a probe asks after that, so an idle host reads
// nothing and a flood costs at most a few reads a second.
const peerRefresh = 200 * time.Millisecond

// peers is what the kernel trap knows of peers (block.Peer), as last read:
// the daemon's own decisions then spare a peer's address exactly where the
// kernel does, so that the user-space response does not ban what the trap
// refused to. Event loop only.
type peers struct {
	read func() ([]block.Peer, error) // nil: peers off, or no trap
	at   time.Time                    // when hops was read
	hops map[netip.Addr][]uint8
	log  *slog.Logger
	// failing is set while the kernel cannot be read, so that a run of
	// failures is logged once.
	failing bool
}

// use makes p read from the kernel with read, or stop (nil).
func (p *peers) use(read func() ([]block.Peer, error), log *slog.Logger) {
	*p = peers{read: read, log: log}
}

// forged reports whether ev claims a peer's address with a hop count that
// the peer's own packets never arrived with, and the hop counts they did.
// Only passive sensors see a probe's hop count; a connect-mode probe
// completed a handshake and is no forgery.
func (p *peers) forged(ev event.Event) ([]uint8, bool) {
	if p.read == nil || ev.TTL == 0 || !ev.Mode.Passive() {
		return nil, false
	}
	if p.hops == nil || ev.Time.Sub(p.at) >= peerRefresh || ev.Time.Before(p.at) {
		p.refresh(ev.Time)
	}
	hops, ok := p.hops[ev.Src]
	if !ok || slices.Contains(hops, ev.TTL) {
		return nil, false
	}
	return hops, true
}

// refresh reads the peers again. On error it keeps what it had: peers
// expire in the kernel over an hour, so an old view is still mostly right.
func (p *peers) refresh(now time.Time) {
	p.at = now
	ps, err := p.read()
	if err != nil {
		if !p.failing {
			p.log.Warn(logline.Warning("reading the kernel's peers (keeping the last known): " + err.Error()))
		}
		p.failing = true
		return
	}
	p.failing = false
	m := make(map[netip.Addr][]uint8, len(ps))
	for _, x := range ps {
		m[x.Addr] = x.Hops
	}
	p.hops = m
}

// peerCounting is how unlike counts: peerTrigger distinct ports within
// window (SCAN_TRIGGER_WINDOW), whatever SCAN_TRIGGER says.
func peerCounting(window time.Duration) engine.Options {
	return engine.Options{
		Trigger:    peerTrigger,
		Window:     window,
		Response:   [2]engine.Response{engine.Block, engine.Block},
		MaxSources: peerSources,
	}
}
