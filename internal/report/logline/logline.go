// Package logline formats every line PortSentry users and their tools
// (fail2ban filters, log watchers, init scripts) parse. All compatible
// wording lives here so that it is written once and golden-tested.
package logline

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/portsentry-go/portsentry/internal/event"
)

// Tri is a 2.x log field that is true, false, or not evaluated ("unset").
type Tri uint8

// Tri values.
const (
	Unset Tri = iota
	False
	True
)

// Of turns a bool into a Tri.
func Of(b bool) Tri {
	if b {
		return True
	}
	return False
}

// String returns "true", "false" or "unset".
func (t Tri) String() string {
	switch t {
	case True:
		return "true"
	case False:
		return "false"
	}
	return "unset"
}

// Outcome is what happened to one event, as the 2.x "Scan from" line reports it.
type Outcome struct {
	Ignored, Triggered, NoBlock, Blocked Tri
}

// ScanFrom is the 2.x per-event line:
//
//	Scan from: [10.0.0.5] (10.0.0.5) protocol: [TCP] port: [143] type: [TCP SYN/Normal scan] IP opts: [not set] ignored: [false] triggered: [true] noblock: [false] blocked: [true]
//
// name is the resolved host name, or the address when not resolved.
func ScanFrom(ev event.Event, name string, o Outcome) string {
	return "Scan from: [" + ev.Src.String() + "] (" + name + ") protocol: [" + ev.Proto.String() +
		"] port: [" + strconv.Itoa(int(ev.Port)) + "] type: [" + ev.Describe() +
		"] IP opts: [" + ev.IPOpts.String() + "] ignored: [" + o.Ignored.String() +
		"] triggered: [" + o.Triggered.String() + "] noblock: [" + o.NoBlock.String() +
		"] blocked: [" + o.Blocked.String() + "]"
}

// Attack is 1.2's alert line for a triggering probe:
//
//	attackalert: TCP SYN/Normal scan from host: 10.99.0.1/10.99.0.1 to TCP port: 143
//	attackalert: Connect from host: 10.99.0.1/10.99.0.1 to TCP port: 143
//	attackalert: UDP scan from host: 10.99.0.1/10.99.0.1 to UDP port: 7
func Attack(ev event.Event, name string) string {
	what := ev.Describe()
	if ev.Kind == event.UDPProbe {
		what = "UDP scan"
	}
	return fmt.Sprintf("attackalert: %s from host: %s/%s to %s port: %d", what, name, ev.Src, ev.Proto, ev.Port)
}

// BlockedWrappers reports a hosts.deny entry written.
func BlockedWrappers(target, line string) string {
	return fmt.Sprintf("attackalert: Host %s has been blocked via wrappers with string: %q", target, line)
}

// BlockedRoute reports a KILL_ROUTE command run successfully.
func BlockedRoute(target, command string) string {
	return fmt.Sprintf("attackalert: Host %s has been blocked via dropped route using command: %q", target, command)
}

// BlockedNative reports a block applied by a native blocker, in the words
// of the route line: "…has been blocked via nftables for 1h0m0s".
func BlockedNative(target, blocker, how string) string {
	line := fmt.Sprintf("attackalert: Host %s has been blocked via %s", target, blocker)
	if how != "" {
		line += " " + how
	}
	return line
}

// RanCommand reports a KILL_RUN_CMD run successfully.
func RanCommand(target, command string) string {
	return fmt.Sprintf("attackalert: External command run for host: %s using command: %q", target, command)
}

// ActionFailed reports a response that did not work; the host is then not
// recorded as blocked, so the next probe tries again.
func ActionFailed(target, what string, err error) string {
	return fmt.Sprintf("attackalert: ERROR: %s for host %s failed: %v", what, target, err)
}

// AlreadyBlocked is 1.2's line for a probe from a host blocked earlier.
func AlreadyBlocked(name, addr string) string {
	return fmt.Sprintf("attackalert: Host: %s/%s is already blocked Ignoring", name, addr)
}

// Active is the readiness line that init scripts and test suites wait for.
const Active = "adminalert: PortSentry is now active and listening."

