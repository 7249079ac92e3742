package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/portsentry-go/portsentry/internal/selftest"
)

// selftestMain is `portsentry selftest [-v] [-keep] [-timeout D] [-bin FILE]`:
// it proves on this host that detection and blocking work, inside private
// network namespaces (see internal/selftest). SIGINT and SIGTERM stop it
// early; it still removes everything it created before it returns. The
// exit code is 0 when every check passed, 1 when one failed, 2 for a bad
// command line.
func selftestMain(args []string, stdout, stderr io.Writer) int {
	// Caught until the clean-up is over: a second Ctrl-C does not leave
	// namespaces or a daemon behind either.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// `portsentry selftest | head` must not kill it before its clean-up:
	// a closed stdout makes writes fail instead.
	signal.Ignore(syscall.SIGPIPE)
	return selftest.Main(ctx, args, stdout, stderr)
}
