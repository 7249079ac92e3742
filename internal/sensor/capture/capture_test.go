package capture

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/portsentry-go/portsentry/internal/event"
	"github.com/portsentry-go/portsentry/internal/portset"
)

// These tests run the per-packet path on hand-built packets: no socket, no
// privileges, no traffic.

var (
	here4   = netip.MustParseAddr("198.51.100.1") // this host
	here6   = netip.MustParseAddr("2001:db8::1")
	peer4   = netip.MustParseAddr("198.51.100.2") // a scanner, a DNS server
	peer6   = netip.MustParseAddr("2001:db8::2")
	other4  = netip.MustParseAddr("203.0.113.9") // not this host
	mapped  = netip.MustParseAddr("::ffff:198.51.100.2")
	lo4     = netip.MustParseAddr("127.0.0.1")
	lo4b    = netip.MustParseAddr("127.0.0.5")
	t0      = time.Date(2026, 11, 22, 1, 40, 36, 0, time.UTC)
	cmpOpts = []cmp.Option{cmpopts.EquateComparable(netip.Addr{})}
)

// Interface indexes of the test host: 1 loopback, 2 eth0, 7 a named one.
const (
	ifLo   = 1
	ifEth  = 2
	ifNamd = 7
)

func ports(ps ...uint16) portset.Set {
	var s portset.Set
	for _, p := range ps {
		s.Add(p)
	}
	return s
}

// stealth watches TCP 22, 143 and UDP 53, 40000 on every interface but
// loopback.
func stealth() Config {
	return Config{
		TCP: ports(22, 143), UDP: ports(53, 40000),
		TCPMode: event.ModeSTCP, UDPMode: event.ModeSUDP,
	}
}

