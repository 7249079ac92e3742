package main

import (
	"flag"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/portsentry-go/portsentry/internal/selftest"
)

// completionFile is the bash completion the package installs.
const completionFile = "../../packaging/bash-completion/portsentry"

// complete runs the completion in bash for the words typed (the last one
// being completed) and returns what it offers, sorted.
func complete(t *testing.T, words ...string) []string {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	script := `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _portsentry; printf '%s\n' "${COMPREPLY[@]}"`
	out, err := exec.Command(bash, append([]string{"-c", script, "bash", completionFile, "portsentry"}, words...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("bash completion of %q: %v\n%s", words, err, out)
	}
	got := strings.Fields(string(out))
	slices.Sort(got)
	return got
}

// spellings are the flags of fs as the help writes them.
func spellings(fs *flag.FlagSet, extra ...string) []string {
	out := extra
	fs.VisitAll(func(f *flag.Flag) {
		s := "-" + f.Name
		if doubleDash[f.Name] {
			s = "-" + s
		}
		out = append(out, s)
	})
	slices.Sort(out)
	return out
}

// selftestFlags are the flags selftest's help lists, and -h.
func selftestFlags() []string {
	var b strings.Builder
	selftest.Usage(&b)
	out := []string{"-h"}
	for _, m := range regexp.MustCompile(`(?m)^  (-[a-z]+)`).FindAllStringSubmatch(b.String(), -1) {
		out = append(out, m[1])
	}
	slices.Sort(out)
	return out
}

// The completion offers every command and every flag the help lists, for
// each command, and the values of the flags that have a fixed set.
func TestBashCompletion(t *testing.T) {
	// Read here too, so that go test's cache sees the file bash reads.
	if _, err := os.ReadFile(completionFile); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	slices.Sort(names)
	daemon := newFlagSet("portsentry")
	daemonFlags(daemon, &cli{})
	check := newFlagSet("portsentry check")
	daemonFlags(check, &cli{})
	check.String("unit", "", "")

	tests := []struct {
		words []string
		want  []string
	}{
		{[]string{""}, names},
		{[]string{"-"}, spellings(daemon, "-h", "--help")},
		{[]string{"check", "-"}, spellings(check, "-h", "--help")},
		{[]string{"-c", "/etc/x.conf", "l"}, []string{"list"}},
		{[]string{"help", ""}, names},
		{[]string{"selftest", "-"}, selftestFlags()},
		{[]string{"report", "-"}, spellings(reportFlagSet(&reportArgs{}), "-h")},
		{[]string{"report", "-since", "7d", "-html", "/tmp/r.html", "-"}, spellings(reportFlagSet(&reportArgs{}), "-h")},
		{[]string{"list", "-origin", ""}, []string{"detected", "manual"}},
		{[]string{"-l", "s"}, []string{"stdout", "syslog"}},
		{[]string{"-m", ""}, []string{"pcap", "raw"}},
	}
	for _, op := range opCommands {
		var f opFlags
		var r opRequest
		tests = append(tests, struct {
			words []string
			want  []string
		}{[]string{op.name, "-"}, spellings(op.flagSet(&f, &r), "-h")})
	}
	for _, tt := range tests {
		if got := complete(t, tt.words...); !slices.Equal(got, tt.want) {
			t.Errorf("portsentry %s<TAB>: %q, want %q", strings.Join(tt.words, " "), got, tt.want)
		}
	}
}
