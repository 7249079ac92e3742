package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/portsentry-go/portsentry/internal/enforce/bans"
)

// timeLayout is how the CLI shows times: local, to the second.
const timeLayout = "2006-01-02 15:04:05"

// PrintList writes bs as a table, times in now's location:
//
//	ADDRESS      REASON               PORT     SINCE                EXPIRES
//	192.0.2.7    TCP SYN/Normal scan  143/TCP  2026-11-22 01:40:36  in 59m (2026-11-22 02:40:36)
//	2001:db8::7  manual               -        2026-11-22 01:41:00  never
//
// When a ban came from elsewhere (bans.Ban.Origin: CrowdSec, the fleet),
// an ORIGIN column says where, "local" for this host's own; without such
// bans the table is as it always was, for the scripts that read it.
// An empty list is one line saying so.
func PrintList(w io.Writer, bs []bans.Ban, now time.Time) error {
	if len(bs) == 0 {
		_, err := io.WriteString(w, "No active bans.\n")
		return err
	}
	origins := slices.ContainsFunc(bs, func(b bans.Ban) bool { return b.Origin != "" })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if origins {
		fmt.Fprintln(tw, "ADDRESS\tREASON\tPORT\tSINCE\tEXPIRES\tORIGIN")
	} else {
		fmt.Fprintln(tw, "ADDRESS\tREASON\tPORT\tSINCE\tEXPIRES")
	}
	for _, b := range bs {
		port := "-"
		if b.Port != 0 || b.Proto != "" {
			port = strconv.Itoa(int(b.Port))
			if b.Proto != "" {
				port += "/" + printable(b.Proto)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s", b.Target(), printable(b.Reason), port, b.Since.In(now.Location()).Format(timeLayout), expires(b, now))
		if origins {
			origin := "local"
			if b.Origin != "" {
				origin = printable(b.Origin)
			}
			fmt.Fprintf(tw, "\t%s", origin)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// ListEntry is one ban as `portsentry list --json` writes it. The field
// names are an interface scripts rely on: fields may be added, never
// renamed, removed or given another meaning.
type ListEntry struct {
	// Address is what the ban covers: an address, or a prefix for a ban of
	// an IPv6 network (BAN_PREFIX6): "192.0.2.7", "2001:db8:1:2::/64".
	Address string `json:"address"`
	// Reason is the scan type ("TCP SYN/Normal scan", "UDP", "Connect")
	// or, for a ban by hand, the operator's reason ("manual" by default).
	Reason string `json:"reason"`
	// Origin is "detected" (a probe) or "manual" (portsentry block).
	Origin string `json:"origin"`
	// Port and Proto are the probe's ("TCP", "UDP"); 0 and "" for a ban
	// by hand.
	Port  int    `json:"port"`
	Proto string `json:"proto"`
	// Since is when the ban began, Expires when it ends (null: never);
	// RFC 3339, UTC.
	Since   time.Time  `json:"since"`
	Expires *time.Time `json:"expires"`
	// Count is how many times the address has been banned, this ban
	// included (repeat offenders are banned for longer).
	Count int `json:"count"`
}

// Entry is b as `list --json` writes it.
func Entry(b bans.Ban) ListEntry {
	e := ListEntry{Address: b.Target(), Reason: b.Reason, Origin: b.Source(), Port: int(b.Port), Proto: b.Proto, Since: b.Since.UTC(), Count: b.Count}
	if !b.Permanent() {
		t := b.Expires.UTC()
		e.Expires = &t
	}
	return e
}

// PrintListJSON writes bs as one JSON array of ListEntry, "[]" when
// empty, and a newline.
func PrintListJSON(w io.Writer, bs []bans.Ban) error {
	out := make([]ListEntry, 0, len(bs))
	for _, b := range bs {
		out = append(out, Entry(b))
	}
	enc := json.NewEncoder(w)
	return enc.Encode(out)
}

func expires(b bans.Ban, now time.Time) string {
	if b.Permanent() {
		return "never"
	}
	abs := b.Expires.In(now.Location()).Format(timeLayout)
	left := b.Expires.Sub(now)
	if left <= 0 {
		return "expired (" + abs + ")"
	}
	return "in " + roughDuration(left) + " (" + abs + ")"
}

// roughDuration shows d in its two largest units, rounded down: "59m",
// "3h5m", "2d", "45s".
func roughDuration(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d < time.Second:
		return "<1s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", d/time.Second)
	case d < time.Hour:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d < day:
		return twoUnits(int64(d/time.Hour), "h", int64(d%time.Hour/time.Minute), "m")
	}
	return twoUnits(int64(d/day), "d", int64(d%day/time.Hour), "h")
}

func twoUnits(a int64, ua string, b int64, ub string) string {
	if b == 0 {
		return fmt.Sprint(a, ua)
	}
	return fmt.Sprint(a, ua, b, ub)
}

// printable keeps a reason from writing control sequences to the
// operator's terminal.
func printable(s string) string {
	if strings.ContainsFunc(s, unicode.IsControl) {
		q := strconv.QuoteToGraphic(s)
		return q[1 : len(q)-1]
	}
	return s
}

// nowFunc is the clock PrintStatus shows uptime by; tests replace it.
var nowFunc = time.Now

// PrintStatus writes s for a human, one "Key: value" line each.
func PrintStatus(w io.Writer, s Status) error {
	now := nowFunc()
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	line := func(k, format string, args ...any) {
		fmt.Fprintf(tw, "%s:\t%s\n", k, fmt.Sprintf(format, args...))
	}
	line("Version", "%s", s.Version)
	if s.PID != 0 {
		line("PID", "%d", s.PID)
	}
	if !s.Started.IsZero() {
		line("Running since", "%s (up %s)", s.Started.In(now.Location()).Format(timeLayout), roughDuration(max(now.Sub(s.Started), 0)))
	}
	modes := strings.Join(s.Modes, ", ")
	if modes == "" {
		modes = "none"
	}
	line("Modes", "%s", modes)
	blocker := s.Blocker
	if blocker == "" {
		blocker = "none"
	}
	line("Blocker", "%s", blocker)
	line("Bans", "%d", s.Bans)
	if !s.NextExpiry.IsZero() {
		line("Next expiry", "%s", expires(bans.Ban{Expires: s.NextExpiry}, now))
	}
	if s.BanFile != "" {
		line("Ban file", "%s", s.BanFile)
	}
	line("Sources tracked", "%d", s.Sources)
	line("Events", "%d (%d dropped)", s.Events, s.Dropped)
	if s.Flooding {
		line("Flood", "under way: single probes from many sources are summarized in the log every 10 s")
	}
	if tr := s.Trap; tr != nil {
		line("Kernel trap", "%d probes banned their source; dropped without a ban: %d forged (peer's address), %d unrouted, %d to restarting services, %d with the ban set full or in a flood",
			tr.Trapped, tr.Forged, tr.Unrouted, tr.Served, tr.Unbanned)
	}
	line("Bans cover", "%s", coverage(s.Coverage))
	if f := s.Fleet; f != nil {
		conn := "not connected (detection and local bans go on; bans to share wait)"
		if f.Connected {
			conn = "connected to " + f.Server
		}
		if f.Embedded != "" {
			conn += "; embedded server on " + f.Embedded
		}
		line("Fleet", "member %s, %s", printable(f.Name), conn)
		line("  members seen", "%d (%s)", len(f.Members), printable(strings.Join(f.Members, ", ")))
		line("  lag", "last ban applied %s after it was shared; %d messages not read yet", roundLag(f.Lag), f.Pending)
		out := fmt.Sprintf("%d shared, %d waiting", f.Out, f.Queued)
		if f.Dropped > 0 {
			out += fmt.Sprintf(", %d dropped (queue full)", f.Dropped)
		}
		line("  bans out", "%s", out)
		line("  bans in", "%d read, %d applied, %d refused by local policy, %d throttled (member over FLEET_MAX_RATE)", f.In, f.Applied, f.Refused, f.Throttled)
	}
	if c := s.CrowdSec; c != nil {
		line("CrowdSec", "Local API %s", printable(c.URL))
		if p := c.Push; p != nil {
			line("  push", "%s; %d alerts pushed, %d waiting, %d dropped (queue full)",
				linkState(p.Connected, p.LastPush, "last push", p.LastError, p.LastErrorAt, now), p.Pushed, p.Queued, p.Dropped)
		}
		if p := c.Pull; p != nil {
			state := linkState(p.Connected, p.LastPoll, "last poll", p.LastError, p.LastErrorAt, now)
			if p.Poll > 0 {
				state += fmt.Sprintf("; polls every %s", FormatDuration(p.Poll))
			}
			line("  pull", "%s", state)
			line("  decisions", "%d read, %d applied, %d lifted, %s, %d skipped (not an IP ban), %d failed; %d followed",
				p.Pulled, p.Applied, p.Lifted, refusedWhy(p.Refused), p.Skipped, p.Failed, p.Followed)
		}
	}
	if in := s.Infrastructure; in == nil {
		line("Protected", "ignore list and this host's addresses (PROTECT_INFRASTRUCTURE off)")
	} else {
		line("Protected", "ignore list, this host's addresses, and:")
		line("  name servers", "%s", orNone(in.NameServers))
		line("  gateways", "%s", orNone(in.Gateways))
		line("  admin logins", "%s", orNone(in.Sessions))
	}
	return tw.Flush()
}

// linkState says how a link with a LAPI is: "connected, last push 3s
// ago", "not connected: ERROR (since 10s ago)", "no push yet".
func linkState(connected bool, last time.Time, what, lastErr string, errAt, now time.Time) string {
	ago := func(t time.Time) string { return roughDuration(max(now.Sub(t), 0)) + " ago" }
	switch {
	case lastErr != "":
		s := "not connected: " + printable(lastErr) + " (" + ago(errAt)
		if !last.IsZero() {
			s += "; " + what + " " + ago(last)
		}
		return s + ")"
	case connected:
		return "connected, " + what + " " + ago(last)
	}
	return "no " + strings.TrimPrefix(what, "last ") + " yet"
}

// refusedWhy says how many decisions local policy refused, and why.
func refusedWhy(m map[string]uint64) string {
	var n uint64
	var parts []string
	for _, why := range slices.Sorted(maps.Keys(m)) {
		n += m[why]
		desc := printable(why)
		switch why {
		case "protected":
			desc = "protected (ignore list, this host, its infrastructure)"
		case "peer":
			desc = "peer (an established connection)"
		}
		parts = append(parts, fmt.Sprintf("%d %s", m[why], desc))
	}
	if n == 0 {
		return "0 refused by local policy"
	}
	return fmt.Sprintf("%d refused by local policy: %s", n, strings.Join(parts, ", "))
}

// coverage says in words which ways in the bans cover, and whether the
// host uses the forward path.
func coverage(c *Coverage) string {
	if c == nil {
		return "what the KILL_ROUTE command blocks (BLOCKER=\"command\")"
	}
	var fwd []string
	if c.ForwardingIPv4 {
		fwd = append(fwd, "IPv4")
	}
	if c.ForwardingIPv6 {
		fwd = append(fwd, "IPv6")
	}
	forwards := "this host forwards " + strings.Join(fwd, " and ")
	switch {
	case c.Forward && len(fwd) > 0:
		s := "input and forward: this host's services, and the containers it publishes by DNAT and the hosts it routes for (" + forwards + ")"
		if c.DroppedForward > 0 {
			s += fmt.Sprintf("; %d packets from banned sources dropped on the forward path", c.DroppedForward)
		}
		return s
	case c.Forward:
		return "input and forward: this host's services; it forwards nothing now, and forwarding turned on later (Docker does at its start) is covered at once"
	case len(fwd) > 0:
		return "input only: a banned source still reaches what this host forwards to, containers published by DNAT and routed hosts (" + forwards + "; BAN_FORWARD=\"0\")"
	}
	return "input only: this host's services (BAN_FORWARD=\"0\"; this host forwards nothing)"
}

// ParseTarget reads what unblock accepts: an address ("192.0.2.7",
// "2001:db8::7") or a CIDR prefix ("10.0.0.0/8"; host bits are masked,
// so "10.1.2.3/8" is 10.0.0.0/8). IPv4-mapped IPv6 forms are read as
// IPv4; zones are dropped.
func ParseTarget(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Prefix{}, errors.New("empty address")
	}
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad address %q: want an IP address or a CIDR prefix", s)
		}
		a = a.Unmap().WithZone("")
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	addr, bits, _ := strings.Cut(s, "/")
	// netip.ParsePrefix refuses zones; a zone means nothing in a prefix,
	// so it is dropped like an address's.
	if i := strings.IndexByte(addr, '%'); i >= 0 {
		addr = addr[:i]
	}
	p, err := netip.ParsePrefix(addr + "/" + bits)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad prefix %q: want an IP address or a CIDR prefix", s)
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("bad prefix %q: an IPv4-mapped prefix needs at least /96", s)
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// ParseDuration reads a ban length: a Go duration ("90m", "1h30m"), days
// with an optional remainder ("7d", "1.5d", "1d12h"), or "permanent" (also
// "0") for a ban that never ends, returned as 0. Negative lengths and
// lengths over bans.MaxDuration are refused.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "":
		return 0, errors.New("empty duration")
	case "permanent", "0":
		return 0, nil
	}
	var d time.Duration
	rest := s
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		days, err := strconv.ParseFloat(s[:i], 64)
		if err != nil || days < 0 || math.IsInf(days, 0) || math.IsNaN(days) || strings.ContainsAny(s[:i], "+-eEnNiIxXpP_") {
			return 0, fmt.Errorf("bad duration %q: want e.g. 90m, 12h, 7d or permanent", s)
		}
		if days > float64(bans.MaxDuration/(24*time.Hour))+1 {
			return 0, fmt.Errorf("duration %q is longer than %s: use permanent", s, FormatDuration(bans.MaxDuration))
		}
		d = time.Duration(days * float64(24*time.Hour))
		rest = s[i+1:]
	}
	if rest != "" {
		r, err := time.ParseDuration(rest)
		if err != nil || (d > 0 && strings.HasPrefix(rest, "-")) || (d > 0 && strings.HasPrefix(rest, "+")) {
			return 0, fmt.Errorf("bad duration %q: want e.g. 90m, 12h, 7d or permanent", s)
		}
		if r < 0 {
			return 0, fmt.Errorf("negative duration %q", s)
		}
		if r > bans.MaxDuration {
			return 0, fmt.Errorf("duration %q is longer than %s: use permanent", s, FormatDuration(bans.MaxDuration))
		}
		d += r
	}
	if d > bans.MaxDuration {
		return 0, fmt.Errorf("duration %q is longer than %s: use permanent", s, FormatDuration(bans.MaxDuration))
	}
	return d, nil
}

// FormatDuration writes d as ParseDuration reads it back: "permanent" for
// 0, else days then a Go duration without zero units ("7d", "1d12h",
// "1h30m", "45s").
func FormatDuration(d time.Duration) string {
	const day = 24 * time.Hour
	if d == 0 {
		return "permanent"
	}
	if d < 0 {
		return d.String()
	}
	var b strings.Builder
	if d >= day {
		fmt.Fprintf(&b, "%dd", d/day)
		d %= day
		if d == 0 {
			return b.String()
		}
	}
	s := d.String()
	// "1h30m0s" → "1h30m", "2h0m0s" → "2h".
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	b.WriteString(s)
	return b.String()
}

// roundLag shows a propagation delay: milliseconds below a second.
func roundLag(d time.Duration) string {
	if d < time.Second {
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

func orNone(ss []string) string {
	if len(ss) == 0 {
		return "none"
	}
	return strings.Join(ss, ", ")
}
