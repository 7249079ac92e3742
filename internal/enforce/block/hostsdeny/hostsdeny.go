// Package hostsdeny adds lines to TCP wrappers' /etc/hosts.deny, the block
// that survives a reboot.
package hostsdeny

import (
	"bufio"
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
}

// Add appends line unless the file already holds it. The file is rewritten
// atomically (a temporary file renamed over it), keeping its mode and owner,
// so a crash never leaves a half-written hosts.deny. It reports whether the
// line was added.
func (f *File) Add(line string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	old, mode, uid, gid, err := f.read()
	if err != nil {
		return false, err
	}
	if has(old, line) {
		return false, nil
	}
	var buf bytes.Buffer
	buf.Write(old)
	if len(old) > 0 && old[len(old)-1] != '\n' {
		buf.WriteByte('\n')
	}
	buf.WriteString(line)
	buf.WriteByte('\n')
	return true, f.replace(buf.Bytes(), mode, uid, gid)
}

// Remove deletes every line equal to line. It reports whether one was found.
func (f *File) Remove(line string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	old, mode, uid, gid, err := f.read()
	if err != nil || !has(old, line) {
		return false, err
	}
	line = strings.TrimSpace(line)
	var buf bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(old))
	sc.Buffer(nil, len(old)+1)
	for sc.Scan() {
		if string(bytes.TrimSpace(sc.Bytes())) != line {
			buf.Write(sc.Bytes())
			buf.WriteByte('\n')
		}
	}
	return true, f.replace(buf.Bytes(), mode, uid, gid)
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
	return nil
}

func has(data []byte, line string) bool {
	// Lines are compared without surrounding blanks on both sides, so a
	// KILL_HOSTS_DENY value ending in a space is still found (no duplicate
	// after a restart, and Remove finds it).
	line = strings.TrimSpace(line)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, len(data)+1)
	for sc.Scan() {
		if string(bytes.TrimSpace(sc.Bytes())) == line {
			return true
		}
	}
	return false
}
