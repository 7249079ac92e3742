package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/portsentry-go/portsentry/internal/event"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    *cli
		wantErr bool
	}{
		{"defaults", nil, &cli{config: defaultConfig, defaults: defaultDefaults}, false},
		{"explicit -c skips Debian start-up file", []string{"-c", "x.conf"}, &cli{config: "x.conf"}, false},
		{"explicit --defaults kept with -c", []string{"-c", "x.conf", "--defaults", "d"}, &cli{config: "x.conf", defaults: "d"}, false},
		{"1.2 modes combine", []string{"-atcp", "-udp"}, &cli{config: defaultConfig, defaults: defaultDefaults, modes: []event.Mode{event.ModeUDP, event.ModeATCP}}, false},
		{"2.x connect", []string{"--connect"}, &cli{config: defaultConfig, defaults: defaultDefaults, modes: []event.Mode{event.ModeTCP, event.ModeUDP}, style2x: true}, false},
		{"2.x stealth", []string{"--stealth", "-i", "ALL_NLO", "-m", "raw", "-S"}, &cli{config: defaultConfig, defaults: defaultDefaults, modes: []event.Mode{event.ModeSTCP, event.ModeSUDP}, style2x: true, interfaces: []string{"ALL_NLO"}, noService: true}, false},
		{"interfaces repeat", []string{"-atcp", "-i", "eth0", "-i", "eth1"}, &cli{config: defaultConfig, defaults: defaultDefaults, modes: []event.Mode{event.ModeATCP}, interfaces: []string{"eth0", "eth1"}}, false},
		{"bad capture method", []string{"-m", "bpf"}, nil, true},
		{"check subcommand", []string{"check", "-c", "a"}, &cli{check: true, config: "a"}, false},
		{"flags", []string{"-D", "-d", "-v", "-L", "-l", "syslog"}, &cli{config: defaultConfig, defaults: defaultDefaults, background: true, debug: true, verbose: true, allowLocal: true, logTo: "syslog"}, false},
		{"bad log target", []string{"-l", "file"}, nil, true},
		{"-D would discard stdout", []string{"-D", "-l", "stdout"}, nil, true},
		{"connect and stealth", []string{"--connect", "--stealth"}, nil, true},
		{"2.x and 1.2 modes", []string{"--connect", "-tcp"}, nil, true},
		{"stray argument", []string{"tcp"}, nil, true},
		{"unknown flag", []string{"-x"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parse(tt.args)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parse(%q) error = %v, want error %v", tt.args, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(cli{})); diff != "" {
				t.Errorf("parse(%q) mismatch (-want +got):\n%s", tt.args, diff)
			}
		})
	}
}

func TestRunVersionAndBadFlags(t *testing.T) {
	if code := run([]string{"-V"}, io.Discard, io.Discard); code != exitOK {
		t.Errorf("-V exit code %d, want %d", code, exitOK)
	}
	if code := run([]string{"-l", "file"}, io.Discard, io.Discard); code != exitConfig {
		t.Errorf("bad flag exit code %d, want %d", code, exitConfig)
	}
}

// runCLI runs the command line and returns its exit code and output.
func runCLI(args ...string) (code int, stdout, stderr string) {
	var o, e strings.Builder
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

// `portsentry help`, -h and --help: the usage on standard output, exit 0,
// with every command and every daemon flag, each described by what it
// does.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}, {"-help"}} {
		code, stdout, stderr := runCLI(args...)
		if code != exitOK || stderr != "" {
			t.Errorf("portsentry %s: exit %d, stderr %q; want 0 and nothing", args[0], code, stderr)
		}
		for _, c := range []string{"check", "selftest", "list", "block", "unblock", "status", "report", "help"} {
			if !strings.Contains(stdout, "\n  "+c+" ") && !strings.Contains(stdout, "\n  "+c+"\n") {
				t.Errorf("portsentry %s does not list the command %s:\n%s", args[0], c, stdout)
			}
		}
		fs := newFlagSet("portsentry")
		daemonFlags(fs, &cli{})
		fs.VisitAll(func(f *flag.Flag) {
			if !regexp.MustCompile(`\n  --?` + regexp.QuoteMeta(f.Name) + `[ \n]`).MatchString(stdout) {
				t.Errorf("portsentry %s does not list the flag -%s", args[0], f.Name)
			}
		})
		if strings.Contains(stdout, "not in this version") {
			t.Errorf("portsentry %s says a flag is not in this version:\n%s", args[0], stdout)
		}
		if !strings.Contains(stdout, "--stealth         2.x stealth mode: passive capture on TCP_PORTS and") {
			t.Errorf("portsentry %s: --stealth not described as the working mode it is:\n%s", args[0], stdout)
		}
	}
}

