// Package hostsdeny adds lines to TCP wrappers' /etc/hosts.deny, the block
// that survives a reboot.
package hostsdeny

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// ErrUnsafe is wrapped when the file is a symlink or world-writable: writing
// through either would let another user choose what root writes where.
var ErrUnsafe = errors.New("unsafe file")

// File is one hosts.deny file. Its methods are safe for concurrent use.
type File struct {
	Path string
	mu   sync.Mutex
	// rewrites counts the file's replacements: what batching saves.
	rewrites int
}

// change is one line to add or remove.
type change struct {
	line string
	add  bool
}

// Add appends line unless the file already holds it. The file is rewritten
// atomically (a temporary file renamed over it), keeping its mode and owner,
// so a crash never leaves a half-written hosts.deny. It reports whether the
// line was added.
func (f *File) Add(line string) (bool, error) {
	done, err := f.apply([]change{{line: line, add: true}})
	return err == nil && done[0], err
}

// Remove deletes every line equal to line. It reports whether one was found.
func (f *File) Remove(line string) (bool, error) {
	done, err := f.apply([]change{{line: line}})
	return err == nil && done[0], err
}

// apply reads the file once, makes the changes in order, as Add and Remove
// would one after the other, and rewrites it once if any took effect. It
// reports, for each change, whether it did (nil on error).
func (f *File) apply(changes []change) ([]bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	old, mode, uid, gid, err := f.read()
	if err != nil {
		return nil, err
	}
	c := parse(old)
	done := make([]bool, len(changes))
	for i, ch := range changes {
		if ch.add {
			done[i] = c.add(ch.line)
		} else {
			done[i] = c.remove(ch.line)
		}
	}
	if !c.changed {
		return done, nil
	}
	if err := f.replace(c.render(), mode, uid, gid); err != nil {
		return nil, err
	}
	return done, nil
}

// content is a hosts.deny in memory, as changes see it.
type content struct {
	orig  []byte
	lines [][]byte // the file's lines, then those added; without '\n'
	n     int      // how many of lines are the file's
	gone  []bool
	// at indexes the lines present by their text without surrounding
	// blanks: so a KILL_HOSTS_DENY value ending in a space is still found
	// (no duplicate after a restart, and Remove finds it).
	at      map[string][]int
	removed bool // a line was removed: the file is written line by line
	changed bool
}

func parse(data []byte) *content {
	c := &content{orig: data, at: make(map[string][]int)}
	if len(data) > 0 {
		c.lines = bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	}
	c.n = len(c.lines)
	c.gone = make([]bool, c.n)
	for i, l := range c.lines {
		k := string(bytes.TrimSpace(l))
		c.at[k] = append(c.at[k], i)
	}
	return c
}

// add appends line unless a line equal to it (without surrounding blanks)
// is present.
func (c *content) add(line string) bool {
	k := strings.TrimSpace(line)
	if len(c.at[k]) > 0 {
		return false
	}
	c.at[k] = append(c.at[k], len(c.lines))
	c.lines = append(c.lines, []byte(line))
	c.gone = append(c.gone, false)
	c.changed = true
	return true
}

// remove takes out every line equal to line.
func (c *content) remove(line string) bool {
	k := strings.TrimSpace(line)
	idx := c.at[k]
	if len(idx) == 0 {
		return false
	}
	for _, i := range idx {
		c.gone[i] = true
	}
	delete(c.at, k)
	c.removed, c.changed = true, true
	return true
}

// render writes the file as Add and Remove always have: added lines
// after the file's bytes, untouched; once a line is removed, every line
// kept, ended by '\n' and without a carriage return.
func (c *content) render() []byte {
	var buf bytes.Buffer
	if !c.removed {
		buf.Write(c.orig)
		if len(c.orig) > 0 && c.orig[len(c.orig)-1] != '\n' {
			buf.WriteByte('\n')
		}
		for _, l := range c.lines[c.n:] {
			buf.Write(l)
			buf.WriteByte('\n')
		}
		return buf.Bytes()
	}
	for i, l := range c.lines {
		if !c.gone[i] {
			buf.Write(bytes.TrimSuffix(l, []byte("\r")))
			buf.WriteByte('\n')
		}
	}
	return buf.Bytes()
}

func (f *File) read() (data []byte, mode fs.FileMode, uid, gid int, err error) {
	uid, gid, mode = -1, -1, 0o644
	fi, err := os.Lstat(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, mode, uid, gid, nil
	}
	if err != nil {
		return nil, 0, 0, 0, fmt.Errorf("hostsdeny: %w", err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil, 0, 0, 0, fmt.Errorf("hostsdeny: %s: %w: is a symbolic link", f.Path, ErrUnsafe)
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, 0, 0, fmt.Errorf("hostsdeny: %s: %w: not a regular file", f.Path, ErrUnsafe)
	}
	if fi.Mode().Perm()&0o002 != 0 {
		return nil, 0, 0, 0, fmt.Errorf("hostsdeny: %s: %w: world-writable", f.Path, ErrUnsafe)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		uid, gid = int(st.Uid), int(st.Gid)
	}
	data, err = os.ReadFile(f.Path)
	if err != nil {
		return nil, 0, 0, 0, fmt.Errorf("hostsdeny: %w", err)
	}
	return data, fi.Mode().Perm(), uid, gid, nil
}

func (f *File) replace(data []byte, mode fs.FileMode, uid, gid int) error {
	tmp, err := os.CreateTemp(filepath.Dir(f.Path), ".hosts.deny.portsentry-*")
	if err != nil {
		return fmt.Errorf("hostsdeny: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("hostsdeny: %w", err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("hostsdeny: %w", err)
	}
	if uid >= 0 {
		_ = tmp.Chown(uid, gid) // best effort: only root can give a file away
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("hostsdeny: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("hostsdeny: %w", err)
	}
	if err := os.Rename(tmp.Name(), f.Path); err != nil {
		return fmt.Errorf("hostsdeny: %w", err)
	}
	f.rewrites++
	return nil
}
