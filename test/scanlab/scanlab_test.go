package main

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// frame builds an Ethernet frame: IPv4 or IPv6 header (by src's family),
// then l4 as the payload of protocol proto.
func frame(src, dst netip.Addr, proto uint8, l4 []byte) []byte {
	var b bytes.Buffer
	b.Write(make([]byte, 12))
	if src.Is4() {
		b.Write([]byte{0x08, 0x00})
		h := make([]byte, 20)
		h[0] = 0x45
		binary.BigEndian.PutUint16(h[2:4], uint16(20+len(l4)))
		h[8], h[9] = 64, proto
		copy(h[12:16], src.AsSlice())
		copy(h[16:20], dst.AsSlice())
		b.Write(h)
	} else {
		b.Write([]byte{0x86, 0xdd})
		h := make([]byte, 40)
		h[0] = 0x60
		binary.BigEndian.PutUint16(h[4:6], uint16(len(l4)))
		h[6], h[7] = proto, 64
		copy(h[8:24], src.AsSlice())
		copy(h[24:40], dst.AsSlice())
		b.Write(h)
	}
	b.Write(l4)
	return b.Bytes()
}

func tcpHdr(sport, dport uint16, flags uint8) []byte {
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h[0:2], sport)
	binary.BigEndian.PutUint16(h[2:4], dport)
	h[12], h[13] = 5<<4, flags
	return h
}

func udpHdr(sport, dport uint16) []byte {
	h := make([]byte, 8)
	binary.BigEndian.PutUint16(h[0:2], sport)
	binary.BigEndian.PutUint16(h[2:4], dport)
	return h
}

// icmpUnreach quotes the IP packet of inner (an Ethernet frame).
func icmpUnreach(v6 bool, inner []byte) []byte {
	t := byte(3)
	if v6 {
		t = 1
	}
	return append([]byte{t, 3, 0, 0, 0, 0, 0, 0}, inner[14:]...)
}

// pcapFile writes frames into a nanosecond pcap, one millisecond apart.
func pcapFile(start time.Time, frames ...[]byte) []byte {
	var b bytes.Buffer
	gh := make([]byte, 24)
	binary.LittleEndian.PutUint32(gh[0:4], pcapMagicNano)
	binary.LittleEndian.PutUint16(gh[4:6], 2)
	binary.LittleEndian.PutUint16(gh[6:8], 4)
	binary.LittleEndian.PutUint32(gh[16:20], 262144)
	binary.LittleEndian.PutUint32(gh[20:24], linkEthernet)
	b.Write(gh)
	for i, f := range frames {
		ts := start.Add(time.Duration(i) * time.Millisecond)
		rh := make([]byte, 16)
		binary.LittleEndian.PutUint32(rh[0:4], uint32(ts.Unix()))
		binary.LittleEndian.PutUint32(rh[4:8], uint32(ts.Nanosecond()))
		binary.LittleEndian.PutUint32(rh[8:12], uint32(len(f)))
		binary.LittleEndian.PutUint32(rh[12:16], uint32(len(f)))
		b.Write(rh)
		b.Write(f)
	}
	return b.Bytes()
}

func TestAnalyze(t *testing.T) {
	S4, T4, S6, T6, I4 := scannerV4, targetV4, scannerV6, targetV6, innocentV4
	ns := []byte{135, 0, 0, 0, 0, 0, 0, 0}
	probe53 := frame(S4, T4, protoUDP, udpHdr(40000, 53))
	probe7 := frame(S4, T4, protoUDP, udpHdr(40000, 7))
	start := time.Unix(1_700_000_000, 123_456_789)
	frames := [][]byte{
		frame(S6, T6, protoICMPv6, ns),                            // 0 ms: neighbour solicitation, skipped
		frame(S4, T4, protoTCP, tcpHdr(50000, 22, tcpSYN)),        // 1 ms: first probe
		frame(T4, S4, protoTCP, tcpHdr(22, 50000, tcpSYN|tcpACK)), // open
		frame(S4, T4, protoTCP, tcpHdr(50000, 22, tcpRST)),
		frame(T4, S4, protoTCP, tcpHdr(23, 50000, tcpRST|tcpACK)), // closed
		probe53,
		frame(T4, S4, protoUDP, udpHdr(53, 40000)), // open
		probe7,
		frame(T4, S4, protoICMP, icmpUnreach(false, probe7)),     // 8 ms: closed, after the block
		frame(T4, I4, protoTCP, tcpHdr(80, 1234, tcpSYN|tcpACK)), // not the scanner
		frame(S6, T6, protoTCP, tcpHdr(50000, 25, tcpSYN)),
		frame(T6, S6, protoICMPv6, icmpUnreach(true, frame(S6, T6, protoTCP, tcpHdr(50000, 25, tcpSYN)))),
	}
	pkts, err := decodePcap(bytes.NewReader(pcapFile(start, frames...)))
	if err != nil {
		t.Fatal(err)
	}
	if len(pkts) != len(frames) {
		t.Fatalf("decoded %d packets, want %d", len(pkts), len(frames))
	}
	if got := pkts[1].ts; !got.Equal(start.Add(time.Millisecond)) {
		t.Errorf("timestamp %v, want %v", got, start.Add(time.Millisecond))
	}
	if p := pkts[8]; !p.quoted || p.quotedProto != protoUDP || p.quotedDport != 7 {
		t.Errorf("ICMP unreachable decoded as %+v", p)
	}
	block := start.Add(7500 * time.Microsecond)
	st := analyze(pkts, []netip.Addr{S4, S6}, []netip.Addr{T4, T6}, block)
	want := scanStats{
		probes:       5, // 22 SYN, 22 RST, udp 53, udp 7, v6 SYN
		probesBefore: 4,
		firstProbe:   start.Add(time.Millisecond),
		lastProbe:    start.Add(10 * time.Millisecond),
		replies:      5,
		repliesAfter: 2,
		lastReply:    start.Add(11 * time.Millisecond),
		answered:     5, // tcp 22, tcp 23, udp 53, udp 7, tcp 25
		open:         2,
	}
	if st != want {
		t.Errorf("analyze = %+v\nwant      %+v", st, want)
	}
}

