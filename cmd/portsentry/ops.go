package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/control"
	"github.com/portsentry-go/portsentry/internal/enforce/bans"
)

// An opCommand is one operator command, described once. opsMain runs its
// phases in order: operands (checked before the daemon is asked anything,
// so a typo is reported as such, not as a daemon that does not answer),
// request (one call on the control socket), present (the answer on
// standard output).
type opCommand struct {
	name     string
	synopsis string // its operands, as the usage writes them
	help     string // one line for the usage
	// operands reads the operands; an error is a usage error, written
	// after "portsentry NAME: ".
	operands func(args []string) (opRequest, error)
	request  func(c *control.Client, r opRequest) (opAnswer, error)
	present  func(w io.Writer, r opRequest, a opAnswer) error
}

// opRequest is what an operator command asks of the daemon.
type opRequest struct {
	target netip.Prefix // block: one address; unblock: an address or a prefix
	// dur is block's ban length; with durSet false (no DURATION operand)
	// it is the configuration's BAN_TIME, as for an automatic first ban.
	dur    time.Duration
	durSet bool
	reason string // block: -reason
}

// opAnswer is the daemon's answer to an opRequest.
type opAnswer struct {
	bans   []bans.Ban // list: in force; block: the one made; unblock: those lifted
	status control.Status
}

// opCommands are the operator commands, in the usage's order.
var opCommands = []opCommand{
	{
		name:     "list",
		help:     "bans in force: address, reason, port, since, expires",
		operands: noOperands,
		request: func(c *control.Client, _ opRequest) (opAnswer, error) {
			bs, err := c.List()
			return opAnswer{bans: bs}, err
		},
		present: func(w io.Writer, _ opRequest, a opAnswer) error {
			return control.PrintList(w, a.bans, time.Now())
		},
	},
	{
		name:     "block",
		synopsis: "ADDRESS [DURATION]",
		help:     "ban by hand (DURATION: 30m, 12h, 7d, permanent; default BAN_TIME)",
		operands: func(args []string) (opRequest, error) {
			var r opRequest
			if len(args) < 1 || len(args) > 2 {
				return r, errors.New("want ADDRESS [DURATION]")
			}
			p, err := control.ParseTarget(args[0])
			if err != nil || !p.IsSingleIP() {
				return r, fmt.Errorf("%q: want one address", args[0])
			}
			r.target = p
			if len(args) == 2 {
				if r.dur, err = control.ParseDuration(args[1]); err != nil {
					return r, err
				}
				r.durSet = true
			}
			return r, nil
		},
		request: func(c *control.Client, r opRequest) (opAnswer, error) {
			b, err := c.Block(r.target.Addr(), r.dur, r.reason)
			return opAnswer{bans: []bans.Ban{b}}, err
		},
		present: func(w io.Writer, _ opRequest, a opAnswer) error {
			b := a.bans[0]
			fmt.Fprintf(w, "blocked %s (%s)\n", b.Addr, expiresText(b.Expires))
			return nil
		},
	},
	{
		name:     "unblock",
		synopsis: "ADDRESS|PREFIX",
		help:     "lift every ban inside it (192.0.2.7, 10.0.0.0/8, 2001:db8::/32)",
		operands: func(args []string) (opRequest, error) {
			var r opRequest
			if len(args) != 1 {
				return r, errors.New("want ADDRESS or PREFIX")
			}
			p, err := control.ParseTarget(args[0])
			r.target = p
			return r, err
		},
		request: func(c *control.Client, r opRequest) (opAnswer, error) {
			lifted, err := c.Unblock(r.target)
			return opAnswer{bans: lifted}, err
		},
		present: func(w io.Writer, r opRequest, a opAnswer) error {
			for _, b := range a.bans {
				fmt.Fprintf(w, "unblocked %s\n", b.Addr)
			}
			if len(a.bans) == 0 {
				fmt.Fprintf(w, "no ban inside %s\n", r.target)
			}
			return nil
		},
	},
	{
		name:     "status",
		help:     "what the daemon runs and holds",
		operands: noOperands,
		request: func(c *control.Client, _ opRequest) (opAnswer, error) {
			st, err := c.Status()
			return opAnswer{status: st}, err
		},
		present: func(w io.Writer, _ opRequest, a opAnswer) error {
			return control.PrintStatus(w, a.status)
		},
	},
}

