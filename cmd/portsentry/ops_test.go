package main

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/control"
	"github.com/portsentry-go/portsentry/internal/enforce/bans"
)

// Operand mistakes are reported as such, before any daemon is asked, and
// flags may follow the operands.
func TestOpsArguments(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock") // nothing listens here
	conf := filepath.Join(t.TempDir(), "missing.conf")
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"block"}, exitConfig, "want ADDRESS [DURATION]"},
		{[]string{"block", "nope"}, exitConfig, `"nope": want one address`},
		{[]string{"block", "10.0.0.0/8"}, exitConfig, "want one address"},
		{[]string{"block", "192.0.2.1", "5x"}, exitConfig, `bad duration "5x"`},
		{[]string{"unblock"}, exitConfig, "want ADDRESS or PREFIX"},
		{[]string{"unblock", "nope"}, exitConfig, `bad address "nope"`},
		{[]string{"list", "extra"}, exitConfig, `takes no operand, got "extra"`},
		{[]string{"status", "extra"}, exitConfig, "takes no operand"},
		// Well-formed: the daemon is asked, at the socket given after the operand.
		{[]string{"block", "192.0.2.1", "7d", "-s", sock}, exitFail, sock},
		{[]string{"unblock", "10.0.0.0/8", "-s", sock}, exitFail, sock},
		{[]string{"list", "-s", sock}, exitFail, sock},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := opsMain(tt.args[0], append(tt.args[1:], "-c", conf), &stdout, &stderr)
			if code != tt.code || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("portsentry %s: exit %d, stderr %q; want exit %d and %q", strings.Join(tt.args, " "), code, stderr.String(), tt.code, tt.want)
			}
		})
	}
}

// The usage is built from the table of commands; it reads as it always has.
func TestOpsUsage(t *testing.T) {
	const want = `Operator commands (talk to the running daemon through its control socket):
  portsentry list                          bans in force: address, reason, port, since, expires
  portsentry block ADDRESS [DURATION]      ban by hand (DURATION: 30m, 12h, 7d, permanent; default BAN_TIME)
  portsentry unblock ADDRESS|PREFIX        lift every ban inside it (192.0.2.7, 10.0.0.0/8, 2001:db8::/32)
  portsentry status                        what the daemon runs and holds
Flags: -c FILE (to find CONTROL_SOCKET), -s SOCKET
`
	if opsUsage != want {
		t.Errorf("usage:\n%s\nwant:\n%s", opsUsage, want)
	}
	var stdout, stderr bytes.Buffer
	if code := opsMain("list", []string{"-h"}, &stdout, &stderr); code != exitOK || stderr.String() != want {
		t.Errorf("portsentry list -h: exit %d, stderr %q", code, stderr.String())
	}
	for _, name := range []string{"list", "block", "unblock", "status"} {
		if !isOp(name) {
			t.Errorf("isOp(%q) = false", name)
		}
	}
	if isOp("check") {
		t.Error(`isOp("check") = true`)
	}
}

// fakeDaemon answers the control socket as the daemon would, recording
// what it was asked.
type fakeDaemon struct {
	blocked []string
}

func (d *fakeDaemon) List() []bans.Ban {
	return []bans.Ban{{Addr: netip.MustParseAddr("192.0.2.7"), Reason: "manual"}}
}

func (d *fakeDaemon) Block(addr netip.Addr, dur time.Duration, reason string) (bans.Ban, error) {
	d.blocked = append(d.blocked, fmt.Sprintf("%v %v %s", addr, dur, reason))
	return bans.Ban{Addr: addr}, nil
}

func (d *fakeDaemon) Unblock(p netip.Prefix) ([]bans.Ban, error) {
	if p.Contains(netip.MustParseAddr("192.0.2.7")) {
		return []bans.Ban{{Addr: netip.MustParseAddr("192.0.2.7")}}, nil
	}
	return nil, nil
}

func (d *fakeDaemon) Status() control.Status {
	return control.Status{Version: "test", Blocker: "route"}
}

// Each command's request reaches the daemon and its answer is printed;
// block's default duration is the configuration's BAN_TIME.
func TestOpsAnswers(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "ps.sock")
	conf := filepath.Join(dir, "portsentry.conf")
	if err := os.WriteFile(conf, []byte("BAN_TIME=\"600\"\nCONTROL_SOCKET=\""+sock+"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := &fakeDaemon{}
	srv, err := control.Listen(sock, d, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	tests := []struct {
		args []string
		want string
	}{
		{[]string{"block", "192.0.2.1"}, "blocked 192.0.2.1 (permanently)\n"},
		{[]string{"block", "192.0.2.2", "permanent", "-reason", "ops"}, "blocked 192.0.2.2 (permanently)\n"},
		{[]string{"unblock", "192.0.2.0/24"}, "unblocked 192.0.2.7\n"},
		{[]string{"unblock", "198.51.100.1"}, "no ban inside 198.51.100.1/32\n"},
		{[]string{"list"}, "192.0.2.7"},
		{[]string{"status"}, "route"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := opsMain(tt.args[0], append(tt.args[1:], "-c", conf), &stdout, &stderr)
		if code != exitOK || !strings.Contains(stdout.String(), tt.want) {
			t.Errorf("portsentry %s: exit %d, stdout %q, stderr %q; want exit 0 and %q",
				strings.Join(tt.args, " "), code, stdout.String(), stderr.String(), tt.want)
		}
	}
	want := []string{"192.0.2.1 10m0s manual", "192.0.2.2 0s ops"}
	if !slices.Equal(d.blocked, want) {
		t.Errorf("the daemon was asked to block %q, want %q", d.blocked, want)
	}
}
