package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/control"
	"github.com/portsentry-go/portsentry/internal/enforce/bans"
)

// An opCommand is one operator command, described once. opsMain runs its
// phases in order: flags and operands (checked before the daemon is asked
// anything, so a typo is reported as such, not as a daemon that does not
// answer), request (one call on the control socket), present (the answer
// on standard output).
type opCommand struct {
	name     string
	synopsis string // its operands and own flags, as the usage writes them
	help     string // one line for the usage
	// flags declares the command's own flags (beside -c and -s) into r.
	flags func(fs *flag.FlagSet, r *opRequest)
	// operands reads the operands into r, whose flags are set; an error
	// is a usage error, written after "portsentry NAME: ".
	operands func(args []string, r *opRequest) error
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
	list   listFilter
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
		synopsis: "[ADDRESS|PREFIX] [-origin detected|manual|crowdsec] [-reason TEXT] [-count] [-json]",
		help:     "bans in force (address, reason, port, since, expires), those inside a prefix, of an origin or reason; -count: how many; -json: a JSON array",
		flags:    listFlags,
		operands: listOperands,
		request: func(c *control.Client, _ opRequest) (opAnswer, error) {
			bs, err := c.List()
			return opAnswer{bans: bs}, err
		},
		present: func(w io.Writer, r opRequest, a opAnswer) error {
			return r.list.present(w, a.bans, time.Now())
		},
	},
	{
		name:     "block",
		synopsis: "ADDRESS [DURATION] [-reason TEXT]",
		help:     "ban by hand (DURATION: 30m, 12h, 7d, permanent; default BAN_TIME)",
		flags: func(fs *flag.FlagSet, r *opRequest) {
			fs.StringVar(&r.reason, "reason", "manual", "record `TEXT` as the reason")
		},
		operands: func(args []string, r *opRequest) error {
			if len(args) < 1 || len(args) > 2 {
				return errors.New("want ADDRESS [DURATION]")
			}
			p, err := control.ParseTarget(args[0])
			if err != nil || !p.IsSingleIP() {
				return fmt.Errorf("%q: want one address", args[0])
			}
			r.target = p
			if len(args) == 2 {
				if r.dur, err = control.ParseDuration(args[1]); err != nil {
					return err
				}
				r.durSet = true
			}
			return nil
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
		operands: func(args []string, r *opRequest) error {
			if len(args) != 1 {
				return errors.New("want ADDRESS or PREFIX")
			}
			p, err := control.ParseTarget(args[0])
			r.target = p
			return err
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

func noOperands(args []string, _ *opRequest) error {
	if len(args) != 0 {
		return fmt.Errorf("takes no operand, got %q", args[0])
	}
	return nil
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

// opFlags are the flags every operator command takes.
type opFlags struct {
	conf, sock string
}

// flagSet declares the command's flags, its own and the common ones,
// into f and r.
func (op *opCommand) flagSet(f *opFlags, r *opRequest) *flag.FlagSet {
	fs := newFlagSet("portsentry " + op.name)
	if op.flags != nil {
		op.flags(fs, r)
	}
	fs.StringVar(&f.conf, "c", defaultConfig, "read CONTROL_SOCKET and BAN_TIME from the configuration `FILE`")
	fs.StringVar(&f.sock, "s", "", "control `SOCKET` (default: CONTROL_SOCKET of the configuration)")
	return fs
}

// parseOpFlags reads the flags into f and r and returns the operands.
// Flags may come before or after the operands ("block ADDR -s SOCK"): the
// flag package stops at the first operand, so parsing goes on after it.
func parseOpFlags(fs *flag.FlagSet, args []string) (operands []string, err error) {
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return operands, nil
		}
		operands = append(operands, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// opsMain runs the operator command name (lookupOp finds it) with args,
// its flags and operands.
func opsMain(name string, args []string, stdout, stderr io.Writer) int {
	op := lookupOp(name)
	var f opFlags
	var req opRequest
	operands, err := parseOpFlags(op.flagSet(&f, &req), args)
	if errors.Is(err, flag.ErrHelp) {
		return helpMain([]string{name}, stdout, stderr)
	}
	if err == nil {
		err = op.operands(operands, &req)
	}
	if err != nil {
		return usageError(stderr, name, err)
	}

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
