package pkg

import (
	"debug/buildinfo"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The files the package must ship, with their modes.
var wantFiles = map[string]string{
	"usr/sbin/portsentry":                                  "-rwxr-xr-x",
	"usr/lib/systemd/system/portsentry.service":            "-rw-r--r--",
	"usr/share/portsentry/portsentry.conf":                 "-rw-r--r--",
	"etc/portsentry/portsentry.ignore.static":              "-rw-r--r--",
	"etc/logrotate.d/portsentry":                           "-rw-r--r--",
	"etc/fail2ban/filter.d/portsentry-2x.conf":             "-rw-r--r--",
	"usr/share/man/man8/portsentry.8.gz":                   "-rw-r--r--",
	"usr/share/man/man5/portsentry.conf.5.gz":              "-rw-r--r--",
	"usr/share/bash-completion/completions/portsentry":     "-rw-r--r--",
	"usr/share/doc/portsentry/copyright":                   "-rw-r--r--",
	"usr/share/doc/portsentry/changelog.gz":                "-rw-r--r--",
	"usr/share/doc/portsentry/NEWS.Debian.gz":              "-rw-r--r--",
	"usr/share/doc/portsentry/metrics.md.gz":               "-rw-r--r--",
	"usr/share/doc/portsentry/examples/fail2ban-jail.conf": "-rw-r--r--",
	"usr/share/doc/portsentry/examples/hosts-deny.conf":    "-rw-r--r--",
	"usr/share/portsentry/grafana/portsentry.json":         "-rw-r--r--",
	// Shipped 0755 as lintian wants; postinst makes them 0750.
	"var/lib/portsentry/": "drwxr-xr-x",
	"var/log/portsentry/": "drwxr-xr-x",
}

// The conffiles: every file the package ships under /etc. portsentry.conf
// is not one (postinst creates it when missing and never replaces it, so
// an upgrade from 1.2 keeps 1.2's file and behaviour), and neither is
// /etc/default/portsentry (1.2's postinst wrote it; this package ships none).
var wantConffiles = []string{
	"/etc/fail2ban/filter.d/portsentry-2x.conf",
	"/etc/logrotate.d/portsentry",
	"/etc/portsentry/portsentry.ignore.static",
}

// TestDebContents: files, modes, owners, control fields and conffiles of
// the built package.
func TestDebContents(t *testing.T) {
	t.Parallel()
	deb, root := builtDeb(t)
	if !strings.HasPrefix(filepath.Base(deb), "portsentry_") || !strings.HasSuffix(deb, ".deb") {
		t.Errorf("package file %s, want portsentry_<version>_<arch>.deb", deb)
	}

	listing := command(t, nil, "dpkg-deb", "-c", deb)
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(listing), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("odd dpkg-deb -c line %q", line)
		}
		if f[1] != "root/root" {
			t.Errorf("%s is owned by %s, want root/root", f[len(f)-1], f[1])
		}
		got[strings.TrimPrefix(f[5], "./")] = f[0]
	}
	for path, mode := range wantFiles {
		if m, ok := got[path]; !ok {
			t.Errorf("package lacks %s", path)
		} else if m != mode {
			t.Errorf("%s has mode %s, want %s", path, m, mode)
		}
	}
	for path := range got {
		if strings.HasPrefix(path, "etc/init.d/") || strings.HasPrefix(path, "lib/") {
			t.Errorf("package ships %s: no init.d script, and units go to /usr/lib (merged /usr)", path)
		}
	}

	ctl := t.TempDir()
	command(t, nil, "dpkg-deb", "-e", deb, ctl)
	lines := readLines(t, filepath.Join(ctl, "conffiles"))
	slices.Sort(lines)
	if !slices.Equal(lines, wantConffiles) {
		t.Errorf("conffiles %q, want %q", lines, wantConffiles)
	}

	fields := map[string]string{}
	for _, k := range []string{"Package", "Version", "Architecture", "Maintainer", "Section", "Priority", "Depends", "Recommends", "Conflicts", "Replaces", "Description"} {
		fields[k] = strings.TrimSpace(command(t, nil, "dpkg-deb", "-f", deb, k))
	}
	arch := strings.TrimSpace(command(t, nil, "dpkg", "--print-architecture"))
	for k, want := range map[string]string{
		"Package": "portsentry", "Architecture": arch, "Section": "net", "Priority": "optional",
		"Depends": "", "Recommends": "nftables",
		// Same package name: installing it is an upgrade of Debian's
		// portsentry, which takes over its conffiles without Replaces.
		"Conflicts": "", "Replaces": "",
	} {
		if fields[k] != want {
			t.Errorf("control field %s: %q, want %q", k, fields[k], want)
		}
	}
	if !regexp.MustCompile(`^.+ <[^@\s]+@[^@\s]+\.[a-z]+>$`).MatchString(fields["Maintainer"]) {
		t.Errorf("Maintainer %q is not `Name <address>`", fields["Maintainer"])
	}
	if fields["Description"] == "" {
		t.Error("no Description")
	}
	// The version must make dpkg and apt treat it as the upgrade of every
	// Debian portsentry 1.2 (bookworm 1.2-14+b1, trixie 1.2-16).
	v := fields["Version"]
	command(t, nil, "dpkg", "--validate-version", v)
	for _, old := range []string{"1.2-14+b1", "1.2-16", "1.2-99"} {
		if _, err := commandErr(nil, "dpkg", "--compare-versions", v, "gt", old); err != nil {
			t.Errorf("version %s does not sort after Debian's %s", v, old)
		}
	}
	if base := filepath.Base(deb); base != "portsentry_"+v[strings.Index(v, ":")+1:]+"_"+arch+".deb" {
		t.Errorf("file name %s does not match version %s (epoch dropped) and architecture %s", base, v, arch)
	}

	// The binary: static, runs anywhere, and is the daemon.
	bin := filepath.Join(root, "usr/sbin/portsentry")
	if out, err := exec.Command("ldd", bin).CombinedOutput(); err == nil || !strings.Contains(string(out), "not a dynamic executable") {
		t.Errorf("ldd %s: %s (%v), want a static binary", bin, strings.TrimSpace(string(out)), err)
	}
	// It reports the package's version, as dpkg does.
	for _, flag := range []string{"-V", "--version"} {
		if out := command(t, nil, bin, flag); out != "portsentry "+v+"\n" {
			t.Errorf("portsentry %s printed %q, want %q", flag, out, "portsentry "+v+"\n")
		}
	}
	// Its help is on standard output and names every command.
	help := command(t, nil, bin, "help")
	for _, c := range []string{"check", "selftest", "list", "block", "unblock", "status", "report"} {
		if !strings.Contains(help, "\n  "+c) {
			t.Errorf("portsentry help does not name %s:\n%s", c, help)
		}
	}
	// The licence, and every Go module linked into the binary named in
	// copyright with its own.
	cr, err := os.ReadFile(filepath.Join(root, "usr/share/doc/portsentry/copyright"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cr), "\nLicense: BSD-2-Clause\n") {
		t.Errorf("copyright does not grant BSD-2-Clause:\n%s", cr)
	}
	words := strings.Fields(string(cr))
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range info.Deps {
		if !slices.ContainsFunc(words, func(w string) bool { return strings.TrimRight(w, ",;") == dep.Path }) {
			t.Errorf("copyright does not name %s, which the binary links", dep.Path)
		}
	}
	// The shipped configuration loads.
	out := command(t, nil, bin, "check", "-c", filepath.Join(root, "usr/share/portsentry/portsentry.conf"))
	if !strings.Contains(out, "OK") {
		t.Errorf("portsentry check on the packaged configuration: %s", out)
	}
	// ...and writes its files where the packaged unit lets it.
	unit := filepath.Join(root, "usr/lib/systemd/system/portsentry.service")
	out = command(t, nil, bin, "check", "-c", filepath.Join(root, "usr/share/portsentry/portsentry.conf"), "-unit", unit)
	if !strings.Contains(out, "OK") || !strings.Contains(out, "files written checked against portsentry.service ("+unit+")") || regexp.MustCompile(`(under|private to) portsentry\.service`).MatchString(out) {
		t.Errorf("portsentry check -unit on the packaged configuration and unit: %s", out)
	}
}

