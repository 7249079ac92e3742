package main

import (
	"fmt"
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
}

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
	} else {
		fmt.Fprintf(&b, "- portsentry: %s, mode `%s`, SCAN_TRIGGER=\"0\", BLOCKER=\"command\", ADVANCED_PORTS_*=\"1024\": KILL_ROUTE/KILL_ROUTE6 add the scanner to an nftables set T drops at input priority -10\n", rep.revision, modeFlags)
	}
	fmt.Fprintf(&b, "- command: `%s` (run time %s)\n\n", rep.opts.command(), rep.elapsed.Round(time.Second))

	blockHeader, after := "first probe → block", "after block"
	if nft {
		blockHeader, after = "after the first probe: last reply; ban logged", "after the ban was logged"
	}
	fmt.Fprintf(&b, "| scan | probes S→T | replies T→S | ports answered (open) | %s | scanner reported | innocent affected | scan time |\n", blockHeader)
	b.WriteString("|---|--:|--:|--:|--:|---|---|--:|\n")
	for _, r := range rep.results {
		if r.err != nil && r.stats.probes == 0 {
			fmt.Fprintf(&b, "| %s | error: %s | | | | | | |\n", r.def.name, cell(firstLine(r.err.Error())))
			continue
		}
		replies := fmt.Sprint(r.stats.replies)
		if r.stats.repliesAfter > 0 {
			replies += fmt.Sprintf(" (%d %s)", r.stats.repliesAfter, after)
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %d (%d) | %s | %s | %s | %.1f s |\n",
			r.def.name, r.stats.probes, replies, r.stats.answered, r.stats.open,
			r.blockCell(), cell(r.scanned), cell(r.innocentCell()), r.duration.Seconds())
	}

	b.WriteString("\nScans, run in S (10.232.0.2, fd00:232::2) against T (10.232.0.1, fd00:232::1):\n\n")
	for _, r := range rep.results {
		fmt.Fprintf(&b, "- %s (%s): `%s`\n", r.def.name, r.def.title, r.command)
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
		for _, n := range r.notes {
			notes = append(notes, r.def.name+": "+n)
		}
		if r.err != nil && r.stats.probes > 0 {
			notes = append(notes, r.def.name+": error: "+strings.ReplaceAll(r.err.Error(), "\n", " / "))
		}
		for _, e := range r.innocent.Errors {
			notes = append(notes, r.def.name+": innocent request failed: "+e)
		}
		for _, w := range r.innocentBanned {
			notes = append(notes, r.def.name+": innocent host banned: "+w)
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
