package hostsdeny

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	line1 = "ALL: 10.99.0.1 : DENY"
	line2 = "ALL: 2001:db8::1 : DENY"
)

func newFile(t *testing.T, content *string, mode fs.FileMode) *File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hosts.deny")
	if content != nil {
		if err := os.WriteFile(p, []byte(*content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
	}
	return &File{Path: p}
}

func ptr(s string) *string { return &s }

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// onlyFile fails when the directory holds anything but hosts.deny: a
// temporary file left behind would pile up in /etc.
func onlyFile(t *testing.T, p string) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Dir(p))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if diff := cmp.Diff([]string{filepath.Base(p)}, names); diff != "" {
		t.Errorf("directory holds (-want +got):\n%s", diff)
	}
}

func TestAdd(t *testing.T) {
	tests := []struct {
		name      string
		before    *string // nil: no file
		line      string
		wantAdded bool
		after     string
	}{
		{"creates the file", nil, line1, true, line1 + "\n"},
		{"appends to an empty file", ptr(""), line1, true, line1 + "\n"},
		{"appends after existing lines", ptr("# comment\nsshd: 192.0.2.9\n"), line1, true,
			"# comment\nsshd: 192.0.2.9\n" + line1 + "\n"},
		{"adds the missing final newline", ptr("sshd: 192.0.2.9"), line1, true,
			"sshd: 192.0.2.9\n" + line1 + "\n"},
		{"present: no-op", ptr(line1 + "\n"), line1, false, line1 + "\n"},
		{"present without final newline: no-op", ptr("x\n" + line1), line1, false, "x\n" + line1},
		{"present with spaces and CRLF: no-op", ptr("  " + line1 + " \r\n"), line1, false, "  " + line1 + " \r\n"},
		{"a longer line is not the same line", ptr(line1 + " # old\n"), line1, true, line1 + " # old\n" + line1 + "\n"},
		{"ipv6", ptr(line1 + "\n"), line2, true, line1 + "\n" + line2 + "\n"},
		// KILL_HOSTS_DENY="ALL: $TARGET$ : DENY " (a trailing blank) must
		// not add a second copy after each restart.
		{"padded entry, present: no-op", ptr(line1 + " \n"), line1 + " ", false, line1 + " \n"},
		{"padded entry, present unpadded: no-op", ptr(line1 + "\n"), "\t" + line1 + " ", false, line1 + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFile(t, tt.before, 0o644)
			added, err := f.Add(tt.line)
			if err != nil {
				t.Fatalf("Add: %v", err)
			}
			if added != tt.wantAdded {
				t.Errorf("Add reported added = %v, want %v", added, tt.wantAdded)
			}
			if diff := cmp.Diff(tt.after, read(t, f.Path)); diff != "" {
				t.Errorf("file after Add (-want +got):\n%s", diff)
			}
			onlyFile(t, f.Path)
		})
	}
}

func TestAddTwiceNoDuplicate(t *testing.T) {
	f := newFile(t, nil, 0)
	for i, want := range []bool{true, false, false} {
		added, err := f.Add(line1)
		if err != nil || added != want {
			t.Fatalf("Add #%d = %v, %v; want %v, nil", i+1, added, err, want)
		}
	}
	if got := read(t, f.Path); got != line1+"\n" {
		t.Errorf("file = %q, want one line", got)
	}
}

func TestNewFileMode(t *testing.T) {
	f := newFile(t, nil, 0)
	if _, err := f.Add(line1); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(f.Path)
	if err != nil {
		t.Fatal(err)
	}
	// TCP wrappers read it as the service's user: world-readable, root-written.
	if got := fi.Mode().Perm(); got != 0o644 {
		t.Errorf("new hosts.deny mode = %v, want 0644", got)
	}
}

