package settings

import (
	"strings"
	"testing"
	"time"
)

// TestCrowdSec: the CROWDSEC_* keys are checked together, and an error
// names the file, the line and the key at fault.
func TestCrowdSec(t *testing.T) {
	const url = "CROWDSEC_URL=\"http://127.0.0.1:8080/\"\n"
	for _, tc := range []struct {
		name, conf, creds string
		push, pull        bool
		err               string // the error after the config file's path
	}{
		{name: "none"},
		{name: "push", conf: url + "CROWDSEC_MACHINE_ID=\"ps\"\nCROWDSEC_MACHINE_PASSWORD=\"pw\"\n", push: true},
		{name: "pull", conf: "BLOCKER=\"auto\"\n" + url + "CROWDSEC_BOUNCER_KEY=\"k\"\nCROWDSEC_POLL=\"2\"\n", pull: true},
		{name: "credentials file with its URL", conf: "CROWDSEC_CREDENTIALS=\"creds.yaml\"\n", creds: "url: http://127.0.0.1:8080\nlogin: ps\npassword: pw\n", push: true},
		{name: "no URL", conf: "CROWDSEC_MACHINE_ID=\"ps\"\nCROWDSEC_MACHINE_PASSWORD=\"pw\"\n",
			err: ":1: CROWDSEC_MACHINE_ID: CROWDSEC_URL is not set"},
		{name: "no password", conf: url + "CROWDSEC_MACHINE_ID=\"ps\"\n", err: ":2: CROWDSEC_MACHINE_ID: CROWDSEC_MACHINE_PASSWORD is not set"},
		{name: "no id", conf: url + "\nCROWDSEC_MACHINE_PASSWORD=\"pw\"\n", err: ":3: CROWDSEC_MACHINE_PASSWORD: CROWDSEC_MACHINE_ID is not set"},
		{name: "nothing to do", conf: url, err: ":1: CROWDSEC_URL: nothing to do"},
		{name: "plain http elsewhere", conf: "CROWDSEC_URL=\"http://192.0.2.1:8080/\"\nCROWDSEC_BOUNCER_KEY=\"k\"\nBLOCKER=\"auto\"\n",
			err: ":1: CROWDSEC_URL: \"http://192.0.2.1:8080/\": plain http only to a loopback address"},
		{name: "commands cannot enforce decisions", conf: url + "CROWDSEC_BOUNCER_KEY=\"k\"\n", err: ":2: CROWDSEC_BOUNCER_KEY: needs a native blocker"},
		{name: "both credentials", conf: url + "CROWDSEC_MACHINE_ID=\"ps\"\nCROWDSEC_CREDENTIALS=\"creds.yaml\"\n", creds: "login: a\npassword: b\n",
			err: ":3: CROWDSEC_CREDENTIALS: set it or CROWDSEC_MACHINE_ID"},
		{name: "bad credentials file", conf: url + "CROWDSEC_CREDENTIALS=\"creds.yaml\"\n", creds: "login: a\nlogin: b\n",
			err: ":2: CROWDSEC_CREDENTIALS: DIR/creds.yaml:2: login: set twice (first on line 1)"},
		{name: "missing credentials file", conf: url + "CROWDSEC_CREDENTIALS=\"none.yaml\"\n", err: ":2: CROWDSEC_CREDENTIALS: DIR/none.yaml: open DIR/none.yaml: no such file or directory"},
		{name: "bad poll", conf: "CROWDSEC_POLL=\"0\"\n", err: ":1: CROWDSEC_POLL: invalid value \"0\": must be a whole number of seconds from 1 to 3600"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.creds != "" {
				write(t, dir, "creds.yaml", tc.creds)
			}
			path := write(t, dir, "portsentry.conf", tc.conf)
			s, err := Load(Options{ConfigPath: path})
			if tc.err != "" {
				want := path + strings.ReplaceAll(tc.err, "DIR", dir)
				if err == nil || !strings.HasPrefix(err.Error(), want) {
					t.Fatalf("Load = %v, want an error beginning %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cfg, ok := s.CrowdSec("v1")
			if ok != (tc.push || tc.pull) || (ok && (Pushes(cfg) != tc.push || Pulls(cfg) != tc.pull)) {
				t.Fatalf("CrowdSec = %+v, %v; want push %v, pull %v", cfg, ok, tc.push, tc.pull)
			}
			if tc.pull && cfg.Poll != 2*time.Second {
				t.Errorf("poll %v", cfg.Poll)
			}
			if tc.name == "credentials file with its URL" && (cfg.URL != "http://127.0.0.1:8080" || cfg.MachineID != "ps" || cfg.Password != "pw") {
				t.Errorf("from the credentials file: %+v", cfg)
			}
		})
	}
}
