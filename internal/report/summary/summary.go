// Package summary sums up a period of attacks for `portsentry report`:
// probes and sources per hour, the top sources with the ports and kinds
// they tried, the top ports, and the bans in force. It is pure logic: the
// probes are fed in one by one (Read feeds them from the daemon's files),
// the clock is given, and the result is plain data for package render.
//
// Every source address in a summary is the address a probe claimed.
// Anyone who can send packets to the host can forge probes from any
// address: a forger can put an address at the top of the report, and
// inflate any count. A forger cannot make the report run, fetch or write
// anything, nor grow its memory beyond what the files hold (the event
// stream rotates at 64 MiB, the ban file is bounded). Names come from the
// event stream and the history file, where only forward-confirmed names
// are written.
package summary

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portsentry-go/portsentry/internal/enforce/bans"
)

// Probe is one probe, from the event stream or the history file.
type Probe struct {
	Time  time.Time
	Src   netip.Addr
	Host  string // the resolved name; "" when not resolved
	Port  uint16
	Proto string // "tcp" or "udp"
	// Kind is "connect", "syn", "fin", "null", "xmas", "odd" or "udp";
	// "" when the record does not say (PortSentry 1.2's history).
	Kind string
	// Blocked says this probe made a ban.
	Blocked bool
}

// Options choose the period and the length of the lists.
type Options struct {
	// From and To are the period, [From, To).
	From, To time.Time
	// Now is the time at which bans are in force or not.
	Now time.Time
	// Top is how many sources, ports and bans are listed (DefaultTop
	// when 0).
	Top int
}

// DefaultTop is how many entries each list has unless told.
const DefaultTop = 10

// Soon is how close an expiry must be for a ban to count as expiring.
const Soon = 24 * time.Hour

// maxPeriod is the longest period summed up: longer ones are cut to
// the last maxPeriod.
const maxPeriod = 100 * 365 * 24 * time.Hour

// maxBuckets bounds the charts: a longer period gets wider buckets.
const maxBuckets = 1000

// Summary is a period summed up.
type Summary struct {
	From, To, Now time.Time
	// Probes counts the probes in the period; Blocks those that made a
	// ban. Sources and Ports count distinct source addresses and
	// distinct ports (per protocol).
	Probes, Blocks, Sources, Ports int
	// Kinds counts probes by kind, most first.
	Kinds []Count
	// Bucket is the width of each of Buckets: an hour, or a day or a
	// week for a period too long to draw by the hour.
	Bucket  time.Duration
	Buckets []Bucket
	// TopSources and TopPorts are the most active, most probes first.
	TopSources []Source
	TopPorts   []Port
	Bans       Bans
	// Inputs says what was read (filled by Read).
	Inputs []Input
}

// Count is a name and how many.
type Count struct {
	Name string
	N    int
}

// Bucket is one slice of the period: [Start, Start+Summary.Bucket).
type Bucket struct {
	Start   time.Time
	Probes  int
	Sources int // distinct sources in this bucket
}

// Source is one source address and what it tried.
type Source struct {
	Addr        netip.Addr
	Host        string
	Probes      int
	Ports       int      // distinct ports (per protocol)
	PortList    string   // the ports, compacted: "tcp 1-1024, 8080; udp 53"
	Kinds       []string // the kinds of its probes, most first
	First, Last time.Time
	Blocks      int
	// Ban is the source's ban in force at Now; nil when none.
	Ban *bans.Ban
}

// Port is one port and how it was probed.
type Port struct {
	Port    uint16
	Proto   string
	Probes  int
	Sources int
}

// Bans are the bans in force at Now.
type Bans struct {
	Active, Permanent int
	// Expiring counts the bans that end within Soon of Now.
	Expiring int
	// Soonest lists the bans in force that end first (permanent ones last).
	Soonest []bans.Ban
}

// Input tells what one file gave.
type Input struct {
	What string // "event log", "history", "ban file"
	Path string
	// Read counts the records read, Used those in the summary.
	Read, Used int
	// Note says how the records were used, or why not.
	Note string
}

// Builder sums up probes as they come. It is not safe for concurrent use.
type Builder struct {
	o       Options
	width   time.Duration
	start   time.Time
	buckets []bucketAcc
	sources map[netip.Addr]*sourceAcc
	ports   map[portKey]*portAcc
	kinds   map[string]int
	probes  int
	blocks  int
	bans    []bans.Ban
	inputs  []Input
}

type bucketAcc struct {
	probes  int
	sources map[netip.Addr]struct{}
}

type sourceAcc struct {
	host        string
	probes      int
	blocks      int
	ports       map[portKey]struct{}
	kinds       map[string]int
	first, last time.Time
}

