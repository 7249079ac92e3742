// Package sdnotify tells systemd about the daemon's state through the
// sd_notify protocol, without libsystemd (no cgo): one datagram of
// newline-separated KEY=VALUE assignments sent to the AF_UNIX datagram socket
// named by $NOTIFY_SOCKET (a path, or "@name" for an abstract socket).
//
// When $NOTIFY_SOCKET is unset (not started by systemd, or a unit type other
// than notify) every function does nothing and returns nil, so callers need
// not check. With Type=notify the unit is "started" only once Ready is sent;
// Type=notify-reload (systemd ≥ 253) also expects Reloading then Ready around
// each reload. The environment variable is left in place: with the default
// NotifyAccess=main, systemd ignores messages from child processes.
package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// EnvSocket is the variable systemd sets to the notification socket.
const EnvSocket = "NOTIFY_SOCKET"

// sendTimeout bounds a send: the socket is local, but systemd might be
// wedged, and a daemon must never hang on its supervisor.
const sendTimeout = 2 * time.Second

// Enabled reports whether $NOTIFY_SOCKET is set, i.e. whether a notification
// would be sent at all.
func Enabled() bool { return os.Getenv(EnvSocket) != "" }

// Ready tells systemd that start-up (or a reload) is complete: READY=1.
func Ready() error { return Send("READY=1") }

// Reloading tells systemd that the configuration is being reloaded:
// RELOADING=1 with MONOTONIC_USEC, the CLOCK_MONOTONIC time in microseconds,
// which Type=notify-reload (systemd ≥ 253) requires to match the reload to
// the request; older systemd and Type=notify ignore it. Send Ready when the
// reload is done, whether it succeeded or not.
func Reloading() error {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return fmt.Errorf("sdnotify: clock_gettime: %w", err)
	}
	usec := ts.Sec*1_000_000 + ts.Nsec/1_000
	return Send("RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(usec, 10))
}

// Stopping tells systemd that the daemon is shutting down: STOPPING=1.
func Stopping() error { return Send("STOPPING=1") }

// Status sets the one-line status `systemctl status` shows: STATUS=s.
// Newlines in s would start a new assignment, so they become spaces.
func Status(s string) error {
	return Send("STATUS=" + strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s))
}

// Send sends state, one or more newline-separated KEY=VALUE assignments, to
// $NOTIFY_SOCKET in one datagram. It returns nil without sending when the
// variable is unset.
func Send(state string) error {
	addr := os.Getenv(EnvSocket)
	if addr == "" {
		return nil
	}
	// A path, or an abstract name written "@name" (Go maps a leading '@'
	// to the NUL byte of Linux's abstract namespace). systemd ≥ 254 also
	// accepts "vsock:…", which only matters inside VMs: not supported.
	if addr[0] != '/' && addr[0] != '@' {
		return fmt.Errorf("sdnotify: %s=%q: not an absolute path or @abstract name", EnvSocket, addr)
	}
	if len(addr) < 2 {
		return errors.New("sdnotify: " + EnvSocket + " names no socket")
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer conn.Close()
	if err := conn.SetWriteDeadline(time.Now().Add(sendTimeout)); err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	return nil
}
