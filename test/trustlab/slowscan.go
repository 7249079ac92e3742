package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/portsentry-go/portsentry/test/internal/labnmap"
	"github.com/portsentry-go/portsentry/test/internal/labproc"
)

// slowTrigger is the slow scan's SCAN_TRIGGER: the third distinct port
// within SCAN_TRIGGER_WINDOW (an hour, as shipped) acts.
const slowTrigger = 3

// slowScanArgv is the slow scan, with nmap's trace of every packet it
// sends and receives on stdout and its report in xml.
func slowScanArgv(nmap, xml, target string) []string {
	return []string{nmap, "-n", "-Pn", "-sS", "-T1", "--max-retries", "0", "-p", "1-10", "--packet-trace", "-oX", xml, target}
}

// slowScan runs S's slow scan against a daemon with SCAN_TRIGGER="3".
func (sr *scenarioRun) slowScan() error {
	l := sr.e.l
	if err := sr.startDaemon(map[string]string{"SCAN_TRIGGER": strconv.Itoa(slowTrigger)}); err != nil {
		return err
	}
	xml := filepath.Join(sr.dir, "nmap-slow.xml")
	argv := slowScanArgv(sr.e.nmap, xml, l.T.v4.String())
	sr.progress("  S runs %s (about 150 s)", strings.Join(argv[1:], " "))
	start := time.Now()
	out, err := labproc.Run(sr.ctx, 5*time.Minute, l.S.ns.Argv(argv...)...)
	took := time.Since(start)
	_ = os.WriteFile(filepath.Join(sr.dir, "nmap-slow.txt"), []byte(out), 0o644)
	if err != nil {
		return fmt.Errorf("nmap -T1 from S: %w", err)
	}
	probes := parsePacketTrace(out, l.T.v4.String())
	if len(probes) == 0 {
		return fmt.Errorf("nmap -T1: no probe in its packet trace:\n%s", labproc.Tail(out, 10))
	}
	src := l.S.v4.String()
	attack := sr.daemonLines("attackalert: TCP SYN/Normal scan from host: " + src + "/")
	blockedAt, blockedPort := 0, attackPort(attack)
	for i, p := range probes {
		if p.port == blockedPort {
			blockedAt = i + 1
			break
		}
	}
	res := "not blocked"
	if blockedAt > 0 {
		res = fmt.Sprintf("probe %d (port %d, %.0f s after the first)", blockedAt, blockedPort, probes[blockedAt-1].at-probes[0].at)
	}
	sr.add(fmt.Sprintf("probe whose arrival made the daemon block S (%d probes in %.0f s)", len(probes), took.Seconds()),
		"the 3rd", res, blockedAt == slowTrigger)
	in, err := sr.banned(l.S.v4)
	if err != nil {
		return err
	}
	rec := sr.recorded(l.S.v4)
	sr.add("S banned; in the history file", "yes; yes", yesNo(len(in) == 1)+"; "+yesNo(rec), len(in) == 1 && rec)
	answered, first := 0, 0
	for i, p := range probes {
		if p.reply != "" {
			answered++
		} else if first == 0 {
			first = i + 1
		}
	}
	learned := fmt.Sprintf("%d of %d probes answered", answered, len(probes))
	if first > 0 {
		learned += fmt.Sprintf("; the first unanswered was probe %d", first)
	}
	if b, err := os.ReadFile(xml); err == nil {
		if rep, err := labnmap.Parse(string(b)); err == nil {
			learned += "; nmap reported " + rep.States()
		}
	}
	sr.info("what S learned", learned)
	below := len(sr.daemonLines("triggered: [false]", src))
	sr.info("the daemon's lines for S's probes below the trigger", fmt.Sprintf("%d (counted, not acted on)", below))
	return nil
}

// probe is one SYN of nmap's packet trace and the reply it got.
type probe struct {
	port  int
	at    float64 // seconds since nmap started
	reply string  // the reply's TCP flags ("RA", "SA"); "" for none
}

// traceLine is a TCP line of nmap's --packet-trace:
// "SENT (15.0520s) TCP 10.235.0.99:57934 > 10.235.0.1:7 S ttl=41 ...".
var traceLine = regexp.MustCompile(`^(SENT|RCVD) \(([0-9.]+)s\) TCP (\S+):(\d+) > (\S+):(\d+) ([A-Z]+) `)

// parsePacketTrace reads the SYNs nmap sent to target, in order, and the
// replies it received from target's ports.
func parsePacketTrace(out, target string) []probe {
	var probes []probe
	idx := map[int]int{} // port -> last probe to it
	for _, line := range strings.Split(out, "\n") {
		m := traceLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		at, _ := strconv.ParseFloat(m[2], 64)
		switch {
		case m[1] == "SENT" && m[5] == target && m[7] == "S":
			port, _ := strconv.Atoi(m[6])
			idx[port] = len(probes)
			probes = append(probes, probe{port: port, at: at})
		case m[1] == "RCVD" && m[3] == target:
			port, _ := strconv.Atoi(m[4])
			if i, ok := idx[port]; ok && probes[i].reply == "" {
				probes[i].reply = m[7]
			}
		}
	}
	return probes
}

// attackPortRE is the port of a 1.2-style attackalert line.
var attackPortRE = regexp.MustCompile(` to TCP port: (\d+)`)

// attackPort is the port named by the first attack line (0: none).
func attackPort(lines []string) int {
	for _, l := range lines {
		if m := attackPortRE.FindStringSubmatch(l); m != nil {
			p, _ := strconv.Atoi(m[1])
			return p
		}
	}
	return 0
}
