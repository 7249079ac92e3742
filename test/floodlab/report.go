package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/portsentry-go/portsentry/test/internal/labdaemon"
	"github.com/portsentry-go/portsentry/test/internal/labenv"
	"github.com/portsentry-go/portsentry/test/internal/labproc"
)

// report is the benchmark's outcome.
type report struct {
	date     time.Time
	kernel   string
	cpus     int
	versions []string
	revision string
	tmpfs    bool
	e        *env
	results  []*result
	elapsed  time.Duration
}

func newReport(ctx context.Context, e *env) *report {
	rev := labenv.GitRevision(e.root)
	if e.o.bin != "" {
		v, _ := labproc.Run(ctx, 10*time.Second, e.bin, "-V")
		rev = fmt.Sprintf("-bin %s (%s)", e.bin, strings.TrimSpace(v))
	}
	return &report{
		date:     time.Now().UTC(),
		kernel:   labenv.KernelRelease(),
		cpus:     runtime.NumCPU(),
		versions: []string{labenv.ToolVersion(ctx, e.hping3), labenv.ToolVersion(ctx, e.nmap)},
		revision: rev,
		tmpfs:    onTmpfs(e.work),
		e:        e,
	}
}

func (rep *report) failed() bool {
	for _, r := range rep.results {
		if r.err != nil {
			return true
		}
	}
	return false
}