func TestDecodePcapMicroAndTruncated(t *testing.T) {
	start := time.Unix(1_700_000_000, 5000)
	b := pcapFile(start, frame(scannerV4, targetV4, protoTCP, tcpHdr(1, 2, tcpFIN)))
	binary.LittleEndian.PutUint32(b[0:4], pcapMagicMicro)
	binary.LittleEndian.PutUint32(b[24+4:24+8], 5) // 5 µs
	b = append(b, 1, 2, 3)                         // a record cut short
	pkts, err := decodePcap(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if len(pkts) != 1 || !pkts[0].ts.Equal(start) || pkts[0].tcpFlags != tcpFIN {
		t.Errorf("got %+v", pkts)
	}
}

func TestScannerView(t *testing.T) {
	nmap := `Starting Nmap 7.93
<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE nmaprun>
<?xml-stylesheet href="file:///usr/bin/../share/nmap/nmap.xsl" type="text/xsl"?>
<nmaprun scanner="nmap">
<host starttime="1" endtime="2"><status state="up" reason="user-set" reason_ttl="0"/>
<ports><extraports state="filtered" count="622">
<extrareasons reason="no-response" count="622" proto="tcp" ports="2-79"/>
</extraports>
<extraports state="closed" count="401">
<extrareasons reason="reset" count="401" proto="tcp" ports="1"/>
</extraports>
<port protocol="tcp" portid="80"><state state="open" reason="syn-ack" reason_ttl="64"/><service name="http" method="table" conf="3"/></port>
</ports>
</host>
<runstats><finished exit="success"/></runstats>
</nmaprun>
`
	if got, want := scannerView("nmap", nmap), "filtered 622, closed 401, open 1"; got != want {
		t.Errorf("nmap: %q, want %q", got, want)
	}
	timedOut := `<?xml version="1.0"?><nmaprun><host timedout="true"><status state="up"/></host></nmaprun>`
	if got := scannerView("nmap", timedOut); got != "host timed out" {
		t.Errorf("timeout: %q", got)
	}
	ms := "Discovered open port 80/tcp on 10.232.0.1\nDiscovered open port 1/tcp on 10.232.0.1\n"
	if got := scannerView("masscan", ms); got != "2 open" {
		t.Errorf("masscan: %q", got)
	}
}

func TestReadBlocksAndMentions(t *testing.T) {
	if got, _ := parseEpoch("1700000000.000123"); !got.Equal(time.Unix(1_700_000_000, 123_000)) {
		t.Errorf("parseEpoch: %v", got)
	}
	if _, err := parseEpoch("x.1"); err == nil {
		t.Error("parseEpoch accepted garbage")
	}
	for _, c := range []struct {
		text string
		a    netip.Addr
		want bool
	}{
		{"elements = { 10.232.0.3 }", innocentV4, true},
		{"elements = { 10.232.0.30 }", innocentV4, false},
		{"Host 110.232.0.3 has", innocentV4, false},
		{"Scan from: [fd00:232::3] (x)", innocentV6, true},
		{"Scan from: [fd00:232::3a]", innocentV6, false},
	} {
		if got := mentions(c.text, c.a); got != c.want {
			t.Errorf("mentions(%q, %s) = %v", c.text, c.a, got)
		}
	}
}

func TestParseFlags(t *testing.T) {
	var errs strings.Builder
	o, err := parseFlags([]string{"-mode", "tcp,udp", "-scans", "syn,masscan"}, &errs)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := o.command(), "go run ./test/scanlab -blocker nftables -mode tcp,udp -scans syn,masscan"; got != want {
		t.Errorf("command() = %q, want %q", got, want)
	}
	o, err = parseFlags([]string{"-blocker", "command"}, &errs)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := o.command(), "go run ./test/scanlab -blocker command -mode atcp,audp -scans syn,fin,udp,syn6,masscan"; got != want {
		t.Errorf("command() = %q, want %q", got, want)
	}
	for _, bad := range [][]string{{"-mode", "tcp,atcp"}, {"-mode", "xtcp"}, {"-scans", "ping"}, {"-scans", ""}, {"-blocker", "iptables"}} {
		if _, err := parseFlags(bad, &errs); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
}

func TestDescribeReplies(t *testing.T) {
	S4, T4 := scannerV4, targetV4
	probe7 := frame(S4, T4, protoUDP, udpHdr(40000, 7))
	start := time.Unix(1_700_000_000, 0)
	pkts, err := decodePcap(bytes.NewReader(pcapFile(start,
		frame(S4, T4, protoTCP, tcpHdr(50000, 80, tcpSYN)),
		frame(T4, S4, protoTCP, tcpHdr(80, 50000, tcpSYN|tcpACK)),
		frame(T4, S4, protoICMP, icmpUnreach(false, probe7)),
		frame(T4, S4, protoTCP, tcpHdr(113, 50000, tcpRST|tcpACK)),
	)))
	if err != nil {
		t.Fatal(err)
	}
	lines, more := describeReplies(pkts, []netip.Addr{S4}, []netip.Addr{T4}, start, 2)
	want := []string{"+1.000 ms TCP 80 → 50000 SYN/ACK", "+2.000 ms ICMP 3/3 for UDP port 7"}
	if strings.Join(lines, "|") != strings.Join(want, "|") || more != 1 {
		t.Errorf("describeReplies = %q, %d more; want %q, 1 more", lines, more, want)
	}
}

func TestNativeBlocks(t *testing.T) {
	log := `2026-11-22T02:58:54.120+0000 attackalert: TCP SYN/Normal scan from host: 10.232.0.2/10.232.0.2 to TCP port: 7
2026-11-22T03:58:54.123+0100 attackalert: Host 10.232.0.2 has been blocked via nftables for 1h0m0s (until 2026-11-22T03:58:54Z)
2026-11-22T02:58:55.000+0000 attackalert: Host fd00:232::2 has been blocked via nftables for 1h0m0s
2026-11-22T02:58:56.000+0000 attackalert: Host 10.232.0.9 has been blocked via dropped route using command: "x"
`
	recs := nativeBlocks(log)
	if len(recs) != 2 {
		t.Fatalf("nativeBlocks = %+v", recs)
	}
	if want := time.Date(2026, 11, 22, 2, 58, 54, 123e6, time.UTC); recs[0].addr != scannerV4 || !recs[0].at.Equal(want) {
		t.Errorf("first record %+v, want %s at %v", recs[0], scannerV4, want)
	}
	if recs[1].addr != scannerV6 {
		t.Errorf("second record %+v", recs[1])
	}
}

func TestWriteDaemonFiles(t *testing.T) {
	tl := tools{nft: "/usr/sbin/nft", date: "/bin/date"}
	for _, c := range []struct {
		blocker   string
		want, not []string
	}{
		{blockerNFT, []string{`BLOCKER="nftables"`, `KERNEL_TRAP="1"`, `BAN_TIME="3600"`, `CONTROL_SOCKET="`}, []string{"KILL_ROUTE"}},
		{blockerCommand, []string{`BLOCKER="command"`, `KILL_ROUTE="/bin/sh `, `KILL_ROUTE6="/bin/sh `, `CONTROL_SOCKET="`}, []string{"KERNEL_TRAP", "BAN_TIME"}},
	} {
		dir := t.TempDir()
		path, err := writeDaemonFiles(dir, tl, c.blocker)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		conf := string(b)
		for _, w := range c.want {
			if !strings.Contains(conf, w) {
				t.Errorf("%s: config lacks %s:\n%s", c.blocker, w, conf)
			}
		}
		for _, n := range c.not {
			if strings.Contains(conf, n) {
				t.Errorf("%s: config has %s:\n%s", c.blocker, n, conf)
			}
		}
		_, errScript := os.Stat(filepath.Join(dir, "block.sh"))
		if (c.blocker == blockerCommand) != (errScript == nil) {
			t.Errorf("%s: block.sh exists: %v", c.blocker, errScript == nil)
		}
	}
	if _, err := writeDaemonFiles(t.TempDir(), tl, "iptables"); err == nil {
		t.Error("writeDaemonFiles accepted an unknown blocker")
	}
}

func TestNFTBlockCell(t *testing.T) {
	first := time.Unix(1_700_000_000, 0)
	r := &scanResult{blocker: blockerNFT, inSet: true}
	r.stats.firstProbe = first
	r.stats.probesBefore = 40
	r.blockAt = first.Add(2 * time.Millisecond)
	if got, want := r.blockCell(), "no reply; ban logged ≤ +3.0 ms (40 probes)"; got != want {
		t.Errorf("blockCell = %q, want %q", got, want)
	}
	r.stats.lastReply = first.Add(250 * time.Microsecond)
	r.blockAt, r.inSet = time.Time{}, false
	if got, want := r.blockCell(), "last reply +0.2 ms; ban not logged; **not in the ban set**"; got != want {
		t.Errorf("blockCell = %q, want %q", got, want)
	}
}

func TestParseFlagsDebian12(t *testing.T) {
	var errs strings.Builder
	o, err := parseFlags([]string{"-blocker", "killroute", "-debian12", "-runs", "5", "-mode", "atcp", "-scans", "syn"}, &errs)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := o.command(), "go run ./test/scanlab -blocker killroute -mode atcp -scans syn -debian12 -runs 5"; got != want {
		t.Errorf("command() = %q, want %q", got, want)
	}
	if o.timeout != 200*time.Minute {
		t.Errorf("timeout = %v, want 20m per run and daemon", o.timeout)
	}
	for _, bad := range [][]string{{"-debian12"}, {"-blocker", "killroute", "-debian12", "-scans", "syn,syn6"}, {"-runs", "0"}} {
		if _, err := parseFlags(bad, &errs); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
}

func TestLastFreshReply(t *testing.T) {
	S4, T4 := scannerV4, targetV4
	start := time.Unix(1_700_000_000, 0)
	pkts, err := decodePcap(bytes.NewReader(pcapFile(start,
		frame(S4, T4, protoTCP, tcpHdr(50000, 80, tcpSYN)),        // 0 ms
		frame(T4, S4, protoTCP, tcpHdr(80, 50000, tcpSYN|tcpACK)), // 1 ms
		frame(S4, T4, protoTCP, tcpHdr(50000, 23, tcpSYN)),
		frame(T4, S4, protoTCP, tcpHdr(23, 50000, tcpRST|tcpACK)), // 3 ms: the last fresh one
		frame(S4, T4, protoTCP, tcpHdr(50000, 22, tcpSYN)),        // dropped by the ban
		frame(T4, S4, protoTCP, tcpHdr(80, 50000, tcpSYN|tcpACK)), // 5 ms: retransmitted
	)))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := lastFreshReply(pkts, []netip.Addr{S4}, []netip.Addr{T4}), start.Add(3*time.Millisecond); !got.Equal(want) {
		t.Errorf("lastFreshReply = %v, want %v", got, want)
	}
	if got := lastFreshReply(pkts[:1], []netip.Addr{S4}, []netip.Addr{T4}); !got.IsZero() {
		t.Errorf("no reply: %v", got)
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		v    []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 4, 2, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.v); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.v, got, c.want)
		}
	}
}

func TestKillRouteConfigAndRawSockets(t *testing.T) {
	path, err := writeDaemonFiles(t.TempDir(), tools{}, blockerKillRoute)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{`BLOCKER="command"`, `KILL_ROUTE="iptables -I INPUT -s $TARGET$ -j DROP"`, `KILL_ROUTE6="ip6tables -I INPUT -s $TARGET$ -j DROP"`, `SCAN_TRIGGER="0"`} {
		if !strings.Contains(string(b), w) {
			t.Errorf("config lacks %s:\n%s", w, b)
		}
	}
	raw := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n" +
		" 6: 00000000:0006 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 12345 2 0000000000000000 0\n"
	if !rawSocketsOpen(raw, map[string]bool{"0006": true}) {
		t.Error("the TCP raw socket was not seen")
	}
	if rawSocketsOpen(raw, map[string]bool{"0006": true, "0011": true}) {
		t.Error("a UDP raw socket was seen")
	}
	if m := iptablesRuleRE.FindStringSubmatch("-A INPUT -s 10.232.0.2/32 -j DROP"); m == nil || m[1] != "10.232.0.2" {
		t.Errorf("iptables rule: %q", m)
	}
}
