package enforce

import (
	"context"
	"sync/atomic"

	"github.com/portsentry-go/portsentry/internal/enforce/block/command"
	"github.com/portsentry-go/portsentry/internal/enforce/respond"
	"github.com/portsentry-go/portsentry/internal/engine"
	"github.com/portsentry-go/portsentry/internal/event"
)

// steps is what responding to ev with v means under c, in order.
func (c *current) steps(ev event.Event, v engine.Verdict) []respond.Step {
	mode := ev.Mode.String()
	if c.Style2x {
		mode = ev.Mode.Style2x()
	}
	return c.Plan.Steps(v.Response, command.Target{Addr: ev.Src, Port: ev.Port, Mode: mode})
}

// routeFirst returns the KILL_ROUTE step of steps when nothing that must
// come before it does: only a hosts.deny line, whose writing does not
// change what the command does, may come first. A KILL_RUN_CMD asked to
// run first (KILL_RUN_CMD_FIRST) keeps its place before the block.
func routeFirst(steps []respond.Step) (respond.Step, bool) {
	for _, s := range steps {
		switch s.Kind {
		case respond.Route:
			return s, true
		case respond.HostsDeny:
		default:
			return respond.Step{}, false
		}
	}
	return respond.Step{}, false
}

// prestarted is a Runner whose KILL_ROUTE command was started before the
// response was queued: the event loop starts it the moment the engine asks
// for a block, with nothing between the probe and the command but the
// decision, and the responder then only waits for it, when the steps come
// to it, as if it ran it there. Every other line goes to the Runner.
type prestarted struct {
	respond.Runner
	line    string
	started atomic.Pointer[command.Started]
}

func (p *prestarted) Run(ctx context.Context, line string) error {
	if line == p.line {
		if s := p.started.Swap(nil); s != nil {
			return s.Wait()
		}
	}
	return p.Runner.Run(ctx, line)
}

// wait ends a started command no step came to (none should): it must not
// outlive its response unwaited.
func (p *prestarted) wait() {
	if s := p.started.Swap(nil); s != nil {
		_ = s.Wait()
	}
}

// prestart starts j's KILL_ROUTE command when its steps allow it (see
// routeFirst) and the shell is the real one, and returns the Runner that
// will wait for it; nil when nothing was started.
func (e *Enforcer) prestart(j *job) *prestarted {
	shell, ok := j.cur.exec.Shell.(command.Shell)
	if !ok {
		return nil
	}
	route, ok := routeFirst(j.steps)
	if !ok {
		return nil
	}
	p := &prestarted{Runner: shell, line: route.Text}
	shell.Raise = routeRaise
	p.started.Store(shell.Start(e.ctx, route.Text))
	return p
}

// routeRaise is how many nice levels more favoured than the daemon a
// prestarted KILL_ROUTE runs. PortSentry 1.2 waits for its block command
// and reads nothing meanwhile; this daemon goes on reading the scanner's
// probes, which on a busy host would otherwise take the CPU from the very
// command that stops them.
const routeRaise = 5
