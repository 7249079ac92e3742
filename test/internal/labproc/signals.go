package labproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// ErrInterrupted is the cause of HandleSignals' context after Ctrl-C.
var ErrInterrupted = errors.New("interrupted")

// HandleSignals returns a context that the first Ctrl-C (or SIGTERM)
// cancels with ErrInterrupted, after which the benchmark named name cleans
// up in order; a second one kills every process started here, calls abort
// (which deletes the lab's namespaces) and exits at once. stop ends the
// handling.
func HandleSignals(name string, stderr io.Writer, abort func()) (ctx context.Context, stop func()) {
	ctx, interrupt := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		if _, ok := <-sigs; !ok {
			return
		}
		fmt.Fprintf(stderr, "\n%s: interrupted: cleaning up (interrupt again to abort at once)\n", name)
		interrupt(ErrInterrupted)
		if _, ok := <-sigs; ok {
			fmt.Fprintf(stderr, "%s: aborting: killing processes, deleting namespaces\n", name)
			KillAll()
			abort()
			os.Exit(130)
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		interrupt(nil)
	}
}