func TestModeAndOwnerPreserved(t *testing.T) {
	for _, mode := range []fs.FileMode{0o600, 0o644, 0o640} {
		t.Run(mode.String(), func(t *testing.T) {
			f := newFile(t, ptr("sshd: 192.0.2.9\n"), mode)
			wantUID, wantGID := os.Getuid(), os.Getgid()
			if os.Getuid() == 0 {
				wantUID, wantGID = 1234, 5678
				if err := os.Chown(f.Path, wantUID, wantGID); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := f.Add(line1); err != nil {
				t.Fatal(err)
			}
			if _, err := f.Remove("sshd: 192.0.2.9"); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(f.Path)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != mode {
				t.Errorf("mode after Add and Remove = %v, want %v", got, mode)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if int(st.Uid) != wantUID || int(st.Gid) != wantGID {
				t.Errorf("owner after Add and Remove = %d:%d, want %d:%d", st.Uid, st.Gid, wantUID, wantGID)
			}
		})
	}
}

func TestRemove(t *testing.T) {
	tests := []struct {
		name      string
		before    *string
		line      string
		wantFound bool
		after     *string // nil: no file
	}{
		{"removes the line", ptr("# c\n" + line1 + "\n" + line2 + "\n"), line1, true, ptr("# c\n" + line2 + "\n")},
		{"removes every copy", ptr(line1 + "\nx\n" + line1 + "\n"), line1, true, ptr("x\n")},
		{"removes a last line without newline", ptr("x\n" + line1), line1, true, ptr("x\n")},
		{"removes a line with spaces around", ptr("x\n  " + line1 + "\t\n"), line1, true, ptr("x\n")},
		{"absent: untouched", ptr("x\n" + line2), line1, false, ptr("x\n" + line2)},
		{"keeps a longer line", ptr(line1 + " # keep\n"), line1, false, ptr(line1 + " # keep\n")},
		{"padded entry removed", ptr("x\n" + line1 + " \n"), line1 + " ", true, ptr("x\n")},
		{"missing file: not created", nil, line1, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFile(t, tt.before, 0o644)
			found, err := f.Remove(tt.line)
			if err != nil {
				t.Fatalf("Remove: %v", err)
			}
			if found != tt.wantFound {
				t.Errorf("Remove found = %v, want %v", found, tt.wantFound)
			}
			if tt.after == nil {
				if _, err := os.Lstat(f.Path); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("Remove created the file (%v)", err)
				}
				return
			}
			if diff := cmp.Diff(*tt.after, read(t, f.Path)); diff != "" {
				t.Errorf("file after Remove (-want +got):\n%s", diff)
			}
			onlyFile(t, f.Path)
		})
	}
}

func TestAddRemoveRoundTrip(t *testing.T) {
	orig := "# /etc/hosts.deny\nsshd: 192.0.2.9\n"
	f := newFile(t, &orig, 0o644)
	for _, l := range []string{line1, line2} {
		if _, err := f.Add(l); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []string{line2, line1} {
		if ok, err := f.Remove(l); err != nil || !ok {
			t.Fatalf("Remove(%q) = %v, %v", l, ok, err)
		}
	}
	if diff := cmp.Diff(orig, read(t, f.Path)); diff != "" {
		t.Errorf("Add then Remove changed the file (-want +got):\n%s", diff)
	}
}

func TestRefusesUnsafeFiles(t *testing.T) {
	const content = "sshd: 192.0.2.9\n"
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) (path, check string) // check: the file whose content must not change
	}{
		{"symlink", func(t *testing.T, dir string) (string, string) {
			target := filepath.Join(dir, "elsewhere")
			if err := os.WriteFile(target, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, "hosts.deny")
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
			return p, target
		}},
		{"dangling symlink", func(t *testing.T, dir string) (string, string) {
			p := filepath.Join(dir, "hosts.deny")
			if err := os.Symlink(filepath.Join(dir, "shadow"), p); err != nil {
				t.Fatal(err)
			}
			return p, ""
		}},
		{"world-writable", func(t *testing.T, dir string) (string, string) {
			p := filepath.Join(dir, "hosts.deny")
			if err := os.WriteFile(p, []byte(content), 0o666); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, 0o666); err != nil {
				t.Fatal(err)
			}
			return p, p
		}},
		{"directory", func(t *testing.T, dir string) (string, string) {
			p := filepath.Join(dir, "hosts.deny")
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
			return p, ""
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p, check := tt.setup(t, dir)
			before, err := os.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			f := &File{Path: p}
			if _, err := f.Add(line1); !errors.Is(err, ErrUnsafe) {
				t.Errorf("Add = %v, want ErrUnsafe", err)
			}
			if _, err := f.Remove("sshd: 192.0.2.9"); !errors.Is(err, ErrUnsafe) {
				t.Errorf("Remove = %v, want ErrUnsafe", err)
			}
			after, err := os.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			if before.Mode() != after.Mode() {
				t.Errorf("mode changed from %v to %v", before.Mode(), after.Mode())
			}
			if check != "" {
				if got := read(t, check); got != content {
					t.Errorf("%s changed to %q", check, got)
				}
			}
			if _, err := os.Lstat(filepath.Join(dir, "shadow")); err == nil {
				t.Error("a write followed the dangling symlink")
			}
		})
	}
}

