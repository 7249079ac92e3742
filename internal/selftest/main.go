package selftest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"
)

// Exit codes of Main.
const (
	ExitPass  = 0 // every required check passed
	ExitFail  = 1 // a check failed
	ExitUsage = 2 // bad command line; nothing was run
)

// logTail is how many daemon log lines a failed run prints without -v.
const logTail = 40

// Main is `portsentry selftest [-v] [-keep] [-timeout D] [-bin FILE]`: it
// runs the self-test on this host, prints the checklist to stdout, and
// returns ExitPass, ExitFail or ExitUsage. Cancelling ctx (SIGINT) stops it
// early; everything it created is removed before it returns.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return mainWith(ctx, NewSystem(), args, stdout, stderr)
}

// flags are the self-test's command line.
type flags struct {
	verbose, keep bool
	timeout       time.Duration
	bin           string
}

func flagSet(f *flags) *flag.FlagSet {
	fs := flag.NewFlagSet("portsentry selftest", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported in one line, the help on stdout
	fs.Usage = func() {}
	fs.BoolVar(&f.verbose, "v", false, "print the daemon's whole log")
	fs.BoolVar(&f.keep, "keep", false, "keep the temporary directory (configuration, history, daemon log)")
	fs.DurationVar(&f.timeout, "timeout", DefaultTimeout, "time limit of the whole self-test")
	fs.StringVar(&f.bin, "bin", "", "the portsentry `binary` to test (default: this program)")
	return fs
}

// Usage writes the self-test's help (`portsentry selftest -h`).
func Usage(w io.Writer) {
	fmt.Fprint(w, `Usage: portsentry selftest [flags]

Proves on this host that detection and blocking work, as the tutorials'
"scan it with nmap from another machine" does, without another machine: it
checks the kernel features portsentry needs, then runs portsentry in a
private network namespace, probes it from a second one over IPv4 and IPv6,
and checks the scanner is detected and blocked. Traffic goes only to
addresses inside the namespaces it creates; everything is removed at the
end. Needs root. Exit status 0 when every check passed, 1 otherwise.

Flags:
`)
	fs := flagSet(&flags{})
	fs.SetOutput(w)
	fs.PrintDefaults()
}

func mainWith(ctx context.Context, sys System, args []string, stdout, stderr io.Writer) int {
	var f flags
	fs := flagSet(&f)
	usageErr := func(msg string) int {
		fmt.Fprintf(stderr, "portsentry selftest: %s (see 'portsentry help selftest')\n", msg)
		return ExitUsage
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			Usage(stdout)
			return ExitPass
		}
		return usageErr(err.Error())
	}
	if fs.NArg() > 0 {
		return usageErr(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	if f.timeout <= 0 {
		return usageErr("-timeout must be positive")
	}
	verbose, keep, timeout, bin := &f.verbose, &f.keep, &f.timeout, &f.bin
	fmt.Fprintf(stdout, "portsentry selftest: kernel checks, then the daemon against a scanner in private network namespaces (%s/%d, %s/%d)\n",
		TargetV4, prefixV4, TargetV6.String(), prefixV6)
	rep := Run(ctx, sys, Options{Binary: *bin, Timeout: *timeout, Keep: *keep, Out: stdout})
	if rep.DaemonLog != "" {
		switch {
		case *verbose:
			fmt.Fprintf(stdout, "\nDaemon log:\n%s\n", indent(rep.DaemonLog))
		case !rep.Passed():
			fmt.Fprintf(stdout, "\nDaemon log (last %d lines; -v prints all):\n%s\n", logTail, indent(Tail(rep.DaemonLog, logTail)))
		}
	}
	if *keep && rep.TempDir != "" {
		fmt.Fprintf(stdout, "\nKept %s (configuration, history, blocked file, daemon.log)\n", rep.TempDir)
	}
	fmt.Fprintf(stdout, "\n%s\n", rep.Summary())
	if !rep.Passed() {
		return ExitFail
	}
	return ExitPass
}

func indent(s string) string {
	var b []byte
	start := true
	for i := 0; i < len(s); i++ {
		if start {
			b = append(b, "    "...)
		}
		b = append(b, s[i])
		start = s[i] == '\n'
	}
	if len(b) > 0 && b[len(b)-1] == '\n' {
		b = b[:len(b)-1]
	}
	return string(b)
}
