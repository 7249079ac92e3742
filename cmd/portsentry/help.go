package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/portsentry-go/portsentry/internal/selftest"
)

// A command is one subcommand: what run dispatches to, and what the help
// says of it. Adding a command is adding it here.
type command struct {
	name     string
	synopsis string // operands and flags after the name
	help     string // one line
	// detail writes the command's own help (`portsentry help NAME`).
	detail func(w io.Writer)
	// run runs it with the arguments after its name; nil for check, which
	// takes the daemon's flags and is run by run itself.
	run func(args []string, stdout, stderr io.Writer) int
}

// commands are the subcommands, in the help's order.
func commands() []command {
	cs := []command{
		{name: "check", synopsis: "[-c FILE] [-unit FILE|none]",
			help:   "check the configuration, and that the files it names can be written under the systemd unit; exit 0, or 2 on errors",
			detail: checkHelp},
		{name: "selftest", synopsis: "[-v] [-keep] [-timeout D] [-bin FILE]",
			help:   "prove detection and blocking work on this host, in throwaway network namespaces (root)",
			detail: selftest.Usage, run: selftestMain},
	}
	for i := range opCommands {
		op := &opCommands[i]
		cs = append(cs, command{name: op.name, synopsis: op.synopsis, help: op.help, detail: op.writeHelp,
			run: func(args []string, stdout, stderr io.Writer) int { return opsMain(op.name, args, stdout, stderr) }})
	}
	cs = append(cs, command{name: "report", synopsis: "[-since WHEN] [-until WHEN] [-top N] [-html FILE] [-c FILE]",
		help:   "the attacks of a period (default the last 7 days) from the event log, the history and the ban file: a table, and with -html one self-contained page",
		detail: reportHelp, run: reportMain})
	return append(cs, command{name: "help", synopsis: "[COMMAND]", help: "this help, or a command's",
		detail: func(w io.Writer) { writeUsage(w) }, run: helpMain})
}

func lookupCommand(name string) *command {
	for _, c := range commands() {
		if c.name == name {
			return &c
		}
	}
	return nil
}

