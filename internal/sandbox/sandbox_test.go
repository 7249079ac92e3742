package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// shipped is the unit the package installs.
const shipped = "../../packaging/portsentry.service"

type want struct {
	path   string
	access Access
	why    string
}

func checkAccess(t *testing.T, u *Unit, wants []want) {
	t.Helper()
	for _, w := range wants {
		a, why := u.Access(w.path)
		if a != w.access || why != w.why {
			t.Errorf("Access(%s) = %v, %q; want %v, %q", w.path, a, why, w.access, w.why)
		}
	}
}

// The shipped unit: everything read-only but the state and runtime
// directories; /tmp private; homes inaccessible.
func TestShippedUnit(t *testing.T) {
	u, err := Load("portsentry.service", shipped)
	if err != nil {
		t.Fatal(err)
	}
	checkAccess(t, u, []want{
		{"/var/lib/portsentry", Writable, "the unit's own directory /var/lib/portsentry"},
		{"/var/lib/portsentry/portsentry.history", Writable, "the unit's own directory /var/lib/portsentry"},
		{"/run/portsentry/portsentry.sock", Writable, "the unit's own directory /run/portsentry"},
		{"/var/log/portsentry/events.jsonl", Writable, "the unit's own directory /var/log/portsentry"},
		{"/var/log", ReadOnly, "ProtectSystem=strict"},
		{"/var/log/other", ReadOnly, "ProtectSystem=strict"},
		{"/var/lib/portsentry2", ReadOnly, "ProtectSystem=strict"}, // a prefix of the name is not the directory
		{"/etc", ReadOnly, "ProtectSystem=strict"},
		{"/", ReadOnly, "ProtectSystem=strict"},
		{"/tmp/x", Private, "PrivateTmp=yes"},
		{"/var/tmp", Private, "PrivateTmp=yes"},
		{"/root/events.jsonl", Inaccessible, "ProtectHome=yes"},
		{"/home/admin", Inaccessible, "ProtectHome=yes"},
		{"/dev/shm", Writable, "ProtectSystem=strict"},
	})
	if got, want := u.Writable(), []string{"/run/portsentry", "/var/lib/portsentry", "/var/log/portsentry"}; !slices.Equal(got, want) {
		t.Errorf("Writable() = %q, want %q", got, want)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name  string
		files []string // the unit, then drop-ins
		wants []want
	}{
		{"no sandbox", []string{"[Service]\nExecStart=/bin/true\n"}, []want{{"/etc/x", Writable, ""}}},
		{"ProtectSystem=full", []string{"[Service]\nProtectSystem=full\n"}, []want{
			{"/etc/hosts.deny", ReadOnly, "ProtectSystem=full"}, {"/usr/lib", ReadOnly, "ProtectSystem=full"}, {"/var/log/x", Writable, ""}}},
		{"ProtectSystem=yes", []string{"[Service]\nProtectSystem=true\n"}, []want{
			{"/etc/hosts.deny", Writable, ""}, {"/usr", ReadOnly, "ProtectSystem=yes"}}},
		{"drop-in allows /etc", []string{"[Service]\nProtectSystem=strict\n", "[Service]\nReadWritePaths=/etc\n"}, []want{
			{"/etc/hosts.deny", Writable, "ReadWritePaths=/etc"}, {"/var/log", ReadOnly, "ProtectSystem=strict"}}},
		{"drop-in turns it off", []string{"[Service]\nProtectSystem=strict\n", "[Service]\nProtectSystem=\n"}, []want{{"/var/log", Writable, ""}}},
		{"empty assignment clears a list", []string{"[Service]\nProtectSystem=strict\nReadWritePaths=/srv /opt\n", "[Service]\nReadWritePaths=\nReadWritePaths=/opt\n"}, []want{
			{"/srv/x", ReadOnly, "ProtectSystem=strict"}, {"/opt/x", Writable, "ReadWritePaths=/opt"}}},
		{"prefixes and quotes", []string{"[Service]\nProtectSystem=strict\nReadWritePaths=-/var/log/ps \"+/srv/a\"\n"}, []want{
			{"/var/log/ps/e", Writable, "ReadWritePaths=/var/log/ps"}, {"/srv/a", Writable, "ReadWritePaths=/srv/a"}}},
		{"longest path wins", []string{"[Service]\nReadOnlyPaths=/srv\nReadWritePaths=/srv/rw\nInaccessiblePaths=/srv/rw/secret\n"}, []want{
			{"/srv/x", ReadOnly, "ReadOnlyPaths=/srv"}, {"/srv/rw/x", Writable, "ReadWritePaths=/srv/rw"}, {"/srv/rw/secret/x", Inaccessible, "InaccessiblePaths=/srv/rw/secret"}}},
		{"same path: read-only wins over read-write", []string{"[Service]\nReadWritePaths=/srv\nReadOnlyPaths=/srv\n"}, []want{{"/srv", ReadOnly, "ReadOnlyPaths=/srv"}}},
		{"LogsDirectory, CacheDirectory, symlink suffix", []string{"[Service]\nProtectSystem=strict\nLogsDirectory=portsentry\nCacheDirectory=a:b\n"}, []want{
			{"/var/log/portsentry/events.jsonl", Writable, "the unit's own directory /var/log/portsentry"}, {"/var/cache/a", Writable, "the unit's own directory /var/cache/a"}}},
		{"continuation lines and comments", []string{"# c\n; c\n[Service]\nProtectSystem=strict\nReadWritePaths=/a \\\n  /b\n"}, []want{{"/b", Writable, "ReadWritePaths=/b"}}},
		{"other sections ignored", []string{"[Unit]\nReadOnlyPaths=/x\n[Install]\nProtectSystem=strict\n"}, []want{{"/x", Writable, ""}}},
		{"specifiers and relative paths skipped", []string{"[Service]\nReadOnlyPaths=%h/x rel\n"}, []want{{"/rel", Writable, ""}}},
		{"ProtectHome=read-only and tmpfs", []string{"[Service]\nProtectHome=read-only\n", "[Service]\nProtectHome=tmpfs\n"}, []want{{"/root", Private, "ProtectHome=tmpfs"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := &Unit{Name: "x.service"}
			for _, f := range tt.files {
				if err := u.Parse(strings.NewReader(f)); err != nil {
					t.Fatal(err)
				}
			}
			checkAccess(t, u, tt.wants)
		})
	}
}

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Find reads the unit as systemd would: the unit file in /etc replaces
// the packaged one; drop-ins from every directory apply in name order, one
// in /etc replacing one of the same name in /usr/lib.
func TestFind(t *testing.T) {
	root := t.TempDir()
	if _, err := Find(root, "portsentry.service"); err != ErrNotInstalled {
		t.Fatalf("Find with nothing installed = %v, want ErrNotInstalled", err)
	}
	write(t, root+"/usr/lib/systemd/system/portsentry.service", "[Service]\nProtectSystem=strict\nStateDirectory=portsentry\n")
	write(t, root+"/usr/lib/systemd/system/portsentry.service.d/50-logs.conf", "[Service]\nReadWritePaths=/var/log/old\n")
	write(t, root+"/etc/systemd/system/portsentry.service.d/50-logs.conf", "[Service]\nReadWritePaths=/var/log/ps\n")
	write(t, root+"/etc/systemd/system/portsentry.service.d/10-etc.conf", "[Service]\nReadWritePaths=/etc\n")
	write(t, root+"/etc/systemd/system/portsentry.service.d/README", "[Service]\nReadWritePaths=/\n") // not a .conf
	u, err := Find(root, "portsentry.service")
	if err != nil {
		t.Fatal(err)
	}
	checkAccess(t, u, []want{
		{"/var/log/ps/e", Writable, "ReadWritePaths=/var/log/ps"},
		{"/var/log/old/e", ReadOnly, "ProtectSystem=strict"},
		{"/etc/hosts.deny", Writable, "ReadWritePaths=/etc"},
		{"/var/lib/portsentry/h", Writable, "the unit's own directory /var/lib/portsentry"},
	})
	if want := "portsentry.service (" + root + "/usr/lib/systemd/system/portsentry.service, 2 drop-ins)"; u.String() != want {
		t.Errorf("String() = %q, want %q", u, want)
	}

	// An administrator's full copy in /etc replaces the packaged unit.
	write(t, root+"/etc/systemd/system/portsentry.service", "[Service]\nProtectSystem=full\n")
	if u, err = Find(root, "portsentry.service"); err != nil {
		t.Fatal(err)
	}
	checkAccess(t, u, []want{{"/var/lib/portsentry/h", Writable, ""}, {"/usr/x", ReadOnly, "ProtectSystem=full"}})

	// A masked unit is not installed.
	os.Remove(root + "/etc/systemd/system/portsentry.service")
	if err := os.Symlink("/dev/null", root+"/etc/systemd/system/portsentry.service"); err != nil {
		t.Fatal(err)
	}
	if _, err := Find(root, "portsentry.service"); err != ErrNotInstalled {
		t.Errorf("Find of a masked unit = %v, want ErrNotInstalled", err)
	}
}

func TestLoadMissing(t *testing.T) {
	if _, err := Load("x.service", filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Error("Load of a missing file: no error")
	}
}

// FuzzParse: any text parses without panic, and every path gets a
// defined access.
func FuzzParse(f *testing.F) {
	b, err := os.ReadFile(shipped)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(b))
	for _, s := range []string{"", "[Service]\n", "[Service]\nReadWritePaths=\n", "[Service]\nReadOnlyPaths=/a \\\n", "[Service]\nStateDirectory=a:b c\nProtectHome=tmpfs\n", "[Service\nProtectSystem=strict"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		u := &Unit{}
		if err := u.Parse(strings.NewReader(text)); err != nil {
			return // a line over 1 MiB
		}
		for _, p := range []string{"/", "/etc/x", "/var/lib/portsentry/x", "/tmp", "/home/a"} {
			if a, _ := u.Access(p); a < Writable || a > Inaccessible {
				t.Fatalf("Access(%s) = %v", p, a)
			}
		}
	})
}
