package enforce

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
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
// refused to. Event loop only; the readings after the first are made in
// the background, since a busy host's peer sets (up to 65 536 entries per
// family) take a while to list, and the loop must not wait for them.
type peers struct {
	src *peerSource // nil: peers off, or no trap
}

// peerSource reads the kernel's peers for one setting of the trap.
type peerSource struct {
	read    func() ([]block.Peer, error)
	log     *slog.Logger
	view    atomic.Pointer[peerView] // the most recent reading
	reading atomic.Bool              // a background reading is under way
	failing atomic.Bool              // the last reading failed (logged once)
}

// peerView is one reading of the kernel's peers.
type peerView struct {
	began time.Time // when the reading began
	hops  map[netip.Addr][]uint8
}

// use makes p read from the kernel with read, or stop (nil).
func (p *peers) use(read func() ([]block.Peer, error), log *slog.Logger) {
	p.src = nil
	if read != nil {
		p.src = &peerSource{read: read, log: log}
	}
}

// forged reports whether ev claims a peer's address with a hop count that
// the peer's own packets never arrived with, and the hop counts they did.
// Only passive sensors see a probe's hop count; a connect-mode probe
// completed a handshake and is no forgery. The first probe after the trap
// is set waits for a reading; later ones use the last reading while a
// newer one is made, when it is peerRefresh old. A peer the kernel learnt
// since the last reading is not one here yet: before acting on a source,
// ask forgedNow.
func (p *peers) forged(ev event.Event) ([]uint8, bool) {
	src := p.src
	if src == nil || ev.TTL == 0 || !ev.Mode.Passive() {
		return nil, false
	}
	v := src.view.Load()
	if v == nil {
		v = src.refresh()
	} else if (ev.Time.Sub(v.began) >= peerRefresh || ev.Time.Before(v.began.Add(-peerRefresh))) && src.reading.CompareAndSwap(false, true) {
		go func() {
			defer src.reading.Store(false)
			src.refresh()
		}()
	}
	return v.forged(ev)
}

// forgedNow is forged judged by a reading that began after ev's packet
// was captured: the check before acting on a source, so that a peer the
// kernel learnt moments ago, and whose forged probes it spared, is not
// banned by the daemon on an older reading. One reading serves every
// probe captured before it began: a scan's probes captured together cost
// one, and only sources about to be acted on ask.
func (p *peers) forgedNow(ev event.Event) ([]uint8, bool) {
	src := p.src
	if src == nil || ev.TTL == 0 || !ev.Mode.Passive() {
		return nil, false
	}
	v := src.view.Load()
	if v == nil || !v.began.After(ev.Time) {
		v = src.refresh()
	}
	return v.forged(ev)
}

func (v *peerView) forged(ev event.Event) ([]uint8, bool) {
	hops, ok := v.hops[ev.Src]
	if !ok || slices.Contains(hops, ev.TTL) {
		return nil, false
	}
	return hops, true
}

// known reports whether addr is a peer as far as the kernel trap knows,
// whatever the hop count: a ban from elsewhere never lands on a host that
// has an established connection with this one. The first call after the
// trap is set reads the kernel's peers; later ones use the last reading.
func (p *peers) known(addr netip.Addr) bool {
	src := p.src
	if src == nil {
		return false
	}
	v := src.view.Load()
	if v == nil {
		v = src.refresh()
	}
	_, ok := v.hops[addr]
	return ok
}

// refresh reads the peers again and returns the most recent view. On
// error it keeps the peers it had, with the new time: peers expire in the
// kernel over an hour, so an old view is still mostly right. The loop and
// a background reading may read at once: the reading begun last is kept.
func (s *peerSource) refresh() *peerView {
	began := time.Now()
	ps, err := s.read()
	v := &peerView{began: began}
	if err != nil {
		if !s.failing.Swap(true) && !errors.Is(err, net.ErrClosed) {
			s.log.Warn(logline.Warning("reading the kernel's peers (keeping the last known): " + err.Error()))
		}
		if old := s.view.Load(); old != nil {
			v.hops = old.hops
		}
	} else {
		s.failing.Store(false)
		v.hops = make(map[netip.Addr][]uint8, len(ps))
		for _, x := range ps {
			v.hops[x.Addr] = x.Hops
		}
	}
	for {
		old := s.view.Load()
		if old != nil && old.began.After(began) {
			return old
		}
		if s.view.CompareAndSwap(old, v) {
			return v
		}
	}
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