// TestMaintainerScripts: the maintainer scripts are POSIX shell that parses
// (also with dash, Debian's /bin/sh) and carry no unsubstituted placeholder.
func TestMaintainerScripts(t *testing.T) {
	t.Parallel()
	deb, _ := builtDeb(t)
	ctl := t.TempDir()
	command(t, nil, "dpkg-deb", "-e", deb, ctl)
	shells := []string{"sh"}
	if _, err := exec.LookPath("dash"); err == nil {
		shells = append(shells, "dash")
	}
	for _, s := range []string{"preinst", "postinst", "prerm", "postrm"} {
		p := filepath.Join(ctl, s)
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("no %s: %v", s, err)
			continue
		}
		if fi.Mode().Perm() != 0o755 {
			t.Errorf("%s has mode %v, want 0755", s, fi.Mode().Perm())
		}
		b, _ := os.ReadFile(p)
		if !strings.HasPrefix(string(b), "#!/bin/sh\n") {
			t.Errorf("%s does not start with #!/bin/sh", s)
		}
		if m := regexp.MustCompile(`@[A-Z_]+@`).FindString(string(b)); m != "" {
			t.Errorf("%s still has the %s placeholder", s, m)
		}
		for _, sh := range shells {
			command(t, nil, sh, "-n", p)
		}
	}
}

