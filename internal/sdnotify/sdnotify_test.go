package sdnotify

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listen opens a datagram socket as systemd does (SO_PASSCRED on, so that
// the kernel attaches the sender's credentials) and points $NOTIFY_SOCKET
// at it. name is a path, or "@..." for an abstract socket.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
	}); err != nil || serr != nil {
		t.Fatalf("SO_PASSCRED: %v %v", err, serr)
	}
	t.Setenv(EnvSocket, name)
	return c
}

// receive reads one datagram and the sender's PID from its credentials.
func receive(t *testing.T, c *net.UnixConn) (msg string, pid int32) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatalf("no notification received: %v", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control messages %v: %v", msgs, err)
	}
	cred, err := unix.ParseUnixCredentials(&msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n]), cred.Pid
}

// noMore fails if another datagram arrives.
func noMore(t *testing.T, c *net.UnixConn) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	if n, err := c.Read(buf); err == nil {
		t.Errorf("unexpected extra datagram %q", buf[:n])
	}
}

func TestMessagesPathSocket(t *testing.T) {
	c := listen(t, filepath.Join(t.TempDir(), "notify"))
	if !Enabled() {
		t.Fatal("Enabled() = false with NOTIFY_SOCKET set")
	}
	for _, tc := range []struct {
		name string
		send func() error
		want string
	}{
		{"Ready", Ready, "READY=1"},
		{"Stopping", Stopping, "STOPPING=1"},
		{"Status", func() error { return Status("watching 1023 TCP ports") }, "STATUS=watching 1023 TCP ports"},
		{"Status newlines", func() error { return Status("a\nb\r\nc") }, "STATUS=a b c"},
		{"Send", func() error { return Send("READY=1\nSTATUS=ok") }, "READY=1\nSTATUS=ok"},
	} {
		if err := tc.send(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got, pid := receive(t, c)
		if got != tc.want {
			t.Errorf("%s sent %q, want %q", tc.name, got, tc.want)
		}
		if pid != int32(os.Getpid()) {
			t.Errorf("%s: sender PID %d, want this process %d (systemd attributes messages by PID)", tc.name, pid, os.Getpid())
		}
	}
	noMore(t, c)
}

func TestAbstractSocket(t *testing.T) {
	c := listen(t, fmt.Sprintf("@portsentry-sdnotify-test-%d-%d", os.Getpid(), time.Now().UnixNano()))
	if err := Ready(); err != nil {
		t.Fatal(err)
	}
	if got, _ := receive(t, c); got != "READY=1" {
		t.Errorf("got %q, want READY=1", got)
	}
}

// TestReloading: RELOADING=1 carries CLOCK_MONOTONIC in microseconds, the
// value systemd ≥ 253 compares with its own clock for Type=notify-reload.
func TestReloading(t *testing.T) {
	c := listen(t, filepath.Join(t.TempDir(), "notify"))
	before := monotonicUsec(t)
	if err := Reloading(); err != nil {
		t.Fatal(err)
	}
	after := monotonicUsec(t)
	got, _ := receive(t, c)
	lines := strings.Split(got, "\n")
	if len(lines) != 2 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
		t.Fatalf("Reloading sent %q, want RELOADING=1 and MONOTONIC_USEC=…", got)
	}
	usec, err := strconv.ParseInt(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if usec < before || usec > after {
		t.Errorf("MONOTONIC_USEC=%d, want within [%d, %d]", usec, before, after)
	}
}

func monotonicUsec(t *testing.T) int64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Sec*1_000_000 + ts.Nsec/1_000
}

// TestUnset: without NOTIFY_SOCKET nothing is sent and nothing fails.
func TestUnset(t *testing.T) {
	c := listen(t, filepath.Join(t.TempDir(), "notify"))
	t.Setenv(EnvSocket, "")
	os.Unsetenv(EnvSocket)
	if Enabled() {
		t.Error("Enabled() = true without NOTIFY_SOCKET")
	}
	for name, f := range map[string]func() error{
		"Ready": Ready, "Reloading": Reloading, "Stopping": Stopping,
		"Status": func() error { return Status("x") },
	} {
		if err := f(); err != nil {
			t.Errorf("%s without NOTIFY_SOCKET: %v, want nil", name, err)
		}
	}
	noMore(t, c)
}

func TestBadSocket(t *testing.T) {
	for _, addr := range []string{
		"relative/path",
		"@",
		"vsock:2:1234",
		filepath.Join(t.TempDir(), "missing"),
	} {
		t.Setenv(EnvSocket, addr)
		if err := Ready(); err == nil {
			t.Errorf("NOTIFY_SOCKET=%q: Ready() = nil, want an error", addr)
		}
	}
}
