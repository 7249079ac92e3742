package config

import (
	"bufio"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/portsentry-go/portsentry/internal/portset"
)

// configCmp lets cmp compare and print portset.Set, whose bitmap is
// unexported, in its readable "1,7,9,512-515" form, and leaves out
// Config.Lines (TestLines checks it).
var configCmp = cmp.Options{
	cmp.Transformer("portset", func(s portset.Set) string { return s.String() }),
	cmpopts.IgnoreFields(Config{}, "Lines"),
}

func ports(t *testing.T, s string) portset.Set {
	t.Helper()
	p, err := portset.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The fleet's keys: lists split on commas and spaces, URLs, addresses
// and names checked, each error naming the key.
func TestFleetKeys(t *testing.T) {
	c, err := Parse(strings.NewReader(`FLEET_URL="nats://10.0.0.1:4222, nats://10.0.0.2:4222 tls://[fd00::3]:4222"
FLEET_LISTEN="0.0.0.0:4222"
FLEET_CLUSTER=":6222"
FLEET_ROUTES="10.0.0.2:6222,10.0.0.3:6222"
FLEET_NAME="web1"
FLEET_MAX_BAN_TIME="3600"
FLEET_MAX_RATE="20"
`), "/etc/portsentry/portsentry.conf")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"nats://10.0.0.1:4222", "nats://10.0.0.2:4222", "tls://[fd00::3]:4222"}, c.FleetURL); diff != "" {
		t.Error(diff)
	}
	if c.FleetListen != "0.0.0.0:4222" || c.FleetCluster != ":6222" || len(c.FleetRoutes) != 2 || c.FleetName != "web1" ||
		c.FleetMaxBanTime != time.Hour || c.FleetMaxRate != 20 {
		t.Errorf("parsed %+v", c)
	}
	for _, tt := range []struct{ line, want string }{
		{`FLEET_URL="http://10.0.0.1:4222"`, `f.conf:1: FLEET_URL: invalid value "http://10.0.0.1:4222": want nats://HOST:PORT`},
		{`FLEET_URL="nats://10.0.0.1"`, `f.conf:1: FLEET_URL: invalid value "nats://10.0.0.1"`},
		{`FLEET_LISTEN="4222"`, `f.conf:1: FLEET_LISTEN: invalid value "4222": want HOST:PORT`},
		{`FLEET_ROUTES="10.0.0.2:6222 10.0.0.3:99999"`, `f.conf:1: FLEET_ROUTES: invalid value "10.0.0.3:99999": port must be from 1 to 65535`},
		{`FLEET_NAME="web1.example.net"`, `f.conf:1: FLEET_NAME: invalid value "web1.example.net": want 1 to 64 letters, digits, - or _`},
		{`FLEET_MAX_RATE="0"`, `f.conf:1: FLEET_MAX_RATE: invalid value "0"`},
		{`FLEET_MAX_BAN_TIME="10"`, `f.conf:1: FLEET_MAX_BAN_TIME: invalid value "10"`},
	} {
		_, err := Parse(strings.NewReader(tt.line), "f.conf")
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %s…", tt.line, err, tt.want)
		}
	}
}

func TestDefault(t *testing.T) {
	want := &Config{
		AdvancedPortsTCP:      1024,
		AdvancedPortsUDP:      1024,
		AdvancedExcludeTCP:    ports(t, "113,139"),
		AdvancedExcludeUDP:    ports(t, "67,137,138,520"),
		HostsDenyFile:         "/etc/hosts.deny",
		HistoryFormat:         History12,
		CommandTimeout:        30 * time.Second,
		ResolveTimeout:        2 * time.Second,
		MaxSources:            65536,
		ScanTriggerWindow:     time.Hour, // PortSentry's "hits within an hour"
		Blocker:               "command", // PortSentry's way: KILL_ROUTE
		KernelTrap:            true,
		ProtectInfrastructure: true,
		ProtectPeers:          true,
		ServiceGrace:          time.Hour,
		BanPrefix6:            128,
		BanForward:            true,
		ControlSocket:         "/run/portsentry/portsentry.sock",
		FleetStore:            "/var/lib/portsentry/fleet",
		FleetMaxBanTime:       24 * time.Hour, // the longest ban accepted from the fleet
		FleetMaxRate:          100,            // bans a second from one member
		AlertSendmail:         "/usr/sbin/sendmail",
		AlertDelay:            5 * time.Second,
		AlertWindow:           time.Minute,
		AlertMaxPerHour:       60,
		CrowdSecPoll:          10 * time.Second,
	}
	if diff := cmp.Diff(want, Default(), configCmp); diff != "" {
		t.Errorf("Default() mismatch (-want +got):\n%s", diff)
	}
	// Every key's default text must parse and give Default()'s value, or
	// `KEY=""` would not restore the default.
	for _, k := range Keys() {
		c := Default()
		if err := keys[k].set(c, keys[k].def, "/"); err != nil {
			t.Errorf("default %q of %s does not parse: %v", keys[k].def, k, err)
			continue
		}
		if diff := cmp.Diff(Default(), c, configCmp); diff != "" {
			t.Errorf("default text of %s disagrees with Default() (-Default +set):\n%s", k, diff)
		}
	}
}