func noOperands(args []string) (opRequest, error) {
	if len(args) != 0 {
		return opRequest{}, fmt.Errorf("takes no operand, got %q", args[0])
	}
	return opRequest{}, nil
}

// opsUsage documents the operator commands.
var opsUsage = usageOf(opCommands)

func usageOf(ops []opCommand) string {
	var b strings.Builder
	b.WriteString("Operator commands (talk to the running daemon through its control socket):\n")
	for _, op := range ops {
		fmt.Fprintf(&b, "  %-40s %s\n", strings.TrimSpace("portsentry "+op.name+" "+op.synopsis), op.help)
	}
	b.WriteString("Flags: -c FILE (to find CONTROL_SOCKET), -s SOCKET\n")
	return b.String()
}

// lookupOp returns the operator command called name, or nil.
func lookupOp(name string) *opCommand {
	for i := range opCommands {
		if opCommands[i].name == name {
			return &opCommands[i]
		}
	}
	return nil
}

// isOp reports whether name is an operator command.
func isOp(name string) bool { return lookupOp(name) != nil }

// opFlags are the flags every operator command takes.
type opFlags struct {
	conf, sock, reason string
}

// parseOpFlags reads the flags and returns the operands. Flags may come
// before or after the operands ("block ADDR -s SOCK"): the flag package
// stops at the first operand, so parsing goes on after it. When ok is
// false opsMain returns code.
func parseOpFlags(name string, args []string, stderr io.Writer) (f opFlags, operands []string, code int, ok bool) {
	fs := flag.NewFlagSet("portsentry "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.conf, "c", defaultConfig, "configuration `file` naming CONTROL_SOCKET")
	fs.StringVar(&f.sock, "s", "", "control `socket` (default: CONTROL_SOCKET of the configuration)")
	fs.StringVar(&f.reason, "reason", "manual", "block: the reason recorded")
	fs.Usage = func() { fmt.Fprint(stderr, opsUsage) }
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return f, nil, exitOK, false
			}
			return f, nil, exitConfig, false
		}
		if fs.NArg() == 0 {
			return f, operands, 0, true
		}
		operands = append(operands, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// opsMain runs the operator command name (isOp(name) holds) with args,
// its flags and operands.
func opsMain(name string, args []string, stdout, stderr io.Writer) int {
	op := lookupOp(name)
	f, operands, code, ok := parseOpFlags(name, args, stderr)
	if !ok {
		return code
	}
	req, err := op.operands(operands)
	if err != nil {
		fmt.Fprintf(stderr, "portsentry %s: %v\n", name, err)
		fmt.Fprint(stderr, opsUsage)
		return exitConfig
	}
	req.reason = f.reason

	path, banTime := f.sock, time.Duration(0)
	if c, err := config.Load(f.conf); err == nil {
		banTime = c.BanTime
		if path == "" {
			path = c.ControlSocket
		}
	} else if path == "" {
		path = config.DefaultControlSocket
	}
	if !req.durSet {
		req.dur = banTime
	}
	if path == "" {
		fmt.Fprintln(stderr, "portsentry: CONTROL_SOCKET is off in", f.conf)
		return exitConfig
	}

	fail := func(err error) int {
		fmt.Fprintln(stderr, "portsentry:", err)
		return exitFail
	}
	c, err := control.Dial(path)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	ans, err := op.request(c, req)
	if err != nil {
		return fail(err)
	}
	if err := op.present(stdout, req, ans); err != nil {
		return fail(err)
	}
	return exitOK
}

func expiresText(t time.Time) string {
	if t.IsZero() {
		return "permanently"
	}
	return "until " + t.Format(time.RFC3339)
}
