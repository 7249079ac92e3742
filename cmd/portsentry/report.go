package main

import (
	"bytes"
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/control"
	"github.com/portsentry-go/portsentry/internal/report/render"
	"github.com/portsentry-go/portsentry/internal/report/summary"
)

// reportArgs is report's command line.
type reportArgs struct {
	conf, since, until, html string
	top                      int
	files                    summary.Files
}

// reportFlagSet declares report's flags into a.
func reportFlagSet(a *reportArgs) *flag.FlagSet {
	fs := newFlagSet("portsentry report")
	fs.StringVar(&a.conf, "c", defaultConfig, "configuration `FILE` naming the files to read")
	fs.StringVar(&a.since, "since", "7d", "start of the period: a `DURATION` before now (36h, 7d) or a date (2026-11-20, 2026-11-20T08:00)")
	fs.StringVar(&a.until, "until", "", "end of the period: a date, or a `DURATION` before now (default: the end of the hour under way)")
	fs.IntVar(&a.top, "top", summary.DefaultTop, "how many sources, ports and bans to list")
	fs.StringVar(&a.html, "html", "", "also write the report as one HTML page to `FILE` (- for standard output, instead of the table)")
	fs.StringVar(&a.files.EventLog, "events", "", "event log `FILE` (default EVENT_LOG)")
	fs.StringVar(&a.files.History, "history", "", "history `FILE` (default HISTORY_FILE)")
	fs.StringVar(&a.files.BanFile, "bans", "", "ban `FILE` (default BAN_FILE)")
	return fs
}

// reportHelp is `portsentry help report`.
func reportHelp(w io.Writer) {
	fmt.Fprint(w, "Usage: portsentry report [flags]\n\nThe attacks of a period summed up from the event log, the history and the ban file.\n\nFlags:\n")
	writeFlags(w, reportFlagSet(&reportArgs{}), nil)
}

// reportMain is `portsentry report [-c FILE] [-since WHEN] [-until WHEN]
// [-top N] [-html FILE] [-events FILE] [-history FILE] [-bans FILE]`: the
// attacks of a period (the last 7 days by default) summed up from the
// daemon's files, named by the configuration (EVENT_LOG, HISTORY_FILE,
// BAN_FILE) or by the flags, as a table on standard output, and with
// -html as one self-contained page. It only reads: the daemon may run.
func reportMain(args []string, stdout, stderr io.Writer) int {
	var a reportArgs
	fs := reportFlagSet(&a)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			reportHelp(stdout)
			return exitOK
		}
		return usageError(stderr, "report", err)
	}
	conf, since, until, top, htmlOut, files := &a.conf, &a.since, &a.until, &a.top, &a.html, a.files
	usage := func(err error) int { return usageError(stderr, "report", err) }
	if fs.NArg() > 0 {
		return usage(fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	if *top < 1 {
		return usage(fmt.Errorf("-top %d: want 1 or more", *top))
	}
	now := time.Now()
	from, to, err := reportPeriod(*since, *until, now)
	if err != nil {
		return usage(err)
	}
	if files.EventLog == "" || files.History == "" || files.BanFile == "" {
		c, err := config.Load(*conf)
		if err != nil {
			return usage(fmt.Errorf("%w (or name every file with -events, -history and -bans)", err))
		}
		files.EventLog = cmp.Or(files.EventLog, c.EventLog)
		files.History = cmp.Or(files.History, c.HistoryFile)
		files.BanFile = cmp.Or(files.BanFile, c.BanFile)
	}

	b := summary.New(summary.Options{From: from, To: to, Now: now, Top: *top})
	bad, err := summary.Read(b, files)
	for _, e := range bad {
		fmt.Fprintln(stderr, "portsentry report: skipped:", e)
	}
	if err != nil {
		fmt.Fprintln(stderr, "portsentry report:", err)
		return exitFail
	}
	s := b.Summary()
	if *htmlOut != "" {
		var page bytes.Buffer
		if err := render.HTML(&page, s); err != nil {
			fmt.Fprintln(stderr, "portsentry report:", err)
			return exitFail
		}
		if *htmlOut == "-" {
			_, err = stdout.Write(page.Bytes())
		} else {
			err = os.WriteFile(*htmlOut, page.Bytes(), 0o640)
		}
		if err != nil {
			fmt.Fprintln(stderr, "portsentry report:", err)
			return exitFail
		}
		if *htmlOut == "-" {
			return exitOK
		}
	}
	if err := render.Text(stdout, s); err != nil {
		fmt.Fprintln(stderr, "portsentry report:", err)
		return exitFail
	}
	return exitOK
}

// reportPeriod reads -since and -until. A duration counts back from the
// end of the hour under way, so that a chart's bars are whole hours.
func reportPeriod(since, until string, now time.Time) (from, to time.Time, err error) {
	end, _ := summary.LastDays(now, 0)
	when := func(flag, v string) (time.Time, error) {
		if d, err := control.ParseDuration(v); err == nil {
			return end.Add(-d), nil
		}
		for _, layout := range []string{"2006-01-02", "2006-01-02T15:04", "2006-01-02T15:04:05", time.RFC3339} {
			if t, err := time.ParseInLocation(layout, v, now.Location()); err == nil {
				return t, nil
			}
		}
		return time.Time{}, fmt.Errorf("-%s %q: want a duration (36h, 7d) or a date (2026-11-20, 2026-11-20T08:00)", flag, v)
	}
	to = end
	if until != "" {
		if to, err = when("until", until); err != nil {
			return
		}
	}
	if from, err = when("since", since); err != nil {
		return
	}
	if !from.Before(to) {
		err = fmt.Errorf("-since %s is not before -until %s", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	return
}
