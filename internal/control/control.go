// Package control is the daemon's local control socket and the client the
// operator's commands use (portsentry list, block, unblock, status).
//
// # Protocol
//
// A Unix stream socket (by default /run/portsentry/portsentry.sock, mode
// 0600). Each connection carries one request, a JSON object on one line,
// and one response, a JSON object on one line; then the server closes it.
//
//	{"op":"list"}
//	{"op":"status"}
//	{"op":"block","addr":"192.0.2.7","duration":"1h","reason":"manual"}
//	{"op":"unblock","target":"10.0.0.0/8"}
//
// "duration" takes what ParseDuration does ("90m", "7d", "permanent");
// omitted, the ban is permanent. "reason" defaults to "manual". "target"
// takes what ParseTarget does (an address or a CIDR prefix). Unknown
// fields are refused rather than ignored: a newer client's option must not
// be silently dropped by an older daemon.
//
// Responses:
//
//	{"ok":true,"bans":[{"addr":"192.0.2.7","reason":"manual","since":"…","expires":"…","count":1}]}
//	{"ok":true,"ban":{…}}                  (block)
//	{"ok":true,"bans":[…]}                 (unblock: the bans removed)
//	{"ok":true,"status":{…}}
//	{"ok":false,"code":"bad_request","error":"block: bad address \"x\": …"}
//
// Codes: "bad_request" (the request is wrong), "denied" (the peer may not
// use the socket), "failed" (the daemon could not do it).
//
// # Access
//
// Only root and the daemon's own user may use the socket. The file mode
// (0600) says so to the kernel; the server also checks each peer's
// credentials (SO_PEERCRED) before reading its request, in case the mode
// is changed or the socket is reached some other way.
package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/portsentry-go/portsentry/internal/enforce/bans"
)

// DefaultPath is where the daemon listens unless configured otherwise.
const DefaultPath = "/run/portsentry/portsentry.sock"

// Handler is what the daemon offers the socket. Each call must return
// promptly, and must return (with an error) once the daemon is stopping:
// the server waits for calls under way before Serve returns. Calls come
// from several connections at once; the daemon serializes them (by
// sending each into its event loop, so that they never race the engine).
type Handler interface {
	// List returns the bans in force.
	List() []bans.Ban
	// Block bans addr for d (0: permanent) and applies it, returning the
	// ban recorded. It should refuse addresses never to be banned (the
	// ignore list, this host's own) with an error that says so.
	Block(addr netip.Addr, d time.Duration, reason string) (bans.Ban, error)
	// Unblock lifts every ban inside p and returns those lifted.
	Unblock(p netip.Prefix) ([]bans.Ban, error)
	// Status describes the running daemon.
	Status() Status
}

// Status describes the running daemon.
type Status struct {
	// Version is the daemon's version string.
	Version string `json:"version"`
	// PID is the daemon's process id.
	PID int `json:"pid"`
	// Started is when the daemon started.
	Started time.Time `json:"started"`
	// Modes are the detection modes in force ("tcp", "sudp", "atcp", …).
	Modes []string `json:"modes"`
	// Blocker names the mechanism that applies bans ("nftables",
	// "iptables", "route", "none").
	Blocker string `json:"blocker"`
	// Bans is the number of bans in force.
	Bans int `json:"bans"`
	// Sources is the number of hosts the engine is counting.
	Sources int `json:"sources"`
	// Events is how many events the sensors produced; Dropped how many of
	// them were lost because the engine could not keep up.
	Events  uint64 `json:"events"`
	Dropped uint64 `json:"dropped"`
	// BanFile is the ban store's path ("" when bans are kept in memory).
	BanFile string `json:"ban_file,omitempty"`
	// NextExpiry is when the next ban ends (zero: none will).
	NextExpiry time.Time `json:"next_expiry,omitzero"`
	// Infrastructure is what is never blocked beside the ignore list and
	// this host's addresses; nil when PROTECT_INFRASTRUCTURE is off.
	Infrastructure *Infrastructure `json:"infrastructure,omitempty"`
	// Flooding is set while a flood of single probes from many sources is
	// summarized rather than handled one by one.
	Flooding bool `json:"flooding,omitempty"`
	// Trap is what the kernel trap did since it was set; nil without one.
	Trap *Trap `json:"trap,omitempty"`
	// Coverage is which ways in the bans cover; nil when commands apply
	// them (BLOCKER="command").
	Coverage *Coverage `json:"coverage,omitempty"`
	// Fleet is the daemon in its fleet; nil when in none.
	Fleet *Fleet `json:"fleet,omitempty"`
	// CrowdSec is the daemon's link with a CrowdSec Local API; nil
	// without one (CROWDSEC_*).
	CrowdSec *CrowdSec `json:"crowdsec,omitempty"`
}