// debianWant is what Debian's portsentry.conf (1.2-14) loads as.
func debianWant(t *testing.T, path string) *Config {
	c := Default()
	c.Path = path
	c.TCPPorts = ports(t, "1,11,15,79,111,119,143,540,635,1080,1524,2000,5742,6667,12345,12346,20034,27665,31337,32771,32772,32773,32774,40421,49724,54320")
	c.UDPPorts = ports(t, "1,7,9,69,161,162,513,635,640,641,700,37444,34555,31335,32770,32771,32772,32773,32774,31337,54321")
	c.IgnoreFile = "/etc/portsentry/portsentry.ignore"
	c.HistoryFile = "/var/lib/portsentry/portsentry.history"
	c.BlockedFile = "/var/lib/portsentry/portsentry.blocked"
	c.KillRoute = "/sbin/route add -host $TARGET$ reject"
	c.KillHostsDeny = "ALL: $TARGET$ : DENY"
	return c
}

func TestLoadDebianShape(t *testing.T) {
	path := filepath.Join("testdata", "debian-1.2-shape.conf")
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(debianWant(t, path), got, configCmp); diff != "" {
		t.Errorf("Load(%s) mismatch (-want +got):\n%s", path, diff)
	}
}

// keyLine matches the assignment lines of a 1.2 file, active or commented.
var keyLine = regexp.MustCompile(`^#? *[A-Z_]{4,} *= *"`)

func keyLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if keyLine.MatchString(sc.Text()) {
			out = append(out, sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestLoadDebianReal loads Debian's own file, which we may not commit. CI
// sets PORTSENTRY_DEBIAN_CONF to the file extracted from
// `apt-get download portsentry`.
func TestLoadDebianReal(t *testing.T) {
	path := os.Getenv("PORTSENTRY_DEBIAN_CONF")
	if path == "" {
		t.Skip("PORTSENTRY_DEBIAN_CONF not set: to run, extract etc/portsentry/portsentry.conf from `apt-get download portsentry` and point the variable at it")
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(debianWant(t, path), got, configCmp); diff != "" {
		t.Errorf("Load(%s) mismatch (-want +got):\n%s", path, diff)
	}
	// The committed shape file must keep reproducing every key line.
	shape := keyLines(t, filepath.Join("testdata", "debian-1.2-shape.conf"))
	if diff := cmp.Diff(keyLines(t, path), shape); diff != "" {
		t.Errorf("testdata/debian-1.2-shape.conf key lines differ from %s (-real +shape):\n%s", path, diff)
	}
}

func TestLoad2xShape(t *testing.T) {
	path := filepath.Join("testdata", "portsentry-2x-shape.conf")
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Path = path
	want.TCPPorts = ports(t, "1,7,9,11,13,15,17,19,20,21,70,79,111,113,119,389,512,513,514,515,540,543,544,873,989,990,992,1080")
	want.UDPPorts = ports(t, "7,9,13,19,111,389,513,517,518")
	want.IgnoreFile = "/etc/portsentry/portsentry.ignore"
	want.HistoryFile = "/var/run/portsentry/portsentry.history"
	want.BlockedFile = "/var/run/portsentry/portsentry.blocked"
	if diff := cmp.Diff(want, got, configCmp); diff != "" {
		t.Errorf("Load(%s) mismatch (-want +got):\n%s", path, diff)
	}
}

func TestBadFiles(t *testing.T) {
	tests := []struct {
		file    string
		line    int
		key     string
		is      error  // sentinel the error must match, nil for UnknownKeyError
		message string // the full Error() text
	}{
		{"unknown-key.conf", 3, "", nil, `unknown key "BLOK_TCP" (did you mean BLOCK_TCP?)`},
		{"prefix-key.conf", 3, "", nil, `unknown key "B" (did you mean BAN_FILE, BAN_FORWARD, BAN_PREFIX6, BAN_TIME, BAN_TIME_MAX, BLOCKED_FILE, BLOCKER, BLOCK_TCP or BLOCK_UDP?)`},
		{"bad-port.conf", 2, "UDP_PORTS", ErrInvalidValue, `invalid value: bad port "70000" (must be 1-65535)`},
		{"reversed-range.conf", 2, "TCP_PORTS", ErrInvalidValue, `invalid value: bad range "515-512" (start is after end)`},
		{"block-tcp-3.conf", 2, "BLOCK_TCP", ErrInvalidValue, `invalid value "3": must be 0 (log only), 1 (block) or 2 (run KILL_RUN_CMD only)`},
		{"scan-trigger-negative.conf", 1, "SCAN_TRIGGER", ErrInvalidValue, `invalid value "-1": must be a whole number from 0 to 1000`},
		{"missing-quote.conf", 2, "IGNORE_FILE", ErrSyntax, `syntax error: missing closing "`},
		{"no-equals.conf", 3, "RESOLVE_HOST", ErrSyntax, `syntax error: no "=" on the line (want KEY="value")`},
		{"no-equals-prose.conf", 2, "", ErrSyntax, `syntax error: no "=" on the line (want KEY="value")`},
		{"no-key.conf", 1, "", ErrSyntax, `syntax error: no key before "="`},
		{"kill-route-no-target.conf", 1, "KILL_ROUTE", ErrInvalidValue, `invalid value "/sbin/iptables -I INPUT -s 1.2.3.4 -j DROP": must contain $TARGET$`},
		{"bad-mode.conf", 1, "TCP_MODE", ErrInvalidValue, `invalid value "stealth": must be tcp, stcp or atcp`},
		{"resolve-host-yes.conf", 1, "RESOLVE_HOST", ErrInvalidValue, `invalid value "yes": must be 0 or 1`},
		{"unquoted-blanks.conf", 1, "KILL_ROUTE", ErrSyntax, `syntax error: unquoted value contains blanks (write KEY="value")`},
		{"advanced-ports-too-big.conf", 1, "ADVANCED_PORTS_TCP", ErrInvalidValue, `invalid value "65536": must be a whole number from 1 to 65535`},
		{"empty-item.conf", 1, "ADVANCED_EXCLUDE_UDP", ErrInvalidValue, `invalid value: empty item`},
		{"command-timeout-zero.conf", 1, "COMMAND_TIMEOUT", ErrInvalidValue, `invalid value "0": must be a whole number of seconds from 1 to 3600`},
		{"history-format.conf", 1, "HISTORY_FORMAT", ErrInvalidValue, `invalid value "3": must be "1.2" or "2.x"`},
		{"scan-trigger-window-unit.conf", 2, "SCAN_TRIGGER_WINDOW", ErrInvalidValue, `invalid value "1h": must be a whole number of seconds from 0 to 315360000`},
		{"metrics-no-port.conf", 1, "METRICS_ADDRESS", ErrInvalidValue, `invalid value "localhost": want HOST:PORT, such as 127.0.0.1:9617 or [::1]:9617`},
		{"metrics-bad-port.conf", 2, "METRICS_ADDRESS", ErrInvalidValue, `invalid value "127.0.0.1:http": the port must be a number from 0 to 65535`},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		seen[tt.file] = true
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", "bad", tt.file)
			c, err := Load(path)
			if c != nil {
				t.Errorf("Load returned a config along with error %v", err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Load(%s) = %v, want *Error", path, err)
			}
			type loc struct {
				File string
				Line int
				Key  string
			}
			if diff := cmp.Diff(loc{path, tt.line, tt.key}, loc{e.File, e.Line, e.Key}); diff != "" {
				t.Errorf("error location mismatch (-want +got):\n%s", diff)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.is)
			}
			if tt.is == nil {
				var uk *UnknownKeyError
				if !errors.As(err, &uk) {
					t.Errorf("error %v is not an *UnknownKeyError", err)
				} else if !strings.Contains(tt.message, strconv.Quote(uk.Key)) {
					t.Errorf("UnknownKeyError.Key = %q, not the key in %s", uk.Key, tt.message)
				}
			}
			wantMsg := path + ":" + strconv.Itoa(tt.line) + ": "
			if tt.key != "" {
				wantMsg += tt.key + ": "
			}
			wantMsg += tt.message
			if got := err.Error(); got != wantMsg {
				t.Errorf("Error() =\n  %s\nwant\n  %s", got, wantMsg)
			}
		})
	}
	// Every fixture in testdata/bad must be in the table.
	files, _ := filepath.Glob(filepath.Join("testdata", "bad", "*.conf"))
	for _, f := range files {
		if !seen[filepath.Base(f)] {
			t.Errorf("%s has no entry in the table", f)
		}
	}
}

// TestParseSyntax covers the line syntax with small inline files. mutate
// applies the expected changes to Default().
func TestParseSyntax(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		mutate func(c *Config)
	}{
		{"empty file", "", func(*Config) {}},
		{"comments and blanks", "# c\n\n   \t\n  # indented comment\n", func(*Config) {}},
		{"plain", `SCAN_TRIGGER="3"` + "\n", func(c *Config) { c.ScanTrigger = 3 }},
		{"no final newline", `SCAN_TRIGGER="3"`, func(c *Config) { c.ScanTrigger = 3 }},
		{"blanks around =", "  \tSCAN_TRIGGER \t=\t \"3\"\n", func(c *Config) { c.ScanTrigger = 3 }},
		{"CRLF", "# c\r\nSCAN_TRIGGER=\"3\"\r\nBLOCK_TCP=1\r\n", func(c *Config) { c.ScanTrigger = 3; c.BlockTCP = Block }},
		{"BOM", "\ufeffBLOCK_UDP=\"2\"\n", func(c *Config) { c.BlockUDP = RunCmdOnly }},
		{"text after closing quote ignored, with a warning", `BLOCK_TCP="1" this is ignored "too"` + "\n", func(c *Config) {
			c.BlockTCP = Block
			c.Warnings = []string{`/etc/portsentry/portsentry.conf:1: BLOCK_TCP: text after the closing quote is ignored: "this is ignored \"too\"" (the value is "1")`}
		}},
		{"hash inside quotes kept", `PORT_BANNER="# not a comment"` + "\n", func(c *Config) { c.PortBanner = "# not a comment" }},
		{"equals inside quotes kept", `KILL_RUN_CMD="/bin/x a=b $TARGET$"` + "\n", func(c *Config) { c.KillRunCmd = "/bin/x a=b $TARGET$" }},
		{"single quotes inside value", `KILL_ROUTE="/bin/echo 'block $TARGET$' | x"` + "\n", func(c *Config) { c.KillRoute = "/bin/echo 'block $TARGET$' | x" }},
		{"unquoted", "SCAN_TRIGGER=5\n", func(c *Config) { c.ScanTrigger = 5 }},
		{"unquoted with comment", "SCAN_TRIGGER = 5   # five\n", func(c *Config) { c.ScanTrigger = 5 }},
		{"unquoted hash ends value", "SCAN_TRIGGER=5#five\n", func(c *Config) { c.ScanTrigger = 5 }},
		{"unquoted empty", "BLOCK_TCP=\n", func(*Config) {}},
		{"last wins", "BLOCK_TCP=\"1\"\nBLOCK_TCP=\"2\"\n", func(c *Config) { c.BlockTCP = RunCmdOnly }},
		{"empty restores default", "ADVANCED_PORTS_TCP=\"80\"\nADVANCED_PORTS_TCP=\"\"\nADVANCED_EXCLUDE_TCP=\"\"\nHOSTS_DENY_FILE=\"\"\n", func(*Config) {}},
		{"empty port list is empty", "TCP_PORTS=\"1,2\"\nTCP_PORTS=\"\"\n", func(*Config) {}},
		{"leading zeros", `SCAN_TRIGGER="007"`, func(c *Config) { c.ScanTrigger = 7 }},
		{"bools", "RESOLVE_HOST=\"1\"\nKILL_RUN_CMD_FIRST=\"1\"\n", func(c *Config) { c.ResolveHost = true; c.KillRunCmdFirst = true }},
		{"port list with blanks", `TCP_PORTS=" 1, 7 ,9 "`, func(c *Config) { c.TCPPorts = mustPorts("1,7,9") }},
		{"extensions", strings.Join([]string{
			`KILL_ROUTE6="/usr/sbin/ip6tables -I INPUT -s $TARGET$ -j DROP"`,
			`TCP_MODE="atcp"`,
			`UDP_MODE="sudp"`,
			`HOSTS_DENY_FILE="/tmp/hosts.deny"`,
			`HISTORY_FORMAT="2.x"`,
			`COMMAND_TIMEOUT="3600"`,
			`RESOLVE_TIMEOUT="60"`,
			`MAX_SOURCES="10000000"`,
		}, "\n"), func(c *Config) {
			c.KillRoute6 = "/usr/sbin/ip6tables -I INPUT -s $TARGET$ -j DROP"
			c.TCPMode = "atcp"
			c.UDPMode = "sudp"
			c.HostsDenyFile = "/tmp/hosts.deny"
			c.HistoryFormat = History2x
			c.CommandTimeout = time.Hour
			c.ResolveTimeout = time.Minute
			c.MaxSources = 10000000
		}},
		{"relative paths", "IGNORE_FILE=\"portsentry.ignore\"\nHISTORY_FILE=\"../var/h\"\nBLOCKED_FILE=\"./b\"\nHOSTS_DENY_FILE=\"hd\"\n", func(c *Config) {
			c.IgnoreFile = "/etc/portsentry/portsentry.ignore"
			c.HistoryFile = "/etc/var/h"
			c.BlockedFile = "/etc/portsentry/b"
			c.HostsDenyFile = "/etc/portsentry/hd"
		}},
		{"KILL_RUN_CMD needs no target", `KILL_RUN_CMD="/usr/local/bin/alert"`, func(c *Config) { c.KillRunCmd = "/usr/local/bin/alert" }},
		{"SCAN_TRIGGER max", `SCAN_TRIGGER="1000"`, func(c *Config) { c.ScanTrigger = 1000 }},
		{"SCAN_TRIGGER_WINDOW", `SCAN_TRIGGER_WINDOW="60"`, func(c *Config) { c.ScanTriggerWindow = time.Minute }},
		{"SCAN_TRIGGER_WINDOW 0: no window", `SCAN_TRIGGER_WINDOW="0"`, func(c *Config) { c.ScanTriggerWindow = 0 }},
		{"SCAN_TRIGGER_WINDOW max", `SCAN_TRIGGER_WINDOW="315360000"`, func(c *Config) { c.ScanTriggerWindow = 315360000 * time.Second }},
		{"SCAN_TRIGGER_WINDOW empty restores default", "SCAN_TRIGGER_WINDOW=\"0\"\nSCAN_TRIGGER_WINDOW=\"\"\n", func(*Config) {}},
	}
	const name = "/etc/portsentry/portsentry.conf"
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(tt.in), name)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := Default()
			want.Path = name
			tt.mutate(want)
			if diff := cmp.Diff(want, got, configCmp); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func mustPorts(s string) portset.Set {
	p, err := portset.Parse(s)
	if err != nil {
		panic(err)
	}
	return p
}