// write prints the report and, with -out, appends it to that file.
func (rep *report) write(stdout io.Writer, out string) error {
	md := rep.markdown()
	fmt.Fprint(stdout, md)
	if out == "" {
		return nil
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(f, "\n"+md); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// markdown renders the report: its set-up, one table row per scenario,
// the commands and the notes.
func (rep *report) markdown() string {
	var b strings.Builder
	rep.header(&b)
	b.WriteString("| scenario | flood | packets sent | rate | daemon CPU | peak RSS | written | files at end | ban4 / ban6 | innocent failed | scan during: answered (unused); recorded | scan after: answered (unused); recorded | status p50 / max |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|--:|\n")
	for _, r := range rep.results {
		b.WriteString(r.row())
	}
	rep.commands(&b)
	rep.notes(&b)
	b.WriteString("\n" + columnsText + "\n")
	return b.String()
}

func (rep *report) header(b *strings.Builder) {
	fmt.Fprintf(b, "## floodlab: what a flood of forged probes costs portsentry\n\n")
	fmt.Fprintf(b, "- date: %s\n", rep.date.Format("2006-01-02 15:04:05 UTC"))
	fmt.Fprintf(b, "- kernel: %s, %d CPUs\n", rep.kernel, rep.cpus)
	fmt.Fprintf(b, "- tools: %s\n", strings.Join(rep.versions, "; "))
	fmt.Fprintf(b, "- portsentry: %s on `%s` as shipped (advanced modes over every unused port, SCAN_TRIGGER=\"0\", BLOCKER=\"auto\", KERNEL_TRAP=\"1\"), its files in a work directory, EVENT_LOG on%s\n",
		rep.revision, labdaemon.ShippedConf, rep.trapNote())
	fmt.Fprintf(b, "- command: `%s` (run time %s)\n\n", rep.e.o.command(), rep.elapsed.Round(time.Second))
}

// trapNote quotes the daemon's kernel trap line.
func (rep *report) trapNote() string {
	for _, r := range rep.results {
		if r.trapLine != "" {
			line := r.trapLine
			if _, after, ok := strings.Cut(line, "adminalert: "); ok {
				line = after
			}
			return "; the daemon said: \"" + line + "\""
		}
	}
	return ""
}

func (rep *report) commands(b *strings.Builder) {
	l := rep.e.l
	fmt.Fprintf(b, "\nLab: T %s, %s (the daemon; services on TCP 80 and UDP 53), flooder F %s, %s (T's default routes), scanners S %s, %s (during the flood) and P %s, %s (after it), innocent client I %s, %s.\n\n",
		l.T.v4, l.T.v6, l.F.v4, l.F.v6, l.S.v4, l.S.v6, l.P.v4, l.P.v6, l.I.v4, l.I.v6)
	for _, r := range rep.results {
		target := l.T.v4
		if r.s.v6 {
			target = l.T.v6
		}
		fmt.Fprintf(b, "- %s (%s): F runs `%s`; S and P run `%s`\n",
			r.s.name, r.s.title, r.s.command(l), strings.Join(scanArgv("nmap", target), " "))
	}
}

func (rep *report) notes(b *strings.Builder) {
	var notes []string
	if rep.tmpfs {
		notes = append(notes, "the work directory is on a tmpfs, where write_bytes stays 0: set TMPDIR to a disk")
	}
	for _, r := range rep.results {
		for _, n := range r.details() {
			notes = append(notes, r.s.name+": "+n)
		}
	}
	if len(notes) == 0 {
		return
	}
	b.WriteString("\nNotes:\n\n")
	for _, n := range notes {
		fmt.Fprintf(b, "- %s\n", strings.ReplaceAll(n, "\n", " / "))
	}
}

const columnsText = "Columns: the flood's length; packets sent is F's interface's tx_packets over the flood (what reached T's link), rate that over the flood's length; " +
	"daemon CPU is utime+stime of /proc/PID/stat over the flood, in cores (1.00: one CPU busy all along); peak RSS is VmHWM at the end; " +
	"written is write_bytes of /proc/PID/io over the flood (what the daemon sent to storage; its stdout goes through a pipe, as to a journal, and is not in it); " +
	"files at end is the size of every file the daemon wrote (history, blocked, ban file, event log) once it has stopped, after the last scan; " +
	"ban4 / ban6 count the elements of the kernel's ban sets (`nft -j list set inet portsentry ban4`) then, \"full\" when a set holds as many as its size allows (the trap then bans nobody new); innocent failed counts the innocent client's failed requests " +
	"(a TCP request to port 80 and a UDP query to port 53 over IPv4 and IPv6 every 50 ms, from before the flood to after the last scan); " +
	"each scan's answered ports are those nmap did not find filtered (T answered them: SYN/ACK or RST), unused those of them without a service in T (all but port 80; the shipped ADVANCED_EXCLUDE_TCP=\"113,139\" keeps two unused ports out of the trap, and they answer RST), recorded says whether the scanner's address is in the history file " +
	"within " + "10 s after the last scan; status is the wall time of `portsentry status -s SOCKET` (process start included), run every -status-every during the flood."

// row is the result's table row.
func (r *result) row() string {
	if r.err != nil && r.flood == 0 {
		return fmt.Sprintf("| %s | error: %s |||||||||||\n", r.s.name, cell(firstLine(r.err.Error())))
	}
	status := fmt.Sprintf("%s / %s", msText(r.status.p50), msText(r.status.max))
	if r.status.failed > 0 {
		status += fmt.Sprintf(" (%d of %d failed)", r.status.failed, r.status.n)
	}
	return fmt.Sprintf("| %s | %.1f s | %s | %s/s | %.2f cores | %s | %s | %s | %s / %s | %s | %s | %s | %s |\n",
		r.s.name, r.flood.Seconds(), count(int64(r.sent)), count(int64(r.rate())), r.cpuCores(),
		mib(int64(r.end.hwm)), mib(int64(r.after.writeBytes-r.before.writeBytes)), mib(r.filesTotal),
		r.ban4.cell(), r.ban6.cell(), r.innocentCell(), r.during.cell(), r.post.cell(), status)
}

func (b banSet) cell() string {
	switch {
	case b.elems < 0:
		return "?"
	case b.full():
		return count(int64(b.elems)) + " (full)"
	}
	return count(int64(b.elems))
}

func (r *result) innocentCell() string {
	if r.innocent.Failures < 0 {
		return "unknown"
	}
	return fmt.Sprintf("%d of %d", r.innocent.Failures, r.innocent.Requests)
}

func (s scanOutcome) cell() string {
	if s.err != nil {
		return "error: " + cell(firstLine(s.err.Error()))
	}
	if s.start.IsZero() {
		return "not run"
	}
	c := fmt.Sprintf("%d (%d); %s", s.answered, s.unused, yesNo(s.recorded))
	if s.timedOut {
		c += " (nmap timed out)"
	}
	return c
}

// details are the result's notes: what else was measured, and anything odd.
func (r *result) details() []string {
	var out []string
	if r.err != nil {
		out = append(out, "error: "+r.err.Error())
	}
	out = append(out, fmt.Sprintf("the flooder counted %s packets sent; T's interface received %s (%s dropped there)",
		countOrUnknown(r.toolSent), count(int64(r.received)), count(int64(r.rxDropped))))
	if r.haveEventCount {
		out = append(out, fmt.Sprintf("the daemon's status at the end: %s events, %s dropped", count(r.events), count(r.drops)))
	}
	out = append(out, fmt.Sprintf("the daemon's CPU after the flood, until the end: %.1f s; wchar (every write: files, pipe, netlink) over the flood %s; threads %d; output %s",
		(r.end.cpu-r.after.cpu).Seconds(), mib(int64(r.after.wchar-r.before.wchar)), r.end.threads, mib(r.logBytes)))
	var files []string
	for _, f := range r.files {
		files = append(files, fmt.Sprintf("%s %s", f.name, mib(f.size)))
	}
	if len(files) > 0 {
		out = append(out, "files: "+strings.Join(files, ", "))
	}
	for _, sc := range []struct {
		who string
		s   scanOutcome
	}{{"during", r.during}, {"after", r.post}} {
		if sc.s.states != "" {
			out = append(out, fmt.Sprintf("scan %s from %s: nmap reported %s in %.1f s", sc.who, sc.s.scanner, sc.s.states, sc.s.duration.Seconds()))
		}
	}
	idle := "failed"
	if r.idle.err == nil {
		idle = msText(r.idle.latency)
	}
	out = append(out, fmt.Sprintf("`portsentry status` before the flood: %s; during it %d runs", idle, r.status.n))
	if len(r.perfTop) > 0 {
		out = append(out, "perf, the daemon's hottest symbols during the flood (self time): "+strings.Join(r.perfTop, "; "))
	}
	if r.innocent.Failures > 0 {
		out = append(out, "innocent client's first failures: "+strings.Join(r.innocent.Errors, "; "))
	}
	return append(out, r.notes...)
}

// summary is the one-line progress report.
func (r *result) summary() string {
	s := fmt.Sprintf("%s packets (%s/s), daemon %.2f cores, peak RSS %s, wrote %s, files %s, bans %s/%s, innocent failed %s, scan during %s, after %s, status max %s",
		count(int64(r.sent)), count(int64(r.rate())), r.cpuCores(), mib(int64(r.end.hwm)),
		mib(int64(r.after.writeBytes-r.before.writeBytes)), mib(r.filesTotal), r.ban4.cell(), r.ban6.cell(),
		r.innocentCell(), r.during.cell(), r.post.cell(), msText(r.status.max))
	if r.err != nil {
		s += " (ERROR: " + firstLine(r.err.Error()) + ")"
	}
	return s
}

// count writes n with a space every three digits, as BENCHMARKS.md does.
func count(n int64) string {
	if n < 0 {
		return "-" + count(-n)
	}
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + " " + s[i:]
	}
	return s
}

func countOrUnknown(n int64) string {
	if n < 0 {
		return "an unknown number of"
	}
	return count(n)
}

func mib(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
}

func msText(d time.Duration) string {
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// cell makes text safe inside a Markdown table cell.
func cell(s string) string {
	return strings.ReplaceAll(s, "|", `\|`)
}