// The help's flag order names every flag, so none is listed out of place.
func TestHelpListsEveryFlag(t *testing.T) {
	fs := newFlagSet("portsentry")
	daemonFlags(fs, &cli{})
	fs.VisitAll(func(f *flag.Flag) {
		if !slices.Contains(daemonFlagOrder, f.Name) {
			t.Errorf("daemonFlagOrder lacks -%s", f.Name)
		}
	})
	for _, name := range daemonFlagOrder {
		if fs.Lookup(name) == nil {
			t.Errorf("daemonFlagOrder names -%s, which is no flag", name)
		}
	}
}

// Every command the help lists is dispatched (its -h is its own help, not
// an unknown command), and `help NAME` prints that help; check is the one
// command run by the daemon's own parsing.
func TestHelpNamesEveryCommand(t *testing.T) {
	for _, c := range commands() {
		code, stdout, stderr := runCLI("help", c.name)
		if code != exitOK || stderr != "" || !strings.Contains(stdout, "Usage") {
			t.Errorf("portsentry help %s: exit %d, stdout %q, stderr %q", c.name, code, stdout, stderr)
		}
		code, stdout2, stderr := runCLI(c.name, "-h")
		if code != exitOK || stderr != "" || !strings.Contains(stdout2, "Usage") {
			t.Errorf("portsentry %s -h: exit %d, stdout %q, stderr %q", c.name, code, stdout2, stderr)
		}
	}
	for _, op := range opCommands {
		if lookupCommand(op.name) == nil {
			t.Errorf("the help does not list %s", op.name)
		}
	}
	for _, c := range commands() {
		if (c.run == nil) != (c.name == "check") {
			t.Errorf("command %s: run set %v", c.name, c.run != nil)
		}
	}
}

// -V, --version and -version print the version on standard output.
func TestVersion(t *testing.T) {
	defer func(v string) { version = v }(version)
	version = "1:0.2.0~git20260101.abc1234"
	for _, arg := range []string{"-V", "--version", "-version"} {
		code, stdout, stderr := runCLI(arg)
		if code != exitOK || stdout != "portsentry 1:0.2.0~git20260101.abc1234\n" || stderr != "" {
			t.Errorf("portsentry %s: exit %d, stdout %q, stderr %q", arg, code, stdout, stderr)
		}
	}
}

// Wrong usage: one line on stderr, naming the mistake and pointing to the
// help; exit 2; nothing on stdout.
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `portsentry: unknown command "frobnicate" (see 'portsentry help')`},
		{[]string{"-x"}, `portsentry: flag provided but not defined: -x (see 'portsentry help')`},
		{[]string{"-c"}, `portsentry: flag needs an argument: -c (see 'portsentry help')`},
		{[]string{"-m", "bpf"}, `portsentry: invalid value "bpf" for flag -m: want pcap or raw (see 'portsentry help')`},
		{[]string{"-l", "file"}, `portsentry: -l "file": want stdout or syslog (see 'portsentry help')`},
		{[]string{"--connect", "--stealth"}, `portsentry: --connect and --stealth exclude each other (see 'portsentry help')`},
		{[]string{"check", "extra"}, `portsentry check: unexpected argument "extra" (see 'portsentry help check')`},
		{[]string{"check", "-x"}, `portsentry check: flag provided but not defined: -x (see 'portsentry help check')`},
		{[]string{"-unit", "none"}, `portsentry: flag provided but not defined: -unit (see 'portsentry help')`}, // check's flag only
		{[]string{"help", "frobnicate"}, `portsentry help: no command "frobnicate" (see 'portsentry help')`},
		{[]string{"help", "a", "b"}, `portsentry help: want at most one COMMAND, got ["a" "b"] (see 'portsentry help')`},
		{[]string{"unblock"}, `portsentry unblock: want ADDRESS or PREFIX (see 'portsentry help unblock')`},
		{[]string{"list", "-json=maybe"}, `portsentry list: invalid boolean value "maybe" for -json: parse error (see 'portsentry help list')`},
		{[]string{"selftest", "-x"}, `portsentry selftest: flag provided but not defined: -x (see 'portsentry help selftest')`},
	}
	for _, tt := range tests {
		code, stdout, stderr := runCLI(tt.args...)
		if code != exitConfig || stdout != "" || stderr != tt.want+"\n" {
			t.Errorf("portsentry %s: exit %d, stdout %q, stderr %q; want exit 2 and %q", strings.Join(tt.args, " "), code, stdout, stderr, tt.want)
		}
	}
}

