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
	fmt.Fprintf(&b, "- portsentry: %s, mode `%s`, SCAN_TRIGGER=\"0\", KILL_ROUTE/KILL_ROUTE6 add the scanner to an nftables set T drops at input priority -10\n", rep.revision, modeFlags)
	fmt.Fprintf(&b, "- command: `%s` (run time %s)\n\n", rep.opts.command(), rep.elapsed.Round(time.Second))

	b.WriteString("| scan | probes S→T | replies T→S | ports answered (open) | first probe → block | scanner reported | innocent affected | scan time |\n")
	b.WriteString("|---|--:|--:|--:|--:|---|---|--:|\n")
	for _, r := range rep.results {
		if r.err != nil && r.stats.probes == 0 {
			fmt.Fprintf(&b, "| %s | error: %s | | | | | | |\n", r.def.name, cell(firstLine(r.err.Error())))
			continue
		}
		replies := fmt.Sprint(r.stats.replies)
		if r.stats.repliesAfter > 0 {
			replies += fmt.Sprintf(" (%d after block)", r.stats.repliesAfter)
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
		"T answered with SYN/ACK, RST, a UDP datagram or an ICMP unreachable, \"open\" those answered with SYN/ACK or UDP; " +
		"the block time is when `nft add element` had returned (the block script's `date +%s.%N`) minus the first probe's " +
		"capture timestamp, same clock, with the number of S→T packets that arrived in between; the innocent host I made a TCP request to port 80 and a UDP query to port 53 over " +
		"IPv4 and IPv6 every 50 ms during the scan.\n")
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

// cell makes text safe inside a Markdown table cell.
func cell(s string) string {
	return strings.ReplaceAll(s, "|", `\|`)
}
