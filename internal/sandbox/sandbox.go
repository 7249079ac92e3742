// Package sandbox reads what a systemd service unit lets its process write
// (ProtectSystem=, ProtectHome=, PrivateTmp=, ReadWritePaths= and the
// other path settings, and StateDirectory= and its kin), so that
// `portsentry check`, run by the administrator outside the unit, can say
// which configured file the daemon will fail to write once it runs under
// it. Inside the unit the file system itself says so; this package is the
// prediction.
//
// It reads the unit file and its drop-ins as systemd does (the first unit
// file found in the search path, then every NAME.d/*.conf, a drop-in in
// /etc overriding one of the same name in /run or /usr/lib, applied in
// the order of their names), and knows only the settings that make paths
// read-only, inaccessible or private. What it does not model (RootDirectory=,
// TemporaryFileSystem=, BindPaths=, specifiers such as %h) it leaves out:
// the prediction may then be wrong, never an error.
package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Access is what the service may do with a path.
type Access int

const (
	// Writable: as outside the unit.
	Writable Access = iota
	// Private: writable, but a directory of the service's own (PrivateTmp=,
	// ProtectHome=tmpfs): other programs do not see what is written there,
	// and it is gone when the service stops.
	Private
	// ReadOnly: mounted read-only for the service.
	ReadOnly
	// Inaccessible: not there at all for the service.
	Inaccessible
)

// String names the access for messages: "writable", "private to the
// service", "read-only", "inaccessible".
func (a Access) String() string {
	switch a {
	case Writable:
		return "writable"
	case Private:
		return "private to the service"
	case ReadOnly:
		return "read-only"
	case Inaccessible:
		return "inaccessible"
	}
	return fmt.Sprintf("Access(%d)", int(a))
}

// Unit is the file-system view of one service unit.
type Unit struct {
	// Name is the unit's name, "portsentry.service".
	Name string
	// Files are the unit file and the drop-ins read, in order.
	Files []string

	protectSystem string // "", "yes", "full", "strict"
	protectHome   string // "", "yes", "read-only", "tmpfs"
	privateTmp    bool
	// Path lists, in the order set; an empty assignment clears one.
	readWrite, readOnly, inaccessible []string
	// Directories systemd makes and leaves writable, as /var/lib/NAME etc.
	dirs []string
}

// SearchPath is where systemd looks for system units, first match wins
// (a unit file in /etc replaces the packaged one).
var SearchPath = []string{"/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"}

// ErrNotInstalled is returned by Find when no unit file of that name is
// installed (or it is masked).
var ErrNotInstalled = errors.New("sandbox: unit not installed")

// Find reads the installed unit name, with its drop-ins, from the
// directories of SearchPath under root ("/" for this system).
func Find(root, name string) (*Unit, error) {
	var unitFile string
	for _, dir := range SearchPath {
		p := filepath.Join(root, dir, name)
		if target, err := os.Readlink(p); err == nil && target == "/dev/null" {
			return nil, ErrNotInstalled // masked
		}
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			unitFile = p
			break
		}
	}
	if unitFile == "" {
		return nil, ErrNotInstalled
	}
	// Drop-ins: by file name; for one name, the directory first in
	// SearchPath wins.
	dropins := map[string]string{}
	for i := len(SearchPath) - 1; i >= 0; i-- {
		matches, _ := filepath.Glob(filepath.Join(root, SearchPath[i], name+".d", "*.conf"))
		for _, m := range matches {
			dropins[filepath.Base(m)] = m
		}
	}
	files := []string{unitFile}
	for _, base := range sortedKeys(dropins) {
		files = append(files, dropins[base])
	}
	return Load(name, files...)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Load reads the unit name from files: the unit file, then its drop-ins
// in the order given. A drop-in that does not exist is an error.
func Load(name string, files ...string) (*Unit, error) {
	u := &Unit{Name: name}
	for _, f := range files {
		r, err := os.Open(f)
		if err != nil {
			return nil, fmt.Errorf("sandbox: %w", err)
		}
		err = u.parse(r)
		r.Close()
		if err != nil {
			return nil, fmt.Errorf("sandbox: %s: %w", f, err)
		}
		u.Files = append(u.Files, f)
	}
	return u, nil
}

// Parse reads one unit file or drop-in from r over u (for tests and for
// text at hand).
func (u *Unit) Parse(r io.Reader) error { return u.parse(r) }

