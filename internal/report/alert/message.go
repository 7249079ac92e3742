package alert

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Ports listed by name in a message; the rest are counted.
const (
	mailPorts    = 50
	webhookPorts = 100
)

// message is one alert or summary, before each destination formats it.
type message struct {
	Summary    bool
	Time       time.Time // when it was made
	Sensor     string
	Version    string
	Src        netip.Addr
	Host       string
	Actions    []string
	Kinds      []string
	MoreKinds  int
	BanExpires time.Time
	PortCount  int
	Ports      []uint16 // the lowest, at most webhookPorts
	Probes     int
	First      time.Time
	Last       time.Time
	Since      time.Time // summary: when the previous message was sent
	Held       int       // messages held back by the rate limit before this one
	Lost       int       // notifications dropped (queue or table full) before this one
}

func (e *entry) message(a *Alerter, now time.Time) *message {
	b := &e.b
	m := &message{
		Summary:    e.quiet,
		Time:       now,
		Sensor:     a.cfg.Hostname,
		Version:    a.cfg.Version,
		Src:        e.src,
		Host:       e.host,
		Actions:    b.actions,
		Kinds:      b.kinds,
		MoreKinds:  b.moreKinds,
		BanExpires: b.banExpires,
		PortCount:  b.ports.n,
		Ports:      b.ports.lowest(webhookPorts),
		Probes:     b.probes,
		First:      b.first,
		Last:       b.last,
	}
	if e.quiet {
		m.Since = e.lastSent
	}
	return m
}

// action is the last action, the one that stands.
func (m *message) action() string {
	if len(m.Actions) == 0 {
		return ""
	}
	return m.Actions[len(m.Actions)-1]
}

// who is "10.0.0.5 (scanner.example.net)" or "10.0.0.5".
func (m *message) who() string {
	if m.Host == "" || m.Host == m.Src.String() {
		return m.Src.String()
	}
	return m.Src.String() + " (" + m.Host + ")"
}

// Subject is the one-line summary: the mail subject, the webhook's "text".
func (m *message) Subject() string {
	var s string
	if m.Summary {
		s = fmt.Sprintf("[portsentry %s] %s kept scanning: %s since the alert", m.Sensor, m.who(), plural(m.PortCount, "port"))
	} else {
		s = fmt.Sprintf("[portsentry %s] %s %s: %s", m.Sensor, m.who(), orDash(m.action()), plural(m.PortCount, "port"))
	}
	return cleanLine(s)
}

// Body is the text of the mail.
func (m *message) Body() string {
	var b strings.Builder
	if m.Summary {
		fmt.Fprintf(&b, "Since the alert of %s, %s kept scanning.\n\n", stamp(m.Since), m.who())
	} else {
		fmt.Fprintf(&b, "portsentry %s on %s detected a scan.\n\n", m.Version, m.Sensor)
	}
	row := func(k, v string) {
		if k != "" {
			k += ":"
		}
		fmt.Fprintf(&b, "%-13s%s\n", k, v)
	}
	row("Source", m.who())
	row("Action", orDash(strings.Join(m.Actions, ", then ")))
	if !m.BanExpires.IsZero() {
		row("Ban expires", stamp(m.BanExpires))
	}
	kinds := strings.Join(m.Kinds, "; ")
	if m.MoreKinds > 0 {
		kinds += fmt.Sprintf("; %d more", m.MoreKinds)
	}
	row("Scan types", orDash(kinds))
	row("Ports", fmt.Sprintf("%s, %s", plural(m.PortCount, "distinct port"), plural(m.Probes, "probe")))
	if len(m.Ports) > 0 {
		listed := m.Ports[:min(len(m.Ports), mailPorts)]
		s := joinPorts(listed)
		if m.PortCount > len(listed) {
			s += fmt.Sprintf(" ... (%d more)", m.PortCount-len(listed))
		}
		row("", s)
	}
	row("First probe", stamp(m.First))
	row("Last probe", stamp(m.Last))
	if m.Held > 0 {
		fmt.Fprintf(&b, "\n%s not sent before this one: the hourly limit was reached.\n", plural(m.Held, "alert"))
	}
	if m.Lost > 0 {
		fmt.Fprintf(&b, "\n%s lost before this one: too many at once.\n", plural(m.Lost, "notification"))
	}
	return clean(b.String())
}