// check: every mistake a line naming file, line and key, and the files
// written checked against the unit given (here the shipped one); exit 2
// on errors, 0 with warnings.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	unit := filepath.Join("..", "..", "packaging", "portsentry.service")
	tests := []struct {
		name   string
		conf   string
		unit   string
		code   int
		stderr []string // lines, "C" standing for the configuration file
	}{
		{"fine", "TCP_PORTS=\"1\"\nUDP_PORTS=\"1\"\nHISTORY_FILE=\"/var/lib/portsentry/h\"\n", unit, exitOK, nil},
		{"metrics without port", "METRICS_ADDRESS=\"localhost\"\n", unit, exitConfig, []string{
			`portsentry: C:1: METRICS_ADDRESS: invalid value "localhost": want HOST:PORT, such as 127.0.0.1:9617 or [::1]:9617`}},
		{"alert and event log", "TCP_PORTS=\"1\"\nALERT_MAILER=\"sendmail\"\nEVENT_LOG=\"/var/log/pscli/events.jsonl\"\n", unit, exitConfig, []string{
			"portsentry: C:2: ALERT_EMAIL_TO: no recipient for e-mail: set ALERT_EMAIL_TO (ALERT_MAILER on this line needs it)",
			"portsentry: C:3: EVENT_LOG: /var/log/pscli/events.jsonl: /var/log/pscli is read-only under portsentry.service (ProtectSystem=strict): use a path in a directory the unit lets it write (/run/portsentry, /var/lib/portsentry, /var/log/portsentry), or add ReadWritePaths=/var/log/pscli (after install -d -m 0750 /var/log/pscli) in a drop-in (systemctl edit portsentry.service)"}},
		{"event log in the unit's LogsDirectory", "TCP_PORTS=\"1\"\nUDP_PORTS=\"1\"\nEVENT_LOG=\"/var/log/portsentry/events.jsonl\"\n", unit, exitOK, nil},
		{"no unit, var-log is writable", "TCP_PORTS=\"1\"\nUDP_PORTS=\"1\"\nEVENT_LOG=\"/var/log/portsentry-pscli-none/events.jsonl\"\n", "none", exitOK, nil},
		{"warnings only", "TCP_PORTS=\"1\"\nUDP_PORTS=\"1\"\nMETRICS_ADDRESS=\":9617\"\n", unit, exitOK, []string{
			`portsentry: warning: C:3: METRICS_ADDRESS: ":9617" listens on every interface: whoever reaches this host can read the metrics (what is watched, how many bans); give 127.0.0.1:PORT or a management address`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".conf")
			if err := os.WriteFile(conf, []byte(tt.conf), 0o640); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := runCLI("check", "-c", conf, "-unit", tt.unit)
			var want string
			for _, l := range tt.stderr {
				want += strings.ReplaceAll(l, "C:", conf+":") + "\n"
			}
			if code != tt.code || stderr != want {
				t.Errorf("check: exit %d, stderr\n%s\nwant exit %d, stderr\n%s", code, stderr, tt.code, want)
			}
			if code == exitOK && !strings.HasPrefix(stdout, conf+": OK;") {
				t.Errorf("check: stdout %q", stdout)
			}
			if code == exitOK && tt.unit != "none" && !strings.Contains(stdout, "files written checked against portsentry.service ("+unit+")") {
				t.Errorf("check does not say which unit it checked against: %q", stdout)
			}
		})
	}
	// A directory given as the configuration file.
	code, _, stderr := runCLI("check", "-c", dir, "-unit", "none")
	if want := "portsentry: " + dir + ": is a directory, not a file\n"; code != exitConfig || stderr != want {
		t.Errorf("check -c DIR: exit %d, stderr %q; want 2 and %q", code, stderr, want)
	}
}