// TestLintian: Debian's own checker finds no error and no warning (the
// overrides the package ships are explained in packaging/deb/lintian-overrides).
func TestLintian(t *testing.T) {
	t.Parallel()
	lintian := requireTool(t, "lintian", "lintian")
	deb, _ := builtDeb(t)
	out, err := commandErr(nil, lintian, "--fail-on", "error,warning", "--display-info", "--pedantic", deb)
	t.Logf("lintian %s:\n%s", filepath.Base(deb), out)
	if err != nil {
		t.Errorf("lintian failed (%v):\n%s", err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "E:") || strings.HasPrefix(line, "W:") {
			t.Errorf("lintian: %s", line)
		}
	}
}

// TestSystemdUnit: systemd's own checks on the unit exactly as packaged
// (ExecStart pointed at the packaged binary, the man pages of Documentation=
// found through MANPATH), its exposure score, and the settings the daemon
// relies on.
func TestSystemdUnit(t *testing.T) {
	t.Parallel()
	analyze := requireTool(t, "systemd-analyze", "systemd")
	_, root := builtDeb(t)
	unitText, err := os.ReadFile(filepath.Join(root, "usr/lib/systemd/system/portsentry.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unitText), "\nExecStart=/usr/sbin/portsentry\n") {
		t.Fatalf("the unit does not start /usr/sbin/portsentry:\n%s", unitText)
	}
	dir := t.TempDir()
	unit := filepath.Join(dir, "portsentry.service")
	bin := filepath.Join(root, "usr/sbin/portsentry")
	text := strings.Replace(string(unitText), "ExecStart=/usr/sbin/portsentry", "ExecStart="+bin, 1)
	if err := os.WriteFile(unit, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}

	args := []string{"verify", unit}
	if _, err := exec.LookPath("man"); err != nil {
		args = []string{"verify", "--man=no", unit}
		t.Log("no man command (man-db): Documentation= not checked")
	}
	cmd := exec.Command(analyze, args...)
	cmd.Env = append(os.Environ(), "MANPATH="+filepath.Join(root, "usr/share/man"))
	out, err := cmd.CombinedOutput()
	t.Logf("systemd-analyze %s:\n%s", strings.Join(args, " "), out)
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	// systemd's exposure score, 0 (locked down) to 10, in tenths: at most
	// 2.7, the unit's score when issue 11 was filed.
	out2, err := commandErr(nil, analyze, "security", "--offline=yes", "--threshold=27", unit)
	if i := strings.Index(out2, "→ Overall exposure level"); i >= 0 {
		t.Logf("systemd-analyze security: %s", strings.TrimSpace(out2[i:]))
	}
	if err != nil {
		t.Errorf("systemd-analyze security --threshold=27 (2.7) failed (%v):\n%s", err, out2)
	}

	settings := unitSettings(text)
	for key, want := range map[string]string{
		"Type":                     "notify",
		"ExecReload":               "/bin/kill -HUP $MAINPID",
		"Restart":                  "on-failure",
		"RestartPreventExitStatus": "2",
		"CapabilityBoundingSet":    "CAP_NET_RAW CAP_NET_ADMIN CAP_NET_BIND_SERVICE",
		"NoNewPrivileges":          "yes",
		"ProtectSystem":            "strict",
		"StateDirectory":           "portsentry",
		"StateDirectoryMode":       "0750",
		"LogsDirectory":            "portsentry",
		"LogsDirectoryMode":        "0750",
		"RuntimeDirectory":         "portsentry",
		"RestrictAddressFamilies":  "AF_UNIX AF_INET AF_INET6 AF_NETLINK AF_PACKET",
		"SystemCallFilter":         "@system-service",
		"UMask":                    "0027",
		"WantedBy":                 "multi-user.target",
	} {
		if got := settings[key]; got != want {
			t.Errorf("unit %s=%q, want %q", key, got, want)
		}
	}
	if _, ok := settings["AmbientCapabilities"]; ok {
		t.Error("AmbientCapabilities set: the daemon runs as root and needs none")
	}
	if _, ok := settings["User"]; ok {
		t.Error("User= set: the bounding set is the restriction; see the unit's comments")
	}
}

// unitSettings returns the last value of each Key=value line of a unit.
func unitSettings(text string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "[") {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m
}

// TestManPages: both pages render without a groff or man warning.
func TestManPages(t *testing.T) {
	t.Parallel()
	man := requireTool(t, "man", "man-db")
	_, root := builtDeb(t)
	for _, page := range []string{"man8/portsentry.8.gz", "man5/portsentry.conf.5.gz"} {
		p := filepath.Join(root, "usr/share/man", page)
		cmd := exec.Command(man, "--warnings", "-E", "UTF-8", "-l", p)
		cmd.Env = append(os.Environ(), "MANWIDTH=80", "MAN_DISABLE_SECCOMP=1")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Errorf("man --warnings -l %s: %v\n%s", page, err, stderr.String())
		}
		if !strings.Contains(string(out), "NAME") || !strings.Contains(string(out), "portsentry") {
			t.Errorf("%s rendered to %d bytes without NAME", page, len(out))
		}
	}
}

