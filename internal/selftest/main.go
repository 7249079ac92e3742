package selftest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
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

func mainWith(ctx context.Context, sys System, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("portsentry selftest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	verbose := fs.Bool("v", false, "print the daemon's whole log")
	keep := fs.Bool("keep", false, "keep the temporary directory (configuration, history, daemon log)")
	timeout := fs.Duration("timeout", DefaultTimeout, "time limit of the whole self-test")
	bin := fs.String("bin", "", "the portsentry `binary` to test (default: this program)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: portsentry selftest [flags]

Proves on this host that detection and blocking work, as the tutorials'
"scan it with nmap from another machine" does, without another machine: it
checks the kernel features portsentry needs, then runs portsentry in a
private network namespace, probes it from a second one over IPv4 and IPv6,
and checks the scanner is detected and blocked. Traffic goes only to
addresses inside the namespaces it creates; everything is removed at the
end. Needs root. Exit status 0 when every check passed, 1 otherwise.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitPass
		}
		return ExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "portsentry selftest: unexpected argument %q\n", fs.Arg(0))
		return ExitUsage
	}
	if *timeout <= 0 {
		fmt.Fprintln(stderr, "portsentry selftest: -timeout must be positive")
		return ExitUsage
	}
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
