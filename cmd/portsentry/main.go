// Command portsentry detects port scans and responds to them. It reads
// PortSentry 1.2 and 2.x configuration files and accepts both versions'
// command lines.
//
//	portsentry [flags]            run in the foreground (-D: in the background)
//	portsentry check [flags]      validate the configuration and exit
//	portsentry selftest           prove detection and blocking work here, in throwaway namespaces
//	portsentry report [-html FILE] the attacks of the last 7 days, from the daemon's files
//	portsentry list|block|unblock|status   operate the running daemon
//	portsentry help [COMMAND]     the usage, on standard output
//
// The subcommands are listed once, in help.go's commands(), which both the
// dispatch and the help read.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/portsentry-go/portsentry/internal/daemon"
	"github.com/portsentry-go/portsentry/internal/event"
	"github.com/portsentry-go/portsentry/internal/report/output"
	"github.com/portsentry-go/portsentry/internal/sandbox"
	"github.com/portsentry-go/portsentry/internal/settings"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.1.0-dev"

const (
	defaultConfig   = "/etc/portsentry/portsentry.conf"
	defaultDefaults = "/etc/default/portsentry"
)

// Exit codes.
const (
	exitOK     = 0
	exitFail   = 1 // the daemon failed while running
	exitConfig = 2 // bad command line or configuration: nothing was started
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// cli is the parsed command line.
type cli struct {
	check      bool
	config     string
	defaults   string
	logTo      string
	background bool
	debug      bool
	verbose    bool
	allowLocal bool
	modes      []event.Mode
	style2x    bool
	interfaces []string
	noService  bool
	unit       string // check -unit
}

// daemonFlags declares the daemon's flags on fs, storing into c (the help
// lists them in daemonFlagOrder). The mode flags are returned for parse.
func daemonFlags(fs *flag.FlagSet, c *cli) (showVersion, connectMode, stealthMode *bool, legacy [6]*bool) {
	fs.StringVar(&c.config, "c", defaultConfig, "read the configuration from `FILE`")
	fs.StringVar(&c.defaults, "defaults", "", "read TCP_MODE and UDP_MODE from Debian's start-up `FILE` (default "+defaultDefaults+", only when -c is not given)")
	for m := event.ModeTCP; m <= event.ModeAUDP; m++ {
		legacy[m] = fs.Bool(m.String(), false, "1.2 mode: "+describeMode(m))
	}
	connectMode = fs.Bool("connect", false, "2.x connect mode: trap sockets on TCP_PORTS and UDP_PORTS")
	stealthMode = fs.Bool("stealth", false, "2.x stealth mode: passive capture on TCP_PORTS and UDP_PORTS (binds nothing)")
	fs.Func("i", "stealth and advanced modes: capture on `IFACE` (repeatable), ALL (loopback included) or ALL_NLO (default: all but loopback)", func(v string) error {
		if v == "" {
			return errors.New("empty interface name")
		}
		c.interfaces = append(c.interfaces, v)
		return nil
	})
	fs.Func("m", "2.x capture method `pcap|raw`; both mean the kernel packet socket here", func(v string) error {
		if v != "pcap" && v != "raw" {
			return errors.New("want pcap or raw")
		}
		return nil
	})
	fs.BoolVar(&c.noService, "S", false, "stealth and advanced modes: no service check (probes to ports a local service uses count too)")
	fs.BoolVar(&c.allowLocal, "L", false, "act on probes whose source is this host (they are still never blocked)")
	fs.StringVar(&c.logTo, "l", "", "log to `stdout|syslog` (default stdout; syslog with -D)")
	fs.BoolVar(&c.background, "D", false, "run in the background; exits 0 once the daemon listens")
	fs.BoolVar(&c.debug, "d", false, "debug output")
	fs.BoolVar(&c.verbose, "v", false, "verbose output")
	showVersion = fs.Bool("V", false, "print the version and exit")
	fs.BoolVar(showVersion, "version", false, "print the version and exit")
	return
}

// parse reads the daemon's (or check's) command line. Errors are usage
// errors, in one line; flag.ErrHelp and errVersion ask for the help and the
// version.
func parse(args []string) (*cli, error) {
	c := &cli{}
	if len(args) > 0 && args[0] == "check" {
		c.check = true
		args = args[1:]
	}
	fs := newFlagSet("portsentry")
	showVersion, connectMode, stealthMode, legacy := daemonFlags(fs, c)
	if c.check {
		fs.StringVar(&c.unit, "unit", "", unitUsage)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		if c.check {
			return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
		}
		return nil, fmt.Errorf("unknown command %q", fs.Arg(0))
	}
	if *showVersion {
		return nil, errVersion
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "c" && c.defaults == "" {
			c.defaults = "-" // an explicit -c does not pick up the system's start-up file
		}
	})
	switch c.defaults {
	case "":
		c.defaults = defaultDefaults
	case "-":
		c.defaults = ""
	}
	for m, on := range legacy {
		if *on {
			c.modes = append(c.modes, event.Mode(m))
		}
	}
	if *connectMode && *stealthMode {
		return nil, errors.New("--connect and --stealth exclude each other")
	}
	if (*connectMode || *stealthMode) && len(c.modes) > 0 {
		return nil, errors.New("2.x mode flags (--connect, --stealth) and 1.2 mode flags (-tcp, -atcp, …) exclude each other")
	}
	if *connectMode {
		c.modes, c.style2x = []event.Mode{event.ModeTCP, event.ModeUDP}, true
	}
	if *stealthMode {
		c.modes, c.style2x = []event.Mode{event.ModeSTCP, event.ModeSUDP}, true
	}
	if c.logTo != "" && c.logTo != "stdout" && c.logTo != "syslog" {
		return nil, fmt.Errorf("-l %q: want stdout or syslog", c.logTo)
	}
	if c.background && c.logTo == "stdout" && !c.check {
		return nil, errors.New("-D detaches from standard output, so -l stdout would lose every line: use -l syslog (the default with -D), or run in the foreground under a supervisor")
	}
	return c, nil
}