// History12 is one 1.2 history (and blocked file) record, the line stock
// fail2ban's "portsentry" filter matches (\/<HOST> Port\: [0-9]+ (TCP|UDP) Blocked$):
//
//	1795311636 - 11/22/2026 01:40:36 Host: 10.99.0.1/10.99.0.1 Port: 143 TCP Blocked
func History12(t time.Time, name string, ev event.Event) string {
	return fmt.Sprintf("%d - %s Host: %s/%s Port: %d %s Blocked",
		t.Unix(), t.Format("01/02/2006 15:04:05"), name, ev.Src, ev.Port, ev.Proto)
}

// Timestamp2x is the time prefix of 2.x's history and stdout lines.
const Timestamp2x = "2006-01-02T15:04:05.000-0700"

// History2x is one 2.x history record: the time, then the "Scan from" line.
func History2x(t time.Time, scanFrom string) string {
	return t.Format(Timestamp2x) + " " + scanFrom
}

// The daemon's own news, prefixed "adminalert:" as 1.2 prefixes it. Notice,
// Warning and Error carry the message of a component; the named lines below
// are the ones an operator or a script looks for.

// Notice is an adminalert line.
func Notice(msg string) string { return "adminalert: " + msg }

// Warning is an adminalert warning: something is off, the daemon goes on.
func Warning(msg string) string { return "adminalert: WARNING: " + msg }

// Error is an adminalert error: something failed, the daemon goes on.
func Error(msg string) string { return "adminalert: ERROR: " + msg }

// Starting is the first line of a start, with what the settings watch.
func Starting(summary string) string { return "adminalert: PortSentry starting: " + summary }

// ShuttingDown is the last line of a clean stop.
const ShuttingDown = "adminalert: PortSentry is shutting down."

// Reloaded follows a SIGHUP that took effect.
func Reloaded(summary string) string { return "adminalert: configuration reloaded: " + summary }

// ReloadRefused follows a SIGHUP whose files were bad: nothing changed.
func ReloadRefused(err error) string {
	return "adminalert: ERROR: reload refused, keeping the running configuration: " + err.Error()
}

// EventsDropped says the sensors outran the engine and n events were lost.
func EventsDropped(n int64) string {
	return fmt.Sprintf("adminalert: WARNING: %d events dropped: the engine could not keep up", n)
}

// TooManyResponses says a response was not started because the queue of
// responses under way is full.
func TooManyResponses(addr string) string {
	return "adminalert: ERROR: too many responses under way; not responding to " + addr + " now (its next probe retries)"
}

// BansInForce tells, at start, the bans restored from BAN_FILE.
func BansInForce(active, restored int, blocker string, removed int) string {
	return fmt.Sprintf("adminalert: %d bans in force (%d restored to %s, %d stale removed)", active, restored, blocker, removed)
}

// HostsAlreadyBlocked tells, at start, the hosts read from BLOCKED_FILE.
func HostsAlreadyBlocked(n int, path string) string {
	return fmt.Sprintf("adminalert: %d hosts already blocked, from %s", n, path)
}

// TrapSet tells that the kernel trap is installed.
func TrapSet(tcp, udp int) string {
	return fmt.Sprintf("adminalert: kernel trap set on %d TCP and %d UDP ports: a first probe is banned in the packet path", tcp, udp)
}

// Protected says an address that the engine would act on (-L) is local or
// ignored, so it is never blocked.
func Protected(addr string) string {
	return "attackalert: Host " + addr + " is a local or ignored address: not blocking it"
}

// MorePackets sums up the lines held back about a source whose response
// is under way.
func MorePackets(addr string, n int) string {
	return fmt.Sprintf("attackalert: Host: %s sent %d more packets (not logged one by one)", addr, n)
}

// MorePacketsBlocked sums up the lines held back about a blocked source.
func MorePacketsBlocked(name, addr string, n int) string {
	return fmt.Sprintf("attackalert: Host: %s/%s sent %d more packets while blocked (not logged one by one)", name, addr, n)
}

// Forged reports a probe that claims a peer's address (a host with an
// established TCP connection) but arrives with a hop count the peer's own
// packets never had: someone else wrote the address. Never blocked.
func Forged(ev event.Event, hops []uint8) string {
	known := make([]string, len(hops))
	for i, h := range hops {
		known[i] = strconv.Itoa(int(h))
	}
	return fmt.Sprintf("attackalert: Forged probe: %s claiming host %s to %s port: %d arrived with hop count %d, the host's own connections with %s: not blocked",
		ev.Describe(), ev.Src, ev.Proto, ev.Port, ev.TTL, strings.Join(known, ", "))
}

