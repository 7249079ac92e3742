package command

import (
	"errors"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// raisePriority makes the calling goroutine's thread steps nice levels
// more favoured (at most -20) until restore, which must be called on the
// same goroutine; the goroutine stays on the thread meanwhile. A process
// forked on the thread inherits the raised priority. Without the right to
// raise it (CAP_SYS_NICE), nothing changes.
func raisePriority(steps int) (restore func()) {
	runtime.LockOSThread()
	tid := unix.Gettid()
	// The raw getpriority(2) answers 20 - nice.
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
	if err == nil {
		nice := 20 - prio
		if err = unix.Setpriority(unix.PRIO_PROCESS, tid, max(nice-steps, -20)); err == nil {
			return func() {
				_ = unix.Setpriority(unix.PRIO_PROCESS, tid, nice)
				runtime.UnlockOSThread()
			}
		}
	}
	runtime.UnlockOSThread()
	return func() {}
}

// outputFile returns an unnamed file in dir for a command's output: one
// open(O_TMPFILE), where a named file costs a create and an unlink. Where
// the file system cannot (EOPNOTSUPP, EISDIR on old kernels), a named one,
// unlinked at once.
func outputFile(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return os.NewFile(uintptr(fd), "portsentry-cmd-output"), nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EINVAL) {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return namedOutputFile(dir)
}
