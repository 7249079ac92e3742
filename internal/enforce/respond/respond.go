// Package respond turns a decision to act on a host into PortSentry's
// ordered actions and runs them:
//
//	BLOCK=1: [KILL_RUN_CMD if KILL_RUN_CMD_FIRST=1] → hosts.deny → KILL_ROUTE → [KILL_RUN_CMD if FIRST=0]
//	BLOCK=2: KILL_RUN_CMD only
//
// The host counts as blocked only when every blocking step succeeded.
package respond

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"

	"github.com/portsentry-go/portsentry/internal/enforce/block/command"
	"github.com/portsentry-go/portsentry/internal/engine"
	"github.com/portsentry-go/portsentry/internal/report/logline"
)

// StepKind says what a step does.
type StepKind uint8

// Step kinds.
const (
	RunCmd    StepKind = iota // KILL_RUN_CMD
	HostsDeny                 // a KILL_HOSTS_DENY line appended to hosts.deny
	Route                     // KILL_ROUTE (or KILL_ROUTE6 for an IPv6 target)
	Native                    // the native blocker (BLOCKER=nftables, iptables, route)
)

// Step is one action with its template already expanded.
type Step struct {
	Kind StepKind
	Text string // the command line, or the hosts.deny line
	// Blocks is true when the host counts as blocked only if this step
	// succeeds: hosts.deny and KILL_ROUTE, and KILL_RUN_CMD under BLOCK=2.
	Blocks bool
}

// Plan is the response configuration (the KILL_* keys).
type Plan struct {
	// Native names the native blocker ("nftables", "iptables", "route");
	// when set it takes KILL_ROUTE's place in the order of actions.
	Native                string
	KillRoute, KillRoute6 string
	KillHostsDeny         string
	KillRunCmd            string
	KillRunCmdFirst       bool
	// UnkillRoute and UnkillRoute6 lift a KILL_ROUTE ban (UNKILL_ROUTE*).
	UnkillRoute, UnkillRoute6 string
	// Cover, when set, is the prefix a ban of an address covers (an IPv6
	// /64 with BAN_PREFIX6 and nftables, off this host's own networks): a
	// hosts.deny line then names the prefix ("[2001:db8::]/64"), as the
	// ban does. nil: the address alone.
	Cover func(netip.Addr) netip.Prefix
}

// denyTemplate is KILL_HOSTS_DENY ready for addr: hosts_access wants IPv6
// in brackets, and a prefix as [net]/bits.
func (p Plan) denyTemplate(addr netip.Addr) string {
	addr = addr.Unmap()
	if p.Cover != nil {
		if c := p.Cover(addr); addr.Is6() && c.Bits() < 128 {
			return strings.ReplaceAll(p.KillHostsDeny, "$TARGET$", "["+c.Masked().Addr().String()+"]/"+strconv.Itoa(c.Bits()))
		}
	}
	return wrappersTemplate(p.KillHostsDeny, addr)
}

// HostsDenyLine is the hosts.deny line a block of addr wrote ("" when
// KILL_HOSTS_DENY is unset), so that lifting the ban can remove it.
func (p Plan) HostsDenyLine(addr netip.Addr) string {
	if p.KillHostsDeny == "" {
		return ""
	}
	return command.Expand(p.denyTemplate(addr), command.Target{Addr: addr})
}

// UnblockCommand is the UNKILL_ROUTE (or UNKILL_ROUTE6) command lifting a
// KILL_ROUTE ban of addr; "" when none is configured.
func (p Plan) UnblockCommand(addr netip.Addr) string {
	tmpl := p.UnkillRoute
	if addr.Unmap().Is6() && p.UnkillRoute6 != "" {
		tmpl = p.UnkillRoute6
	}
	if tmpl == "" {
		return ""
	}
	return command.Expand(tmpl, command.Target{Addr: addr, Mode: "unblock"})
}

// Steps lists, in order, what responding with resp to t means.
func (p Plan) Steps(resp engine.Response, t command.Target) []Step {
	var steps []Step
	run := func(blocks bool) {
		if p.KillRunCmd != "" {
			steps = append(steps, Step{RunCmd, command.Expand(p.KillRunCmd, t), blocks})
		}
	}
	switch resp {
	case engine.RunOnly:
		run(true)
	case engine.Block:
		if p.KillRunCmdFirst {
			run(false)
		}
		if p.KillHostsDeny != "" {
			steps = append(steps, Step{HostsDeny, command.Expand(p.denyTemplate(t.Addr), t), true})
		}
		route := p.KillRoute
		if t.Addr.Unmap().Is6() && p.KillRoute6 != "" {
			route = p.KillRoute6
		}
		switch {
		case p.Native != "":
			steps = append(steps, Step{Native, p.Native, true})
		case route != "":
			steps = append(steps, Step{Route, command.Expand(route, t), true})
		}
		if !p.KillRunCmdFirst {
			run(false)
		}
	}
	return steps
}