// parse applies the [Service] settings of one file. Lines may continue
// with a trailing backslash; comments start with # or ;.
func (u *Unit) parse(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	section, pending := "", ""
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if pending == "" && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			pending += strings.TrimSuffix(line, `\`) + " "
			continue
		}
		line, pending = pending+line, ""
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section != "Service" {
			continue
		}
		u.set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return sc.Err()
}

// set applies one setting. Unknown settings and values are left alone.
func (u *Unit) set(k, v string) {
	switch k {
	case "ProtectSystem":
		switch strings.ToLower(v) {
		case "yes", "true", "on", "1":
			u.protectSystem = "yes"
		case "full", "strict":
			u.protectSystem = strings.ToLower(v)
		case "", "no", "false", "off", "0":
			u.protectSystem = ""
		}
	case "ProtectHome":
		switch strings.ToLower(v) {
		case "yes", "true", "on", "1":
			u.protectHome = "yes"
		case "read-only", "tmpfs":
			u.protectHome = strings.ToLower(v)
		case "", "no", "false", "off", "0":
			u.protectHome = ""
		}
	case "PrivateTmp":
		switch strings.ToLower(v) {
		case "yes", "true", "on", "1":
			u.privateTmp = true
		case "", "no", "false", "off", "0":
			u.privateTmp = false
		}
	case "ReadWritePaths":
		u.readWrite = appendPaths(u.readWrite, v, "")
	case "ReadOnlyPaths":
		u.readOnly = appendPaths(u.readOnly, v, "")
	case "InaccessiblePaths":
		u.inaccessible = appendPaths(u.inaccessible, v, "")
	case "StateDirectory":
		u.dirs = appendPaths(u.dirs, v, "/var/lib")
	case "LogsDirectory":
		u.dirs = appendPaths(u.dirs, v, "/var/log")
	case "RuntimeDirectory":
		u.dirs = appendPaths(u.dirs, v, "/run")
	case "CacheDirectory":
		u.dirs = appendPaths(u.dirs, v, "/var/cache")
	}
}

// appendPaths adds the space-separated paths of v to list; an empty v
// clears it, as in systemd. Each path may start with "-" (ignored when
// missing) and "+" (relative to RootDirectory=, which is not modelled);
// base, when set, is the directory relative names are under
// (StateDirectory=NAME is /var/lib/NAME), and ":SYMLINK" suffixes are
// dropped.
func appendPaths(list []string, v, base string) []string {
	if v == "" {
		return nil
	}
	for _, f := range strings.Fields(v) {
		f = strings.Trim(f, `"'`)
		f = strings.TrimLeft(f, "-+")
		if base != "" {
			f, _, _ = strings.Cut(f, ":")
			f = path.Join(base, f)
		}
		if !path.IsAbs(f) || strings.Contains(f, "%") {
			continue
		}
		list = append(list, path.Clean(f))
	}
	return list
}

// Writable lists the directories the unit makes writable by name
// (StateDirectory= and its kin, ReadWritePaths=), for messages that say
// where a file could go.
func (u *Unit) Writable() []string {
	out := append(slices.Clone(u.dirs), u.readWrite...)
	slices.Sort(out)
	return slices.Compact(out)
}

// rule is one path setting: every path at or below prefix has access,
// because of why.
type rule struct {
	prefix string
	access Access
	why    string
}

// rules are the unit's path settings, the weaker first: of two for the
// same path, the later applies.
func (u *Unit) rules() []rule {
	var rs []rule
	add := func(access Access, why string, prefixes ...string) {
		for _, p := range prefixes {
			rs = append(rs, rule{p, access, why})
		}
	}
	switch u.protectSystem {
	case "strict":
		add(ReadOnly, "ProtectSystem=strict", "/")
		// The API file systems stay as they are.
		add(Writable, "ProtectSystem=strict", "/dev", "/proc", "/sys")
	case "full":
		add(ReadOnly, "ProtectSystem=full", "/usr", "/boot", "/efi", "/etc")
	case "yes":
		add(ReadOnly, "ProtectSystem=yes", "/usr", "/boot", "/efi")
	}
	homes := []string{"/home", "/root", "/run/user"}
	switch u.protectHome {
	case "yes":
		add(Inaccessible, "ProtectHome=yes", homes...)
	case "read-only":
		add(ReadOnly, "ProtectHome=read-only", homes...)
	case "tmpfs":
		add(Private, "ProtectHome=tmpfs", homes...)
	}
	if u.privateTmp {
		add(Private, "PrivateTmp=yes", "/tmp", "/var/tmp")
	}
	for _, p := range u.dirs {
		add(Writable, "the unit's own directory "+p, p)
	}
	for _, p := range u.readWrite {
		add(Writable, "ReadWritePaths="+p, p)
	}
	for _, p := range u.readOnly {
		add(ReadOnly, "ReadOnlyPaths="+p, p)
	}
	for _, p := range u.inaccessible {
		add(Inaccessible, "InaccessiblePaths="+p, p)
	}
	return rs
}

// Access says what the service may do with the absolute path p (a
// directory or a file), and which setting decides it ("" when none does).
// The setting for the longest path that contains p wins; for one path, a
// path list (ReadOnlyPaths= over ReadWritePaths=) wins over ProtectSystem=
// and its kin. Symbolic links are not followed: give a resolved path.
func (u *Unit) Access(p string) (Access, string) {
	p = path.Clean(p)
	best := rule{prefix: "", access: Writable}
	for _, r := range u.rules() {
		if !within(p, r.prefix) {
			continue
		}
		if len(r.prefix) >= len(best.prefix) { // rules are in order of precedence
			best = r
		}
	}
	return best.access, best.why
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	if dir == "/" {
		return true
	}
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// String describes where the unit came from: "portsentry.service
// (/usr/lib/systemd/system/portsentry.service, 1 drop-in)".
func (u *Unit) String() string {
	if len(u.Files) == 0 {
		return u.Name
	}
	s := u.Name + " (" + u.Files[0]
	switch n := len(u.Files) - 1; n {
	case 0:
	case 1:
		s += ", 1 drop-in"
	default:
		s += fmt.Sprintf(", %d drop-ins", n)
	}
	return s + ")"
}
