package settings

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/portsentry-go/portsentry/internal/event"
)

func write(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadModes(t *testing.T) {
	tests := []struct {
		name     string
		conf     string // extra lines of portsentry.conf
		defaults string // /etc/default/portsentry; "" = none
		flags    []event.Mode
		want     []event.Mode
		wantErr  error
		warns    int // warnings about an overridden mode
	}{
		{name: "nothing set: connect on both", want: []event.Mode{event.ModeTCP, event.ModeUDP}},
		{name: "Debian start-up file", defaults: "TCP_MODE=\"tcp\"\nUDP_MODE=\"\"\n", want: []event.Mode{event.ModeTCP}},
		{name: "conf fills what the start-up file leaves", conf: "UDP_MODE=\"udp\"\n", defaults: "TCP_MODE=\"tcp\"\nUDP_MODE=\"\"\n", want: []event.Mode{event.ModeTCP, event.ModeUDP}},
		// 1.2's init script made the start-up file's modes flags: an
		// upgraded host's /etc/default/portsentry keeps choosing them.
		{name: "start-up file wins over conf", conf: "TCP_MODE=\"atcp\"\nUDP_MODE=\"audp\"\n", defaults: "TCP_MODE=\"tcp\"\nUDP_MODE=\"udp\"\n", want: []event.Mode{event.ModeTCP, event.ModeUDP}, warns: 2},
		{name: "flags win over both", conf: "TCP_MODE=\"tcp\"\n", defaults: "UDP_MODE=\"udp\"\n", flags: []event.Mode{event.ModeUDP}, want: []event.Mode{event.ModeUDP}},
		{name: "two modes for one protocol", flags: []event.Mode{event.ModeTCP, event.ModeATCP}, wantErr: errAny},
		{name: "advanced mode from the start-up file", defaults: "TCP_MODE=\"atcp\"\nUDP_MODE=\"audp\"\n", want: []event.Mode{event.ModeATCP, event.ModeAUDP}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{
				ConfigPath: write(t, dir, "portsentry.conf", "TCP_PORTS=\"1,2\"\nUDP_PORTS=\"3\"\n"+tt.conf),
				Modes:      tt.flags,
			}
			if tt.defaults != "" {
				opts.DefaultsPath = write(t, dir, "default", tt.defaults)
			}
			s, err := Load(opts)
			if tt.wantErr != nil {
				var ce *ConfigError
				if !errors.As(err, &ce) {
					t.Fatalf("Load error = %v, want a *ConfigError", err)
				}
				if tt.wantErr != errAny && !errors.Is(err, tt.wantErr) {
					t.Fatalf("Load error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if diff := cmp.Diff(tt.want, s.Modes); diff != "" {
				t.Errorf("modes (-want +got):\n%s", diff)
			}
			n := 0
			for _, w := range s.Warnings {
				if strings.Contains(w, "is overridden by") {
					n++
				}
			}
			if n != tt.warns {
				t.Errorf("%d warnings about an overridden mode, want %d: %q", n, tt.warns, s.Warnings)
			}
		})
	}
}

var errAny = errors.New("any error")

func TestLoadIgnoreFiles(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "ignore", "10.0.0.1\n")
	write(t, dir, "ignore.static", "192.0.2.0/24\n")
	conf := write(t, dir, "portsentry.conf", "IGNORE_FILE=\"ignore\"\nTCP_PORTS=\"1\"\n")
	s, err := Load(Options{ConfigPath: conf})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"10.0.0.1", "192.0.2.77"} {
		if !s.Ignore.Contains(mustAddr(t, a)) {
			t.Errorf("%s not ignored: both IGNORE_FILE and its .static companion must be read", a)
		}
	}
	if s.IgnoreMissing {
		t.Error("IgnoreMissing set although the files exist")
	}
}