type portKey struct {
	proto string
	port  uint16
}

type portAcc struct {
	probes  int
	sources map[netip.Addr]struct{}
}

// New returns a Builder for the period o.From to o.To.
func New(o Options) *Builder {
	if o.Top <= 0 {
		o.Top = DefaultTop
	}
	if !o.To.After(o.From) {
		o.To = o.From
	}
	if o.To.Sub(o.From) > maxPeriod { // time.Duration's range is 292 years
		o.From = o.To.Add(-maxPeriod)
	}
	b := &Builder{o: o, sources: map[netip.Addr]*sourceAcc{}, ports: map[portKey]*portAcc{}, kinds: map[string]int{}}
	b.width, b.start = buckets(o.From, o.To)
	n := 0
	if o.To.After(b.start) {
		n = int((o.To.Sub(b.start) + b.width - 1) / b.width)
	}
	b.buckets = make([]bucketAcc, n)
	return b
}

// buckets returns the width of the period's buckets and the start of the
// first: the hour (day, week) that holds from, in from's time zone, so
// that bars begin on the hour as a clock on the wall shows it.
func buckets(from, to time.Time) (time.Duration, time.Time) {
	for _, w := range []time.Duration{time.Hour, 24 * time.Hour, 7 * 24 * time.Hour} {
		start := floor(from, w)
		if to.Sub(start) <= maxBuckets*w {
			return w, start
		}
	}
	start := floor(from, 24*time.Hour)
	week := 7 * 24 * time.Hour
	return ((to.Sub(start)+maxBuckets-1)/maxBuckets + week - 1).Truncate(week), start
}

// floor is the start of t's hour, or of its day for wider buckets, in
// t's own time zone.
func floor(t time.Time, w time.Duration) time.Time {
	y, m, d := t.Date()
	if w < 24*time.Hour {
		return time.Date(y, m, d, t.Hour(), 0, 0, 0, t.Location())
	}
	return time.Date(y, m, d, 0, 0, 0, 0, t.Location())
}

// LastDays is the default period: length ending at the end of now's
// hour, so that the last bar is the hour under way and every bar a whole
// hour of the wall clock.
func LastDays(now time.Time, length time.Duration) (from, to time.Time) {
	to = floor(now, time.Hour)
	if !to.Equal(now) {
		to = to.Add(time.Hour)
	}
	return to.Add(-length), to
}

// Add counts p when it falls in the period, and reports whether it did.
func (b *Builder) Add(p Probe) bool {
	if p.Time.Before(b.o.From) || !p.Time.Before(b.o.To) || !p.Src.IsValid() {
		return false
	}
	b.probes++
	if p.Blocked {
		b.blocks++
	}
	b.kinds[p.Kind]++
	if i := int(p.Time.Sub(b.start) / b.width); i >= 0 && i < len(b.buckets) {
		bk := &b.buckets[i]
		bk.probes++
		if bk.sources == nil {
			bk.sources = map[netip.Addr]struct{}{}
		}
		bk.sources[p.Src] = struct{}{}
	}
	s := b.sources[p.Src]
	if s == nil {
		s = &sourceAcc{ports: map[portKey]struct{}{}, kinds: map[string]int{}, first: p.Time, last: p.Time}
		b.sources[p.Src] = s
	}
	s.probes++
	if p.Blocked {
		s.blocks++
	}
	if p.Host != "" {
		s.host = p.Host
	}
	if p.Time.Before(s.first) {
		s.first = p.Time
	}
	if p.Time.After(s.last) {
		s.last = p.Time
	}
	s.kinds[p.Kind]++
	k := portKey{p.Proto, p.Port}
	s.ports[k] = struct{}{}
	pa := b.ports[k]
	if pa == nil {
		pa = &portAcc{sources: map[netip.Addr]struct{}{}}
		b.ports[k] = pa
	}
	pa.probes++
	pa.sources[p.Src] = struct{}{}
	return true
}

// SetBans gives the bans in force at Options.Now.
func (b *Builder) SetBans(bs []bans.Ban) { b.bans = bs }

// AddInput records what a file gave, for the report to say.
func (b *Builder) AddInput(in Input) { b.inputs = append(b.inputs, in) }

