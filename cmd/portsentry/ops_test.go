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
		{[]string{"list", "extra"}, exitConfig, `bad address "extra"`},
		{[]string{"list", "10.0.0.0/8", "192.0.2.1"}, exitConfig, `want at most one ADDRESS or PREFIX`},
		{[]string{"list", "-origin", "fleet"}, exitConfig, `-origin "fleet": want detected, manual, crowdsec or fleet:MEMBER`},
		{[]string{"list", "-count", "-x"}, exitConfig, `flag provided but not defined: -x`},
		{[]string{"block", "192.0.2.1", "-count"}, exitConfig, `flag provided but not defined: -count`}, // list's flag only
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
			// A usage error is one line, with a pointer to the help.
			if tail := "(see 'portsentry help " + tt.args[0] + "')\n"; code == exitConfig && (strings.Count(stderr.String(), "\n") != 1 || !strings.HasSuffix(stderr.String(), tail)) {
				t.Errorf("portsentry %s: stderr %q, want one line ending %q", strings.Join(tt.args, " "), stderr.String(), tail)
			}
		})
	}
}

// `COMMAND -h` is the command's help, on stdout.
func TestOpsHelp(t *testing.T) {
	for _, name := range []string{"list", "block", "unblock", "status"} {
		if lookupOp(name) == nil {
			t.Errorf("lookupOp(%q) = nil", name)
		}
		var stdout, stderr bytes.Buffer
		code := opsMain(name, []string{"-h"}, &stdout, &stderr)
		if code != exitOK || stderr.Len() != 0 || !strings.HasPrefix(stdout.String(), "Usage: portsentry "+name) {
			t.Errorf("portsentry %s -h: exit %d, stdout %q, stderr %q", name, code, stdout.String(), stderr.String())
		}
	}
	if lookupOp("check") != nil {
		t.Error(`lookupOp("check") != nil`)
	}
}

// fakeDaemon answers the control socket as the daemon would, recording
// what it was asked.
type fakeDaemon struct {
	blocked []string
}

func (d *fakeDaemon) List() []bans.Ban {
	return []bans.Ban{
		{Addr: netip.MustParseAddr("192.0.2.7"), Reason: "manual", Since: t0, Count: 1},
		{Addr: netip.MustParseAddr("198.51.100.9"), Reason: "TCP SYN/Normal scan", Port: 22, Proto: "TCP", Since: t0, Expires: t0.Add(time.Hour), Count: 2},
		{Addr: netip.MustParseAddr("2001:db8:1:2::"), Bits: 64, Reason: "UDP", Port: 53, Proto: "UDP", Since: t0, Count: 1},
	}
}

var t0 = time.Date(2026, 11, 22, 1, 40, 36, 0, time.UTC)

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
		// Filters: by address or prefix (a /64 ban overlaps an address in
		// it), origin, reason; -count; -json.
		{[]string{"list", "-count"}, "3\n"},
		{[]string{"list", "192.0.2.0/24", "-count"}, "1\n"},
		{[]string{"list", "2001:db8:1:2::99", "-count"}, "1\n"},
		{[]string{"list", "2001:db8::/32", "-origin", "detected", "-count"}, "1\n"},
		{[]string{"list", "-origin", "detected", "-count"}, "2\n"},
		{[]string{"list", "-origin", "manual", "-json"}, `[{"address":"192.0.2.7","reason":"manual","origin":"manual","port":0,"proto":"","since":"2026-11-22T01:40:36Z","expires":null,"count":1}]` + "\n"},
		{[]string{"list", "-reason", "syn", "-json"}, `[{"address":"198.51.100.9","reason":"TCP SYN/Normal scan","origin":"detected","port":22,"proto":"TCP","since":"2026-11-22T01:40:36Z","expires":"2026-11-22T02:40:36Z","count":2}]` + "\n"},
		{[]string{"list", "10.0.0.0/8", "-json"}, "[]\n"},
		{[]string{"list", "10.0.0.0/8"}, "No active bans.\n"},
		{[]string{"list", "-reason", "udp"}, "2001:db8:1:2::/64"},
		{[]string{"status"}, "route"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := opsMain(tt.args[0], append(tt.args[1:], "-c", conf), &stdout, &stderr)
		exact := strings.HasSuffix(tt.want, "\n") && tt.args[0] == "list"
		if code != exitOK || !strings.Contains(stdout.String(), tt.want) || (exact && stdout.String() != tt.want) {
			t.Errorf("portsentry %s: exit %d, stdout %q, stderr %q; want exit 0 and %q",
				strings.Join(tt.args, " "), code, stdout.String(), stderr.String(), tt.want)
		}
	}
	want := []string{"192.0.2.1 10m0s manual", "192.0.2.2 0s ops"}
	if !slices.Equal(d.blocked, want) {
		t.Errorf("the daemon was asked to block %q, want %q", d.blocked, want)
	}
}
