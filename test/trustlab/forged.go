package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/portset"
	"github.com/portsentry-go/portsentry/test/internal/forge"
	"github.com/portsentry-go/portsentry/test/internal/labnmap"
	"github.com/portsentry-go/portsentry/test/internal/labproc"
	"github.com/portsentry-go/portsentry/test/internal/labsvc"
)

// The forgeries: 20 probes of each protocol to unused ports of T.
const (
	forgedFirst, forgedLast = 900, 919
	forgedPerProto          = forgedLast - forgedFirst + 1
	// afterForgery is how long C goes on using T once the forgeries are
	// sent, before its requests are counted: time for any ban to land.
	afterForgery = 3 * time.Second
	// peerSettle is how long C has been a peer (in the kernel's peer sets)
	// when the forger strikes.
	peerSettle = time.Second
)

// forged runs the forged-probe scenario with forgeries sent with TTL ttl
// (they reach T with it: A is on T's link). The naive forger's (scan)
// is measured against issue 9's targets and followed by C's own nmap
// scans; the one who guessed C's hop count is measured for information:
// README.md says such a forger can have C banned.
func (sr *scenarioRun) forged(ttl int, scan bool) error {
	l := sr.e.l
	judge := sr.add
	if !scan {
		judge = func(measure, _, result string, _ bool) { sr.info(measure, result) }
	}
	if err := sr.startDaemon(nil); err != nil {
		return err
	}
	fetch, err := sr.start("C's fetches", l.C, sr.e.self, labsvc.Innocent, "-v4", l.T.v4.String(), "-v6", l.T.v6.String(), "-every", "50ms")
	if err != nil {
		return err
	}
	sess, err := sr.start("C's sessions", l.C, sr.e.self, helperSession, l.T.v4.String(), l.T.v6.String())
	if err != nil {
		return err
	}
	if err := sr.waitPeer(l.C.v4, l.C.v6); err != nil {
		return err
	}
	// C is a peer now, as a host with an open session is: let the daemon
	// see it as one too (it reads the kernel's peers at most every 200 ms,
	// see the notes) before the forger strikes.
	if err := sr.sleep(peerSettle); err != nil {
		return err
	}
	for _, proto := range []string{"tcp", "udp"} {
		for _, dst := range []netip.Addr{l.T.v4, l.T.v6} {
			src := l.C.addr(dst)
			if err := l.A.ns.Do(func() error { return forge.Send(proto, src, dst, forgedFirst, forgedLast, uint8(ttl)) }); err != nil {
				return fmt.Errorf("forging from A: %w", err)
			}
		}
	}
	if err := sr.sleep(afterForgery); err != nil {
		return err
	}
	if err := fetch.Stop(0, 10*time.Second); err != nil {
		return fmt.Errorf("C's fetches: %w:\n%s", err, fetch.Tail())
	}
	fr, err := labsvc.ParseInnocent(fetch.Output())
	if err != nil {
		return fmt.Errorf("C's fetches: %w:\n%s", err, fetch.Tail())
	}
	var ss []sessionResult
	if err := finish(sess, &ss); err != nil {
		return err
	}
	in, err := sr.banned(l.C.v4, l.C.v6)
	if err != nil {
		return err
	}

	judge("C's requests (a page over TCP and a DNS query over UDP, IPv4 and IPv6, every 50 ms) until 3 s after the forgeries",
		"0 failed", fmt.Sprintf("%d of %d failed", fr.Failures, fr.Requests), fr.Failures == 0 && fr.Requests > 0)
	if strings.Contains(fetch.Output(), "warm-up:") {
		sr.note("C's first fetches failed before it was ready (not counted): %s", labproc.Tail(fetch.Output(), 3))
	}
	if fr.Failures > 0 {
		sr.note("C's first failed requests: %s", strings.Join(fr.Errors, "; "))
	}
	alive, parts := len(ss) == 2, make([]string, len(ss))
	for i, s := range ss {
		alive = alive && s.Alive
		parts[i] = fmt.Sprintf("%s %s after %d lines", s.Family, map[bool]string{true: "alive", false: "cut"}[s.Alive], s.Rounds)
		if s.Error != "" {
			sr.note("C's %s session: %s", s.Family, s.Error)
		}
	}
	judge("C's SSH-like sessions (a line echoed every 100 ms)", "survive", strings.Join(parts, "; "), alive)
	judge("C's addresses in a ban set", "neither", addrList(in), len(in) == 0)
	var forgedLines, blocked int
	for _, a := range []netip.Addr{l.C.v4, l.C.v6} {
		forgedLines += len(sr.daemonLines("Forged probe", "claiming host "+a.String()+" "))
		blocked += len(sr.blockLines(a))
	}
	sr.info("the daemon's log", fmt.Sprintf("%d \"Forged probe\" lines claiming C (of %d forgeries; the log says the first 20 of a source's lines in 10 s), %d blocks of C",
		forgedLines, 4*forgedPerProto, blocked))
	if !scan {
		return nil
	}
	for _, target := range []netip.Addr{l.T.v4, l.T.v6} {
		if err := sr.scanFromClient(target); err != nil {
			return err
		}
	}
	return nil
}

