package crowdsec

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/portsentry-go/portsentry/internal/report/logline"
)

// MaxDecisions bounds the decisions the puller follows (a community
// blocklist is tens of thousands); past it new ones are skipped, counted.
const MaxDecisions = 1 << 20

// Target is where the puller applies decisions: enforcement, for the
// origin "crowdsec".
type Target struct {
	// Import bans addr for ttl, or refuses to: Refused tells the errors
	// that are local policy at work (the ignore list, this host's own
	// addresses, its infrastructure, its peers).
	Import func(addr netip.Addr, ttl time.Duration, reason string) error
	// Withdraw lifts addr's ban if CrowdSec made it, and says whether
	// it did.
	Withdraw func(addr netip.Addr) (bool, error)
	// Held lists the addresses banned on CrowdSec's word now.
	Held func() []netip.Addr
	// Refused tells the errors of Import that are local policy at work,
	// saying which in a word ("protected", "peer": a small fixed set, the
	// keys of PullStats.Refused); "" for any other error.
	Refused func(error) string
}

// Puller follows the LAPI's decisions as a bouncer in stream mode: every
// active decision at start, then what changed every poll interval. Ban
// decisions on an address (scope Ip) are imported; other types (captcha)
// and scopes (Range, Country, AS) are skipped, counted. An address is
// lifted when the last of its decisions is deleted or expires.
type Puller struct {
	c   *Client
	t   Target
	log *slog.Logger

	// ids are the decisions followed, and count how many each address has.
	ids   map[int64]netip.Addr
	count map[netip.Addr]int
	// started: the startup pull succeeded; failing: a failure was logged.
	started, failing bool

	mu    sync.Mutex
	stats PullStats // totals since start, for Stats
}

// PullStats are the puller's totals since start, and how its last poll
// went.
type PullStats struct {
	// LastPoll is when a poll last succeeded (zero: none yet);
	// LastError why the last poll failed, and LastErrorAt when ("" when
	// it succeeded).
	LastPoll    time.Time
	LastError   string
	LastErrorAt time.Time
	Pulled      uint64            // decisions read: new or changed, of every type and scope
	Applied     uint64            // bans imported
	Lifted      uint64            // bans lifted: their last decision deleted or expired
	Refused     map[string]uint64 // bans local policy refused, by why (Target.Refused)
	Skipped     uint64            // not a ban of an address (captcha, Range, Country, …) or over MaxDecisions
	Failed      uint64            // imports or lifts that failed
	Followed    int               // decisions followed now
}

// Connected reports whether the last poll succeeded.
func (s PullStats) Connected() bool { return !s.LastPoll.IsZero() && s.LastError == "" }

// Stats returns the totals.
func (p *Puller) Stats() PullStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.stats
	st.Refused = make(map[string]uint64, len(p.stats.Refused))
	for k, v := range p.stats.Refused {
		st.Refused[k] = v
	}
	return st
}

// NewPuller returns a puller through c (which must have a bouncer key)
// into t.
func NewPuller(c *Client, t Target, log *slog.Logger) *Puller {
	return &Puller{c: c, t: t, log: log, ids: make(map[int64]netip.Addr), count: make(map[netip.Addr]int)}
}

