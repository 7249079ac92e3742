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
	command  string
	lab      string
	results  []*result
	elapsed  time.Duration
}

func newReport(ctx context.Context, e *env) *report {
	rev := labenv.GitRevision(e.root)
	if e.o.bin != "" {
		v, _ := labproc.Run(ctx, 10*time.Second, e.bin, "-V")
		rev = fmt.Sprintf("-bin %s (%s)", e.bin, strings.TrimSpace(v))
	}
	versions := []string{labenv.ToolVersion(ctx, e.nmap), labenv.ToolVersion(ctx, e.traceroute)}
	if e.mtr != "" {
		versions = append(versions, labenv.ToolVersion(ctx, e.mtr))
	}
	return &report{
		date:     time.Now().UTC(),
		kernel:   labenv.KernelRelease(),
		cpus:     runtime.NumCPU(),
		versions: versions,
		revision: rev,
		command:  e.o.command(),
		lab:      labText(e.l),
	}
}

func labText(l *lab) string {
	return fmt.Sprintf("Lab: T %s, %s (the daemon; services on TCP 22 (SSH-like echo), TCP 80 and UDP 53) on a LAN with the router R (%s, %s), the forger A (%s, %s), clients N1 (%s, %s) and N2 (%s, %s) and the scanner S (%s, %s); the client C (%s, %s) behind R, one hop from T.",
		l.T.v4, l.T.v6, l.R.v4, l.R.v6, l.A.v4, l.A.v6, l.N1.v4, l.N1.v6, l.N2.v4, l.N2.v6, l.S.v4, l.S.v6, l.C.v4, l.C.v6)
}

// failed reports whether a scenario could not be measured (a target not
// met is a finding, not a failure of the benchmark).
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

// markdown renders the report: its set-up, one table row per measurement,
// the lab and the notes.
func (rep *report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "## trustlab: forged probes and everyday traffic against portsentry\n\n")
	fmt.Fprintf(&b, "- date: %s\n", rep.date.Format("2006-01-02 15:04:05 UTC"))
	fmt.Fprintf(&b, "- kernel: %s, %d CPUs\n", rep.kernel, rep.cpus)
	fmt.Fprintf(&b, "- tools: %s\n", strings.Join(rep.versions, "; "))
	fmt.Fprintf(&b, "- portsentry: %s on `%s` as shipped (advanced modes over every unused port, SCAN_TRIGGER=\"0\", BLOCKER=\"auto\", KERNEL_TRAP=\"1\", PROTECT_PEERS=\"1\", SERVICE_GRACE=\"3600\"), its files in a work directory, EVENT_LOG on%s\n",
		rep.revision, labdaemon.ShippedConf, rep.trapNote())
	fmt.Fprintf(&b, "- command: `%s` (run time %s)\n\n", rep.command, rep.elapsed.Round(time.Second))
	b.WriteString("| scenario | measure | target | result | met |\n|---|---|---|---|---|\n")
	for _, r := range rep.results {
		b.WriteString(r.table())
	}
	b.WriteString("\n" + rep.lab + "\n")
	var notes []string
	for _, r := range rep.results {
		if r.err != nil {
			notes = append(notes, r.s.name+": error: "+r.err.Error())
		}
		for _, n := range r.notes {
			notes = append(notes, r.s.name+": "+n)
		}
	}
	if len(notes) > 0 {
		b.WriteString("\nNotes:\n\n")
		for _, n := range notes {
			fmt.Fprintf(&b, "- %s\n", strings.ReplaceAll(n, "\n", " / "))
		}
	}
	return b.String()
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

// table is the result's rows; the scenario is named on its first.
func (r *result) table() string {
	var b strings.Builder
	name := r.s.name
	for _, w := range r.rows {
		met := ""
		if w.target != "" {
			met = yesNo(w.met)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", name, cell(w.measure), cell(w.target), cell(w.result), met)
		name = ""
	}
	if r.err != nil {
		fmt.Fprintf(&b, "| %s | error | | %s | |\n", name, cell(firstLine(r.err.Error())))
	}
	return b.String()
}

// summary is the one-line progress report.
func (r *result) summary() string {
	met, of := 0, 0
	for _, w := range r.rows {
		if w.target != "" {
			of++
			if w.met {
				met++
			}
		}
	}
	s := fmt.Sprintf("%d of %d targets met", met, of)
	for _, w := range r.rows {
		if w.target != "" && !w.met {
			s += fmt.Sprintf("; NOT MET: %s: %s", w.measure, w.result)
		}
	}
	if r.err != nil {
		s += " (ERROR: " + firstLine(r.err.Error()) + ")"
	}
	return s
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// cell makes text safe inside a Markdown table cell.
func cell(s string) string {
	return strings.ReplaceAll(s, "|", `\|`)
}