// CrowdSec is what the daemon pushes to a CrowdSec Local API and pulls
// from it.
type CrowdSec struct {
	URL  string        `json:"url"`            // the LAPI, without credentials
	Push *CrowdSecPush `json:"push,omitempty"` // nil: bans not pushed
	Pull *CrowdSecPull `json:"pull,omitempty"` // nil: decisions not pulled
}

// CrowdSecPush is the pusher: this host's bans, as alerts.
type CrowdSecPush struct {
	Connected   bool      `json:"connected"`              // the LAPI took the last alerts pushed
	LastPush    time.Time `json:"last_push,omitzero"`     // when alerts last reached it
	LastError   string    `json:"last_error,omitempty"`   // why the last push failed ("": it did not)
	LastErrorAt time.Time `json:"last_error_at,omitzero"` // when
	Pushed      uint64    `json:"pushed"`                 // alerts the LAPI took
	Queued      int       `json:"queued"`                 // bans waiting
	Dropped     uint64    `json:"dropped"`                // bans dropped from a full queue
}

// CrowdSecPull is the puller: CrowdSec's decisions, enforced here.
type CrowdSecPull struct {
	Connected   bool              `json:"connected"`              // the last poll succeeded
	Poll        time.Duration     `json:"poll"`                   // CROWDSEC_POLL
	LastPoll    time.Time         `json:"last_poll,omitzero"`     // when a poll last succeeded
	LastError   string            `json:"last_error,omitempty"`   // why the last poll failed ("": it did not)
	LastErrorAt time.Time         `json:"last_error_at,omitzero"` // when
	Pulled      uint64            `json:"pulled"`                 // decisions read
	Applied     uint64            `json:"applied"`                // bans imported
	Lifted      uint64            `json:"lifted"`                 // bans lifted: their decisions deleted or expired
	Refused     map[string]uint64 `json:"refused,omitempty"`      // refused by local policy, by why: "protected", "peer"
	Skipped     uint64            `json:"skipped"`                // not a ban of an address
	Failed      uint64            `json:"failed"`                 // imports or lifts that failed
	Followed    int               `json:"followed"`               // decisions followed now
}

// Fleet is the daemon's view of its fleet (FLEET_URL, FLEET_LISTEN).
type Fleet struct {
	Name      string        `json:"name"`               // this member
	Connected bool          `json:"connected"`          // to a NATS server now
	Server    string        `json:"server,omitempty"`   // the server connected to, last
	Embedded  string        `json:"embedded,omitempty"` // the embedded server's address
	Members   []string      `json:"members"`            // heard from within a minute, this one included
	Lag       time.Duration `json:"lag"`                // how old the last ban applied was
	Pending   uint64        `json:"pending"`            // messages of the fleet not read yet
	Out       uint64        `json:"out"`                // bans and lifts shared
	Queued    int           `json:"queued"`             // waiting to be shared
	Dropped   uint64        `json:"dropped,omitempty"`  // dropped from a full queue
	In        uint64        `json:"in"`                 // others' bans and lifts read
	Applied   uint64        `json:"applied"`            // bans applied here
	Refused   uint64        `json:"refused"`            // refused by local policy
	Throttled uint64        `json:"throttled"`          // dropped: their member over FLEET_MAX_RATE
}

