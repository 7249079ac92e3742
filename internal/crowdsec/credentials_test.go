package crowdsec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseCredentials(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Credentials
		err      string
	}{
		{"as cscli writes it", "url: http://127.0.0.1:8080\nlogin: portsentry\npassword: hhBqKQXlAE99oEbF\n",
			Credentials{"http://127.0.0.1:8080", "portsentry", "hhBqKQXlAE99oEbF"}, ""},
		{"quoted, commented, CRLF, unknown and nested keys", "# LAPI\r\n---\r\nurl: \"https://lapi.example.org/\" # the LAPI\r\nlogin: 'port''sentry'\r\npassword: \"p#w: x\"\r\nca_cert_path: /etc/ca.pem\r\ntls:\r\n  login: nested\r\n",
			Credentials{"https://lapi.example.org/", "port'sentry", "p#w: x"}, ""},
		{"no url (CROWDSEC_URL gives it)", "login: a\npassword: b", Credentials{"", "a", "b"}, ""},
		{"no password", "url: http://127.0.0.1:8080\nlogin: a\n", Credentials{}, "creds: no password (want the file `cscli machines add NAME -a -f FILE` writes)"},
		{"empty", "", Credentials{}, "creds: no login (want the file `cscli machines add NAME -a -f FILE` writes)"},
		{"not key: value", "login a\n", Credentials{}, "creds:1: want \"key: value\""},
		{"set twice", "login: a\npassword: b\nlogin: c\n", Credentials{}, "creds:3: login: set twice (first on line 1)"},
		{"unclosed quote", "password: \"abc\n", Credentials{}, "creds:1: password: missing closing \""},
		{"escapes", "password: \"a\\tb\"\n", Credentials{}, "creds:1: password: escapes in a quoted value are not supported"},
		{"block scalar", "password: |\n  abc\n", Credentials{}, "creds:1: password: only plain or quoted values are supported"},
		{"text after quote", "login: 'a' b\n", Credentials{}, "creds:1: login: text after the closing quote: \"b\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCredentials(strings.NewReader(tc.in), "creds")
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestReadCredentials(t *testing.T) {
	path := filepath.Join(t.TempDir(), "creds.yaml")
	if _, err := ReadCredentials(path); err == nil || !strings.HasPrefix(err.Error(), path+": ") {
		t.Errorf("missing file: %v", err)
	}
	os.WriteFile(path, []byte("login: a\npassword: b\n"), 0o600)
	if c, err := ReadCredentials(path); err != nil || c.Login != "a" {
		t.Errorf("ReadCredentials = %+v, %v", c, err)
	}
}

// FuzzParseCredentials: any input is read or refused with an error that
// names the file; what is read holds no newline and is never empty where
// required.
func FuzzParseCredentials(f *testing.F) {
	f.Add("url: http://127.0.0.1:8080\nlogin: portsentry\npassword: hhBqKQXlAE99oEbF\n")
	f.Add("login: 'a''b'\npassword: \"x # y\" # c\n")
	f.Add("password: |\n  x\n")
	f.Fuzz(func(t *testing.T, in string) {
		c, err := ParseCredentials(strings.NewReader(in), "creds")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "creds") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		if c.Login == "" || c.Password == "" {
			t.Fatalf("accepted without login or password: %+v", c)
		}
		for _, v := range []string{c.URL, c.Login, c.Password} {
			if strings.ContainsAny(v, "\r\n") {
				t.Fatalf("value with a line break: %q", v)
			}
		}
	})
}
