package settings

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/portsentry-go/portsentry/internal/sandbox"
)

// shippedUnit is the unit the package installs.
func shippedUnit(t *testing.T) *sandbox.Unit {
	t.Helper()
	u, err := sandbox.Load("portsentry.service", "../../packaging/portsentry.service")
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestCheck: each mistake `portsentry check` (and the daemon's start) must
// catch, as the one line it is reported with ("{d}" is the directory of the
// configuration file C, "{c}" the file itself), or the warning it gives.
func TestCheck(t *testing.T) {
	tests := []struct {
		name string
		conf string
		unit bool     // check against the shipped unit
		ro   string   // a directory (under {d}) the file system keeps read-only
		errs []string // every error line, in order (prefixes)
		warn []string // warnings that must be among the warnings (prefixes)
	}{
		{name: "fine", conf: "EVENT_LOG=\"{d}/events.jsonl\"\nHISTORY_FILE=\"{d}/h\"\n"},
		{name: "files in directories the daemon will make", conf: "EVENT_LOG=\"{d}/a/b/events.jsonl\"\nBAN_FILE=\"{d}/state/bans\"\n"},
		{name: "standard output is no file", conf: "EVENT_LOG=\"-\"\n"},

		// Alerts: the key and its line, never a Go field.
		{name: "mail without recipient", conf: "\nALERT_MAILER=\"sendmail\"\n",
			errs: []string{"{c}:2: ALERT_EMAIL_TO: no recipient for e-mail: set ALERT_EMAIL_TO (ALERT_MAILER on this line needs it)"}},
		{name: "empty recipient line", conf: "ALERT_MAILER=\"sendmail\"\nALERT_EMAIL_TO=\" , \"\n",
			errs: []string{"{c}:2: ALERT_EMAIL_TO: no recipient for e-mail"}},
		{name: "bad recipient", conf: "ALERT_MAILER=\"sendmail\"\n\nALERT_EMAIL_TO=\"root\"\n",
			errs: []string{`{c}:3: ALERT_EMAIL_TO: "root": mail: missing '@' or angle-addr`}},
		{name: "bad sender", conf: "ALERT_MAILER=\"sendmail\"\nALERT_EMAIL_TO=\"root@example.org\"\nALERT_EMAIL_FROM=\"x y\"\n",
			errs: []string{`{c}:3: ALERT_EMAIL_FROM: "x y": mail: `}},
		{name: "relative sendmail", conf: "ALERT_MAILER=\"sendmail\"\nALERT_EMAIL_TO=\"root@example.org\"\nALERT_SENDMAIL=\"sendmail\"\n",
			errs: []string{`{c}:3: ALERT_SENDMAIL: "sendmail": not an absolute path`}},
		{name: "smtp without server", conf: "ALERT_MAILER=\"smtp\"\nALERT_EMAIL_TO=\"root@example.org\"\n",
			errs: []string{"{c}:1: ALERT_SMTP_SERVER: no SMTP server: set ALERT_SMTP_SERVER (ALERT_MAILER on this line needs it)"}},
		{name: "password in clear", conf: "ALERT_MAILER=\"smtp\"\nALERT_EMAIL_TO=\"root@example.org\"\nALERT_SMTP_SERVER=\"mail.example.org:587\"\nALERT_SMTP_USER=\"u\"\n",
			errs: []string{"{c}:4: ALERT_SMTP_USER: needs STARTTLS (or a server on loopback): the password would cross the network in clear"}},
		{name: "webhook not http", conf: "ALERT_WEBHOOK_URL=\"ftp://h.example/secret\"\n",
			errs: []string{"{c}:1: ALERT_WEBHOOK_URL: want an http:// or https:// URL"}},
		{name: "token in clear", conf: "ALERT_WEBHOOK_URL=\"http://h.example/x\"\nALERT_WEBHOOK_TOKEN=\"t\"\n",
			errs: []string{"{c}:2: ALERT_WEBHOOK_TOKEN: needs an https URL"}},

		// Written files on the file system as it is.
		{name: "directory given as the event log", conf: "EVENT_LOG=\"{d}\"\n",
			errs: []string{"{c}:1: EVENT_LOG: {d}: is a directory; want the path of a file"}},
		{name: "a file in the way of the directory", conf: "\nHISTORY_FILE=\"{d}/C/history\"\n",
			errs: []string{"{c}:2: HISTORY_FILE: {d}/C/history: {c} is not a directory"}},
		{name: "read-only directory", conf: "BLOCKED_FILE=\"{d}/ro/blocked\"\nBAN_FILE=\"{d}/ro/new/bans\"\n", ro: "ro",
			errs: []string{"{c}:1: BLOCKED_FILE: {d}/ro/blocked: {d}/ro is not writable: read-only file system", "{c}:2: BAN_FILE: {d}/ro/new/bans: {d}/ro is not writable: read-only file system"}},
		{name: "hosts.deny read-only: a warning", conf: "BLOCK_TCP=\"1\"\nKILL_HOSTS_DENY=\"ALL: $TARGET$\"\nHOSTS_DENY_FILE=\"{d}/ro/hosts.deny\"\n", ro: "ro",
			warn: []string{"{c}:2: KILL_HOSTS_DENY: {d}/ro/hosts.deny: {d}/ro is not writable"}},
		{name: "hosts.deny unused: not checked", conf: "BLOCK_TCP=\"0\"\nKILL_HOSTS_DENY=\"ALL: $TARGET$\"\nHOSTS_DENY_FILE=\"{d}/ro/hosts.deny\"\n", ro: "ro"},
		{name: "ignore file is a directory", conf: "IGNORE_FILE=\"{d}\"\n",
			errs: []string{"{c}:1: IGNORE_FILE: {d}: is a directory; want the path of a file"}},
		{name: "several at once, in the order of their lines", conf: "EVENT_LOG=\"{d}\"\nALERT_WEBHOOK_URL=\"x\"\nBAN_FILE=\"{d}\"\n",
			errs: []string{"{c}:1: EVENT_LOG: ", "{c}:2: ALERT_WEBHOOK_URL: ", "{c}:3: BAN_FILE: "}},

		// Under the shipped unit.
		{name: "unit: event log in /var/log", unit: true, conf: "EVENT_LOG=\"/var/log/pscli-other/events.jsonl\"\n",
			errs: []string{"{c}:1: EVENT_LOG: /var/log/pscli-other/events.jsonl: /var/log/pscli-other is read-only under portsentry.service (ProtectSystem=strict): use a path in a directory the unit lets it write (/run/portsentry, /var/lib/portsentry, /var/log/portsentry), or add ReadWritePaths=/var/log/pscli-other (after install -d -m 0750 /var/log/pscli-other) in a drop-in (systemctl edit portsentry.service)"}},
		{name: "unit: event log in its LogsDirectory", unit: true, conf: "EVENT_LOG=\"/var/log/portsentry/events.jsonl\"\n"},
		{name: "unit: state directory", unit: true, conf: "HISTORY_FILE=\"/var/lib/portsentry/h\"\nBAN_FILE=\"/var/lib/portsentry/b\"\nCONTROL_SOCKET=\"/run/portsentry/s.sock\"\n"},
		{name: "unit: history in /root", unit: true, conf: "HISTORY_FILE=\"/root/h\"\n",
			errs: []string{"{c}:1: HISTORY_FILE: /root/h: /root is inaccessible under portsentry.service (ProtectHome=yes)"}},
		{name: "unit: event log in /tmp", unit: true, conf: "EVENT_LOG=\"/tmp/e.jsonl\"\n",
			warn: []string{"{c}:1: EVENT_LOG: /tmp/e.jsonl: /tmp is private to portsentry.service (PrivateTmp=yes): other programs do not see what is written there"}},
		{name: "unit: hosts.deny in /etc", unit: true, conf: "BLOCK_UDP=\"1\"\nKILL_HOSTS_DENY=\"ALL: $TARGET$\"\n",
			warn: []string{"{c}:2: KILL_HOSTS_DENY: /etc/hosts.deny: /etc is read-only under portsentry.service (ProtectSystem=strict)"}},
		{name: "unit: control socket elsewhere", unit: true, conf: "CONTROL_SOCKET=\"/srv/ps.sock\"\n",
			warn: []string{"{c}:1: CONTROL_SOCKET: /srv/ps.sock: /srv is read-only under portsentry.service"}},
		{name: "no unit: /var/log is fine", conf: "EVENT_LOG=\"/var/log/portsentry-test-nonexistent/events.jsonl\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			conf := filepath.Join(dir, "C")
			expand := func(s string) string {
				return strings.ReplaceAll(strings.ReplaceAll(s, "{d}", dir), "{c}", conf)
			}
			if err := os.WriteFile(conf, []byte("TCP_PORTS=\"1\"\nUDP_PORTS=\"2\"\n"+strings.ReplaceAll(tt.conf, "{d}", dir)), 0o640); err != nil {
				t.Fatal(err)
			}
			// Line numbers in the table count from the case's own text.
			for i := range tt.errs {
				tt.errs[i] = shiftLine(expand(tt.errs[i]), 2)
			}
			for i := range tt.warn {
				tt.warn[i] = shiftLine(expand(tt.warn[i]), 2)
			}
			if tt.ro != "" {
				ro := filepath.Join(dir, tt.ro)
				if err := os.Mkdir(ro, 0o750); err != nil {
					t.Fatal(err)
				}
				old := access
				access = func(p string) error {
					if p == ro || strings.HasPrefix(p, ro+"/") {
						return syscall.EROFS
					}
					return old(p)
				}
				t.Cleanup(func() { access = old })
			}
			opts := Options{ConfigPath: conf}
			if tt.unit {
				opts.Unit = shippedUnit(t)
			}
			s, err := Load(opts)
			var got []string
			if err != nil {
				var ce *ConfigError
				if !errors.As(err, &ce) {
					t.Fatalf("Load error %v is not a *ConfigError", err)
				}
				got = strings.Split(err.Error(), "\n")
			}
			if len(got) != len(tt.errs) {
				t.Fatalf("errors:\n%s\nwant %d:\n%s", strings.Join(got, "\n"), len(tt.errs), strings.Join(tt.errs, "\n"))
			}
			for i, w := range tt.errs {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("error\n  %s\nwant it to start with\n  %s", got[i], w)
				}
			}
			if s == nil {
				return
			}
			for _, w := range tt.warn {
				found := false
				for _, g := range s.Warnings {
					found = found || strings.HasPrefix(g, w)
				}
				if !found {
					t.Errorf("no warning starting with\n  %s\namong\n  %s", w, strings.Join(s.Warnings, "\n  "))
				}
			}
		})
	}
}

// shiftLine adds n to the line number of a "FILE:LINE: " prefix.
func shiftLine(s string, n int) string {
	file, rest, _ := strings.Cut(s, ":")
	num, rest, ok := strings.Cut(rest, ":")
	line := 0
	for _, c := range num {
		if c < '0' || c > '9' {
			return s
		}
		line = line*10 + int(c-'0')
	}
	if !ok || num == "" {
		return s
	}
	return file + ":" + itoa(line+n) + ":" + rest
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// The unit's view is checked on the real paths: a file under /var/run is
// under /run, the unit's runtime directory.
func TestCheckResolvesSymlinks(t *testing.T) {
	if fi, err := os.Lstat("/var/run"); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Skip("/var/run is not a symbolic link here")
	}
	dir := t.TempDir()
	conf := write(t, dir, "portsentry.conf", "CONTROL_SOCKET=\"/var/run/portsentry/ps.sock\"\n")
	s, err := Load(Options{ConfigPath: conf, Unit: shippedUnit(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range s.Warnings {
		if strings.Contains(w, "CONTROL_SOCKET") {
			t.Errorf("warning about /var/run/portsentry, the unit's /run/portsentry: %s", w)
		}
	}
}
