package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
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