// Mail returns the RFC 5322 message, lines ending in "\n" (SMTP's writer
// turns them into CRLF; sendmail wants "\n").
func (m *message) Mail(from string, to []string) []byte {
	var b bytes.Buffer
	h := func(k, v string) { b.WriteString(k + ": " + v + "\n") }
	h("From", from)
	h("To", strings.Join(to, ", "))
	h("Subject", mime.QEncoding.Encode("utf-8", m.Subject()))
	h("Date", m.Time.Format(time.RFC1123Z))
	h("Message-ID", "<"+strconv.FormatInt(m.Time.UnixNano(), 36)+"."+randomHex()+"@"+m.Sensor+">")
	// Auto-Submitted keeps vacation responders from answering (RFC 3834).
	h("Auto-Submitted", "auto-generated")
	h("MIME-Version", "1.0")
	h("Content-Type", "text/plain; charset=utf-8")
	h("Content-Transfer-Encoding", "8bit")
	b.WriteString("\n")
	b.WriteString(m.Body())
	return b.Bytes()
}

// webhookBody is the JSON a webhook receives; every key is always present.
type webhookBody struct {
	Text       string   `json:"text"`
	Type       string   `json:"type"` // "alert" or "summary"
	Sensor     string   `json:"sensor"`
	Version    string   `json:"version"`
	Time       string   `json:"time"`
	Src        string   `json:"src"`
	Host       *string  `json:"host"`
	Action     string   `json:"action"`
	Actions    []string `json:"actions"`
	BanExpires *string  `json:"ban_expires"`
	Kinds      []string `json:"kinds"`
	PortCount  int      `json:"port_count"`
	Ports      []uint16 `json:"ports"`
	Probes     int      `json:"probes"`
	FirstSeen  string   `json:"first_seen"`
	LastSeen   string   `json:"last_seen"`
	Since      *string  `json:"since"`
	Held       int      `json:"held"`
	Lost       int      `json:"lost"`
}

// JSON returns the webhook body.
func (m *message) JSON() ([]byte, error) {
	w := webhookBody{
		Text:      m.Subject(),
		Type:      "alert",
		Sensor:    m.Sensor,
		Version:   m.Version,
		Time:      m.Time.UTC().Format(time.RFC3339),
		Src:       m.Src.String(),
		Action:    m.action(),
		Actions:   nonNil(m.Actions),
		Kinds:     nonNil(m.Kinds),
		PortCount: m.PortCount,
		Ports:     m.Ports,
		Probes:    m.Probes,
		FirstSeen: m.First.UTC().Format(time.RFC3339Nano),
		LastSeen:  m.Last.UTC().Format(time.RFC3339Nano),
		Held:      m.Held,
		Lost:      m.Lost,
	}
	if w.Ports == nil {
		w.Ports = []uint16{}
	}
	if m.Summary {
		w.Type = "summary"
		s := m.Since.UTC().Format(time.RFC3339)
		w.Since = &s
	}
	if m.Host != "" {
		w.Host = &m.Host
	}
	if !m.BanExpires.IsZero() {
		s := m.BanExpires.UTC().Format(time.RFC3339)
		w.BanExpires = &s
	}
	return json.Marshal(&w)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func joinPorts(ps []uint16) string {
	b := make([]byte, 0, len(ps)*6)
	for i, p := range ps {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = strconv.AppendUint(b, uint64(p), 10)
	}
	return string(b)
}

// clean removes control characters but newlines: host names and scan
// types come from outside (a resolver, a packet), and must not forge mail
// headers or send terminal sequences to whoever reads the message.
func clean(s string) string { return strings.Map(printable(true), s) }

// cleanLine is clean for one line: newlines go too.
func cleanLine(s string) string { return strings.Map(printable(false), s) }

func printable(newline bool) func(rune) rune {
	return func(r rune) rune {
		if (r == '\n' && newline) || (r >= ' ' && r != 0x7f && !(r >= 0x80 && r < 0xa0)) {
			return r
		}
		return -1
	}
}

func randomHex() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
