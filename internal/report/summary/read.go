package summary

import (
	"fmt"
	"strings"
	"time"

	"github.com/portsentry-go/portsentry/internal/enforce/bans"
	"github.com/portsentry-go/portsentry/internal/report/history"
	"github.com/portsentry-go/portsentry/internal/report/jsonlog"
)

// Files are the daemon's files a report reads; "" for one not kept.
type Files struct {
	EventLog string // EVENT_LOG
	History  string // HISTORY_FILE
	BanFile  string // BAN_FILE
}

// Read feeds b from the files, with the parsers that own their formats,
// and returns the damaged lines it skipped (file:line: problem; bounded).
// err is a file that exists and could not be read.
//
// The event stream has every probe; the history file only the ones that
// triggered (2.x format) or the blocks (1.2 format). So the event stream
// is used where it reaches, and the history file for the time before the
// stream's first line (EVENT_LOG turned on later, or rotated away); events
// from ignored hosts and service traffic are not probes and are left out.
func Read(b *Builder, f Files) (bad []error, err error) {
	var first time.Time
	if f.EventLog != "" && f.EventLog != "-" && f.EventLog != "stdout" {
		in := Input{What: "event log", Path: f.EventLog}
		bd, err := jsonlog.ReadFile(f.EventLog, func(e jsonlog.Entry) {
			in.Read++
			if first.IsZero() || e.Time.Before(first) {
				first = e.Time
			}
			// Not probes: ignored sources, service traffic, and bans
			// decided elsewhere (the fleet, CrowdSec).
			if e.Action == jsonlog.Ignored || e.Action == jsonlog.Service || e.Action == jsonlog.Imported {
				return
			}
			if b.Add(Probe{Time: e.Time, Src: e.Src, Host: e.Host, Port: e.Port, Proto: e.Proto, Kind: e.Kind, Blocked: e.Action == jsonlog.Blocked}) {
				in.Used++
			}
		})
		bad = append(bad, bd...)
		if err != nil {
			return bad, err
		}
		// After a ban the daemon writes at most 20 lines a source per
		// 10 s (the rest are counted in its metrics, not written).
		in.Note = "every probe, but those of a blocked source past 20 per 10 s"
		if !first.IsZero() {
			in.Note += ", from " + first.Format(time.RFC3339)
		}
		b.AddInput(in)
	}
	if f.History != "" {
		in := Input{What: "history", Path: f.History}
		formats := map[string]int{}
		bd, err := history.ReadFile(f.History, func(e history.Entry) {
			in.Read++
			// The history's times are whole seconds (1.2) or
			// milliseconds (2.x): a record of the event log's first
			// second is the event log's.
			if e.Ignored || (!first.IsZero() && !e.Time.Before(first.Truncate(time.Second))) {
				return
			}
			if b.Add(Probe{Time: e.Time, Src: e.Addr, Host: e.Name, Port: e.Port, Proto: strings.ToLower(e.Proto), Kind: e.Kind, Blocked: e.Blocked}) {
				in.Used++
				formats[e.Format]++
			}
		})
		bad = append(bad, bd...)
		if err != nil {
			return bad, err
		}
		switch {
		case in.Read == 0:
			in.Note = "empty"
		case !first.IsZero():
			in.Note = "before the event log's first line only"
		default:
			in.Note = "the only record of probes"
		}
		if formats["1.2"] > 0 {
			in.Note += "; 1.2 records are blocks, one per source and mode, not every probe"
		}
		b.AddInput(in)
	}
	if f.BanFile != "" {
		bs, err := bans.Read(f.BanFile, b.o.Now)
		if err != nil {
			if ce, ok := err.(*bans.CorruptError); ok {
				for _, l := range ce.Lines {
					bad = append(bad, l)
				}
			} else {
				return bad, err
			}
		}
		b.SetBans(bs)
		b.AddInput(Input{What: "ban file", Path: f.BanFile, Read: len(bs), Used: len(bs), Note: fmt.Sprintf("bans in force at %s", b.o.Now.Format(time.RFC3339))})
	}
	return bad, nil
}
