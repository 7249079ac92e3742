package enforce

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/control"
	"github.com/portsentry-go/portsentry/internal/enforce/bans"
	"github.com/portsentry-go/portsentry/internal/enforce/block"
	"github.com/portsentry-go/portsentry/internal/engine"
	"github.com/portsentry-go/portsentry/internal/event"
	"github.com/portsentry-go/portsentry/internal/ignore"
	"github.com/portsentry-go/portsentry/internal/infra"
	"github.com/portsentry-go/portsentry/internal/portset"
	"github.com/portsentry-go/portsentry/internal/report"
	"github.com/portsentry-go/portsentry/internal/report/output"
	"github.com/portsentry-go/portsentry/internal/syncbuf"
)

// Addresses of the tests: documentation ranges, never contacted.
var (
	scanner  = netip.MustParseAddr("198.51.100.7")
	scanner6 = netip.MustParseAddr("2001:db8::7")
	ignored  = netip.MustParseAddr("192.0.2.9")   // in the ignore list
	local    = netip.MustParseAddr("203.0.113.1") // "this host"
	gateway  = netip.MustParseAddr("198.51.100.1")
	resolver = netip.MustParseAddr("2001:db8::53")
	// lanPrefix is "this host's" IPv6 network.
	lanPrefix = netip.MustParsePrefix("2001:db8:ffff::/64")
)

// rig is an Enforcer over a fake blocker, with a real engine, ban record
// and reporter, and an event loop of its own.
type rig struct {
	t    *testing.T
	e    *Enforcer
	fake *fakeBlocker
	log  *syncbuf.Buffer
	loop chan func()
}

type rigOptions struct {
	traps      bool // the blocker is a Trapper (nftables)
	command    bool // BLOCKER="command": no native blocker, KILL_ROUTE blocks
	allowLocal bool // -L
	// unprotected is PROTECT_INFRASTRUCTURE="0".
	unprotected bool
	banTime     time.Duration
	prefix6     int // BAN_PREFIX6 (the nftables blocker's)
	settings    Settings
	// serviceCheck turns the service check on, with no local socket
	// anywhere; served is what the kernel trap remembers as served
	// from before the rig started.
	serviceCheck bool
	served       []block.Served
}

func newRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &rig{t: t, fake: newFake(o.traps), log: &syncbuf.Buffer{}, loop: make(chan func())}
	log := output.New(r.log, slog.LevelInfo)
	if o.banTime == 0 {
		o.banTime = time.Hour
	}
	store, err := bans.Open("", bans.Policy{Base: o.banTime}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kind := "iptables"
	if o.traps {
		kind = "nftables"
	}
	jail := NewJail(store, kind, r.fake.asBlocker(), log)
	jail.setPrefix6(o.prefix6)
	if o.command {
		jail = NewJail(store, "command", nil, log)
	}
	guard := NewGuard(o.allowLocal, func() ([]netip.Prefix, error) {
		return []netip.Prefix{netip.PrefixFrom(local, 32)}, nil
	}, func() ([]netip.Prefix, error) {
		return []netip.Prefix{lanPrefix}, nil
	}, func() (infra.Infra, error) {
		return infra.Infra{NameServers: []netip.Addr{resolver}, Gateways: []netip.Addr{gateway}}, nil
	})
	guard.SetIgnore(ignore.New(netip.MustParsePrefix("192.0.2.0/24")))
	guard.ProtectInfrastructure(!o.unprotected)
	if err := guard.Refresh(); err != nil {
		t.Fatal(err)
	}
	rep := report.New(log, report.Settings{})
	var services *ServiceCheck
	if o.serviceCheck {
		none := func(event.Event) (bool, error) { return false, nil }
		services = newServiceCheck(log, none, func() error { return nil }, time.Now)
	}
	r.fake.served = o.served
	r.e = New(ctx, jail, guard, rep, services, log)
	var wg sync.WaitGroup
	wg.Go(func() { rep.Run(ctx) })
	wg.Go(r.e.Run)
	wg.Go(func() {
		for {
			select {
			case fn := <-r.e.Calls():
				fn()
			case fn := <-r.loop:
				fn()
			case <-ctx.Done():
				return
			}
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait(); jail.Close() })
	if o.settings.Engine.Response == ([2]engine.Response{}) {
		o.settings.Engine.Response = [2]engine.Response{engine.Block, engine.Block}
	}
	r.do(func() {
		if err := r.e.Reconfigure(o.settings); err != nil {
			t.Errorf("Reconfigure: %v", err)
		}
	})
	return r
}

// do runs fn in the rig's event loop and waits for it.
func (r *rig) do(fn func()) {
	done := make(chan struct{})
	r.loop <- func() { fn(); close(done) }
	<-done
}

// probe is one SYN from src to port, decided in the loop.
func (r *rig) probe(src netip.Addr, port uint16) {
	r.do(func() {
		r.e.Decide(event.Event{Time: time.Now(), Src: src, Dst: local, Port: port, Proto: event.TCP, Kind: event.SYN, Mode: event.ModeSTCP})
	})
}

// waitLog waits until a log line contains want.
func (r *rig) waitLog(want string) {
	r.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(r.log.String(), want) {
		if time.Now().After(deadline) {
			r.t.Fatalf("no log line with %q; log:\n%s", want, r.log.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// settle waits for the responses under way and their report lines.
func (r *rig) settle() {
	time.Sleep(50 * time.Millisecond)
	r.do(func() {})
}

func TestFirstProbeBansThenAlreadyBlocked(t *testing.T) {
	r := newRig(t, rigOptions{traps: true})
	r.probe(scanner, 143)
	r.waitLog("attackalert: Host 198.51.100.7 has been blocked via nftables")
	ttl, ok := r.fake.ttl(scanner)
	if !ok || ttl <= 59*time.Minute || ttl > time.Hour {
		t.Fatalf("blocker holds %v (%v), want about an hour", ttl, ok)
	}
	r.waitLog("Scan from: [198.51.100.7] (198.51.100.7) protocol: [TCP] port: [143] type: [TCP SYN/Normal scan] IP opts: [unknown] ignored: [false] triggered: [true] noblock: [false] blocked: [true]")
	r.settle()
	r.probe(scanner, 144)
	r.waitLog("attackalert: Host: 198.51.100.7/198.51.100.7 is already blocked Ignoring")
	if got := r.e.Jail().Len(); got != 1 {
		t.Errorf("%d bans in the record, want 1", got)
	}
}

func TestGuardNeverBlocks(t *testing.T) {
	t.Run("ignore list", func(t *testing.T) {
		r := newRig(t, rigOptions{traps: true})
		r.probe(ignored, 143)
		r.waitLog("Scan from: [192.0.2.9] (192.0.2.9) protocol: [TCP] port: [143] type: [TCP SYN/Normal scan] IP opts: [unknown] ignored: [true]")
		r.settle()
		if _, ok := r.fake.ttl(ignored); ok {
			t.Error("an ignored address was banned")
		}
	})
	t.Run("own address with -L: reported, not blocked", func(t *testing.T) {
		r := newRig(t, rigOptions{traps: true, allowLocal: true})
		r.probe(local, 143)
		r.waitLog("attackalert: Host 203.0.113.1 is a local or ignored address: not blocking it")
		r.settle()
		if _, ok := r.fake.ttl(local); ok {
			t.Error("this host's own address was banned")
		}
	})
	t.Run("kernel never-ban list", func(t *testing.T) {
		r := newRig(t, rigOptions{traps: true})
		r.fake.mu.Lock()
		got := slices.Clone(r.fake.allowed)
		r.fake.mu.Unlock()
		want := []netip.Prefix{
			netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.1/32"),
			netip.MustParsePrefix("203.0.113.1/32"), netip.MustParsePrefix("2001:db8::53/128"),
		}
		if !slices.Equal(got, want) {
			t.Errorf("kernel never-ban list %v, want %v", got, want)
		}
	})
	t.Run("infrastructure: forged probes ban nobody", func(t *testing.T) {
		r := newRig(t, rigOptions{traps: true})
		for _, a := range []netip.Addr{gateway, resolver} {
			r.probe(a, 143)
			r.waitLog("Scan from: [" + a.String() + "] (" + a.String() + ") protocol: [TCP] port: [143] type: [TCP SYN/Normal scan] IP opts: [unknown] ignored: [true]")
		}
		r.settle()
		for _, a := range []netip.Addr{gateway, resolver} {
			if _, ok := r.fake.ttl(a); ok {
				t.Errorf("infrastructure address %v banned", a)
			}
		}
		st := r.e.Control(func() control.Status { return control.Status{} }).Status()
		if st.Infrastructure == nil || !slices.Equal(st.Infrastructure.Gateways, []string{"198.51.100.1"}) || !slices.Equal(st.Infrastructure.NameServers, []string{"2001:db8::53"}) {
			t.Errorf("status shows infrastructure %+v", st.Infrastructure)
		}
	})
	t.Run("infrastructure protection off", func(t *testing.T) {
		r := newRig(t, rigOptions{traps: true, unprotected: true})
		r.probe(gateway, 143)
		r.waitLog("Host 198.51.100.1 has been blocked via nftables")
		if st := r.e.Control(func() control.Status { return control.Status{} }).Status(); st.Infrastructure != nil {
			t.Errorf("status shows infrastructure %+v although protection is off", st.Infrastructure)
		}
	})
	t.Run("by hand", func(t *testing.T) {
		r := newRig(t, rigOptions{traps: true})
		c := r.e.Control(func() control.Status { return control.Status{} })
		for _, a := range []netip.Addr{ignored, local, gateway} {
			if _, err := c.Block(a, time.Hour, ""); err == nil || !strings.Contains(err.Error(), "never blocked") {
				t.Errorf("Block(%v) = %v, want a never-blocked refusal", a, err)
			}
		}
	})
}

func TestTrapOnlyWithTrapper(t *testing.T) {
	trap := &block.Trap{TCP: portset.Below(1024), TTL: time.Hour}
	for _, traps := range []bool{true, false} {
		r := newRig(t, rigOptions{traps: traps, settings: Settings{Trap: trap}})
		r.fake.mu.Lock()
		got := r.fake.trap
		r.fake.mu.Unlock()
		if (got != nil) != traps {
			t.Errorf("trapper %v: trap set = %v", traps, got != nil)
		}
		if traps {
			r.waitLog("adminalert: kernel trap set on 1023 TCP and 0 UDP ports")
			r.e.RemoveTrap()
			r.fake.mu.Lock()
			if r.fake.trap != nil {
				t.Error("RemoveTrap left the trap")
			}
			r.fake.mu.Unlock()
		}
	}
}

// A restarted daemon judges the ports the kernel trap still remembers as
// served as the kernel does: a client reconnecting to a service that went
// away just before the restart is not banned; a port never served still
// bans.
func TestServedPortsOutliveRestart(t *testing.T) {
	trap := &block.Trap{TCP: portset.Below(1024), TTL: time.Hour, Grace: time.Hour}
	r := newRig(t, rigOptions{traps: true, serviceCheck: true,
		served:   []block.Served{{Port: 700, Left: 50 * time.Minute}, {UDP: true, Port: 143, Left: time.Hour}},
		settings: Settings{Trap: trap, ServiceGrace: time.Hour}})
	r.waitLog("adminalert: kernel trap set")
	r.probe(scanner, 700)
	r.settle()
	if _, ok := r.fake.ttl(scanner); ok {
		t.Fatal("a client of a port served before the restart was banned")
	}
	r.probe(scanner, 143) // served for UDP only
	r.waitLog("attackalert: Host 198.51.100.7 has been blocked via nftables")
}

// A port published by DNAT has no socket, yet it is a service's: the
// kernel records it when it DNATs a client's first packet, moments before
// the daemon judges the packet's copy from the capture, and the service
// check finds it there. The client is not banned, IPv4 and IPv6, with or
// without the trap; a probe of an unused port still is. With a blocker
// that records no such ports (iptables) the client is taken for a
// scanner: the admin must exclude the port (ADVANCED_EXCLUDE_*).
func TestPublishedPortIsAService(t *testing.T) {
	client := netip.MustParseAddr("198.51.100.30")
	client6 := netip.MustParseAddr("2001:db8::30")
	for _, trap := range []*block.Trap{nil, {TCP: portset.Below(1024), TTL: time.Hour, Grace: time.Hour}} {
		r := newRig(t, rigOptions{traps: true, serviceCheck: true, settings: Settings{Trap: trap, ServiceGrace: time.Hour}})
		// A reading before the port is published: the scanner's probe.
		r.probe(scanner, 23)
		r.waitLog("attackalert: Host 198.51.100.7 has been blocked via nftables")
		r.fake.publish(block.Served{Port: 800, Left: time.Minute})
		r.probe(client, 800)
		r.probe(client6, 800)
		r.settle()
		for _, a := range []netip.Addr{client, client6} {
			if _, ok := r.fake.ttl(a); ok {
				t.Errorf("trap %v: the client %v of the published port 800 was banned", trap != nil, a)
			}
		}
		if strings.Contains(r.log.String(), "port: [800]") {
			t.Errorf("trap %v: the published port's clients were reported:\n%s", trap != nil, r.log.String())
		}
		r.probe(scanner6, 24)
		r.waitLog("attackalert: Host 2001:db8::7 has been blocked via nftables")
	}

	// Probes captured together (one batch, one capture time) cost one
	// reading of the kernel, however many.
	r := newRig(t, rigOptions{traps: true, serviceCheck: true, settings: Settings{ServiceGrace: time.Hour}})
	r.fake.publish(block.Served{Port: 800, Left: time.Minute})
	seen := time.Now()
	for i := range 50 {
		r.probeAt(netip.AddrFrom4([4]byte{198, 51, 100, byte(100 + i)}), uint16(1000+i), 64, seen)
	}
	r.fake.mu.Lock()
	reads := r.fake.servedReads
	r.fake.mu.Unlock()
	if reads != 1 {
		t.Errorf("%d readings of the kernel's served ports for one batch of 50 probes, want 1", reads)
	}

	plain := newRig(t, rigOptions{serviceCheck: true, settings: Settings{ServiceGrace: time.Hour}})
	plain.fake.publish(block.Served{Port: 800, Left: time.Minute})
	plain.probe(client, 800)
	plain.waitLog("attackalert: Host 198.51.100.30 has been blocked via iptables")
}

func TestExpiry(t *testing.T) {
	for _, traps := range []bool{true, false} {
		r := newRig(t, rigOptions{traps: traps, banTime: 300 * time.Millisecond})
		r.probe(scanner, 22)
		r.waitLog("has been blocked via")
		r.settle()
		time.Sleep(400 * time.Millisecond)
		// The next probe after the end of the ban counts again: the ended
		// ban is lifted first, in the same pass, and the source is banned
		// anew (a repeat offender: twice as long).
		r.probe(scanner, 23)
		r.waitLog("attackalert: Host 198.51.100.7 unblocked: ban expired")
		r.waitLog("port: [23] type: [TCP SYN/Normal scan] IP opts: [unknown] ignored: [false] triggered: [true] noblock: [false] blocked: [true]")
		r.fake.mu.Lock()
		deleted := slices.Contains(r.fake.deletes, scanner)
		r.fake.mu.Unlock()
		// A Trapper's kernel expires its bans itself: deleting would lift
		// the trap's fresh ban. The others need the Delete.
		if deleted == traps {
			t.Errorf("trapper %v: expired ban deleted from the blocker: %v", traps, deleted)
		}
	}
}

func TestUnblockByHand(t *testing.T) {
	r := newRig(t, rigOptions{traps: true})
	r.probe(scanner, 22)
	r.probe(scanner6, 22)
	r.waitLog("Host 2001:db8::7 has been blocked")
	r.waitLog("Host 198.51.100.7 has been blocked")
	r.settle()
	c := r.e.Control(func() control.Status { return control.Status{} })
	lifted, err := c.Unblock(netip.MustParsePrefix("198.51.100.0/24"))
	if err != nil || len(lifted) != 1 || lifted[0].Addr != scanner {
		t.Fatalf("Unblock = %v, %v; want the IPv4 scanner's ban", lifted, err)
	}
	if _, ok := r.fake.ttl(scanner); ok {
		t.Error("the lifted ban is still in the blocker")
	}
	if _, ok := r.fake.ttl(scanner6); !ok {
		t.Error("a ban outside the prefix was lifted")
	}
	r.waitLog("attackalert: Host 198.51.100.7 unblocked: unblocked by hand")
	// Lifted, the source counts from zero: its next probe bans it again.
	r.probe(scanner, 25)
	r.waitLog("port: [25] type: [TCP SYN/Normal scan] IP opts: [unknown] ignored: [false] triggered: [true] noblock: [false] blocked: [true]")
	if st := c.Status(); st.Bans != 2 || st.Blocker != "nftables" {
		t.Errorf("Status: %d bans with %q, want 2 with nftables", st.Bans, st.Blocker)
	}
}

// TestUnblockKernelOnly: a ban the kernel's set holds but the record
// never heard of (the trap banned the address and its event was lost) is
// lifted by unblock all the same, alone or inside a prefix, and the reply
// says it was the kernel's only.
func TestUnblockKernelOnly(t *testing.T) {
	for _, traps := range []bool{true, false} {
		r := newRig(t, rigOptions{traps: traps})
		c := r.e.Control(func() control.Status { return control.Status{} })
		lost := netip.MustParseAddr("198.51.100.8")
		lost6 := netip.MustParseAddr("2001:db8::8")
		r.fake.mu.Lock()
		r.fake.held[lost] = 50 * time.Minute
		r.fake.held[lost6] = 0
		r.fake.mu.Unlock()

		lifted, err := c.Unblock(netip.PrefixFrom(lost, 32))
		if err != nil || len(lifted) != 1 || lifted[0].Addr != lost || lifted[0].Reason != KernelOnly {
			t.Fatalf("traps %v: Unblock(%v) = %+v, %v; want its kernel-only ban", traps, lost, lifted, err)
		}
		if d := time.Until(lifted[0].Expires); d < 49*time.Minute || d > 50*time.Minute {
			t.Errorf("traps %v: reply says it expires in %v, want the kernel's 50m", traps, d)
		}
		if _, ok := r.fake.ttl(lost); ok {
			t.Errorf("traps %v: the kernel still bans %v after unblock", traps, lost)
		}
		r.waitLog("attackalert: Host 198.51.100.8 unblocked: unblocked by hand")

		// A prefix: the recorded ban and the kernel-only one inside it go,
		// each once; the one outside stays.
		r.probe(scanner6, 22)
		r.waitLog("Host 2001:db8::7 has been blocked")
		r.settle()
		outside := netip.MustParseAddr("2001:db9::1")
		r.fake.mu.Lock()
		r.fake.held[outside] = time.Hour
		r.fake.mu.Unlock()
		lifted, err = c.Unblock(netip.MustParsePrefix("2001:db8::/64"))
		var got []string
		for _, b := range lifted {
			got = append(got, b.Addr.String()+" "+b.Reason)
		}
		want := []string{"2001:db8::7 TCP SYN/Normal scan", "2001:db8::8 " + KernelOnly}
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("traps %v: Unblock(2001:db8::/64) = %q, %v; want %q", traps, got, err, want)
		}
		for _, a := range []netip.Addr{scanner6, lost6} {
			if _, ok := r.fake.ttl(a); ok {
				t.Errorf("traps %v: the kernel still bans %v after unblock of its prefix", traps, a)
			}
		}
		if _, ok := r.fake.ttl(outside); !ok {
			t.Errorf("traps %v: a kernel ban outside the prefix was lifted", traps)
		}
		if lifted, err := c.Unblock(netip.MustParsePrefix("2001:db8::/64")); err != nil || len(lifted) != 0 {
			t.Errorf("traps %v: second Unblock = %v, %v; want nothing left", traps, lifted, err)
		}
	}
}

func TestFailedBanIsNotRecorded(t *testing.T) {
	r := newRig(t, rigOptions{traps: true})
	r.fake.mu.Lock()
	r.fake.fail = errFake
	r.fake.mu.Unlock()
	r.probe(scanner, 22)
	r.waitLog("attackalert: ERROR: Host 198.51.100.7 was NOT blocked; its next probe will try again")
	r.settle()
	if n := r.e.Jail().Len(); n != 0 {
		t.Errorf("%d bans recorded after the blocker refused, want 0", n)
	}
	// Its next probe tries again, and works once the blocker does.
	r.fake.mu.Lock()
	r.fake.fail = nil
	r.fake.mu.Unlock()
	r.probe(scanner, 23)
	r.waitLog("port: [23] type: [TCP SYN/Normal scan] IP opts: [unknown] ignored: [false] triggered: [true] noblock: [false] blocked: [true]")
}

func TestRestoreReconciles(t *testing.T) {
	path := t.TempDir() + "/bans"
	store, err := bans.Open(path, bans.Policy{Base: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kept := store.BanFor(scanner, time.Hour, "kept")
	store.BanFor(scanner6, 0, "permanent")
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	fake := newFake(true)
	stale := netip.MustParseAddr("198.51.100.99") // lifted while the daemon was down
	fake.held[stale] = time.Hour
	fake.held[scanner] = kept.Remaining(time.Now()) // already right
	store, err = bans.Open(path, bans.Policy{Base: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	log := output.New(&syncbuf.Buffer{}, slog.LevelInfo)
	jail := NewJail(store, "nftables", fake, log)
	defer jail.Close()
	guard := NewGuard(false, func() ([]netip.Prefix, error) { return nil, nil }, nil, nil)
	e := New(context.Background(), jail, guard, report.New(log, report.Settings{}), nil, log)
	if err := e.Restore(path, ""); err != nil {
		t.Fatal(err)
	}
	if _, ok := fake.ttl(stale); ok {
		t.Error("a ban the record does not hold was kept")
	}
	if ttl, ok := fake.ttl(scanner6); !ok || ttl != 0 {
		t.Errorf("permanent ban restored as %v, %v; want 0, true", ttl, ok)
	}
	if ttl, ok := fake.ttl(scanner); !ok || ttl < 59*time.Minute {
		t.Errorf("timed ban restored as %v, %v", ttl, ok)
	}
	if !e.engine.IsBlocked(scanner) || !e.engine.IsBlocked(scanner6) {
		t.Error("the engine does not know the restored bans")
	}
}