// Unrouted reports a probe whose source fails the reverse-path check: this
// host would not answer it through the interface it came in by, so the
// address is forged (a LAN address arriving from outside). Never blocked.
func Unrouted(ev event.Event) string {
	return fmt.Sprintf("attackalert: Forged probe: %s claiming host %s to %s port: %d came in where this host has no route back to it: not blocked",
		ev.Describe(), ev.Src, ev.Proto, ev.Port)
}

// PeerScanned says why a peer is about to be acted on although its probes
// came from another distance: they reached n distinct ports.
func PeerScanned(addr string, n int) string {
	return fmt.Sprintf("attackalert: Host %s: probes claiming its address from another distance than its connections reached %d ports: a scan, acting on it", addr, n)
}

// FloodBegins says that the daemon sums up single probes from now on.
func FloodBegins(rate int, every time.Duration) string {
	return fmt.Sprintf("attackalert: Flood: %d or more new sources in a second; probes from sources that probed a single port are summarized every %v, not blocked one by one (sources probing more ports still are)", rate, every)
}

// FloodSummary sums up an interval of a flood.
func FloodSummary(probes, sources, tcpPorts, udpPorts int, in time.Duration, ended bool) string {
	s := fmt.Sprintf("attackalert: Flood: %d probes from %d sources to %d TCP and %d UDP ports in %v, each source a single port: summarized, not blocked one by one", probes, sources, tcpPorts, udpPorts, in)
	if ended {
		s += "; the flood is over"
	}
	return s
}

// NotBlocked follows a response whose blocking step failed.
func NotBlocked(addr string) string {
	return fmt.Sprintf("attackalert: ERROR: Host %s was NOT blocked; its next probe will try again", addr)
}

// BlockedByHand follows portsentry block.
func BlockedByHand(addr, how string) string {
	return fmt.Sprintf("attackalert: Host %s blocked by hand %s", addr, how)
}

// Imported follows a ban made on another's word: origin is "crowdsec" or
// "fleet:<member>", reason theirs, how the ban's length (Describe). Worded
// apart from the lines of a detection ("Host ... has been blocked"), so
// that fail2ban's filters never act on another's word.
func Imported(target, origin, reason, how string) string {
	return fmt.Sprintf("attackalert: Host %s banned on %q's word (reason %q) %s", target, origin, reason, how)
}

// Unblocked follows the end of a ban: why is "ban expired" or
// "unblocked by hand".
func Unblocked(addr, why string) string {
	return fmt.Sprintf("attackalert: Host %s unblocked: %s", addr, why)
}

// UnkillRan and UnkillFailed follow an UNKILL_ROUTE command.
func UnkillRan(cmd string) string {
	return fmt.Sprintf("attackalert: ran UNKILL_ROUTE command %q", cmd)
}

// UnkillFailed: see UnkillRan.
func UnkillFailed(cmd string, err error) string {
	return fmt.Sprintf("attackalert: ERROR: UNKILL_ROUTE command %q failed: %v", cmd, err)
}

// Watch is one mode and how many ports it watches, for Status.
type Watch struct {
	Mode  event.Mode
	Ports int
}

// Status is the daemon's one-line state, which `systemctl status` shows:
//
//	atcp on 1023 TCP ports, audp on 1023 UDP ports; 3 bans active; last detection Dec 7 14:02:11: TCP SYN/Normal scan from 10.0.0.5 to TCP port 143
//
// last is the last probe detected; a zero one (no valid source) reads "no
// detection yet".
func Status(watch []Watch, bans int, last event.Event) string {
	var b strings.Builder
	for i, w := range watch {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s on %d %s port", w.Mode, w.Ports, w.Mode.Proto())
		if w.Ports != 1 {
			b.WriteByte('s')
		}
	}
	if len(watch) == 0 {
		b.WriteString("no mode")
	}
	if bans == 1 {
		b.WriteString("; 1 ban active")
	} else {
		fmt.Fprintf(&b, "; %d bans active", bans)
	}
	if !last.Src.IsValid() {
		b.WriteString("; no detection yet")
		return b.String()
	}
	fmt.Fprintf(&b, "; last detection %s: %s from %s to %s port %d", last.Time.Format("Jan 2 15:04:05"), last.Describe(), last.Src, last.Proto, last.Port)
	return b.String()
}

// Revoked follows a ban lifted because its origin lifted it.
func Revoked(addr, by string) string {
	return Unblocked(addr, "lifted by "+by)
}