// Run pulls until ctx is done: at once, then every poll interval. A
// failed pull is logged once (and its end once), and tried again at the
// next interval; nothing waits for it.
func (p *Puller) Run(ctx context.Context) {
	t := time.NewTicker(p.c.cfg.Poll)
	defer t.Stop()
	for {
		p.poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// poll is one pull and its application.
func (p *Puller) poll(ctx context.Context) {
	s, err := p.c.stream(ctx, !p.started)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		p.mu.Lock()
		p.stats.LastError, p.stats.LastErrorAt = err.Error(), time.Now()
		p.mu.Unlock()
		if !p.failing {
			p.failing = true
			hint := ""
			if errors.Is(err, ErrUnauthorized) {
				hint = " (check CROWDSEC_BOUNCER_KEY: cscli bouncers list)"
			}
			p.log.Warn(logline.Warning(fmt.Sprintf("CrowdSec: reading decisions from %s failed, retrying every %v%s: %v", p.c.base.Redacted(), p.c.cfg.Poll, hint, err)))
		}
		return
	}
	if p.failing {
		p.failing = false
		p.log.Info(logline.Notice(fmt.Sprintf("CrowdSec: reading decisions from %s again", p.c.base.Redacted())))
	}
	startup := !p.started
	p.started = true
	sum := p.apply(s, startup)
	if startup {
		sum.lifted += p.reconcile()
	}
	p.mu.Lock()
	st := &p.stats
	st.LastPoll, st.LastError, st.LastErrorAt = time.Now(), "", time.Time{}
	st.Pulled += uint64(len(s.New))
	st.Applied += uint64(sum.banned)
	st.Lifted += uint64(sum.lifted)
	st.Skipped += uint64(sum.skipped)
	st.Failed += uint64(sum.failed)
	for why, n := range sum.refusedWhy {
		if st.Refused == nil {
			st.Refused = map[string]uint64{}
		}
		st.Refused[why] += uint64(n)
	}
	st.Followed = len(p.ids)
	p.mu.Unlock()
	if sum.changed() || startup {
		p.log.Info(logline.Notice(sum.String(startup)))
	}
}

// summary counts what one pull did.
type summary struct {
	banned, lifted, refused, skipped, failed int
	refusedWhy                               map[string]int // refused, by why
}

func (s summary) changed() bool {
	return s.banned+s.lifted+s.refused+s.skipped+s.failed > 0
}

func (s summary) String(startup bool) string {
	what := "CrowdSec decisions"
	if startup {
		what = "CrowdSec decisions at start"
	}
	return fmt.Sprintf("%s: %d addresses banned, %d lifted, %d refused by local policy (ignore list, this host, its infrastructure, peers), %d skipped (not an IP ban), %d failed",
		what, s.banned, s.lifted, s.refused, s.skipped, s.failed)
}

// apply applies one answer: deletions first (an answer may delete and
// re-add a decision), then new decisions. At startup the deletions are
// the LAPI's history and are left to reconcile.
func (p *Puller) apply(s Stream, startup bool) summary {
	var sum summary
	if !startup {
		for _, d := range s.Deleted {
			addr, ok := p.ids[d.ID]
			if !ok {
				continue
			}
			delete(p.ids, d.ID)
			if p.count[addr]--; p.count[addr] > 0 {
				continue
			}
			delete(p.count, addr)
			lifted, err := p.t.Withdraw(addr)
			if err != nil {
				sum.failed++
				p.log.Error(logline.Error(fmt.Sprintf("CrowdSec: lifting %s: %v", addr, err)))
				continue
			}
			if lifted {
				sum.lifted++
			}
		}
	}
	var lastErr error
	for _, d := range s.New {
		addr, ttl, ok := banOf(d)
		if !ok {
			sum.skipped++
			continue
		}
		if _, seen := p.ids[d.ID]; !seen {
			if len(p.ids) >= MaxDecisions {
				sum.skipped++
				continue
			}
			p.ids[d.ID] = addr
			p.count[addr]++
		}
		err := p.t.Import(addr, ttl, printable(d.Scenario, 200))
		why := ""
		if err != nil && p.t.Refused != nil {
			why = p.t.Refused(err)
		}
		switch {
		case err == nil:
			sum.banned++
		case why != "":
			sum.refused++
			if sum.refusedWhy == nil {
				sum.refusedWhy = map[string]int{}
			}
			sum.refusedWhy[why]++
		default:
			sum.failed++
			lastErr = err
		}
	}
	if lastErr != nil {
		p.log.Error(logline.Error(fmt.Sprintf("CrowdSec: %d decisions not applied; the last: %v", sum.failed, lastErr)))
	}
	return sum
}

// reconcile lifts the bans made on CrowdSec's word that no decision
// holds any more: deleted or expired while the daemon was down.
func (p *Puller) reconcile() int {
	n := 0
	for _, addr := range p.t.Held() {
		if p.count[addr] > 0 {
			continue
		}
		if lifted, err := p.t.Withdraw(addr); err == nil && lifted {
			n++
		}
	}
	return n
}

// banOf reads a decision as a ban: type ban, scope Ip, an address, a
// positive duration (Go's syntax, as the LAPI writes it: "3h59m58.5s").
func banOf(d Decision) (netip.Addr, time.Duration, bool) {
	if !strings.EqualFold(d.Type, "ban") || !strings.EqualFold(d.Scope, "ip") {
		return netip.Addr{}, 0, false
	}
	addr, err := netip.ParseAddr(d.Value)
	if err != nil || addr.Zone() != "" {
		return netip.Addr{}, 0, false
	}
	ttl, err := time.ParseDuration(d.Duration)
	if err != nil || ttl <= 0 {
		return netip.Addr{}, 0, false
	}
	return addr.Unmap(), ttl, true
}