func TestLoadWarnsAboutUselessBlock(t *testing.T) {
	const useless = `BLOCK_TCP="1" but neither KILL_ROUTE nor KILL_HOSTS_DENY is set: nothing will be blocked`
	const noRun = `BLOCK_UDP="2" but KILL_RUN_CMD is not set: nothing will run`
	tests := []struct {
		name, conf string
		want       string // the warning expected; "" for none of the two
	}{
		{"command blocker, nothing to block with", `BLOCKER="command"` + "\n", useless},
		{"command blocker with KILL_ROUTE", `BLOCKER="command"` + "\nKILL_ROUTE=\"/bin/true $TARGET$\"\n", ""},
		{"command blocker with hosts.deny", `BLOCKER="command"` + "\nKILL_HOSTS_DENY=\"ALL: $TARGET$\"\n", ""},
		{"native blocker needs neither", `BLOCKER="nftables"` + "\n", ""},
		{"run-only without a command", `BLOCKER="nftables"` + "\nBLOCK_UDP=\"2\"\n", noRun},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			conf := write(t, dir, "portsentry.conf", "TCP_PORTS=\"1\"\nUDP_PORTS=\"2\"\nBLOCK_TCP=\"1\"\nBLOCK_UDP=\"0\"\n"+tt.conf)
			s, err := Load(Options{ConfigPath: conf})
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range []string{useless, noRun} {
				if got := slices.Contains(s.Warnings, w); got != (w == tt.want) {
					t.Errorf("warning %q given: %v, want %v (warnings: %q)", w, got, w == tt.want, s.Warnings)
				}
			}
		})
	}
}

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestEnforceTrigger: SCAN_TRIGGER and SCAN_TRIGGER_WINDOW reach the
// engine, and the kernel trap, which bans on the first probe, is set only
// when SCAN_TRIGGER asks for nothing more (0 or 1).
func TestEnforceTrigger(t *testing.T) {
	tests := []struct {
		name     string
		conf     string
		trigger  int
		window   time.Duration
		wantTrap bool
	}{
		{"defaults", "", 0, time.Hour, true},
		{"trigger 1", `SCAN_TRIGGER="1"`, 1, time.Hour, true},
		{"trigger 3: no first-probe trap", `SCAN_TRIGGER="3"`, 3, time.Hour, false},
		{"trigger 3 in a minute", "SCAN_TRIGGER=\"3\"\nSCAN_TRIGGER_WINDOW=\"60\"", 3, time.Minute, false},
		{"no window", `SCAN_TRIGGER_WINDOW="0"`, 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			conf := write(t, dir, "portsentry.conf", "TCP_MODE=\"atcp\"\nBLOCK_TCP=\"1\"\nBLOCKER=\"nftables\"\n"+tt.conf+"\n")
			s, err := Load(Options{ConfigPath: conf})
			if err != nil {
				t.Fatal(err)
			}
			es := s.Enforce()
			if es.Engine.Trigger != tt.trigger || es.Engine.Window != tt.window {
				t.Errorf("engine trigger %d window %v, want %d %v", es.Engine.Trigger, es.Engine.Window, tt.trigger, tt.window)
			}
			if (es.Trap != nil) != tt.wantTrap {
				t.Errorf("kernel trap set: %v, want %v", es.Trap != nil, tt.wantTrap)
			}
		})
	}
}

// PROTECT_PEERS (default on) makes the kernel trap learn and spare peers;
// "0" turns it off and leaves the trap as it was.
func TestTrapPeers(t *testing.T) {
	for _, tt := range []struct {
		conf string
		want time.Duration
	}{
		{"", PeerTime},
		{`PROTECT_PEERS="1"`, PeerTime},
		{`PROTECT_PEERS="0"`, 0},
	} {
		dir := t.TempDir()
		conf := write(t, dir, "portsentry.conf", "TCP_MODE=\"atcp\"\nBLOCK_TCP=\"1\"\nBLOCKER=\"nftables\"\n"+tt.conf+"\n")
		s, err := Load(Options{ConfigPath: conf})
		if err != nil {
			t.Fatal(err)
		}
		tr := s.Enforce().Trap
		if tr == nil {
			t.Fatalf("%q: no trap", tt.conf)
		}
		if tr.Peers != tt.want {
			t.Errorf("%q: trap peers %v, want %v", tt.conf, tr.Peers, tt.want)
		}
	}
}

// SERVICE_GRACE (default an hour) reaches both the kernel trap and the
// daemon's service check; "0" turns it off in both.
func TestServiceGrace(t *testing.T) {
	for _, tt := range []struct {
		conf string
		want time.Duration
	}{
		{"", time.Hour},
		{`SERVICE_GRACE="120"`, 2 * time.Minute},
		{`SERVICE_GRACE="0"`, 0},
	} {
		dir := t.TempDir()
		conf := write(t, dir, "portsentry.conf", "TCP_MODE=\"atcp\"\nBLOCK_TCP=\"1\"\nBLOCKER=\"nftables\"\n"+tt.conf+"\n")
		s, err := Load(Options{ConfigPath: conf})
		if err != nil {
			t.Fatal(err)
		}
		es := s.Enforce()
		if es.ServiceGrace != tt.want || es.Trap == nil || es.Trap.Grace != tt.want {
			t.Errorf("%q: service check grace %v, trap %+v, want %v in both", tt.conf, es.ServiceGrace, es.Trap, tt.want)
		}
	}
}
