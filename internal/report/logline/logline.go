// Package logline formats every line PortSentry users and their tools
// (fail2ban filters, log watchers, init scripts) parse. All compatible
// wording lives here so that it is written once and golden-tested.
package logline

import (
	"fmt"
	"strconv"
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
