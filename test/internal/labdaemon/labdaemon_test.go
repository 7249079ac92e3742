package labdaemon

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portsentry-go/portsentry/internal/config"
)

// TestConf loads the lab's version of the shipped configuration with the
// daemon's own parser: every file is in the work directory, EVENT_LOG is
// on, the scenario's own settings are in, and the blocking is as shipped.
func TestConf(t *testing.T) {
	shipped, err := os.ReadFile(filepath.Join("..", "..", "..", ShippedConf))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := NewFiles(dir)
	for _, tc := range []struct {
		name    string
		set     map[string]string
		trigger int
	}{
		{"as shipped", nil, 0},
		{"SCAN_TRIGGER set", map[string]string{"SCAN_TRIGGER": "3"}, 3},
	} {
		text, err := Conf(string(shipped), f, tc.set)
		if err != nil {
			t.Fatal(err)
		}
		c, err := config.Parse(strings.NewReader(text), f.Conf)
		if err != nil {
			t.Fatalf("%s: the daemon refuses the lab's configuration: %v\n%s", tc.name, err, text)
		}
		for name, got := range map[string]string{
			"IGNORE_FILE": c.IgnoreFile, "HISTORY_FILE": c.HistoryFile, "BLOCKED_FILE": c.BlockedFile,
			"BAN_FILE": c.BanFile, "CONTROL_SOCKET": c.ControlSocket, "EVENT_LOG": c.EventLog,
		} {
			if !strings.HasPrefix(got, dir+string(filepath.Separator)) {
				t.Errorf("%s: %s = %q, not in the work directory %s", tc.name, name, got, dir)
			}
		}
		if c.Blocker != "auto" || !c.KernelTrap || c.ScanTrigger != tc.trigger || c.TCPMode != "atcp" || c.UDPMode != "audp" {
			t.Errorf("%s: blocking not as shipped: BLOCKER=%q KERNEL_TRAP=%v SCAN_TRIGGER=%d modes %q %q",
				tc.name, c.Blocker, c.KernelTrap, c.ScanTrigger, c.TCPMode, c.UDPMode)
		}
	}
	if _, err := Conf(string(shipped)+"KILL_ROUTE=\"/sbin/route add $TARGET$\"\n", f, nil); err == nil {
		t.Error("Conf kept a path it does not move")
	}
	text, err := Conf("BAN_TIME=\"60\"\n", f, map[string]string{"SCAN_TRIGGER": "3", "BAN_TIME": "10"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(text, `BAN_TIME="10" `) || !strings.HasSuffix(text, `SCAN_TRIGGER="3" # lab: added`+"\n") {
		t.Errorf("set keys not replaced in place and appended last:\n%s", text)
	}
}

func TestNamesAddr(t *testing.T) {
	line := "1796674482 - 12/07/2026 20:14:42 Host: 10.233.0.25/10.233.0.25 Port: 4444 TCP Blocked"
	if NamesAddr(line, netip.MustParseAddr("10.233.0.2")) {
		t.Error("10.233.0.2 found in a line naming 10.233.0.25")
	}
	if !NamesAddr(line, netip.MustParseAddr("10.233.0.25")) {
		t.Error("10.233.0.25 not found")
	}
	if !NamesAddr("Host: fd00:233::5/fd00:233::5 Port: 22", netip.MustParseAddr("fd00:233::5")) {
		t.Error("fd00:233::5 not found")
	}
}

func TestInHistory(t *testing.T) {
	p := filepath.Join(t.TempDir(), "history")
	if ok, err := InHistory(p, netip.MustParseAddr("10.0.0.1")); ok || err != nil {
		t.Errorf("InHistory of a missing file = %v, %v", ok, err)
	}
	if err := os.WriteFile(p, []byte("1 - x Host: 10.0.0.1/10.0.0.1 Port: 1 TCP Blocked\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if ok, err := InHistory(p, netip.MustParseAddr("10.0.0.1")); !ok || err != nil {
		t.Errorf("InHistory = %v, %v", ok, err)
	}
}