func TestMissingDirectory(t *testing.T) {
	f := &File{Path: filepath.Join(t.TempDir(), "no", "such", "hosts.deny")}
	if _, err := f.Add(line1); err == nil {
		t.Error("Add into a missing directory succeeded")
	} else if !strings.HasPrefix(err.Error(), "hostsdeny: ") {
		t.Errorf("error %q does not name the component", err)
	}
}

func TestConcurrentAdds(t *testing.T) {
	f := newFile(t, ptr("# header\n"), 0o644)
	const n = 50
	var want []string
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := 0; i < n; i++ {
		l := fmt.Sprintf("ALL: 192.0.2.%d : DENY", i)
		want = append(want, l)
		// Each line twice, from two goroutines: still one copy.
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := f.Add(l); err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got := strings.Split(strings.TrimSuffix(read(t, f.Path), "\n"), "\n")
	if len(got) == 0 || got[0] != "# header" {
		t.Fatalf("header lost: %q", got)
	}
	got = got[1:]
	sort.Strings(got)
	sort.Strings(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lines after concurrent Adds (-want +got):\n%s", diff)
	}
	onlyFile(t, f.Path)
}

// FuzzAddRemove: for any existing file and any one-line entry, Add makes
// the entry present exactly once (a second Add is a no-op), leaves every
// other line as it was, and Remove takes it out again.
func FuzzAddRemove(f *testing.F) {
	f.Add("# hosts.deny\nsshd: 192.0.2.9\n", line1)
	f.Add("sshd: 192.0.2.9", line2)
	f.Add("", "ALL: 10.0.0.1 : DENY ")
	f.Add(line1+"\r\n", line1)
	f.Fuzz(func(t *testing.T, before, line string) {
		if strings.ContainsAny(line, "\n\r") || strings.TrimSpace(line) == "" {
			return // one line, as Expand of KILL_HOSTS_DENY gives
		}
		p := filepath.Join(t.TempDir(), "hosts.deny")
		if err := os.WriteFile(p, []byte(before), 0o644); err != nil {
			t.Fatal(err)
		}
		fl := &File{Path: p}
		if _, err := fl.Add(line); err != nil {
			t.Fatal(err)
		}
		if added, err := fl.Add(line); err != nil || added {
			t.Fatalf("second Add(%q) = %v, %v; want false, nil", line, added, err)
		}
		after := read(t, p)
		if !strings.HasPrefix(after, before) {
			t.Fatalf("Add changed existing content: %q became %q", before, after)
		}
		if _, err := fl.Remove(line); err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(read(t, p), "\n") {
			if strings.TrimSpace(l) == strings.TrimSpace(line) {
				t.Fatalf("Remove(%q) left %q", line, l)
			}
		}
	})
}
