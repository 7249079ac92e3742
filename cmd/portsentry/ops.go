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
)

// opsUsage documents the operator commands.
const opsUsage = `Operator commands (talk to the running daemon through its control socket):
  portsentry list                          bans in force: address, reason, port, since, expires
  portsentry block ADDRESS [DURATION]      ban by hand (DURATION: 30m, 12h, 7d, permanent; default BAN_TIME)
  portsentry unblock ADDRESS|PREFIX        lift every ban inside it (192.0.2.7, 10.0.0.0/8, 2001:db8::/32)
  portsentry status                        what the daemon runs and holds
Flags: -c FILE (to find CONTROL_SOCKET), -s SOCKET
`

// isOp reports whether name is an operator command.
func isOp(name string) bool {
	switch name {
	case "list", "block", "unblock", "status":
		return true
	}
	return false
}

func opsMain(name string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("portsentry "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	conf := fs.String("c", defaultConfig, "configuration `file` naming CONTROL_SOCKET")
	sock := fs.String("s", "", "control `socket` (default: CONTROL_SOCKET of the configuration)")
	reason := fs.String("reason", "manual", "block: the reason recorded")
	fs.Usage = func() { fmt.Fprint(stderr, opsUsage) }
	// Flags may come before or after the operands ("block ADDR -s SOCK"):
	// the flag package stops at the first operand, so parse on after it.
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return exitOK
			}
			return exitConfig
		}
		if fs.NArg() == 0 {
			break
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
	// The operands are checked before the daemon is asked anything, so a
	// typo is reported as such, not as a daemon that does not answer.
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "portsentry %s: "+format+"\n", append([]any{name}, a...)...)
		fmt.Fprint(stderr, opsUsage)
		return exitConfig
	}
	var target netip.Prefix
	var dur time.Duration
	switch name {
	case "list", "status":
		if len(rest) != 0 {
			return usage("takes no operand, got %q", rest[0])
		}
	case "block":
		if len(rest) < 1 || len(rest) > 2 {
			return usage("want ADDRESS [DURATION]")
		}
		p, err := control.ParseTarget(rest[0])
		if err != nil || !p.IsSingleIP() {
			return usage("%q: want one address", rest[0])
		}
		target = p
	case "unblock":
		if len(rest) != 1 {
			return usage("want ADDRESS or PREFIX")
		}
		p, err := control.ParseTarget(rest[0])
		if err != nil {
			return usage("%v", err)
		}
		target = p
	}
	path, banTime := *sock, time.Duration(0)
	if c, err := config.Load(*conf); err == nil {
		banTime = c.BanTime
		if path == "" {
			path = c.ControlSocket
		}
	} else if path == "" {
		path = config.DefaultControlSocket
	}
	if name == "block" {
		dur = banTime // as an automatic first ban, unless told
		if len(rest) == 2 {
			var err error
			if dur, err = control.ParseDuration(rest[1]); err != nil {
				return usage("%v", err)
			}
		}
	}
	if path == "" {
		fmt.Fprintln(stderr, "portsentry: CONTROL_SOCKET is off in", *conf)
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
	switch name {
	case "list":
		bs, err := c.List()
		if err != nil {
			return fail(err)
		}
		if err := control.PrintList(stdout, bs, time.Now()); err != nil {
			return fail(err)
		}
	case "status":
		st, err := c.Status()
		if err != nil {
			return fail(err)
		}
		if err := control.PrintStatus(stdout, st); err != nil {
			return fail(err)
		}
	case "block":
		b, err := c.Block(target.Addr(), dur, *reason)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "blocked %s (%s)\n", b.Addr, expiresText(b.Expires))
	case "unblock":
		lifted, err := c.Unblock(target)
		if err != nil {
			return fail(err)
		}
		for _, b := range lifted {
			fmt.Fprintf(stdout, "unblocked %s\n", b.Addr)
		}
		if len(lifted) == 0 {
			fmt.Fprintf(stdout, "no ban inside %s\n", target)
		}
	}
	return exitOK
}

func expiresText(t time.Time) string {
	if t.IsZero() {
		return "permanently"
	}
	return "until " + t.Format(time.RFC3339)
}