// newFlagSet is a flag set that writes nothing itself: the caller reports
// its error in one line, and the help goes to standard output.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

var errVersion = errors.New("version requested")

// unitUsage describes check's -unit flag.
const unitUsage = "check the files written against the systemd unit `FILE`, or none (default: the installed portsentry.service)"

func describeMode(m event.Mode) string {
	what := "trap sockets on "
	if m.Passive() {
		what = "passive capture on "
	}
	ports := m.Proto().String() + "_PORTS"
	if m == event.ModeATCP || m == event.ModeAUDP {
		what, ports = "passive capture on ", "every unused port below ADVANCED_PORTS_"+m.Proto().String()
	}
	return what + ports
}

func run(args []string, stdout, stderr io.Writer) int {
	daemon.Version = version
	if len(args) > 0 {
		if cmd := lookupCommand(args[0]); cmd != nil && cmd.run != nil {
			return cmd.run(args[1:], stdout, stderr)
		}
	}
	c, err := parse(args)
	switch {
	case errors.Is(err, errVersion):
		fmt.Fprintln(stdout, "portsentry", version)
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		if len(args) > 0 && args[0] == "check" {
			return helpMain([]string{"check"}, stdout, stderr)
		}
		writeUsage(stdout)
		return exitOK
	case err != nil:
		if len(args) > 0 && args[0] == "check" {
			return usageError(stderr, "check", err)
		}
		return usageError(stderr, "", err)
	}
	opts := daemon.Options{Options: settings.Options{
		ConfigPath:     c.config,
		DefaultsPath:   c.defaults,
		Modes:          c.modes,
		Style2x:        c.style2x,
		AllowLocal:     c.allowLocal,
		Interfaces:     c.interfaces,
		NoServiceCheck: c.noService,
	}}
	if c.check {
		return check(opts.Options, c.unit, stdout, stderr)
	}
	if c.background && os.Getenv(readyFDEnv) == "" {
		return background(args, stderr)
	}
	level := slog.Level(slog.LevelInfo)
	switch {
	case c.debug:
		level = slog.LevelDebug
	case c.verbose:
		level = output.LevelVerbose
	}
	if c.logTo == "syslog" || (c.logTo == "" && c.background) {
		opts.Log, err = output.NewSyslog(level)
		if err != nil {
			fmt.Fprintln(stderr, "portsentry:", err)
			return exitConfig
		}
	} else if f, ok := stdout.(*os.File); ok && output.ToJournal(f) {
		// Under systemd: each line with its priority and fields, without
		// a second time stamp.
		opts.Log = output.NewJournal(stdout, level)
	} else {
		opts.Log = output.New(stdout, level)
	}
	if f, ok := stderr.(*os.File); ok && output.ToJournal(f) {
		stderr = output.Errors(stderr)
	}
	opts.Ready = readyNotifier()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan struct{}, 1)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGHUP)
	go func() {
		for range sigs {
			select {
			case hup <- struct{}{}:
			default: // a reload is already pending
			}
		}
	}()
	if err := daemon.Run(ctx, opts, hup); err != nil {
		printError(stderr, err)
		var ce *settings.ConfigError
		if errors.As(err, &ce) {
			return exitConfig
		}
		return exitFail
	}
	return exitOK
}

// check is `portsentry check`: the daemon's own start-up checks, and the
// files it will write checked against the systemd unit it will run under
// (unit: a unit file, "none", or "" for the installed portsentry.service
// if there is one). Every error and warning is one line naming file, line
// and key.
func check(opts settings.Options, unit string, stdout, stderr io.Writer) int {
	switch unit {
	case "none":
	case "":
		u, err := sandbox.Find("/", unitName)
		if err != nil && !errors.Is(err, sandbox.ErrNotInstalled) {
			printError(stderr, err)
			return exitConfig
		}
		opts.Unit = u
	default:
		u, err := sandbox.Load(unitName, unit)
		if err != nil {
			printError(stderr, err)
			return exitConfig
		}
		opts.Unit = u
	}
	s, err := settings.Load(opts)
	if err != nil {
		printError(stderr, err)
		return exitConfig
	}
	for _, w := range s.Warnings {
		fmt.Fprintln(stderr, "portsentry: warning:", w)
	}
	fmt.Fprintf(stdout, "%s: OK; %s\n", opts.ConfigPath, s.Summary())
	if opts.Unit != nil {
		fmt.Fprintf(stdout, "files written checked against %s\n", opts.Unit)
	}
	return exitOK
}

// unitName is the systemd unit the package installs.
const unitName = "portsentry.service"

// printError writes err, one "portsentry: " line for each line of it (a
// configuration may have several mistakes).
func printError(w io.Writer, err error) {
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintln(w, "portsentry:", line)
	}
}
