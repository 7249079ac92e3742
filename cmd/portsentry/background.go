package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

// readyFDEnv names the descriptor on which a backgrounded child reports
// that it is listening. Go cannot fork a running process, so -D starts a
// copy of itself in a new session and waits for that word: the parent's
// exit code then says whether the daemon really started, as init scripts
// expect.
const readyFDEnv = "PORTSENTRY_READY_FD"

func background(args []string, stderr io.Writer) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "portsentry:", err)
		return exitFail
	}
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintln(stderr, "portsentry:", err)
		return exitFail
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		fmt.Fprintln(stderr, "portsentry:", err)
		return exitFail
	}
	cmd := exec.Command(exe, args...)
	cmd.Stdin, cmd.Stdout = devnull, devnull
	cmd.Stderr = stderr // start-up errors reach the admin; the child drops it once ready
	cmd.ExtraFiles = []*os.File{w}
	cmd.Env = append(os.Environ(), readyFDEnv+"=3")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(stderr, "portsentry:", err)
		return exitFail
	}
	w.Close()
	line, _ := bufio.NewReader(r).ReadString('\n')
	if line == "ready\n" {
		return exitOK
	}
	// The child died before it was ready; its exit code says why.
	if err := cmd.Wait(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
	}
	return exitFail
}

// readyNotifier returns what to call once the daemon listens: in a
// backgrounded child, tell the parent and let go of its stderr.
func readyNotifier() func() {
	fd, err := strconv.Atoi(os.Getenv(readyFDEnv))
	if err != nil || fd < 3 {
		return nil
	}
	return func() {
		f := os.NewFile(uintptr(fd), "ready")
		fmt.Fprint(f, "ready\n")
		f.Close()
		if devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0); err == nil {
			_ = dupStderr(int(devnull.Fd()))
			devnull.Close()
		}
	}
}
