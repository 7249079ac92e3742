// Package labnmap reads nmap's XML report (-oX -) for the lab benchmarks
// (floodlab, trustlab): which ports the target answered, in what state.
package labnmap

import (
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
)

// Port is one port nmap listed by itself.
type Port struct {
	ID    int
	Proto string // "tcp", "udp"
	State string // "open", "closed", "filtered", "open|filtered", …
}

// String is "80/tcp open".
func (p Port) String() string { return fmt.Sprintf("%d/%s %s", p.ID, p.Proto, p.State) }

// Answered reports whether the target answered the port: any state
// without "filtered" in it (SYN/ACK, RST, a UDP reply).
func (p Port) Answered() bool { return answered(p.State) }

func answered(state string) bool { return !strings.Contains(state, "filtered") }

// Report is what nmap said of the scanned hosts, together.
type Report struct {
	Ports []Port
	// Extra counts the ports nmap folded into <extraports>, by state, in
	// the report's order.
	Extra    []Extra
	TimedOut bool // a host hit --host-timeout
}

// Extra is one <extraports> line.
type Extra struct {
	State string
	Count int
}

// xmlRun is the part of the XML report read here.
type xmlRun struct {
	Hosts []struct {
		TimedOut string `xml:"timedout,attr"`
		Ports    []struct {
			Proto string `xml:"protocol,attr"`
			ID    int    `xml:"portid,attr"`
			State struct {
				State string `xml:"state,attr"`
			} `xml:"state"`
		} `xml:"ports>port"`
		Extra []struct {
			State string `xml:"state,attr"`
			Count int    `xml:"count,attr"`
		} `xml:"ports>extraports"`
	} `xml:"host"`
}

// Parse reads nmap's output: the XML report, after whatever nmap printed
// before it.
func Parse(out string) (Report, error) {
	var r Report
	i := strings.Index(out, "<?xml")
	if i < 0 {
		return r, errors.New("nmap printed no XML report")
	}
	var run xmlRun
	if err := xml.Unmarshal([]byte(out[i:]), &run); err != nil {
		return r, fmt.Errorf("nmap's report: %w", err)
	}
	for _, h := range run.Hosts {
		r.TimedOut = r.TimedOut || h.TimedOut == "true"
		for _, p := range h.Ports {
			r.Ports = append(r.Ports, Port{ID: p.ID, Proto: p.Proto, State: p.State.State})
		}
		for _, e := range h.Extra {
			r.Extra = append(r.Extra, Extra{State: e.State, Count: e.Count})
		}
	}
	return r, nil
}

// Answered counts the ports the target answered, listed or folded.
func (r Report) Answered() int {
	n := len(r.AnsweredPorts())
	for _, e := range r.Extra {
		if answered(e.State) {
			n += e.Count
		}
	}
	return n
}

// AnsweredPorts are the listed ports the target answered.
func (r Report) AnsweredPorts() []Port {
	var out []Port
	for _, p := range r.Ports {
		if p.Answered() {
			out = append(out, p)
		}
	}
	return out
}

// States counts the ports by state, listed ports first in their order:
// "open 1, closed 2, filtered 1021".
func (r Report) States() string {
	counts := map[string]int{}
	var order []string
	add := func(state string, n int) {
		if _, ok := counts[state]; !ok {
			order = append(order, state)
		}
		counts[state] += n
	}
	for _, p := range r.Ports {
		add(p.State, 1)
	}
	for _, e := range r.Extra {
		add(e.State, e.Count)
	}
	parts := make([]string, len(order))
	for i, s := range order {
		parts[i] = fmt.Sprintf("%s %d", s, counts[s])
	}
	return strings.Join(parts, ", ")
}
