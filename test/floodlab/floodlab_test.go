package main

import (
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and parentheses; utime 250, stime 50 ticks.
	stat := "1234 (port (sentry) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 100 1000 500"
	got, err := parseStatCPU(stat)
	if err != nil || got != 3*time.Second {
		t.Errorf("parseStatCPU = %v, %v; want 3s", got, err)
	}
	if _, err := parseStatCPU("1234 (x) S 1"); err == nil {
		t.Error("parseStatCPU accepted a short line")
	}
}

func TestParseKeyed(t *testing.T) {
	m := parseKeyed("Name:\tportsentry\nVmHWM:\t   43400 kB\nThreads:\t9\nwrite_bytes: 712704\n")
	if m["VmHWM"] != 43400 || m["Threads"] != 9 || m["write_bytes"] != 712704 {
		t.Errorf("parseKeyed = %v", m)
	}
	if _, ok := m["Name"]; ok {
		t.Error("parseKeyed kept a non-number")
	}
}

func TestNmapPorts(t *testing.T) {
	out := `Starting Nmap
<?xml version="1.0" encoding="UTF-8"?>
<nmaprun><host><ports>
<extraports state="filtered" count="1021"></extraports>
<port protocol="tcp" portid="80"><state state="open"/></port>
<port protocol="tcp" portid="113"><state state="closed"/></port>
<port protocol="tcp" portid="139"><state state="closed"/></port>
</ports></host></nmaprun>`
	answered, unused, states, timedOut, err := nmapPorts(out, 80)
	if err != nil || answered != 3 || unused != 2 || states != "open 1, closed 2, filtered 1021" || timedOut {
		t.Errorf("nmapPorts = %d, %d unused, %q, %v, %v", answered, unused, states, timedOut, err)
	}
	if _, _, _, _, err := nmapPorts("Starting Nmap"); err == nil {
		t.Error("nmapPorts found a report in nothing")
	}
}

func TestFloodSent(t *testing.T) {
	hping := "HPING 10.233.0.1 (eth0 10.233.0.1): S set, 40 headers + 0 data bytes\nhping in flood mode, no replies will be shown\n\n--- 10.233.0.1 hping statistic ---\n343465 packets transmitted, 0 packets received, 100% packet loss\n"
	if n := floodSent(hping); n != 343465 {
		t.Errorf("floodSent(hping3) = %d", n)
	}
	if n := floodSent(flood6Mark + "42\n"); n != 42 {
		t.Errorf("floodSent(floodlab) = %d", n)
	}
	if n := floodSent("killed"); n != -1 {
		t.Errorf("floodSent(nothing) = %d", n)
	}
}

// TestSynGen decodes the IPv6 flooder's packets: SYNs to the target port,
// sources inside the prefix and all different, valid checksums.
func TestSynGen(t *testing.T) {
	src := netip.MustParsePrefix("2001:db8::/32")
	dst := netip.MustParseAddr("fd00:233::1")
	g := newSynGen(src, dst, floodPort)
	seen := map[netip.Addr]bool{}
	for i := 0; i < 100; i++ {
		p := gopacket.NewPacket(g.next(), layers.LayerTypeIPv6, gopacket.Default)
		ip, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if ip == nil || tcp == nil {
			t.Fatalf("packet %d does not decode: %v", i, p.ErrorLayer())
		}
		s, _ := netip.AddrFromSlice(ip.SrcIP)
		if !src.Contains(s) || seen[s] {
			t.Errorf("packet %d: source %v outside %v or seen before", i, s, src)
		}
		seen[s] = true
		if d, _ := netip.AddrFromSlice(ip.DstIP); d != dst || tcp.DstPort != floodPort || !tcp.SYN || tcp.ACK || tcp.SrcPort < 1024 {
			t.Errorf("packet %d: %v → %v:%d SYN %v ACK %v from port %d", i, s, d, tcp.DstPort, tcp.SYN, tcp.ACK, tcp.SrcPort)
		}
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		if sum, err := tcp.ComputeChecksum(); err != nil || sum != 0 {
			t.Errorf("packet %d: checksum off by %#04x (%v)", i, sum, err)
		}
	}
}

func TestSummarizeStatus(t *testing.T) {
	st := summarizeStatus([]statusSample{
		{latency: 30 * time.Millisecond, out: "Events:          12 (3 dropped)\n"},
		{latency: 10 * time.Millisecond, out: "x"},
		{latency: 900 * time.Millisecond, err: io.EOF},
	})
	if st.n != 3 || st.failed != 1 || st.p50 != 30*time.Millisecond || st.max != 900*time.Millisecond || st.last != "x" {
		t.Errorf("summarizeStatus = %+v", st)
	}
	if ev, dr, ok := statusEvents("Bans: 2\nEvents:          12 (3 dropped)\n"); !ok || ev != 12 || dr != 3 {
		t.Errorf("statusEvents = %d, %d, %v", ev, dr, ok)
	}
}

func TestParseBanSet(t *testing.T) {
	out := `{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"set": {"family": "inet", "name": "ban4", "table": "portsentry", "type": "ipv4_addr", "handle": 1, "size": 2, "flags": ["timeout", "dynamic"], "elem": [{"elem": {"val": "192.0.2.1", "timeout": 3600, "expires": 3599}}, "192.0.2.9"]}}]}`
	b, err := parseBanSet([]byte(out))
	if err != nil || b.elems != 2 || b.size != 2 || !b.full() {
		t.Errorf("parseBanSet = %+v, %v", b, err)
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-duration", "10s", "-scenarios", "syn6,syn"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := o.command(), "go run ./test/floodlab -duration 10s -scenarios syn6,syn"; got != want {
		t.Errorf("command() = %q, want %q", got, want)
	}
	for _, bad := range [][]string{{"-scenarios", "ping"}, {"-scenarios", ""}, {"-duration", "0s"}, {"extra"}} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
}

func TestCount(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1 000", 1048576: "1 048 576", -1234: "-1 234"} {
		if got := count(n); got != want {
			t.Errorf("count(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestPerfLines(t *testing.T) {
	out := "# Samples: 4K of event 'cpu-clock:ppp'\n#\n# Overhead  Shared Object      Symbol\n# ........  .................  ......\n#\n" +
		"    12.34%  portsentry         [.] runtime.mallocgc  -  -\n     5.00%  [kernel.kallsyms]  [k] _raw_spin_unlock_irqrestore\n     1.00%  portsentry  [.] x\n\n#\n# (Tip)\n#\n"
	got := perfLines(out, 2)
	want := []string{"12.34% portsentry [.] runtime.mallocgc", "5.00% [kernel.kallsyms] [k] _raw_spin_unlock_irqrestore"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("perfLines = %q, want %q", got, want)
	}
}
