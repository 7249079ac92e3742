package enforce

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/enforce/block/command"
	"github.com/portsentry-go/portsentry/internal/enforce/respond"
	"github.com/portsentry-go/portsentry/internal/engine"
	"github.com/portsentry-go/portsentry/internal/event"
)

func TestRouteFirst(t *testing.T) {
	deny := respond.Step{Kind: respond.HostsDeny, Text: "ALL: 198.51.100.7", Blocks: true}
	route := respond.Step{Kind: respond.Route, Text: "iptables -I INPUT -s 198.51.100.7 -j DROP", Blocks: true}
	run := respond.Step{Kind: respond.RunCmd, Text: "notify 198.51.100.7"}
	native := respond.Step{Kind: respond.Native, Text: "nftables", Blocks: true}
	for _, tt := range []struct {
		name  string
		steps []respond.Step
		ok    bool
	}{
		{"route alone", []respond.Step{route}, true},
		{"hosts.deny, route, command", []respond.Step{deny, route, run}, true},
		{"command first", []respond.Step{run, deny, route}, false},
		{"native blocker", []respond.Step{deny, native, run}, false},
		{"command only (BLOCK=2)", []respond.Step{run}, false},
		{"hosts.deny only", []respond.Step{deny}, false},
	} {
		got, ok := routeFirst(tt.steps)
		if ok != tt.ok || (ok && got != route) {
			t.Errorf("%s: routeFirst = %+v, %v; want %v", tt.name, got, ok, tt.ok)
		}
	}
}

// TestKillRouteStartsAtTheDecision: with BLOCKER="command" the event loop
// starts KILL_ROUTE itself when the engine asks for a block, before the
// response is queued; the responder waits for it. What is logged, and in
// which order, is as before: hosts.deny, KILL_ROUTE, KILL_RUN_CMD.
func TestKillRouteStartsAtTheDecision(t *testing.T) {
	dir := t.TempDir()
	route := filepath.Join(dir, "kill-route")
	ran := filepath.Join(dir, "ran")
	// A simple command: run directly, without /bin/sh.
	if err := os.WriteFile(route, []byte("#!/bin/sh\necho \"route $*\" >> "+ran+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, rigOptions{command: true, settings: Settings{
		Plan: respond.Plan{
			KillHostsDeny: "ALL: $TARGET$",
			KillRoute:     route + " -s $TARGET$ -j DROP",
			KillRunCmd:    "echo run $TARGET$ >> " + ran,
		},
		HostsDenyFile:  filepath.Join(dir, "hosts.deny"),
		CommandTimeout: 10 * time.Second,
	}})
	r.probe(scanner, 22)
	r.waitLog("External command run for host: " + scanner.String())
	r.settle()
	log := r.log.String()
	wrappers := strings.Index(log, "has been blocked via wrappers")
	dropped := strings.Index(log, "has been blocked via dropped route using command: \""+route+" -s "+scanner.String()+" -j DROP\"")
	external := strings.Index(log, "External command run for host")
	if wrappers < 0 || dropped < wrappers || external < dropped {
		t.Errorf("log lines missing or out of order (hosts.deny, KILL_ROUTE, KILL_RUN_CMD):\n%s", log)
	}
	b, err := os.ReadFile(ran)
	if err != nil {
		t.Fatal(err)
	}
	if want := "route -s " + scanner.String() + " -j DROP\nrun " + scanner.String() + "\n"; string(b) != want {
		t.Errorf("commands ran as %q, want %q", b, want)
	}
	if _, ok := r.e.Jail().Get(scanner); !ok {
		t.Errorf("%s not recorded as blocked", scanner)
	}
}

// TestPrestartStartsBeforeTheResponder: the command runs without any
// responder taking the job; a plan whose KILL_RUN_CMD comes first starts
// nothing early.
func TestPrestartStartsBeforeTheResponder(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "started")
	c := &current{Settings: Settings{Plan: respond.Plan{KillRoute: "touch " + marker}}}
	c.exec.Shell = command.Shell{Timeout: 10 * time.Second}
	e := &Enforcer{ctx: t.Context()}
	ev := event.Event{Src: scanner, Port: 22, Proto: event.TCP, Kind: event.SYN, Mode: event.ModeSTCP}
	j := job{ev: ev, v: engine.Verdict{Action: engine.Respond, Response: engine.Block}, cur: c}
	j.steps = c.steps(ev, j.v)
	p := e.prestart(&j)
	if p == nil {
		t.Fatal("prestart started nothing")
	}
	if err := p.Run(t.Context(), j.steps[0].Text); err != nil {
		t.Fatalf("waiting for the started command: %v", err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("KILL_ROUTE did not run: %v", err)
	}

	c.Plan.KillRunCmd, c.Plan.KillRunCmdFirst = "true", true
	j.steps = c.steps(ev, j.v)
	if p := e.prestart(&j); p != nil {
		p.wait()
		t.Error("prestart started KILL_ROUTE before a KILL_RUN_CMD_FIRST command")
	}
}