// wrappersTemplate writes an IPv6 target as TCP wrappers want it in
// hosts.deny, in brackets (hosts_access(5)); IPv4 is left alone.
func wrappersTemplate(template string, addr netip.Addr) string {
	if addr.Unmap().Is6() {
		return strings.ReplaceAll(template, "$TARGET$", "[$TARGET$]")
	}
	return template
}

// Runner runs a shell command line (command.Shell in production).
type Runner interface {
	Run(ctx context.Context, line string) error
}

// DenyWriter appends a line to hosts.deny (hostsdeny.Writer in production,
// which batches the rewrites of the file).
type DenyWriter interface {
	Add(line string) (bool, error)
}

// Background runs commands nobody waits for, bounded (command.Queue in
// production).
type Background interface {
	Submit(r command.Runner, line string, done func(error)) error
}

// Executor runs steps.
type Executor struct {
	Shell Runner
	Deny  DenyWriter
	// Ban applies a native block to addr and describes it for the log
	// ("for 1h0m0s", "permanently"); nil when there is no native blocker.
	Ban func(addr netip.Addr) (string, error)
	// Background, when set, runs a KILL_RUN_CMD that ends in "&" (see
	// command.Backgrounded) without the "&": a job /bin/sh starts is
	// bounded by nothing, one in Background is queued, timed and run a few
	// at a time. A full queue fails the step.
	Background Background
	// Late, when set, is given the log line of a background command that
	// failed after Execute returned.
	Late func(line string)
}

// Result is the outcome of running the steps for one host.
type Result struct {
	Blocked bool     // every blocking step succeeded
	Lines   []string // the attackalert lines to log, in order
	// FailedSteps are the kinds of the steps that failed, in order.
	FailedSteps []StepKind
}

// Execute runs steps in order for addr. A failed step does not stop the
// ones after it (a failing alert script must not prevent the block), but a
// failed blocking step leaves the host unblocked.
func (x Executor) Execute(ctx context.Context, addr netip.Addr, steps []Step) Result {
	target := addr.Unmap().String()
	res := Result{Blocked: true}
	for _, s := range steps {
		var err error
		var line string
		switch s.Kind {
		case HostsDeny:
			_, err = x.Deny.Add(s.Text)
			line = logline.BlockedWrappers(target, s.Text)
		case Route:
			err = x.Shell.Run(ctx, s.Text)
			line = logline.BlockedRoute(target, s.Text)
		case Native:
			var how string
			if x.Ban == nil {
				err = errors.New("no native blocker")
			} else {
				how, err = x.Ban(addr)
			}
			line = logline.BlockedNative(target, s.Text, how)
		case RunCmd:
			if bg, ok := command.Backgrounded(s.Text); ok && x.Background != nil {
				err = x.Background.Submit(x.Shell, bg, x.late(target, s))
			} else {
				err = x.Shell.Run(ctx, s.Text)
			}
			line = logline.RanCommand(target, s.Text)
		}
		if err != nil {
			res.FailedSteps = append(res.FailedSteps, s.Kind)
			line = logline.ActionFailed(target, s.describe(), err)
			if s.Blocks {
				res.Blocked = false
			}
		}
		res.Lines = append(res.Lines, line)
	}
	return res
}

// late is the callback of a background step: its failure is logged when
// it happens.
func (x Executor) late(target string, s Step) func(error) {
	if x.Late == nil {
		return nil
	}
	return func(err error) {
		if err != nil {
			x.Late(logline.ActionFailed(target, s.describe(), err))
		}
	}
}

func (s Step) describe() string {
	switch s.Kind {
	case HostsDeny:
		return "writing hosts.deny line " + quote(s.Text)
	case Route:
		return "KILL_ROUTE command " + quote(s.Text)
	case Native:
		return "blocking with " + s.Text
	}
	return "KILL_RUN_CMD command " + quote(s.Text)
}

func quote(s string) string { return "\"" + s + "\"" }