// TestFail2banFilter: the packaged 2.x filter matches a triggering event from
// a host that is not ignored, in the history file's and in the journal's
// form, and nothing else.
func TestFail2banFilter(t *testing.T) {
	t.Parallel()
	regex := requireTool(t, "fail2ban-regex", "fail2ban")
	_, root := builtDeb(t)
	filter := filepath.Join(root, "etc/fail2ban/filter.d/portsentry-2x.conf")
	log := filepath.Join(t.TempDir(), "portsentry.history")
	ev := func(ts, host, ignored, triggered string) string {
		return ts + "Scan from: [" + host + "] (" + host + ") protocol: [TCP] port: [143] type: [TCP SYN/Normal scan] IP opts: [not set] ignored: [" + ignored + "] triggered: [" + triggered + "] noblock: [false] blocked: [true]\n"
	}
	const ts = "2026-11-22T01:42:52.875+0000 "
	lines := ev(ts, "10.0.0.5", "false", "true") +
		ev(ts, "fd00::5", "false", "true") +
		ev(ts, "10.0.0.6", "true", "unset") + // ignored host
		ev(ts, "10.0.0.7", "false", "false") // below SCAN_TRIGGER
	if err := os.WriteFile(log, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	ips := strings.Fields(command(t, nil, regex, "-o", "ip", log, filter))
	slices.Sort(ips)
	if want := []string{"10.0.0.5", "fd00::5"}; !slices.Equal(ips, want) {
		t.Errorf("fail2ban-regex found %q, want %q", ips, want)
	}
	// The journal's MESSAGE has no time stamp of fail2ban's choosing; the
	// filter must not depend on it.
	journal := filepath.Join(t.TempDir(), "journal")
	if err := os.WriteFile(journal, []byte(ev("", "10.0.0.8", "false", "true")), 0o644); err != nil {
		t.Fatal(err)
	}
	if ips := strings.Fields(command(t, nil, regex, "-o", "ip", journal, filter)); !slices.Equal(ips, []string{"10.0.0.8"}) {
		t.Errorf("without a time stamp fail2ban-regex found %q, want 10.0.0.8", ips)
	}
}

// readLines returns the non-empty lines of a file.
func readLines(t *testing.T, p string) []string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}
