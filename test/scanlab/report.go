package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// report is the benchmark's outcome.
type report struct {
	date     time.Time
	kernel   string
	versions []string
	revision string
	opts     *options
	results  []*scanResult
	elapsed  time.Duration
	debian12 *debian12 // with -debian12
}

// compares reports whether scans were repeated or run against PortSentry
// 1.2 too: the table then names the daemon and the run, and the medians
// follow.
func (rep *report) compares() bool { return rep.opts.runs > 1 || rep.opts.debian12 }

func (rep *report) failed() bool {
	for _, r := range rep.results {
		if r.err != nil {
			return true
		}
	}
	return false
}

// markdown renders the report.
func (rep *report) markdown() string {
	var b strings.Builder
	modeFlags := "-" + strings.Join(rep.opts.modes, " -")
	fmt.Fprintf(&b, "## scanlab: what scanners learn before portsentry blocks them\n\n")
	fmt.Fprintf(&b, "- date: %s\n", rep.date.Format("2006-01-02 15:04:05 UTC"))
	fmt.Fprintf(&b, "- kernel: %s\n", rep.kernel)
	fmt.Fprintf(&b, "- tools: %s\n", strings.Join(rep.versions, "; "))
	nft := rep.opts.blocker == blockerNFT
	if nft {
		fmt.Fprintf(&b, "- portsentry: %s, mode `%s`, SCAN_TRIGGER=\"0\", BLOCKER=\"nftables\", KERNEL_TRAP=\"1\", BAN_TIME=\"3600\", ADVANCED_PORTS_*=\"65535\" (as shipped): "+
			"the daemon's own table inet portsentry in T, whose trap bans a source in the packet path on its first probe of a trap port "+
			"(sets ban4/ban6, input priority -10)%s\n", rep.revision, modeFlags, rep.trapNote())
	} else if rep.opts.blocker == blockerKillRoute {
		fmt.Fprintf(&b, "- portsentry: %s, mode `%s`, SCAN_TRIGGER=\"0\", BLOCKER=\"command\", ADVANCED_PORTS_*=\"1024\", KILL_ROUTE=\"%s\", KILL_ROUTE6=\"%s\"\n", rep.revision, modeFlags, killRoute, killRoute6)
	} else {
		fmt.Fprintf(&b, "- portsentry: %s, mode `%s`, SCAN_TRIGGER=\"0\", BLOCKER=\"command\", ADVANCED_PORTS_*=\"1024\": KILL_ROUTE/KILL_ROUTE6 add the scanner to an nftables set T drops at input priority -10\n", rep.revision, modeFlags)
	}
	if rep.debian12 != nil {
		var procs []string
		for _, m := range rep.opts.modes {
			procs = append(procs, "portsentry -"+m)
		}
		fmt.Fprintf(&b, "- PortSentry 1.2: Debian's portsentry %s (apt-get download portsentry, run from the extracted package), `%s`, one process per mode as Debian runs it, "+
			"on the same portsentry.conf (at /etc/portsentry/portsentry.conf in a mount namespace of its own; it ignores the keys it does not know)\n",
			rep.debian12.version, strings.Join(procs, "`, `"))
	}
	fmt.Fprintf(&b, "- command: `%s` (run time %s)\n\n", rep.opts.command(), rep.elapsed.Round(time.Second))

	blockHeader, after := "first probe → block", "after block"
	if nft {
		blockHeader, after = "after the first probe: last reply; ban logged", "after the ban was logged"
	}
	scanCols, scanAlign := "scan", "---"
	if rep.compares() {
		scanCols, scanAlign = "scan | daemon | run", "---|---|--:"
	}
	fmt.Fprintf(&b, "| %s | probes S→T | replies T→S | ports answered (open) | %s | scanner reported | innocent affected | scan time |\n", scanCols, blockHeader)
	fmt.Fprintf(&b, "|%s|--:|--:|--:|--:|---|---|--:|\n", scanAlign)
	for _, r := range rep.results {
		name := r.def.name
		if rep.compares() {
			name = fmt.Sprintf("%s | %s | %d", r.def.name, r.daemon, r.run)
		}
		if r.err != nil && r.stats.probes == 0 {
			fmt.Fprintf(&b, "| %s | error: %s | | | | | | |\n", name, cell(firstLine(r.err.Error())))
			continue
		}
		replies := fmt.Sprint(r.stats.replies)
		if r.stats.repliesAfter > 0 {
			replies += fmt.Sprintf(" (%d %s)", r.stats.repliesAfter, after)
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %d (%d) | %s | %s | %s | %.1f s |\n",
			name, r.stats.probes, replies, r.stats.answered, r.stats.open,
			r.blockCell(), cell(r.scanned), cell(r.innocentCell()), r.duration.Seconds())
	}

	if rep.compares() {
		b.WriteString("\n")
		b.WriteString(rep.medians())
	}

	b.WriteString("\nScans, run in S (10.232.0.2, fd00:232::2) against T (10.232.0.1, fd00:232::1):\n\n")
	listed := map[string]bool{}
	for _, r := range rep.results {
		if !listed[r.def.name] {
			listed[r.def.name] = true
			fmt.Fprintf(&b, "- %s (%s): `%s`\n", r.def.name, r.def.title, r.command)
		}
	}
	b.WriteString("\nColumns: packets counted by tcpdump on T's interface (it sees probes before the ban drops them; " +
		"S→T includes the RSTs S's kernel and masscan send back); " +
		"replies are every packet T sent to S, i.e. all the scanner could learn; ports answered counts distinct ports " +
		"T answered with SYN/ACK, RST, a UDP datagram or an ICMP unreachable, \"open\" those answered with SYN/ACK or UDP; ")
	if nft {
		b.WriteString("the kernel ban is made by the trap rule itself, in the packet path, so no program runs at that moment and no clock " +
			"can be read: the capture shows instead the last packet T sent to S (\"no reply\": T never answered, the first probe " +
			"that reached T's input hook was already a trap probe or came after one), its time after the first probe's capture timestamp; " +
			"\"ban logged\" is the daemon's user-space confirmation, its log line \"Host S has been blocked via nftables\", whose timestamp " +
			"has millisecond resolution (same clock; the figure is the end of that millisecond, an upper bound), with the number of S→T " +
			"packets that arrived before it, all of which the kernel had already dropped unless T replied to them; ")
	} else if rep.opts.blocker == blockerKillRoute {
		b.WriteString("the block time is read from the capture alone, the same way for every daemon: T answers each probe until KILL_ROUTE's " +
			"rule drops S's packets, and none after, so it is T's last reply to S (a retransmitted SYN/ACK aside) minus the first probe's " +
			"capture timestamp, and the rule landed before S's next probe, with the number of S→T packets up to that reply; " +
			"S counts as blocked when its rule is in T's INPUT chain after the scan; ")
	} else {
		b.WriteString("the block time is when `nft add element` had returned (the block script's `date +%s.%N`) minus the first probe's " +
			"capture timestamp, same clock, with the number of S→T packets that arrived in between; ")
	}
	b.WriteString("the innocent host I made a TCP request to port 80 and a UDP query to port 53 over " +
		"IPv4 and IPv6 every 50 ms during the scan; it counts as affected if a request failed, if the daemon logged a block of it " +
		"or if its address was in T's ban set after the scan.\n")
	b.WriteString("\n")

	var notes []string
	for _, r := range rep.results {
		name := r.def.name
		if rep.compares() {
			name = fmt.Sprintf("%s (%s, run %d)", r.def.name, r.daemon, r.run)
		}
		for _, n := range r.notes {
			notes = append(notes, name+": "+n)
		}
		if r.err != nil && r.stats.probes > 0 {
			notes = append(notes, name+": error: "+strings.ReplaceAll(r.err.Error(), "\n", " / "))
		}
		for _, e := range r.innocent.Errors {
			notes = append(notes, name+": innocent request failed: "+e)
		}
		for _, w := range r.innocentBanned {
			notes = append(notes, name+": innocent host banned: "+w)
		}
	}
	if len(notes) > 0 {
		b.WriteString("Notes:\n\n")
		for _, n := range notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func (r *scanResult) innocentCell() string {
	if r.innocent.Failures < 0 {
		return "unknown (no result)"
	}
	s := fmt.Sprintf("%d/%d requests failed", r.innocent.Failures, r.innocent.Requests)
	if len(r.innocentBanned) > 0 {
		s += ", banned"
	}
	if r.innocentAffected() {
		return "**yes**: " + s
	}
	return "no (" + s + ")"
}

// trapNote quotes the daemon's kernel-trap line of the first scan.
func (rep *report) trapNote() string {
	for _, r := range rep.results {
		if r.trapLine != "" {
			if _, line, ok := strings.Cut(r.trapLine, "adminalert: "); ok {
				return "; the daemon said: \"" + line + "\""
			}
			return "; the daemon said: \"" + r.trapLine + "\""
		}
	}
	return ""
}

// cell makes text safe inside a Markdown table cell.
func cell(s string) string {
	return strings.ReplaceAll(s, "|", `\|`)
}

// medians sums up repeated runs: per scan and daemon, the median (and
// range) of the block time and of the ports answered.
func (rep *report) medians() string {
	type key struct{ scan, daemon string }
	var order []key
	groups := map[key][]*scanResult{}
	for _, r := range rep.results {
		k := key{r.def.name, r.daemon}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	var b strings.Builder
	b.WriteString("| scan | daemon | runs | first probe → block: median (range) | ports answered: median (range) | probes before the block: median |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|\n")
	for _, k := range order {
		var delays, answered, before []float64
		blocked := 0
		for _, r := range groups[k] {
			if r.err != nil && r.stats.probes == 0 {
				continue
			}
			answered = append(answered, float64(r.stats.answered))
			if d, ok := r.blockDelay(); ok && (r.blocker != blockerKillRoute || r.inSet) {
				blocked++
				delays = append(delays, ms(d))
				before = append(before, float64(r.stats.probesBefore))
			}
		}
		block := "never blocked"
		if len(delays) > 0 {
			block = fmt.Sprintf("**%.1f ms** (%.1f–%.1f)", median(delays), slices.Min(delays), slices.Max(delays))
			if blocked < len(answered) {
				block += fmt.Sprintf(", blocked in %d of %d runs", blocked, len(answered))
			}
		}
		ports, probes := "—", "—"
		if len(answered) > 0 {
			ports = fmt.Sprintf("**%.0f** (%.0f–%.0f)", median(answered), slices.Min(answered), slices.Max(answered))
		}
		if len(before) > 0 {
			probes = fmt.Sprintf("%.0f", median(before))
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s |\n", k.scan, k.daemon, len(answered), block, ports, probes)
	}
	return b.String()
}

// median is the middle value of v (the mean of the two middle ones for an
// even count); 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