// Coverage says which ways into this host the bans cover, and which of
// them are in use.
type Coverage struct {
	Input   bool `json:"input"`   // traffic for this host's own sockets
	Forward bool `json:"forward"` // traffic it forwards: containers published by DNAT, routed hosts
	// ForwardingIPv4 and ForwardingIPv6 say whether the host forwards
	// (net.ipv4.ip_forward, net.ipv6.conf.all.forwarding).
	ForwardingIPv4 bool `json:"forwarding_ipv4"`
	ForwardingIPv6 bool `json:"forwarding_ipv6"`
	// DroppedForward counts packets from banned sources dropped on the
	// forward path (nftables only; 0 elsewhere).
	DroppedForward uint64 `json:"dropped_forward,omitempty"`
}

// Trap counts the packets the kernel trap dropped, by why.
type Trap struct {
	Trapped  uint64 `json:"trapped"`  // probes that banned their source
	Forged   uint64 `json:"forged"`   // a peer's address from another distance: not banned
	Unrouted uint64 `json:"unrouted"` // failed the reverse-path check: not banned
	Served   uint64 `json:"served"`   // to a port served within SERVICE_GRACE: not banned
	Unbanned uint64 `json:"unbanned"` // the ban set was full, or a flood was summarized: not banned
}

// Infrastructure lists the protected addresses by kind.
type Infrastructure struct {
	NameServers []string `json:"name_servers"`
	Gateways    []string `json:"gateways"`
	Sessions    []string `json:"sessions"` // administrators logged in from
}

// Errors callers branch on. A *RemoteError from the daemon matches
// ErrDenied or ErrBadRequest (errors.Is) by its code.
var (
	// ErrNotRunning: nothing answers on the socket.
	ErrNotRunning = errors.New("control: the daemon is not running")
	// ErrDenied: the peer may not use the socket.
	ErrDenied = errors.New("control: permission denied")
	// ErrBadRequest: the daemon could not understand the request.
	ErrBadRequest = errors.New("control: bad request")
	// ErrInUse: Listen found another daemon answering on the socket.
	ErrInUse = errors.New("control: socket in use by a running daemon")
)

// Response codes.
const (
	codeBadRequest = "bad_request"
	codeDenied     = "denied"
	codeFailed     = "failed"
)

// RemoteError is an error the daemon answered with.
type RemoteError struct {
	Code    string // "bad_request", "denied", "failed"
	Message string
}

// Error gives the daemon's message.
func (e *RemoteError) Error() string { return "control: daemon: " + e.Message }

// Is matches ErrDenied and ErrBadRequest by code.
func (e *RemoteError) Is(target error) bool {
	switch target {
	case ErrDenied:
		return e.Code == codeDenied
	case ErrBadRequest:
		return e.Code == codeBadRequest
	}
	return false
}

// Limits.
const (
	// maxRequest bounds a request line: the largest real one is a few
	// hundred bytes.
	maxRequest = 4096
	// maxReason bounds a manual ban's reason, which goes into logs.
	maxReason = 200
)

const (
	opList    = "list"
	opStatus  = "status"
	opBlock   = "block"
	opUnblock = "unblock"
)