func TestUnknownKeySuggestions(t *testing.T) {
	tests := []struct {
		key  string
		want []string
	}{
		{"BLOK_TCP", []string{"BLOCK_TCP"}},
		{"block_tcp", []string{"BLOCK_TCP"}},
		{"TCP_PORT", []string{"TCP_PORTS"}},
		{"IGNORE_FLIE", []string{"IGNORE_FILE"}},
		{"BLOCK_UPD", []string{"BLOCK_UDP"}},
		{"KILL", []string{"KILL_HOSTS_DENY", "KILL_ROUTE", "KILL_ROUTE6", "KILL_RUN_CMD", "KILL_RUN_CMD_FIRST"}},
		{"B", []string{"BAN_FILE", "BAN_FORWARD", "BAN_PREFIX6", "BAN_TIME", "BAN_TIME_MAX", "BLOCKED_FILE", "BLOCKER", "BLOCK_TCP", "BLOCK_UDP"}},
		{"FROBNICATE", nil},
		{strings.Repeat("X", 10000), nil},
	}
	for _, tt := range tests {
		got := unknownKey(tt.key).Suggestions
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("unknownKey(%.20q) suggestions (-want +got):\n%s", tt.key, diff)
		}
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		e    *Error
		want string
	}{
		{&Error{File: "a.conf", Line: 3, Key: "BLOCK_TCP", Err: errors.New("boom")}, "a.conf:3: BLOCK_TCP: boom"},
		{&Error{File: "a.conf", Line: 3, Err: errors.New("boom")}, "a.conf:3: boom"},
		{&Error{File: "a.conf", Err: errors.New("boom")}, "a.conf: boom"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.conf")
	_, err := Load(path)
	var e *Error
	if !errors.As(err, &e) || e.File != path || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v; want *Error naming the file and wrapping fs.ErrNotExist", err)
	}
}