// testSensor returns a sensor without socket on a made-up host, and the
// events it emits.
func testSensor(t testing.TB, cfg Config) (*Sensor, *[]event.Event) {
	t.Helper()
	s, err := newSensor(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.epoch = t0
	s.host.Store(&hostView{
		local:    map[netip.Addr]struct{}{here4: {}, here6: {}, lo4: {}, netip.IPv6Loopback(): {}},
		loopback: []int{ifLo},
		named:    []int{ifNamd},
	})
	got := new([]event.Event)
	s.emit = func(evs []event.Event) { *got = append(*got, evs...) }
	return s, got
}

// handle runs the per-packet path on one packet and hands its probe, if
// any, over at once, as a read of one packet does.
func handle(s *Sensor, b []byte, pkttype uint8, ifindex int, now time.Time) {
	s.handle(b, pkttype, ifindex, now)
	s.flush()
}

type pkt struct {
	b       []byte
	pkttype uint8
	ifindex int
	at      time.Duration // after t0
}

func in(b []byte) pkt  { return pkt{b: b, pkttype: pktHost, ifindex: ifEth} }
func out(b []byte) pkt { return pkt{b: b, pkttype: pktOutgoing, ifindex: ifEth} }

func (p pkt) on(ifindex int) pkt        { p.ifindex = ifindex; return p }
func (p pkt) after(d time.Duration) pkt { p.at = d; return p }

func ev(src, dst netip.Addr, port uint16, proto event.Proto, kind event.Kind, flags uint8, opts event.IPOpts, mode event.Mode) event.Event {
	// Every hand-built packet leaves with TTL 64 (build_test.go).
	return event.Event{Src: src, Dst: dst, Port: port, Proto: proto, Kind: kind, Flags: flags, IPOpts: opts, Mode: mode, TTL: 64, Ifindex: ifEth}
}

// onIf is e as it arrived on interface ifindex.
func onIf(e event.Event, ifindex int) event.Event { e.Ifindex = ifindex; return e }

func withEvTTL(e event.Event, ttl uint8) event.Event { e.TTL = ttl; return e }

// withTTL sets a built packet's TTL (IPv4) or hop limit (IPv6).
func withTTL(b []byte, ttl uint8) []byte {
	if b[0]>>4 == 4 {
		b[8] = ttl
	} else {
		b[7] = ttl
	}
	return b
}

func TestHandle(t *testing.T) {
	const (
		syn  = event.FlagSYN
		fin  = event.FlagFIN
		xmas = event.FlagFIN | event.FlagURG | event.FlagPSH
		ack  = event.FlagACK
	)
	v4, v6 := event.IPOptsNotSet, event.IPOptsUnknown
	all := stealth()
	all.Interfaces = []string{All}
	advanced := stealth()
	advanced.TCPMode, advanced.UDPMode = event.ModeATCP, event.ModeAUDP
	trace := advanced
	trace.UDP = ports(33433, 33435, 33440, 33534, 33535)

	tests := []struct {
		name string
		cfg  Config
		pkts []pkt
		want []event.Event
	}{
		{"SYN", stealth(), []pkt{in(tcpPacket(peer4, here4, 40001, 22, syn))},
			[]event.Event{ev(peer4, here4, 22, event.TCP, event.SYN, syn, v4, event.ModeSTCP)}},
		{"FIN NULL XMAS", stealth(), []pkt{
			in(tcpPacket(peer4, here4, 40001, 22, fin)),
			in(tcpPacket(peer4, here4, 40001, 22, 0)),
			in(tcpPacket(peer4, here4, 40001, 143, xmas)),
		}, []event.Event{
			ev(peer4, here4, 22, event.TCP, event.FIN, fin, v4, event.ModeSTCP),
			ev(peer4, here4, 22, event.TCP, event.NULL, 0, v4, event.ModeSTCP),
			ev(peer4, here4, 143, event.TCP, event.XMAS, xmas, v4, event.ModeSTCP),
		}},
		{"advanced modes", advanced, []pkt{
			in(tcpPacket(peer4, here4, 40001, 22, syn)),
			in(udpPacket(peer4, here4, 40001, 53)),
		}, []event.Event{
			ev(peer4, here4, 22, event.TCP, event.SYN, syn, v4, event.ModeATCP),
			ev(peer4, here4, 53, event.UDP, event.UDPProbe, 0, v4, event.ModeAUDP),
		}},
		{"unwatched port", stealth(), []pkt{in(tcpPacket(peer4, here4, 40001, 80, syn))}, nil},
		{"ACK is no probe", stealth(), []pkt{in(tcpPacket(peer4, here4, 40001, 22, ack|syn))}, nil},
		{"UDP", stealth(), []pkt{in(udpPacket(peer4, here4, 5353, 53))},
			[]event.Event{ev(peer4, here4, 53, event.UDP, event.UDPProbe, 0, v4, event.ModeSUDP)}},
		{"UDP to a TCP-only port", stealth(), []pkt{in(udpPacket(peer4, here4, 5353, 22))}, nil},
		{"TCP to a UDP-only port", stealth(), []pkt{in(tcpPacket(peer4, here4, 5353, 53, syn))}, nil},
		{"forwarded", stealth(), []pkt{in(tcpPacket(peer4, other4, 40001, 22, syn))}, nil},
		{"IPv6", stealth(), []pkt{in(tcpPacket(peer6, here6, 40001, 143, syn)), in(udpPacket(peer6, here6, 40001, 40000))},
			[]event.Event{
				ev(peer6, here6, 143, event.TCP, event.SYN, syn, v6, event.ModeSTCP),
				ev(peer6, here6, 40000, event.UDP, event.UDPProbe, 0, v6, event.ModeSUDP),
			}},
		// Sources no host can have: an IPv6 packet claiming an IPv4-mapped
		// source would otherwise name an IPv4 host to ban.
		{"IPv4-mapped source refused", stealth(), []pkt{in(tcpPacket(mapped, here6, 40001, 22, syn))}, nil},
		{"multicast, broadcast and unspecified sources refused", stealth(), []pkt{
			in(tcpPacket(netip.MustParseAddr("224.0.0.1"), here4, 40001, 22, syn)),
			in(udpPacket(netip.MustParseAddr("255.255.255.255"), here4, 40001, 53)),
			in(tcpPacket(netip.IPv4Unspecified(), here4, 40001, 22, syn)),
			in(tcpPacket(netip.MustParseAddr("ff02::1"), here6, 40001, 22, syn)),
			in(tcpPacket(netip.IPv6Unspecified(), here6, 40001, 22, syn)),
		}, nil},

		// Traceroute's last probes (UDP to 33434 and up, arriving with
		// what is left of a small TTL) are no probes; the same port with
		// an ordinary TTL, or a low TTL elsewhere, is.
		{"traceroute", trace, []pkt{
			in(withTTL(udpPacket(peer4, here4, 40001, 33435), 1)),
			in(withTTL(udpPacket(peer4, here4, 40001, 33440), 3)),
			in(withTTL(udpPacket(peer6, here6, 40001, 33534), 30)),
			in(withTTL(udpPacket(peer4, here4, 40001, 33435), 31)),
			in(withTTL(udpPacket(peer4, here4, 40001, 33535), 1)),
			in(withTTL(udpPacket(peer4, here4, 40001, 33433), 1)),
		}, []event.Event{
			withEvTTL(ev(peer4, here4, 33435, event.UDP, event.UDPProbe, 0, v4, event.ModeAUDP), 31),
			withEvTTL(ev(peer4, here4, 33535, event.UDP, event.UDPProbe, 0, v4, event.ModeAUDP), 1),
			withEvTTL(ev(peer4, here4, 33433, event.UDP, event.UDPProbe, 0, v4, event.ModeAUDP), 1),
		}},
		{"loopback not watched", stealth(), []pkt{in(tcpPacket(lo4, lo4, 40001, 22, syn)).on(ifLo)}, nil},
		{"loopback watched", all, []pkt{
			in(tcpPacket(lo4, lo4, 40001, 22, syn)).on(ifLo),
			in(tcpPacket(lo4, lo4b, 40001, 22, syn)).on(ifLo), // all of 127/8 is local on lo
			in(tcpPacket(peer4, lo4b, 40001, 22, syn)),        // but a martian elsewhere
		}, []event.Event{
			onIf(ev(lo4, lo4, 22, event.TCP, event.SYN, syn, v4, event.ModeSTCP), ifLo),
			onIf(ev(lo4, lo4b, 22, event.TCP, event.SYN, syn, v4, event.ModeSTCP), ifLo),
		}},
		{"broadcast and other packet types", all, []pkt{
			{b: udpPacket(peer4, here4, 5353, 53), pkttype: 1, ifindex: ifEth},
			{b: udpPacket(peer4, here4, 5353, 53), pkttype: 3, ifindex: ifEth},
		}, nil},
		{"undecodable", stealth(), []pkt{in([]byte{0x45, 0, 0}), in(nil)}, nil},
		{"protocol off", Config{TCP: ports(22), TCPMode: event.ModeSTCP}, []pkt{in(udpPacket(peer4, here4, 5353, 53))}, nil},

		// The reply table.
		{"late DNS reply", stealth(), []pkt{
			out(udpPacket(here4, peer4, 40000, 53)),
			in(udpPacket(peer4, here4, 53, 40000)).after(2 * time.Second),
		}, nil},
		{"reply over IPv6", stealth(), []pkt{
			out(udpPacket(here6, peer6, 40000, 53)),
			in(udpPacket(peer6, here6, 53, 40000)),
		}, nil},
		{"outgoing on another interface", stealth(), []pkt{
			out(udpPacket(here4, peer4, 40000, 53)).on(ifLo),
			in(udpPacket(peer4, here4, 53, 40000)),
		}, nil},
		{"not a reply: other remote port", stealth(), []pkt{
			out(udpPacket(here4, peer4, 40000, 53)),
			in(udpPacket(peer4, here4, 54, 40000)),
		}, []event.Event{ev(peer4, here4, 40000, event.UDP, event.UDPProbe, 0, v4, event.ModeSUDP)}},
		{"not a reply: other host", stealth(), []pkt{
			out(udpPacket(here4, peer4, 40000, 53)),
			in(udpPacket(other4, here4, 53, 40000)),
		}, []event.Event{ev(other4, here4, 40000, event.UDP, event.UDPProbe, 0, v4, event.ModeSUDP)}},
		{"not a reply: other local port", stealth(), []pkt{
			out(udpPacket(here4, peer4, 40000, 53)),
			in(udpPacket(peer4, here4, 53, 53)),
		}, []event.Event{ev(peer4, here4, 53, event.UDP, event.UDPProbe, 0, v4, event.ModeSUDP)}},
		{"reply just in time", stealth(), []pkt{
			out(udpPacket(here4, peer4, 40000, 53)),
			in(udpPacket(peer4, here4, 53, 40000)).after(179 * time.Second),
		}, nil},
		{"replies refresh the flow", stealth(), []pkt{
			out(udpPacket(here4, peer4, 40000, 53)),
			in(udpPacket(peer4, here4, 53, 40000)).after(170 * time.Second),
			in(udpPacket(peer4, here4, 53, 40000)).after(340 * time.Second),
		}, nil},
		{"reply too late", stealth(), []pkt{
			out(udpPacket(here4, peer4, 40000, 53)),
			in(udpPacket(peer4, here4, 53, 40000)).after(181 * time.Second),
		}, []event.Event{ev(peer4, here4, 40000, event.UDP, event.UDPProbe, 0, v4, event.ModeSUDP)}},
		{"TCP is never a reply", stealth(), []pkt{
			out(udpPacket(here4, peer4, 22, 53)),
			in(tcpPacket(peer4, here4, 53, 22, syn)),
		}, []event.Event{ev(peer4, here4, 22, event.TCP, event.SYN, syn, v4, event.ModeSTCP)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, got := testSensor(t, tt.cfg)
			for _, p := range tt.pkts {
				handle(s, p.b, p.pkttype, p.ifindex, t0.Add(p.at))
			}
			if diff := cmp.Diff(tt.want, *got, append(cmpOpts, cmpopts.IgnoreFields(event.Event{}, "Time", "SrcPort"), cmpopts.EquateEmpty())...); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			if n := s.inspected.Load(); n != uint64(len(tt.pkts)) {
				t.Errorf("inspected %d, want %d", n, len(tt.pkts))
			}
			if n := s.emitted.Load(); n != uint64(len(*got)) {
				t.Errorf("emitted %d, want %d", n, len(*got))
			}
		})
	}
}

func TestHandleTimeAndCounters(t *testing.T) {
	s, got := testSensor(t, stealth())
	at := t0.Add(time.Hour)
	handle(s, tcpPacket(peer4, here4, 1, 22, event.FlagSYN), pktHost, ifEth, at)
	handle(s, []byte{0x60}, pktHost, ifEth, at)
	if len(*got) != 1 || !(*got)[0].Time.Equal(at) {
		t.Fatalf("events %v, want one at %v", *got, at)
	}
	if n := s.undecodable.Load(); n != 1 {
		t.Errorf("undecodable %d, want 1", n)
	}
}

func TestHandleNamedInterfaces(t *testing.T) {
	s, got := testSensor(t, stealth())
	w := *s.watch.Load()
	w.ifMode, w.names = ifNamed, []string{"eth9"}
	s.watch.Store(&w)
	syn := tcpPacket(peer4, here4, 1, 22, event.FlagSYN)
	handle(s, syn, pktHost, ifEth, t0)
	handle(s, syn, pktHost, ifLo, t0)
	handle(s, syn, pktHost, ifNamd, t0)
	if len(*got) != 1 {
		t.Errorf("%d events, want 1 (from the named interface only)", len(*got))
	}
	// Outgoing UDP is remembered whatever its interface.
	handle(s, udpPacket(here4, peer4, 40000, 53), pktOutgoing, ifEth, t0)
	handle(s, udpPacket(peer4, here4, 53, 40000), pktHost, ifNamd, t0)
	if len(*got) != 1 {
		t.Errorf("the reply emitted an event")
	}
}

func TestReconfigurePorts(t *testing.T) {
	s, got := testSensor(t, stealth())
	syn22 := tcpPacket(peer4, here4, 1, 22, event.FlagSYN)
	syn80 := tcpPacket(peer4, here4, 1, 80, event.FlagSYN)
	cfg := Config{TCP: ports(80), TCPMode: event.ModeATCP}
	if err := s.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	handle(s, syn22, pktHost, ifEth, t0)
	handle(s, syn80, pktHost, ifEth, t0)
	want := []event.Event{ev(peer4, here4, 80, event.TCP, event.SYN, event.FlagSYN, event.IPOptsNotSet, event.ModeATCP)}
	if diff := cmp.Diff(want, *got, append(cmpOpts, cmpopts.IgnoreFields(event.Event{}, "Time", "SrcPort"))...); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	// A bad configuration changes nothing.
	if err := s.Reconfigure(Config{TCP: ports(22), TCPMode: event.ModeTCP}); err == nil {
		t.Error("Reconfigure with connect mode: no error")
	}
	handle(s, syn22, pktHost, ifEth, t0)
	if len(*got) != 1 {
		t.Error("a failed Reconfigure changed the ports")
	}
}

func TestNewWatch(t *testing.T) {
	tcp := ports(1)
	tests := []struct {
		name    string
		cfg     Config
		mode    ifaceMode
		names   []string
		wantErr string
	}{
		{"default", Config{}, ifAllButLoopback, nil, ""},
		{"ALL_NLO", Config{Interfaces: []string{"ALL_NLO"}}, ifAllButLoopback, nil, ""},
		{"ALL", Config{Interfaces: []string{"ALL"}}, ifAll, nil, ""},
		{"named", Config{Interfaces: []string{"eth1", "eth0", "eth1"}}, ifNamed, []string{"eth0", "eth1"}, ""},
		{"ALL with a name", Config{Interfaces: []string{"ALL", "eth0"}}, 0, nil, "ALL cannot be combined"},
		{"ALL_NLO with a name", Config{Interfaces: []string{"eth0", "ALL_NLO"}}, 0, nil, "ALL_NLO cannot be combined"},
		{"empty name", Config{Interfaces: []string{"eth0", ""}}, 0, nil, "empty interface name"},
		{"TCP in a UDP mode", Config{TCP: tcp, TCPMode: event.ModeSUDP}, 0, nil, `TCP mode "sudp"`},
		{"TCP in connect mode", Config{TCP: tcp}, 0, nil, `TCP mode "tcp"`},
		{"UDP in a TCP mode", Config{UDP: tcp, UDPMode: event.ModeATCP}, 0, nil, `UDP mode "atcp"`},
		{"mode of a protocol off", Config{TCPMode: event.ModeUDP}, ifAllButLoopback, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := newWatch(tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if w.ifMode != tt.mode || !cmp.Equal(w.names, tt.names) {
				t.Errorf("mode %d names %q, want %d %q", w.ifMode, w.names, tt.mode, tt.names)
			}
		})
	}
}

func TestFilterOptions(t *testing.T) {
	h := &hostView{loopback: []int{1}, named: []int{1, 5}}
	for _, tt := range []struct {
		w    watch
		want []int
	}{
		{watch{ifMode: ifAllButLoopback}, []int{1}},
		{watch{ifMode: ifAll}, nil},
		{watch{ifMode: ifNamed, names: []string{"lo", "eth0"}}, nil},
	} {
		o := filterOptions(&tt.w, h)
		if !o.Outgoing || !cmp.Equal(o.ExcludeIfindex, tt.want) {
			t.Errorf("mode %d: %+v, want exclude %v and outgoing", tt.w.ifMode, o, tt.want)
		}
	}
	h.named = []int{5}
	if o := filterOptions(&watch{ifMode: ifNamed}, h); !cmp.Equal(o.ExcludeIfindex, []int{1}) {
		t.Errorf("named without loopback: %+v", o)
	}
}

func TestNewHostView(t *testing.T) {
	h, missing, err := newHostView(&watch{ifMode: ifNamed, names: []string{"lo", "no-such-if0"}})
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(missing, []string{"no-such-if0"}) {
		t.Errorf("missing %q", missing)
	}
	if len(h.loopback) == 0 || len(h.named) != 1 || h.named[0] != h.loopback[0] {
		t.Errorf("loopback %v, named %v: want lo in both", h.loopback, h.named)
	}
	if _, ok := h.local[lo4]; !ok {
		t.Errorf("127.0.0.1 not local: %v", h.local)
	}
	if _, err := newSensor(Config{Interfaces: []string{"no-such-if0"}}, nil); err == nil || !strings.Contains(err.Error(), `no interface "no-such-if0"`) {
		t.Errorf("newSensor with a missing interface: %v", err)
	}
}

func TestFlowTable(t *testing.T) {
	tab := newFlowTable(1) // one bucket: every flow competes for the same 4 slots
	flow := func(i uint16) (uint16, netip.Addr, uint16) { return 40000 + i, peer4, 53 }
	for i := range uint16(4) {
		lp, r, rp := flow(i)
		tab.remember(lp, r, rp, uint32(1+i))
	}
	// Seen again: flow 0 becomes the most recent, flow 1 the oldest.
	lp, r, rp := flow(0)
	tab.remember(lp, r, rp, 10)
	lp, r, rp = flow(4)
	tab.remember(lp, r, rp, 11) // evicts flow 1
	for i, want := range []bool{true, false, true, true, true} {
		lp, r, rp := flow(uint16(i))
		if got := tab.isReply(lp, r, rp, 12); got != want {
			t.Errorf("flow %d: isReply %v, want %v", i, got, want)
		}
	}
	// An expired flow's slot is taken before any live one.
	tab = newFlowTable(1)
	for i := range uint16(4) {
		lp, r, rp := flow(i)
		tab.remember(lp, r, rp, uint32(1+200*min(i, 1))) // flow 0 at 1, the rest at 201
	}
	lp, r, rp = flow(9)
	tab.remember(lp, r, rp, 202) // flow 0 expired at 181
	for i, want := range map[uint16]bool{0: false, 1: true, 2: true, 3: true, 9: true} {
		lp, r, rp := flow(i)
		if got := tab.isReply(lp, r, rp, 202); got != want {
			t.Errorf("after expiry, flow %d: isReply %v, want %v", i, got, want)
		}
	}
	// Addresses of both families and ports in both directions are kept apart.
	tab = newFlowTable(flowBuckets)
	tab.remember(53, peer4, 40000, 1)
	for _, c := range []struct {
		lport  uint16
		remote netip.Addr
		rport  uint16
	}{{40000, peer4, 53}, {53, peer6, 40000}, {53, here4, 40000}} {
		if tab.isReply(c.lport, c.remote, c.rport, 2) {
			t.Errorf("isReply(%d, %v, %d): true for a flow never seen", c.lport, c.remote, c.rport)
		}
	}
	if !tab.isReply(53, peer4, 40000, 2) {
		t.Error("isReply: false for the flow seen")
	}

	// The remote ports' generations never forget a live flow's: one
	// answered every 170 s lives on across rotations, one left alone
	// answers until flowTTL and no later.
	tab = newFlowTable(flowBuckets)
	tab.remember(40001, peer4, 123, 1)
	tab.remember(40002, peer4, 53, 1)
	for now := uint32(171); now < 3000; now += 170 {
		if !tab.isReply(40001, peer4, 123, now) {
			t.Fatalf("a flow answered every 170 s: not a reply at %d", now)
		}
	}
	tab = newFlowTable(flowBuckets)
	tab.remember(40002, peer4, 53, 1)
	tab.isReply(40009, peer4, 99, 180) // any datagram rotates (180 s after the table began): the flow's port now in prev
	if !tab.isReply(40002, peer4, 53, 180) {
		t.Error("a flow 179 s old: not a reply")
	}
	tab = newFlowTable(flowBuckets)
	tab.remember(40002, peer4, 53, 1)
	if tab.isReply(40002, peer4, 53, 181) {
		t.Error("a flow 180 s old: still a reply")
	}
}

// TestHandleSourcePort: an event carries the probe's source port, which
// with its addresses names the connection the service check asks about.
func TestHandleSourcePort(t *testing.T) {
	s, got := testSensor(t, stealth())
	handle(s, tcpPacket(peer4, here4, 40001, 22, event.FlagSYN), pktHost, ifEth, t0)
	handle(s, udpPacket(peer4, here4, 5353, 53), pktHost, ifEth, t0)
	if len(*got) != 2 || (*got)[0].SrcPort != 40001 || (*got)[1].SrcPort != 5353 {
		t.Errorf("events %+v, want source ports 40001 and 5353", *got)
	}
}

// The reader coalesces only while packets arrive at a flood's rate: a
// scan's first packets are never delayed, a flood is, and the delay ends
// with the flood.
func TestPacerFlooded(t *testing.T) {
	var p pacer
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	steps := []struct {
		ms, n int
		want  bool
		why   string
	}{
		{0, 1, false, "a first packet"},
		{10, 64, false, "a burst of a scan"},
		{20, 500, false, "565 packets in the window"},
		{50, 500, true, "1065 packets in the window: a flood's rate"},
		{120, 10, true, "the window after a flooded one"},
		{150, 100, true, "still within it"},
		{230, 5, false, "the window after a quiet one (115 packets)"},
		{260, 1000, true, "a flood again"},
		{700, 1, false, "a packet long after the flood: its window is stale"},
	}
	for _, st := range steps {
		if got := p.flooded(at(st.ms), st.n); got != st.want {
			t.Errorf("%d ms, %d packets (%s): flooded %v, want %v", st.ms, st.n, st.why, got, st.want)
		}
	}
}
