package main

import (
	"io"
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
			got, err := parse(tt.args, io.Discard)
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