func TestApplyDefaultsFile(t *testing.T) {
	tests := []struct {
		name             string
		file             string // "" means the file does not exist
		confTCP, confUDP string // modes set by portsentry.conf
		wantTCP, wantUDP string
	}{
		{name: "missing file", file: "", wantTCP: "", wantUDP: ""},
		{name: "debian postinst", file: "# /etc/default/portsentry\n#\nTCP_MODE=\"tcp\"\nUDP_MODE=\"udp\"\n", wantTCP: "tcp", wantUDP: "udp"},
		{name: "shell single quotes and comments", file: "TCP_MODE='atcp' # advanced\nUDP_MODE=audp # too\n", wantTCP: "atcp", wantUDP: "audp"},
		{name: "empty values change nothing", file: "TCP_MODE=\"\"\nUDP_MODE=\"\"\n", confTCP: "stcp", wantTCP: "stcp", wantUDP: ""},
		{name: "portsentry.conf wins", file: "TCP_MODE=\"tcp\"\nUDP_MODE=\"udp\"\n", confTCP: "atcp", wantTCP: "atcp", wantUDP: "udp"},
		{name: "last wins", file: "TCP_MODE=\"tcp\"\nTCP_MODE=\"stcp\"\n", wantTCP: "stcp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "portsentry")
			if tt.file != "" {
				if err := os.WriteFile(path, []byte(tt.file), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			c := Default()
			c.TCPMode, c.UDPMode = tt.confTCP, tt.confUDP
			if err := c.ApplyDefaultsFile(path); err != nil {
				t.Fatalf("ApplyDefaultsFile: %v", err)
			}
			got := [2]string{c.TCPMode, c.UDPMode}
			if diff := cmp.Diff([2]string{tt.wantTCP, tt.wantUDP}, got); diff != "" {
				t.Errorf("modes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestApplyDefaultsFileErrors(t *testing.T) {
	tests := []struct {
		name string
		file string
		line int
		key  string
		msg  string
	}{
		{"other key", "TCP_MODE=\"tcp\"\nSCAN_TRIGGER=\"1\"\n", 2, "", `unknown key "SCAN_TRIGGER" (only TCP_MODE and UDP_MODE are allowed here)`},
		{"bad mode", "UDP_MODE=\"tcp\"\n", 1, "UDP_MODE", `invalid value "tcp": must be udp, sudp or audp`},
		{"missing quote", "TCP_MODE=\"tcp\n", 1, "TCP_MODE", `syntax error: missing closing "`},
		{"missing single quote", "TCP_MODE='tcp\n", 1, "TCP_MODE", `syntax error: missing closing '`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "portsentry")
			if err := os.WriteFile(path, []byte(tt.file), 0o644); err != nil {
				t.Fatal(err)
			}
			c := Default()
			err := c.ApplyDefaultsFile(path)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("ApplyDefaultsFile = %v, want *Error", err)
			}
			type view struct {
				File string
				Line int
				Key  string
				Msg  string
			}
			want := view{path, tt.line, tt.key, tt.msg}
			if diff := cmp.Diff(want, view{e.File, e.Line, e.Key, e.Err.Error()}); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if c.TCPMode != "" || c.UDPMode != "" {
				t.Errorf("modes changed despite the error: %q %q", c.TCPMode, c.UDPMode)
			}
		})
	}
}

func TestApplyDefaultsFileUnreadable(t *testing.T) {
	// A directory exists but cannot be read as a file: that is an error,
	// unlike a missing file.
	dir := t.TempDir()
	err := Default().ApplyDefaultsFile(dir)
	var e *Error
	if !errors.As(err, &e) || e.File != dir || e.Line != 0 {
		t.Errorf("ApplyDefaultsFile(dir) = %v, want *Error naming %s and no line", err, dir)
	}
	if want := dir + ": is a directory, not a file"; err.Error() != want {
		t.Errorf("ApplyDefaultsFile(dir) = %q, want %q", err, want)
	}
}

// A directory or a device given as the configuration file is reported as
// such, not as a read error at line 1.
func TestLoadNotAFile(t *testing.T) {
	dir := t.TempDir()
	for path, want := range map[string]string{
		dir:         dir + ": is a directory, not a file",
		"/dev/null": "/dev/null: is not a regular file (Dc---------)",
	} {
		c, err := Load(path)
		var e *Error
		if c != nil || !errors.As(err, &e) || e.Line != 0 || err.Error() != want {
			t.Errorf("Load(%s) = %v, %v; want %q", path, c, err, want)
		}
	}
}

// Lines names the line that set each key last, for errors found after
// parsing; ErrorAt uses it.
func TestLines(t *testing.T) {
	c, err := Parse(strings.NewReader("# c\nBLOCK_TCP=\"1\"\n\nALERT_MAILER=\"smtp\"\nBLOCK_TCP=\"2\"\nALERT_EMAIL_TO=\"\"\n"), "p.conf")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"BLOCK_TCP": 5, "ALERT_MAILER": 4, "ALERT_EMAIL_TO": 6}
	if diff := cmp.Diff(want, c.Lines); diff != "" {
		t.Errorf("Lines (-want +got):\n%s", diff)
	}
	for key, want := range map[string]string{
		"ALERT_EMAIL_TO":  "p.conf:6: ALERT_EMAIL_TO: boom",
		"METRICS_ADDRESS": "p.conf: METRICS_ADDRESS: boom", // not in the file
	} {
		if got := c.ErrorAt(key, errors.New("boom")).Error(); got != want {
			t.Errorf("ErrorAt(%s) = %q, want %q", key, got, want)
		}
	}
}

// Values that load but are risky get a warning naming file, line and key.
func TestWarnings(t *testing.T) {
	tests := []struct {
		name string
		text string
		mode os.FileMode
		want []string
	}{
		{"metrics on loopback", `METRICS_ADDRESS="127.0.0.1:9617"`, 0o644, nil},
		{"metrics on a name", `METRICS_ADDRESS="localhost:9617"`, 0o644, nil},
		{"metrics on a port the kernel picks", `METRICS_ADDRESS="127.0.0.1:0"`, 0o644, nil},
		{"metrics on every interface", "\nMETRICS_ADDRESS=\":9617\"", 0o644, []string{
			`F:2: METRICS_ADDRESS: ":9617" listens on every interface: whoever reaches this host can read the metrics (what is watched, how many bans); give 127.0.0.1:PORT or a management address`}},
		{"metrics on 0.0.0.0", `METRICS_ADDRESS="0.0.0.0:9617"`, 0o644, []string{`F:1: METRICS_ADDRESS: "0.0.0.0:9617" listens on every interface`}},
		{"metrics on [::]", `METRICS_ADDRESS="[::]:9617"`, 0o644, []string{`F:1: METRICS_ADDRESS: "[::]:9617" listens on every interface`}},
		{"password in a world-readable file", "ALERT_MAILER=\"smtp\"\nALERT_SMTP_PASSWORD=\"hunter2\"\n", 0o644, []string{
			"F:2: ALERT_SMTP_PASSWORD: holds a secret, but F is readable by every user (mode 0644): chmod o-r F"}},
		{"password in a private file", "ALERT_SMTP_PASSWORD=\"hunter2\"\n", 0o640, nil},
		{"empty password", "ALERT_SMTP_PASSWORD=\"\"\n", 0o644, nil},
		{"webhook token and URL", "ALERT_WEBHOOK_URL=\"https://h.example/x\"\nALERT_WEBHOOK_TOKEN=\"t\"\n", 0o604, []string{
			"F:2: ALERT_WEBHOOK_TOKEN: holds a secret", "F:1: ALERT_WEBHOOK_URL: holds a secret"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "portsentry.conf")
			if err := os.WriteFile(path, []byte(tt.text), tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil { // past the umask
				t.Fatal(err)
			}
			c, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Warnings) != len(tt.want) {
				t.Fatalf("warnings %q, want %d like %q", c.Warnings, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if w = strings.ReplaceAll(w, "F", path); !strings.HasPrefix(c.Warnings[i], w) {
					t.Errorf("warning %q, want it to start with %q", c.Warnings[i], w)
				}
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, path := range []string{
		filepath.Join("testdata", "debian-1.2-shape.conf"),
		filepath.Join("testdata", "portsentry-2x-shape.conf"),
	} {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	for _, s := range []string{
		"", "\n", "#", "=", `=""`, `"`, `A="`, `TCP_PORTS="1-2,3"`, "SCAN_TRIGGER=5 # x",
		"BLOCK_TCP = \"1\"\r\n", "\ufeffB=\"1\"", "KILL_ROUTE=\"$TARGET$\" trailing",
		"TCP_MODE='tcp'", "HISTORY_FORMAT=2.x\nMAX_SOURCES=\"\"", "SCAN_TRIGGER_WINDOW=\"0\"",
		`METRICS_ADDRESS="localhost"`, `METRICS_ADDRESS=":9617"`, `METRICS_ADDRESS="[::1]:0"`, `METRICS_ADDRESS="a b:1"`,
		"ALERT_SMTP_PASSWORD=\"x\"\nALERT_SMTP_PASSWORD=\"\"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		c, err := Parse(strings.NewReader(in), "/fuzz/portsentry.conf")
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T %v is not *Error", err, err)
			}
			if e.File != "/fuzz/portsentry.conf" || e.Line < 1 {
				t.Fatalf("error %v does not name file and line", err)
			}
			if c != nil {
				t.Fatal("config returned with error")
			}
			return
		}
		// Whatever was accepted must satisfy the documented invariants.
		switch {
		case c.AdvancedPortsTCP < 1 || c.AdvancedPortsTCP > 65535,
			c.AdvancedPortsUDP < 1 || c.AdvancedPortsUDP > 65535,
			c.ScanTrigger < 0 || c.ScanTrigger > 1000,
			c.MaxSources < 1 || c.MaxSources > 10000000,
			c.CommandTimeout < time.Second || c.CommandTimeout > time.Hour,
			c.ResolveTimeout < time.Second || c.ResolveTimeout > time.Minute,
			c.ScanTriggerWindow < 0 || c.ScanTriggerWindow > 315360000*time.Second || c.ScanTriggerWindow%time.Second != 0,
			c.BlockTCP < 0 || c.BlockTCP > 2, c.BlockUDP < 0 || c.BlockUDP > 2,
			c.KillRoute != "" && !strings.Contains(c.KillRoute, "$TARGET$"),
			c.KillRoute6 != "" && !strings.Contains(c.KillRoute6, "$TARGET$"),
			c.KillHostsDeny != "" && !strings.Contains(c.KillHostsDeny, "$TARGET$"),
			c.TCPPorts.Has(0), c.UDPPorts.Has(0):
			t.Fatalf("accepted config violates an invariant: %+v", c)
		}
	})
}

// Text after a closing quote is ignored, as PortSentry ignores it, but it
// usually means a quote inside the value cut it short: warn, naming the
// place.
func TestTrailingTextWarns(t *testing.T) {
	in := "TCP_PORTS=\"1\" # a comment is fine\nKILL_RUN_CMD=\"echo \"$TARGET$\" >> log\"\n"
	c, err := Parse(strings.NewReader(in), "/etc/portsentry/portsentry.conf")
	if err != nil {
		t.Fatal(err)
	}
	if c.KillRunCmd != "echo " {
		t.Errorf("KillRunCmd = %q, want the 1.2 reading %q", c.KillRunCmd, "echo ")
	}
	want := []string{`/etc/portsentry/portsentry.conf:2: KILL_RUN_CMD: text after the closing quote is ignored: "$TARGET$\" >> log\"" (the value is "echo ")`}
	if diff := cmp.Diff(want, c.Warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
}

// TestKeyLines: Line tells where a key was set (the last time), for
// errors about keys checked together.
func TestKeyLines(t *testing.T) {
	c, err := Parse(strings.NewReader("# c\nCROWDSEC_URL=\"http://127.0.0.1:8080\"\n\nCROWDSEC_POLL=\"5\"\nCROWDSEC_POLL=\"\"\n"), "/etc/p.conf")
	if err != nil {
		t.Fatal(err)
	}
	if c.Line("CROWDSEC_URL") != 2 || c.Line("CROWDSEC_POLL") != 5 || c.Line("BLOCKER") != 0 {
		t.Errorf("lines: URL %d, POLL %d, BLOCKER %d", c.Line("CROWDSEC_URL"), c.Line("CROWDSEC_POLL"), c.Line("BLOCKER"))
	}
	if got := c.ErrorAt("CROWDSEC_URL", ErrInvalidValue).Error(); got != "/etc/p.conf:2: CROWDSEC_URL: invalid value" {
		t.Errorf("KeyError = %q", got)
	}
	if c.CrowdSecPoll != 10*time.Second {
		t.Errorf(`CROWDSEC_POLL="" gave %v, want the default`, c.CrowdSecPoll)
	}
}
