package fleet

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Subjects. Every member publishes under its own name, one subject per
// address (or prefix lifted), so that the stream, keeping one message per
// subject, holds each member's last word on each address: a ban, or its
// lift. A NATS user per member, allowed to publish only under
// banSubjectPrefix+NAME+".>", makes the subject's member name proof of
// the origin.
const (
	// StreamName is the JetStream stream every member reads and writes.
	StreamName = "PORTSENTRY_FLEET"
	// banSubjectPrefix begins every ban and lift subject:
	// portsentry.fleet.ban.MEMBER.TARGET.
	banSubjectPrefix = "portsentry.fleet.ban."
	// helloSubjectPrefix begins the presence messages (core NATS, not
	// kept): portsentry.fleet.hello.MEMBER.
	helloSubjectPrefix = "portsentry.fleet.hello."
)

// Bounds on what a message may carry: anything larger is refused unread.
const (
	maxMessage = 4096
	maxReason  = 1024
	maxProto   = 16
	// MaxMemberName bounds FLEET_NAME.
	MaxMemberName = 64
)

// Operations a message carries.
const (
	opBan  = "ban"
	opLift = "lift"
)

// message is one ban or lift as it travels. Times are RFC 3339 UTC.
type message struct {
	V       int    `json:"v"`
	Op      string `json:"op"`               // "ban" or "lift"
	Member  string `json:"member"`           // who published it (the subject says it too)
	Addr    string `json:"addr,omitempty"`   // ban: the address
	Prefix  string `json:"prefix,omitempty"` // lift: the address or prefix lifted
	Reason  string `json:"reason,omitempty"` // ban: why ("TCP SYN/Normal scan", "manual")
	Port    uint16 `json:"port,omitempty"`
	Proto   string `json:"proto,omitempty"`
	At      string `json:"at"`                // when the member published it
	Expires string `json:"expires,omitempty"` // ban: when it ends; absent: permanent there
	Count   int    `json:"count,omitempty"`   // ban: how many times the member has banned it
}

// Ban is a ban or a lift read from the fleet, checked.
type Ban struct {
	Lift    bool
	Member  string
	Prefix  netip.Prefix // a single address for a ban
	Reason  string
	Port    uint16
	Proto   string
	At      time.Time
	Expires time.Time // zero: permanent at its origin
	Count   int
}

// Addr is a ban's address.
func (b Ban) Addr() netip.Addr { return b.Prefix.Addr() }

// ValidMember reports whether name can be a member's name: 1 to
// MaxMemberName letters, digits, '-' or '_' (a NATS subject token, and
// safe in a log line).
func ValidMember(name string) bool {
	if name == "" || len(name) > MaxMemberName {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// MemberFromHost makes a member name of a host name: characters outside
// ValidMember's become '-', cut to MaxMemberName.
func MemberFromHost(host string) string {
	b := []byte(host)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '-'
		}
	}
	if len(b) > MaxMemberName {
		b = b[:MaxMemberName]
	}
	if len(b) == 0 {
		return "portsentry"
	}
	return string(b)
}

// target is the last subject token for p: the address's bytes in hex,
// and "_BITS" for a prefix shorter than an address ("c0000207",
// "20010db8000000000000000000000000_64").
func target(p netip.Prefix) string {
	a := p.Addr().Unmap()
	t := hex.EncodeToString(a.AsSlice())
	if p.Bits() != a.BitLen() {
		t += "_" + strconv.Itoa(p.Bits())
	}
	return t
}

// subject is where member's ban or lift of p goes.
func subject(member string, p netip.Prefix) string {
	return banSubjectPrefix + member + "." + target(p)
}

// encodeBan is the message of a ban.
func encodeBan(member string, addr netip.Addr, reason string, port uint16, proto string, at, expires time.Time, count int) ([]byte, string) {
	m := message{V: 1, Op: opBan, Member: member, Addr: addr.String(), Reason: reason, Port: port, Proto: proto,
		At: at.UTC().Format(time.RFC3339Nano), Count: count}
	if !expires.IsZero() {
		m.Expires = expires.UTC().Format(time.RFC3339Nano)
	}
	b, _ := json.Marshal(m) // strings and numbers only: cannot fail
	return b, subject(member, netip.PrefixFrom(addr, addr.BitLen()))
}

// encodeLift is the message of a lift.
func encodeLift(member string, p netip.Prefix, at time.Time) ([]byte, string) {
	m := message{V: 1, Op: opLift, Member: member, Prefix: p.String(), At: at.UTC().Format(time.RFC3339Nano)}
	b, _ := json.Marshal(m)
	return b, subject(member, p)
}

// errMessage wraps every reason a message is refused.
var errMessage = errors.New("fleet: bad message")

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errMessage}, args...)...)
}

// decode reads a message published on subj. The member named by the
// subject must be the one in the message, and the subject's target the
// address or prefix it carries: a member allowed to publish under its own
// name only cannot speak for another.
func decode(subj string, data []byte) (Ban, error) {
	if len(data) > maxMessage {
		return Ban{}, bad("%d bytes", len(data))
	}
	rest, ok := strings.CutPrefix(subj, banSubjectPrefix)
	if !ok {
		return Ban{}, bad("subject %q", subj)
	}
	member, tok, ok := strings.Cut(rest, ".")
	if !ok || !ValidMember(member) {
		return Ban{}, bad("subject %q", subj)
	}
	var m message
	if err := json.Unmarshal(data, &m); err != nil {
		return Ban{}, bad("%v", err)
	}
	if m.V != 1 {
		return Ban{}, bad("version %d", m.V)
	}
	if m.Member != member {
		return Ban{}, bad("member %q published on %q", m.Member, subj)
	}
	b := Ban{Member: member, Reason: m.Reason, Port: m.Port, Proto: m.Proto, Count: m.Count}
	var err error
	if b.At, err = time.Parse(time.RFC3339Nano, m.At); err != nil {
		return Ban{}, bad("at: %v", err)
	}
	switch m.Op {
	case opBan:
		a, err := netip.ParseAddr(m.Addr)
		if err != nil {
			return Ban{}, bad("addr: %v", err)
		}
		a = a.Unmap().WithZone("")
		b.Prefix = netip.PrefixFrom(a, a.BitLen())
		if m.Expires != "" {
			if b.Expires, err = time.Parse(time.RFC3339Nano, m.Expires); err != nil {
				return Ban{}, bad("expires: %v", err)
			}
		}
		if len(m.Reason) > maxReason || !utf8.ValidString(m.Reason) || len(m.Proto) > maxProto || !utf8.ValidString(m.Proto) {
			return Ban{}, bad("reason or proto")
		}
		if m.Count < 0 {
			return Ban{}, bad("count %d", m.Count)
		}
	case opLift:
		b.Lift = true
		p, err := netip.ParsePrefix(m.Prefix)
		if err != nil {
			return Ban{}, bad("prefix: %v", err)
		}
		if p.Addr().Is4In6() || p.Addr().Zone() != "" || p != p.Masked() {
			return Ban{}, bad("prefix %s", p)
		}
		b.Prefix = p
	default:
		return Ban{}, bad("op %q", m.Op)
	}
	if target(b.Prefix) != tok {
		return Ban{}, bad("%s published on %q", b.Prefix, subj)
	}
	return b, nil
}