// wireRequest is a request line.
type wireRequest struct {
	Op       string `json:"op"`
	Addr     string `json:"addr,omitempty"`
	Duration string `json:"duration,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Target   string `json:"target,omitempty"`
}

// request is a request checked.
type request struct {
	op     string
	addr   netip.Addr
	dur    time.Duration
	reason string
	target netip.Prefix
}

// wireBan is a ban in a response.
type wireBan struct {
	Addr    netip.Addr `json:"addr"`
	Reason  string     `json:"reason"`
	Port    uint16     `json:"port,omitempty"`
	Proto   string     `json:"proto,omitempty"`
	Since   time.Time  `json:"since"`
	Expires time.Time  `json:"expires,omitzero"`
	Count   int        `json:"count"`
	Origin  string     `json:"origin,omitempty"` // "" for this host's own
	Bits    int        `json:"bits,omitempty"`   // the ban covers addr/bits (an IPv6 prefix)
}

func toWire(b bans.Ban) wireBan {
	return wireBan{Addr: b.Addr, Reason: b.Reason, Port: b.Port, Proto: b.Proto, Since: b.Since, Expires: b.Expires, Count: b.Count, Origin: b.Origin, Bits: b.Bits}
}

func fromWire(w wireBan) bans.Ban {
	b := bans.Ban{Addr: w.Addr.Unmap().WithZone(""), Reason: w.Reason, Port: w.Port, Proto: w.Proto, Since: w.Since, Expires: w.Expires, Count: w.Count, Origin: w.Origin}
	if w.Bits > 0 && w.Bits <= b.Addr.BitLen() {
		b.Bits = w.Bits
	}
	return b
}

// wireResponse is a response line.
type wireResponse struct {
	OK     bool      `json:"ok"`
	Code   string    `json:"code,omitempty"`
	Error  string    `json:"error,omitempty"`
	Bans   []wireBan `json:"bans,omitempty"`
	Ban    *wireBan  `json:"ban,omitempty"`
	Status *Status   `json:"status,omitempty"`
}

// badRequest is a request the server refuses, with the reason sent back.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

func badf(format string, args ...any) error {
	return &badRequest{msg: fmt.Sprintf(format, args...)}
}

// decodeRequest reads and checks one request line. Every error is a
// *badRequest whose message the client shows the operator.
func decodeRequest(line []byte) (request, error) {
	var w wireRequest
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return request{}, badf("request is not a JSON object of known fields: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return request{}, badf("request has data after its JSON object")
	}
	r := request{op: w.Op}
	// Fields that do not belong to the operation are refused too.
	extra := func(names ...string) error {
		vals := map[string]string{"addr": w.Addr, "duration": w.Duration, "reason": w.Reason, "target": w.Target}
		for _, n := range names {
			if vals[n] != "" {
				return badf("%s: unexpected field %q", w.Op, n)
			}
		}
		return nil
	}
	switch w.Op {
	case opList, opStatus:
		return r, extra("addr", "duration", "reason", "target")
	case opBlock:
		if err := extra("target"); err != nil {
			return r, err
		}
		a, err := netip.ParseAddr(strings.TrimSpace(w.Addr))
		if err != nil {
			return r, badf("block: bad address %q: want one IPv4 or IPv6 address", w.Addr)
		}
		r.addr = a.Unmap().WithZone("")
		if r.addr.IsUnspecified() {
			return r, badf("block: %s is not a host address", r.addr)
		}
		if w.Duration != "" {
			if r.dur, err = ParseDuration(w.Duration); err != nil {
				return r, badf("block: %v", err)
			}
		}
		r.reason = strings.TrimSpace(w.Reason)
		if r.reason == "" {
			r.reason = "manual"
		}
		if len(r.reason) > maxReason {
			return r, badf("block: reason longer than %d bytes", maxReason)
		}
		if !utf8.ValidString(r.reason) || strings.ContainsFunc(r.reason, unicode.IsControl) {
			return r, badf("block: reason holds control characters or invalid UTF-8")
		}
		return r, nil
	case opUnblock:
		if err := extra("addr", "duration", "reason"); err != nil {
			return r, err
		}
		p, err := ParseTarget(w.Target)
		if err != nil {
			return r, badf("unblock: %v", err)
		}
		r.target = p
		return r, nil
	case "":
		return r, badf(`request has no "op"`)
	default:
		return r, badf("unknown op %q (want list, status, block or unblock)", w.Op)
	}
}

// encodeRequest is the wire form of r (the client's side of
// decodeRequest).
func encodeRequest(r request) wireRequest {
	w := wireRequest{Op: r.op}
	switch r.op {
	case opBlock:
		w.Addr = r.addr.String()
		w.Duration = FormatDuration(r.dur)
		w.Reason = r.reason
	case opUnblock:
		w.Target = r.target.String()
	}
	return w
}
