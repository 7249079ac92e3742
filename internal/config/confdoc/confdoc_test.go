package confdoc

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portsentry-go/portsentry/internal/config"
)

const repo = "../../.."

// TestCommittedDocsAreGenerated: portsentry.conf(5) and the key tables of
// docs/configuration.md are exactly what the keys' documentation makes.
func TestCommittedDocsAreGenerated(t *testing.T) {
	files, err := Files(repo)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range files {
		got, err := os.ReadFile(filepath.Join(repo, p))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is not what internal/config/keydoc.go generates: run `go generate ./internal/config` (edit keydoc.go or %s, not the generated text)", p, "internal/config/confdoc/portsentry.conf.5.in")
		}
	}
}

// TestManEveryKey: every key the parser accepts has its own entry in the
// man page, in bold.
func TestManEveryKey(t *testing.T) {
	page, err := Man(config.Documentation())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range config.Keys() {
		if !strings.Contains(page, `\fB\%`+k+`\fR`) {
			t.Errorf("portsentry.conf(5) has no entry for %s", k)
		}
	}
}

// TestManRenders: groff renders the generated page without a warning
// (man-db; skipped without it).
func TestManRenders(t *testing.T) {
	man, err := exec.LookPath("man")
	if err != nil {
		t.Skip("no man (man-db)")
	}
	page, err := Man(config.Documentation())
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "portsentry.conf.5")
	if err := os.WriteFile(p, []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(man, "--warnings", "-E", "UTF-8", "-l", p)
	cmd.Env = append(os.Environ(), "MANWIDTH=80", "MAN_DISABLE_SECCOMP=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("man --warnings: %v\n%s", err, stderr.String())
	}
	// The markup became formatting: no stray backquotes or asterisks.
	for _, bad := range []string{"`", "**", "](#"} {
		if bytes.Contains(out, []byte(bad)) {
			t.Errorf("the rendered page shows %q", bad)
		}
	}
}

func TestTroffLine(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"plain", "plain"},
		{"`-c` and **below** and *peer*", `\fB\%\-c\fR and \fBbelow\fR and \fIpeer\fR`},
		{"see [Ignore files](#ignore-files).", `see \fBIGNORE FILES\fR.`},
		{`a\b – c → d…`, `a\eb \(en c \(-> d.\|.\|.`},
		{".leading dot", `\&.leading dot`},
		{"`$TARGET$`", `\fB\%$TARGET$\fR`},
		{"at most 1 048 576 addresses", `at most 1\ 048\ 576 addresses`},
	} {
		if got := troffLine(tt.in); got != tt.want {
			t.Errorf("troffLine(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSplice(t *testing.T) {
	doc := "a\n" + beginMarker + "\nold\n" + endMarker + "\nb\n"
	got, err := Splice(doc, "new\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := "a\n" + beginMarker + "\n\nnew\n\n" + endMarker + "\nb\n"; got != want {
		t.Errorf("Splice = %q, want %q", got, want)
	}
	if _, err := Splice("no markers", "x"); err == nil {
		t.Error("Splice without markers succeeded")
	}
}