// waitPeer waits until the kernel trap knows addrs as peers (in peer4 or
// peer6): C has an established connection to T.
func (sr *scenarioRun) waitPeer(addrs ...netip.Addr) error {
	deadline := time.Now().Add(10 * time.Second)
	for _, a := range addrs {
		for {
			ok, err := sr.inSet("peer4", a)
			if err != nil {
				return err
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				sr.note("%s was not in the trap's peer set 10 s after its first connection", a)
				break
			}
			if err := sr.sleep(50 * time.Millisecond); err != nil {
				return err
			}
		}
	}
	return nil
}

// scanTimeout bounds one nmap run (its own --host-timeout is 240 s).
const scanTimeout = 300 * time.Second

// clientScanArgv is the scan C runs: floodlab's and scanlab's "syn" scan,
// with one retry and at least 100 probes a second (a target that answers
// a few ports and drops the rest makes nmap's congestion control slow it
// down to a crawl).
func clientScanArgv(nmap string, target netip.Addr) []string {
	argv := []string{nmap, "-n", "-Pn", "-sS", "-T4", "-p1-1024", "--max-retries", "1", "--min-rate", "100", "--host-timeout", "240s", "-oX", "-"}
	if target.Is6() {
		argv = append(argv, "-6")
	}
	return append(argv, target.String())
}

// scanFromClient runs C's own nmap scan against target and records what
// it learned and whether C was banned and recorded for it.
func (sr *scenarioRun) scanFromClient(target netip.Addr) error {
	l := sr.e.l
	src := l.C.addr(target)
	fam := "IPv4"
	if target.Is6() {
		fam = "IPv6"
	}
	argv := clientScanArgv(sr.e.nmap, target)
	out, err := labproc.Run(sr.ctx, scanTimeout, l.C.ns.Argv(argv...)...)
	_ = os.WriteFile(filepath.Join(sr.dir, "nmap-from-C-"+fam+".xml"), []byte(out), 0o644)
	if err != nil {
		return fmt.Errorf("nmap from C: %w", err)
	}
	rep, err := labnmap.Parse(out)
	if err != nil {
		return err
	}
	exclude, err := sr.excludedTCP()
	if err != nil {
		return err
	}
	k := classify(rep.AnsweredPorts(), []int{sessionPort, labsvc.ServicePortTCP}, exclude)
	sr.add(fmt.Sprintf("C's own `nmap -sS -p1-1024` (%s): ports T answered", fam), "≤ 2", k.text(rep.Answered()), rep.Answered() <= 2)
	sr.add(fmt.Sprintf("C's own scan (%s): trap ports answered", fam), "0", fmt.Sprint(len(k.trap)), len(k.trap) == 0)
	in, err := sr.banned(src)
	if err != nil {
		return err
	}
	rec := sr.recorded(src)
	sr.add(fmt.Sprintf("C's own scan (%s): C banned; in the history file", fam), "yes; yes", fmt.Sprintf("%s; %s", yesNo(len(in) == 1), yesNo(rec)), len(in) == 1 && rec)
	sr.note("C's %s scan: nmap reported %s; the daemon said: %s", fam, rep.States(), strings.Join(firstN(sr.daemonLines("Host "+src.String()), 3), " / "))
	return nil
}

// excludedTCP is the daemon's ADVANCED_EXCLUDE_TCP: ports that are no
// trap, which the kernel answers as closed when nothing listens.
func (sr *scenarioRun) excludedTCP() (portset.Set, error) {
	f, err := os.Open(sr.f.Conf)
	if err != nil {
		return portset.Set{}, err
	}
	defer f.Close()
	c, err := config.Parse(f, sr.f.Conf)
	if err != nil {
		return portset.Set{}, err
	}
	return c.AdvancedExcludeTCP, nil
}

// answeredKinds sorts the ports a scan found answered: T's services the
// client uses, ports excluded from the trap, and trap ports (which the
// kernel trap should never let answer).
type answeredKinds struct {
	services, excluded, trap []string
}

func classify(ports []labnmap.Port, services []int, exclude portset.Set) answeredKinds {
	var k answeredKinds
	for _, p := range ports {
		switch {
		case p.Proto == "tcp" && slices.Contains(services, p.ID):
			k.services = append(k.services, p.String())
		case p.Proto == "tcp" && exclude.Has(uint16(p.ID)):
			k.excluded = append(k.excluded, p.String())
		default:
			k.trap = append(k.trap, p.String())
		}
	}
	return k
}

// text is the answered ports by kind, after their total.
func (k answeredKinds) text(total int) string {
	s := fmt.Sprint(total)
	var parts []string
	for _, g := range []struct {
		ports []string
		what  string
	}{{k.services, "T's services, which C uses"}, {k.excluded, "ADVANCED_EXCLUDE_TCP, no trap"}, {k.trap, "trap ports"}} {
		if len(g.ports) > 0 {
			parts = append(parts, strings.Join(g.ports, ", ")+" ("+g.what+")")
		}
	}
	if len(parts) > 0 {
		s += ": " + strings.Join(parts, "; ")
	}
	return s
}

// firstN is the first n of lines, each trimmed of the daemon's timestamp.
func firstN(lines []string, n int) []string {
	if len(lines) > n {
		lines = lines[:n]
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		if _, after, ok := strings.Cut(l, "attackalert: "); ok {
			l = after
		}
		out[i] = strings.TrimSpace(l)
	}
	return out
}
