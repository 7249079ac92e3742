// Package labns sweeps a lab benchmark's namespaces (package netns names
// them prefix + creator PID + "-" + random + "-" + role): the leftovers of
// an earlier run that died before its clean-up, and the run's own on abort.
package labns

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/portsentry-go/portsentry/internal/netns"
)

// RemoveLeftovers deletes the namespaces named with prefix whose creator
// is gone. Those of a live concurrent run of program (a process whose
// argv[0] contains its name) are left alone; a namespace whose creator's
// PID now belongs to another program is a leftover. Errors go to stderr.
func RemoveLeftovers(prefix, program string, stderr io.Writer) []string {
	removed, err := netns.SweepFunc(prefix, func(pid int) bool { return netns.Runs(pid) && runs(pid, program) })
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", program, err)
	}
	return removed
}

// runs reports whether pid looks like a running program.
func runs(pid int, program string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	argv0, _, _ := strings.Cut(string(b), "\x00")
	return strings.Contains(argv0, program)
}

// RemoveOwn deletes this process's namespaces named with prefix (an
// abort's clean-up).
func RemoveOwn(prefix string) error {
	names, err := netns.List(netns.Own(prefix))
	errs := []error{err}
	for _, name := range names {
		errs = append(errs, netns.Delete(name))
	}
	return errors.Join(errs...)
}