// Summary returns the period summed up.
func (b *Builder) Summary() *Summary {
	s := &Summary{
		From: b.o.From, To: b.o.To, Now: b.o.Now,
		Probes: b.probes, Blocks: b.blocks, Sources: len(b.sources), Ports: len(b.ports),
		Bucket: b.width, Inputs: b.inputs,
	}
	s.Kinds = counts(b.kinds)
	for i, bk := range b.buckets {
		s.Buckets = append(s.Buckets, Bucket{Start: b.start.Add(time.Duration(i) * b.width), Probes: bk.probes, Sources: len(bk.sources)})
	}

	banOf := make(map[netip.Addr]*bans.Ban, len(b.bans))
	active := make([]bans.Ban, 0, len(b.bans))
	for _, bn := range b.bans {
		if !bn.Permanent() && !bn.Expires.After(b.o.Now) {
			continue
		}
		active = append(active, bn)
	}
	for i := range active {
		banOf[active[i].Addr] = &active[i]
		s.Bans.Active++
		switch {
		case active[i].Permanent():
			s.Bans.Permanent++
		case active[i].Expires.Sub(b.o.Now) <= Soon:
			s.Bans.Expiring++
		}
	}
	soonest := slices.Clone(active)
	slices.SortFunc(soonest, func(x, y bans.Ban) int {
		if x.Permanent() != y.Permanent() {
			if x.Permanent() {
				return 1
			}
			return -1
		}
		if c := x.Expires.Compare(y.Expires); c != 0 {
			return c
		}
		return x.Addr.Compare(y.Addr)
	})
	s.Bans.Soonest = soonest[:min(len(soonest), b.o.Top)]

	addrs := make([]netip.Addr, 0, len(b.sources))
	for a := range b.sources {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, func(x, y netip.Addr) int {
		sx, sy := b.sources[x], b.sources[y]
		return cmp.Or(cmp.Compare(sy.probes, sx.probes), cmp.Compare(len(sy.ports), len(sx.ports)), x.Compare(y))
	})
	for _, a := range addrs[:min(len(addrs), b.o.Top)] {
		sa := b.sources[a]
		src := Source{
			Addr: a, Host: sa.host, Probes: sa.probes, Ports: len(sa.ports), PortList: portList(sa.ports),
			First: sa.first, Last: sa.last, Blocks: sa.blocks, Ban: banOf[a],
		}
		for _, k := range counts(sa.kinds) {
			src.Kinds = append(src.Kinds, k.Name)
		}
		s.TopSources = append(s.TopSources, src)
	}

	keys := make([]portKey, 0, len(b.ports))
	for k := range b.ports {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y portKey) int {
		px, py := b.ports[x], b.ports[y]
		return cmp.Or(cmp.Compare(py.probes, px.probes), cmp.Compare(len(py.sources), len(px.sources)),
			cmp.Compare(x.port, y.port), cmp.Compare(x.proto, y.proto))
	})
	for _, k := range keys[:min(len(keys), b.o.Top)] {
		s.TopPorts = append(s.TopPorts, Port{Port: k.port, Proto: k.proto, Probes: b.ports[k].probes, Sources: len(b.ports[k].sources)})
	}
	return s
}

// counts sorts a tally, most first, then by name; the empty name (a kind
// not recorded) is written "?".
func counts(m map[string]int) []Count {
	out := make([]Count, 0, len(m))
	for k, n := range m {
		if k == "" {
			k = "?"
		}
		out = append(out, Count{k, n})
	}
	slices.SortFunc(out, func(x, y Count) int { return cmp.Or(cmp.Compare(y.N, x.N), cmp.Compare(x.Name, y.Name)) })
	return out
}

// maxRanges bounds a port list: past it, the rest is counted.
const maxRanges = 8

// portList writes a set of ports as ranges per protocol, TCP first:
// "tcp 1-1024, 8080; udp 53". At most maxRanges ranges are written, then
// "(+N ports)".
func portList(ports map[portKey]struct{}) string {
	by := map[string][]uint16{}
	for k := range ports {
		by[k.proto] = append(by[k.proto], k.port)
	}
	protos := make([]string, 0, len(by))
	for p := range by {
		protos = append(protos, p)
	}
	slices.Sort(protos)
	var out []string
	ranges, left := 0, len(ports)
	for _, proto := range protos {
		ps := by[proto]
		slices.Sort(ps)
		var rs []string
		for i := 0; i < len(ps) && ranges < maxRanges; {
			j := i
			for j+1 < len(ps) && ps[j+1] == ps[j]+1 {
				j++
			}
			r := strconv.Itoa(int(ps[i]))
			if j > i {
				r += "-" + strconv.Itoa(int(ps[j]))
			}
			rs = append(rs, r)
			ranges++
			left -= j - i + 1
			i = j + 1
		}
		if len(rs) > 0 {
			out = append(out, proto+" "+strings.Join(rs, ", "))
		}
	}
	s := strings.Join(out, "; ")
	if left > 0 {
		s += " (+" + strconv.Itoa(left) + " ports)"
	}
	return s
}
