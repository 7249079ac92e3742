package pkg

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestNotify: portsentry.service is Type=notify, so systemd holds the start
// until the daemon sends READY=1 (and fails it after TimeoutStartSec if it
// never does). The packaged binary, run with $NOTIFY_SOCKET as systemd runs
// it, must send READY=1 once it listens, RELOADING=1 then READY=1 around a
// SIGHUP reload, and STOPPING=1 on SIGTERM; with READY=1 it tells its
// one-line status (STATUS=).
//
// Until internal/sdnotify is wired into the daemon the binary does not
// contain the variable's name, and the test skips saying so.
func TestNotify(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	requireTool(t, "unshare", "util-linux")
	_, root := builtDeb(t)
	bin := filepath.Join(root, "usr/sbin/portsentry")
	if b, err := os.ReadFile(bin); err != nil {
		t.Fatal(err)
	} else if !bytes.Contains(b, []byte("NOTIFY_SOCKET")) {
		t.Skip("the daemon does not use internal/sdnotify yet: wire sdnotify.Ready/Reloading/Stopping into internal/daemon (portsentry.service is Type=notify)")
	}

	dir := t.TempDir()
	sock := filepath.Join(dir, "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// The status line (STATUS=) comes at any time, as it changes: next
	// skips it and returns the next state change.
	next := func(what string) string {
		t.Helper()
		if err := ln.SetReadDeadline(time.Now().Add(15 * time.Second)); err != nil {
			t.Fatal(err)
		}
		for {
			buf := make([]byte, 4096)
			n, err := ln.Read(buf)
			if err != nil {
				t.Fatalf("no notification %s: %v", what, err)
			}
			msg := string(buf[:n])
			if strings.HasPrefix(msg, "STATUS=") && !strings.Contains(msg, "\n") {
				continue
			}
			return msg
		}
	}

	conf := filepath.Join(dir, "portsentry.conf")
	body := fmt.Sprintf("TCP_PORTS=\"40001\"\nUDP_PORTS=\"40001\"\nHISTORY_FILE=\"%[1]s/history\"\nBLOCKED_FILE=\"%[1]s/blocked\"\nCONTROL_SOCKET=\"%[1]s/control.sock\"\n", dir)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	// A network namespace of its own, loopback down: the traps exist, no
	// traffic can reach them.
	cmd := exec.Command("unshare", "--net", "--", bin, "-c", conf, "--connect")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	// A file, not a pipe: the daemon's write is in it the moment the write
	// returns, so when READY=1 arrives the file says whether the line was
	// written first (a pipe's copier goroutine may not have run yet).
	out, err := os.Create(filepath.Join(dir, "output"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	output := func() string { b, _ := os.ReadFile(out.Name()); return string(b) }
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("daemon output:\n%s", output())
		}
	}()

	if msg := next("after start"); !hasLine(msg, "READY=1") {
		t.Fatalf("first notification %q, want READY=1", msg)
	}
	if !strings.Contains(output(), "now active and listening") {
		t.Errorf("READY=1 came before the daemon said it listens")
	}
	// Then the one-line status systemctl status shows: the modes and
	// their ports (40001 is trapped for TCP and UDP), the bans, the last
	// detection.
	if err := ln.SetReadDeadline(time.Now().Add(15 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := ln.Read(buf)
	if err != nil {
		t.Fatalf("no status after READY=1: %v", err)
	}
	if got, want := string(buf[:n]), "STATUS=tcp on 1 TCP port, udp on 1 UDP port; 0 bans active; no detection yet"; got != want {
		t.Errorf("after READY=1 %q, want %q", got, want)
	}

	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	msg := next("after SIGHUP")
	if !hasLine(msg, "RELOADING=1") || !strings.Contains(msg, "MONOTONIC_USEC=") {
		t.Errorf("on SIGHUP %q, want RELOADING=1 with MONOTONIC_USEC", msg)
	}
	for !hasLine(msg, "READY=1") {
		msg = next("after the reload")
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for msg = next("on SIGTERM"); !hasLine(msg, "STOPPING=1"); msg = next("on SIGTERM") {
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("no exit within 5 s of SIGTERM")
	}
}

// hasLine reports whether a notification holds the assignment kv.
func hasLine(msg, kv string) bool {
	for _, l := range strings.Split(msg, "\n") {
		if l == kv {
			return true
		}
	}
	return false
}