// writeUsage writes the help of `portsentry help`, `-h` and `--help`.
func writeUsage(w io.Writer) {
	fmt.Fprint(w, `Usage:
  portsentry [FLAGS]                run the daemon, in the foreground (-D: in the background)
  portsentry COMMAND [ARGUMENTS]    see 'portsentry help COMMAND'

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %s\n%s", strings.TrimSpace(c.name+" "+c.synopsis), wrap(c.help, "        ", 79))
	}
	fmt.Fprint(w, `
list, block, unblock and status ask the running daemon, through its control
socket (-s SOCKET, or CONTROL_SOCKET of the configuration: -c FILE).

Daemon flags (PortSentry 1.2 and 2.x spellings; check takes them too):
`)
	fs := newFlagSet("portsentry")
	daemonFlags(fs, &cli{})
	writeFlags(w, fs, daemonFlagOrder)
	fmt.Fprint(w, `
Modes come from the mode flags, else TCP_MODE and UDP_MODE of
/etc/default/portsentry (read when -c is not given), else of the
configuration, else connect mode on TCP and UDP.

Exit status: 0 success; 1 failure while running; 2 bad usage or
configuration (nothing was started).
See portsentry(8) and portsentry.conf(5).
`)
}

// daemonFlagOrder is the order in which the help lists the daemon's
// flags (the flag package keeps none); a flag left out of it is still
// listed, after these (TestHelpListsEveryFlag keeps it complete).
var daemonFlagOrder = []string{"c", "defaults", "tcp", "udp", "stcp", "sudp", "atcp", "audp", "connect", "stealth", "i", "m", "S", "L", "l", "D", "d", "v", "V", "version"}

// ordered returns fs's flags: those named in order first, in that order,
// then the others by name.
func ordered(fs *flag.FlagSet, order []string) []*flag.Flag {
	var out []*flag.Flag
	seen := map[string]bool{}
	for _, name := range order {
		if f := fs.Lookup(name); f != nil {
			out = append(out, f)
			seen[name] = true
		}
	}
	fs.VisitAll(func(f *flag.Flag) {
		if !seen[f.Name] {
			out = append(out, f)
		}
	})
	return out
}

// writeFlags writes fs's flags, one a line: "-c FILE  configuration file
// (default …)". The 2.x long flags are written with two dashes, as 2.x
// documents them; either spelling works.
func writeFlags(w io.Writer, fs *flag.FlagSet, order []string) {
	type row struct{ spelled, usage string }
	var rows []row
	col := 0
	for _, f := range ordered(fs, order) {
		arg, usage := flag.UnquoteUsage(f)
		spelled := "-" + f.Name
		if doubleDash[f.Name] {
			spelled = "-" + spelled
		}
		if arg != "" {
			spelled += " " + arg
		}
		if f.DefValue != "" && f.DefValue != "false" && !strings.Contains(usage, "(default") {
			usage += " (default " + f.DefValue + ")"
		}
		rows = append(rows, row{spelled, usage})
		col = max(col, len(spelled))
	}
	indent := strings.Repeat(" ", 2+col+2)
	for _, r := range rows {
		text := wrap(r.usage, indent, 79)
		fmt.Fprintf(w, "  %-*s  %s", col, r.spelled, text[len(indent):])
	}
}

// doubleDash are the flags written --name in the help.
var doubleDash = map[string]bool{"connect": true, "stealth": true, "defaults": true, "version": true}

// helpMain is `portsentry help [COMMAND]`.
func helpMain(args []string, stdout, stderr io.Writer) int {
	switch len(args) {
	case 0:
		writeUsage(stdout)
		return exitOK
	case 1:
		if args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
			writeUsage(stdout)
			return exitOK
		}
		if c := lookupCommand(args[0]); c != nil {
			c.detail(stdout)
			return exitOK
		}
		return usageError(stderr, "help", fmt.Errorf("no command %q", args[0]))
	}
	return usageError(stderr, "help", fmt.Errorf("want at most one COMMAND, got %q", args))
}

// usageError reports a wrong command line in one line on stderr, with a
// pointer to the help, and returns exitConfig. cmd is the subcommand, ""
// for the daemon's own flags.
func usageError(stderr io.Writer, cmd string, err error) int {
	name, help := "portsentry", "portsentry help"
	if cmd != "" {
		name += " " + cmd
		if lookupCommand(cmd) != nil && cmd != "help" {
			help += " " + cmd
		}
	}
	fmt.Fprintf(stderr, "%s: %v (see '%s')\n", name, err, help)
	return exitConfig
}

// writeHelp is `portsentry help NAME` of an operator command.
func (op *opCommand) writeHelp(w io.Writer) {
	fmt.Fprintf(w, "Usage: portsentry %s [-c FILE] [-s SOCKET]\n\n%s\nFlags:\n",
		strings.TrimSpace(op.name+" "+op.synopsis), wrap(upperFirst(op.help)+".", "", 79))
	var f opFlags
	var r opRequest
	writeFlags(w, op.flagSet(&f, &r), nil)
}

func checkHelp(w io.Writer) {
	fmt.Fprint(w, `Usage: portsentry check [-c FILE] [-unit FILE|none] [DAEMON FLAGS]

Checks the configuration as the daemon does at start and at reload, and
exits: 0 when it would start (warnings, if any, on standard error), 2 when
it would refuse to. Every error and warning is one line, FILE:LINE: KEY:
message. Beyond the syntax and values of every key, it checks the ALERT_*
keys together, and that each file the daemon writes (EVENT_LOG,
HISTORY_FILE, BLOCKED_FILE, BAN_FILE; hosts.deny and the control socket
as warnings) is not a directory and lies in a directory that can be
written, on the file system as it is and under the systemd unit the daemon
runs under (ProtectSystem=, ReadWritePaths= and their kin, drop-ins
included). The daemon runs the same checks when it starts, on the file
system it is given, and refuses to start on an error.

Flags:
`)
	fs := newFlagSet("portsentry check")
	var c cli
	fs.StringVar(&c.unit, "unit", "", unitUsage)
	fs.StringVar(&c.config, "c", defaultConfig, "read the configuration from `FILE`")
	writeFlags(w, fs, []string{"c", "unit"})
	fmt.Fprint(w, "\nThe daemon's flags (see 'portsentry help') choose the modes checked.\n")
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// wrap breaks text into lines of at most width columns, each starting with
// indent and ending with a newline.
func wrap(text, indent string, width int) string {
	var b strings.Builder
	line := indent
	for _, word := range strings.Fields(text) {
		if line != indent && len(line)+1+len(word) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if line != indent {
			line += " "
		}
		line += word
	}
	if line != indent {
		b.WriteString(line + "\n")
	}
	return b.String()
}
