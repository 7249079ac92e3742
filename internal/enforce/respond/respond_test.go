package respond

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portsentry-go/portsentry/internal/enforce/block/command"
	"github.com/portsentry-go/portsentry/internal/engine"
)

var plan = Plan{
	KillRoute:     "/sbin/iptables -I INPUT -s $TARGET$ -j DROP",
	KillRoute6:    "/sbin/ip6tables -I INPUT -s $TARGET$ -j DROP",
	KillHostsDeny: "ALL: $TARGET$ : DENY",
	KillRunCmd:    "/usr/local/bin/alert $TARGET$ $PORT$ $MODE$",
}

func target(addr string) command.Target {
	return command.Target{Addr: netip.MustParseAddr(addr), Port: 143, Mode: "atcp"}
}

func TestSteps(t *testing.T) {
	first := plan
	first.KillRunCmdFirst = true
	noV6 := plan
	noV6.KillRoute6 = ""

	var (
		deny4  = Step{HostsDeny, "ALL: 10.99.0.1 : DENY", true}
		route4 = Step{Route, "/sbin/iptables -I INPUT -s 10.99.0.1 -j DROP", true}
		alert4 = Step{RunCmd, "/usr/local/bin/alert 10.99.0.1 143 atcp", false}
	)
	tests := []struct {
		name   string
		plan   Plan
		resp   engine.Response
		target command.Target
		want   []Step
	}{
		{"block, run cmd after", plan, engine.Block, target("10.99.0.1"),
			[]Step{deny4, route4, alert4}},
		{"block, run cmd first", first, engine.Block, target("10.99.0.1"),
			[]Step{alert4, deny4, route4}},
		{"run only ignores route and hosts.deny", plan, engine.RunOnly, target("10.99.0.1"),
			[]Step{{RunCmd, "/usr/local/bin/alert 10.99.0.1 143 atcp", true}}},
		{"run only, first flag irrelevant", first, engine.RunOnly, target("10.99.0.1"),
			[]Step{{RunCmd, "/usr/local/bin/alert 10.99.0.1 143 atcp", true}}},
		{"log only: nothing", plan, engine.LogOnly, target("10.99.0.1"), nil},
		{"log only, first: nothing", first, engine.LogOnly, target("10.99.0.1"), nil},
		{"ipv6 uses KILL_ROUTE6", plan, engine.Block, target("2001:db8::1"),
			[]Step{
				{HostsDeny, "ALL: [2001:db8::1] : DENY", true}, // hosts_access(5): IPv6 in brackets
				{Route, "/sbin/ip6tables -I INPUT -s 2001:db8::1 -j DROP", true},
				{RunCmd, "/usr/local/bin/alert 2001:db8::1 143 atcp", false},
			}},
		{"mapped ipv6 is ipv4: KILL_ROUTE", plan, engine.Block, target("::ffff:10.99.0.1"),
			[]Step{deny4, route4, alert4}},
		{"ipv6 without KILL_ROUTE6 falls back to KILL_ROUTE", noV6, engine.Block, target("2001:db8::1"),
			[]Step{
				{HostsDeny, "ALL: [2001:db8::1] : DENY", true},
				{Route, "/sbin/iptables -I INPUT -s 2001:db8::1 -j DROP", true},
				{RunCmd, "/usr/local/bin/alert 2001:db8::1 143 atcp", false},
			}},
		{"only KILL_ROUTE", Plan{KillRoute: "route add $TARGET$ 127.0.0.1"}, engine.Block, target("10.99.0.1"),
			[]Step{{Route, "route add 10.99.0.1 127.0.0.1", true}}},
		{"only hosts.deny", Plan{KillHostsDeny: "ALL: $TARGET$"}, engine.Block, target("10.99.0.1"),
			[]Step{{HostsDeny, "ALL: 10.99.0.1", true}}},
		{"only KILL_ROUTE6, ipv4 target: no route", Plan{KillRoute6: "ip6tables -s $TARGET$"}, engine.Block, target("10.99.0.1"),
			nil},
		{"run only without KILL_RUN_CMD: nothing", Plan{KillRoute: "x"}, engine.RunOnly, target("10.99.0.1"), nil},
		{"every token, every step", Plan{
			KillRoute:     "r $TARGET$ $PORT$ $MODE$",
			KillHostsDeny: "d $TARGET$ $PORT$ $MODE$",
			KillRunCmd:    "c $TARGET$ $TARGET$ $PORT$ $MODE$",
		}, engine.Block, command.Target{Addr: netip.MustParseAddr("192.0.2.5"), Port: 7, Mode: "sudp"},
			[]Step{
				{HostsDeny, "d 192.0.2.5 7 sudp", true},
				{Route, "r 192.0.2.5 7 sudp", true},
				{RunCmd, "c 192.0.2.5 192.0.2.5 7 sudp", false},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.plan.Steps(tt.resp, tt.target)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Steps mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// fake records every action in order and fails those it is told to.
type fake struct {
	calls []string
	fail  map[string]bool
	have  map[string]bool // lines already in hosts.deny
}

var errFake = errors.New("fake failure")

func (f *fake) Run(_ context.Context, line string) error {
	f.calls = append(f.calls, "run "+line)
	if f.fail[line] {
		return errFake
	}
	return nil
}

func (f *fake) Add(line string) (bool, error) {
	f.calls = append(f.calls, "deny "+line)
	if f.fail[line] {
		return false, errFake
	}
	return !f.have[line], nil
}

func TestExecute(t *testing.T) {
	const (
		deny  = "ALL: 10.99.0.1 : DENY"
		route = "/sbin/iptables -I INPUT -s 10.99.0.1 -j DROP"
		alert = "/usr/local/bin/alert 10.99.0.1 143 atcp"

		okDeny   = `attackalert: Host 10.99.0.1 has been blocked via wrappers with string: "ALL: 10.99.0.1 : DENY"`
		okRoute  = `attackalert: Host 10.99.0.1 has been blocked via dropped route using command: "/sbin/iptables -I INPUT -s 10.99.0.1 -j DROP"`
		okAlert  = `attackalert: External command run for host: 10.99.0.1 using command: "/usr/local/bin/alert 10.99.0.1 143 atcp"`
		badDeny  = `attackalert: ERROR: writing hosts.deny line "ALL: 10.99.0.1 : DENY" for host 10.99.0.1 failed: fake failure`
		badRoute = `attackalert: ERROR: KILL_ROUTE command "/sbin/iptables -I INPUT -s 10.99.0.1 -j DROP" for host 10.99.0.1 failed: fake failure`
		badAlert = `attackalert: ERROR: KILL_RUN_CMD command "/usr/local/bin/alert 10.99.0.1 143 atcp" for host 10.99.0.1 failed: fake failure`
	)
	first := plan
	first.KillRunCmdFirst = true
	tests := []struct {
		name      string
		plan      Plan
		resp      engine.Response
		addr      string
		fail      []string
		have      []string
		wantCalls []string
		want      Result
	}{
		{
			name: "block, all succeed", plan: plan, resp: engine.Block, addr: "10.99.0.1",
			wantCalls: []string{"deny " + deny, "run " + route, "run " + alert},
			want:      Result{Blocked: true, Lines: []string{okDeny, okRoute, okAlert}},
		},
		{
			name: "block, run cmd first", plan: first, resp: engine.Block, addr: "10.99.0.1",
			wantCalls: []string{"run " + alert, "deny " + deny, "run " + route},
			want:      Result{Blocked: true, Lines: []string{okAlert, okDeny, okRoute}},
		},
		{
			name: "mapped address logged as ipv4", plan: plan, resp: engine.Block, addr: "::ffff:10.99.0.1",
			wantCalls: []string{"deny " + deny, "run " + route, "run " + alert},
			want:      Result{Blocked: true, Lines: []string{okDeny, okRoute, okAlert}},
		},
		{
			name: "line already in hosts.deny still counts", plan: plan, resp: engine.Block, addr: "10.99.0.1",
			have:      []string{deny},
			wantCalls: []string{"deny " + deny, "run " + route, "run " + alert},
			want:      Result{Blocked: true, Lines: []string{okDeny, okRoute, okAlert}},
		},
		{
			// A failed route leaves the host unblocked, but the alert
			// script after it still runs.
			name: "route fails", plan: plan, resp: engine.Block, addr: "10.99.0.1", fail: []string{route},
			wantCalls: []string{"deny " + deny, "run " + route, "run " + alert},
			want:      Result{Blocked: false, FailedSteps: []StepKind{Route}, Lines: []string{okDeny, badRoute, okAlert}},
		},
		{
			name: "hosts.deny fails", plan: plan, resp: engine.Block, addr: "10.99.0.1", fail: []string{deny},
			wantCalls: []string{"deny " + deny, "run " + route, "run " + alert},
			want:      Result{Blocked: false, FailedSteps: []StepKind{HostsDeny}, Lines: []string{badDeny, okRoute, okAlert}},
		},
		{
			name: "block, run cmd fails after: still blocked", plan: plan, resp: engine.Block, addr: "10.99.0.1", fail: []string{alert},
			wantCalls: []string{"deny " + deny, "run " + route, "run " + alert},
			want:      Result{Blocked: true, FailedSteps: []StepKind{RunCmd}, Lines: []string{okDeny, okRoute, badAlert}},
		},
		{
			// A failing alert script must not prevent the block.
			name: "block, run cmd fails first: still blocks", plan: first, resp: engine.Block, addr: "10.99.0.1", fail: []string{alert},
			wantCalls: []string{"run " + alert, "deny " + deny, "run " + route},
			want:      Result{Blocked: true, FailedSteps: []StepKind{RunCmd}, Lines: []string{badAlert, okDeny, okRoute}},
		},
		{
			name: "everything fails", plan: plan, resp: engine.Block, addr: "10.99.0.1", fail: []string{deny, route, alert},
			wantCalls: []string{"deny " + deny, "run " + route, "run " + alert},
			want:      Result{Blocked: false, FailedSteps: []StepKind{HostsDeny, Route, RunCmd}, Lines: []string{badDeny, badRoute, badAlert}},
		},
		{
			name: "run only succeeds", plan: plan, resp: engine.RunOnly, addr: "10.99.0.1",
			wantCalls: []string{"run " + alert},
			want:      Result{Blocked: true, Lines: []string{okAlert}},
		},
		{
			name: "run only fails: not blocked", plan: plan, resp: engine.RunOnly, addr: "10.99.0.1", fail: []string{alert},
			wantCalls: []string{"run " + alert},
			want:      Result{Blocked: false, FailedSteps: []StepKind{RunCmd}, Lines: []string{badAlert}},
		},
		{
			name: "ipv6 route", plan: plan, resp: engine.Block, addr: "2001:db8::1",
			wantCalls: []string{
				"deny ALL: [2001:db8::1] : DENY",
				"run /sbin/ip6tables -I INPUT -s 2001:db8::1 -j DROP",
				"run /usr/local/bin/alert 2001:db8::1 143 atcp",
			},
			want: Result{Blocked: true, Lines: []string{
				`attackalert: Host 2001:db8::1 has been blocked via wrappers with string: "ALL: [2001:db8::1] : DENY"`,
				`attackalert: Host 2001:db8::1 has been blocked via dropped route using command: "/sbin/ip6tables -I INPUT -s 2001:db8::1 -j DROP"`,
				`attackalert: External command run for host: 2001:db8::1 using command: "/usr/local/bin/alert 2001:db8::1 143 atcp"`,
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fake{fail: map[string]bool{}, have: map[string]bool{}}
			for _, l := range tt.fail {
				f.fail[l] = true
			}
			for _, l := range tt.have {
				f.have[l] = true
			}
			a := netip.MustParseAddr(tt.addr)
			steps := tt.plan.Steps(tt.resp, command.Target{Addr: a, Port: 143, Mode: "atcp"})
			got := Executor{Shell: f, Deny: f}.Execute(context.Background(), a, steps)
			if diff := cmp.Diff(tt.wantCalls, f.calls); diff != "" {
				t.Errorf("actions run (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Result mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// ctxRunner checks that the caller's context reaches every command, so a
// shutdown cancels a command in flight.
type ctxRunner struct{ saw []any }

type ctxKey struct{}

func (r *ctxRunner) Run(ctx context.Context, _ string) error {
	r.saw = append(r.saw, ctx.Value(ctxKey{}))
	return ctx.Err()
}

func TestExecutePassesContext(t *testing.T) {
	r := &ctxRunner{}
	ctx := context.WithValue(context.Background(), ctxKey{}, "daemon")
	a := netip.MustParseAddr("10.99.0.1")
	steps := Plan{KillRoute: "r $TARGET$", KillRunCmd: "c $TARGET$"}.Steps(engine.Block, command.Target{Addr: a})
	if res := (Executor{Shell: r}).Execute(ctx, a, steps); !res.Blocked {
		t.Fatalf("Execute = %+v, want blocked", res)
	}
	if diff := cmp.Diff([]any{"daemon", "daemon"}, r.saw); diff != "" {
		t.Errorf("contexts seen (-want +got):\n%s", diff)
	}
}

// A native blocker takes KILL_ROUTE's place in the order of actions, and
// its failure leaves the host unblocked like a failing KILL_ROUTE.
func TestNativeStep(t *testing.T) {
	p := Plan{Native: "nftables", KillRoute: "/sbin/iptables -I INPUT -s $TARGET$ -j DROP",
		KillHostsDeny: "ALL: $TARGET$ : DENY", KillRunCmd: "/usr/local/bin/alert $TARGET$"}
	tgt := command.Target{Addr: netip.MustParseAddr("192.0.2.1"), Port: 23, Mode: "atcp"}
	want := []Step{
		{HostsDeny, "ALL: 192.0.2.1 : DENY", true},
		{Native, "nftables", true},
		{RunCmd, "/usr/local/bin/alert 192.0.2.1", false},
	}
	if diff := cmp.Diff(want, p.Steps(engine.Block, tgt)); diff != "" {
		t.Fatalf("steps (-want +got):\n%s", diff)
	}
	for _, tt := range []struct {
		name    string
		err     error
		blocked bool
		line    string
	}{
		{"ok", nil, true, "attackalert: Host 192.0.2.1 has been blocked via nftables for 1h0m0s"},
		{"fails", errors.New("netlink: operation not permitted"), false,
			`attackalert: ERROR: blocking with nftables for host 192.0.2.1 failed: netlink: operation not permitted`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var banned []netip.Addr
			x := Executor{Shell: okShell{}, Deny: okDeny{}, Ban: func(a netip.Addr) (string, error) {
				banned = append(banned, a)
				return "for 1h0m0s", tt.err
			}}
			res := x.Execute(context.Background(), tgt.Addr, want[1:2])
			if res.Blocked != tt.blocked || len(res.Lines) != 1 || res.Lines[0] != tt.line {
				t.Errorf("Execute = %+v; want blocked %v, line %q", res, tt.blocked, tt.line)
			}
			if len(banned) != 1 || banned[0] != tgt.Addr {
				t.Errorf("Ban called with %v, want [%v]", banned, tgt.Addr)
			}
		})
	}
}

type okShell struct{}

func (okShell) Run(context.Context, string) error { return nil }

type okDeny struct{}

func (okDeny) Add(string) (bool, error) { return true, nil }

// queue is a Background that holds what it is given, or refuses it.
type queue struct {
	lines []string
	dones []func(error)
	full  bool
}

func (q *queue) Submit(_ command.Runner, line string, done func(error)) error {
	if q.full {
		return command.ErrQueueFull
	}
	q.lines = append(q.lines, line)
	q.dones = append(q.dones, done)
	return nil
}

// TestExecuteBackground: a KILL_RUN_CMD ending in "&" goes, without the
// "&", to the bounded background queue instead of a shell that would
// start an unbounded job; a full queue fails the step (logged, counted as
// a failed runcmd) and never waits; a later failure is logged when it
// happens.
func TestExecuteBackground(t *testing.T) {
	const (
		tmpl  = "/usr/local/bin/notify $TARGET$ &"
		line  = "/usr/local/bin/notify 10.99.0.1 &"
		ran   = `attackalert: External command run for host: 10.99.0.1 using command: "/usr/local/bin/notify 10.99.0.1 &"`
		full  = `attackalert: ERROR: KILL_RUN_CMD command "/usr/local/bin/notify 10.99.0.1 &" for host 10.99.0.1 failed: command: background queue full`
		later = `attackalert: ERROR: KILL_RUN_CMD command "/usr/local/bin/notify 10.99.0.1 &" for host 10.99.0.1 failed: fake failure`
	)
	a := netip.MustParseAddr("10.99.0.1")
	p := Plan{KillRoute: "r $TARGET$", KillRunCmd: tmpl}
	for _, resp := range []engine.Response{engine.Block, engine.RunOnly} {
		f := &fake{}
		q := &queue{}
		var late []string
		x := Executor{Shell: f, Deny: f, Background: q, Late: func(l string) { late = append(late, l) }}
		res := x.Execute(context.Background(), a, p.Steps(resp, command.Target{Addr: a}))
		if !res.Blocked || len(res.FailedSteps) != 0 || res.Lines[len(res.Lines)-1] != ran {
			t.Errorf("%v: Execute = %+v; want blocked, %q last", resp, res, ran)
		}
		if slices.Contains(f.calls, "run "+line) || !slices.Equal(q.lines, []string{"/usr/local/bin/notify 10.99.0.1"}) {
			t.Fatalf("%v: shell ran %q, queue got %q; want only the queue, without the &", resp, f.calls, q.lines)
		}
		q.dones[0](errFake)
		if !slices.Equal(late, []string{later}) {
			t.Errorf("%v: late lines %q, want %q", resp, late, later)
		}

		// A full queue: refused at once, a failed runcmd step; under
		// BLOCK=2 the host is then not blocked (its next probe tries again).
		q.full = true
		res = x.Execute(context.Background(), a, p.Steps(resp, command.Target{Addr: a}))
		if res.Blocked != (resp == engine.Block) || !slices.Equal(res.FailedSteps, []StepKind{RunCmd}) || res.Lines[len(res.Lines)-1] != full {
			t.Errorf("%v with a full queue: Execute = %+v; want runcmd failed with %q", resp, res, full)
		}
	}
}

// With IPv6 bans by prefix, the hosts.deny line a ban writes and the one
// its lift removes both name the prefix; IPv4 and single IPv6 addresses
// are as before.
func TestHostsDenyLinePrefix(t *testing.T) {
	lan := netip.MustParsePrefix("2001:db8:ffff::/64")
	p := Plan{KillHostsDeny: "ALL: $TARGET$ : DENY", Cover: func(a netip.Addr) netip.Prefix {
		if a.Is6() && !lan.Contains(a) {
			return netip.PrefixFrom(a, 64).Masked()
		}
		return netip.PrefixFrom(a, a.BitLen())
	}}
	for _, tc := range []struct{ addr, want string }{
		{"2001:db8::7", "ALL: [2001:db8::]/64 : DENY"},
		{"2001:db8:1:2:3:4:5:6", "ALL: [2001:db8:1:2::]/64 : DENY"},
		{"192.0.2.7", "ALL: 192.0.2.7 : DENY"},
		{"2001:db8:ffff::7", "ALL: [2001:db8:ffff::7] : DENY"}, // this host's network: the address
	} {
		a := netip.MustParseAddr(tc.addr)
		if got := p.HostsDenyLine(a); got != tc.want {
			t.Errorf("HostsDenyLine(%s) = %q, want %q", a, got, tc.want)
		}
		steps := p.Steps(engine.Block, command.Target{Addr: a})
		if len(steps) == 0 || steps[0].Text != tc.want {
			t.Errorf("Steps(%s) = %+v, want a hosts.deny step %q", a, steps, tc.want)
		}
	}
	single := Plan{KillHostsDeny: "ALL: $TARGET$ : DENY"}
	if got := single.HostsDenyLine(netip.MustParseAddr("2001:db8::7")); got != "ALL: [2001:db8::7] : DENY" {
		t.Errorf("single-address line %q", got)
	}
}
