// Package history keeps PortSentry's two records on disk: the history file
// (append-only, never truncated: logrotate's to rotate, fail2ban's to read)
// and the blocked file (the hosts blocked so far, reloaded at start so a
// restart does not act on them twice). The blocked file rotates itself at
// BlockedMaxSize to FILE.1, and LoadBlocked reads both, so a flood of
// blocks cannot fill the disk and a restart still knows the hosts.
package history

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/portsentry-go/portsentry/internal/config"
)

// BlockedMaxSize is where the blocked file rotates (Appender.MaxSize). A
// record is under 100 bytes with an address and at most about 330 with the
// longest host name, so the file and its rotated copy always hold more
// hosts than the engine remembers as blocked (65 536), while a flood of
// blocks from random sources costs at most twice this on disk.
const BlockedMaxSize = 32 << 20

// Appender appends lines to a file. The file is opened for each write with
// O_APPEND, so a logrotate move (or copytruncate) or a deletion is followed
// without a signal and concurrent writers never interleave within a line.
//
// With MaxSize set, a line that would take the file past MaxSize bytes first
// moves the file to Path+".1" (replacing the one there): the file and one
// older copy, never more. The history file has no MaxSize: its format and
// name are fail2ban's, and logrotate rotates it.
type Appender struct {
	Path    string
	MaxSize int64 // 0: the file is never rotated here
	mu      sync.Mutex
	// rotateFailed says the last rotation failed: the next failures are
	// not reported again until one succeeds (a flood must not turn into
	// a flood of error lines).
	rotateFailed bool
}

// Append writes line and a newline. The parent directory is created (0750)
// when missing, the file (0640) too. A rotation that fails is reported
// once (the line is written all the same), until one succeeds again.
func (a *Appender) Append(line string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	f, err := a.open()
	if err != nil {
		return err
	}
	var rotErr error
	if a.MaxSize > 0 {
		f, rotErr = a.rotate(f, int64(len(line)+1))
		if f == nil {
			return rotErr
		}
	}
	_, err = io.WriteString(f, line+"\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("history: %s: %w", a.Path, err)
	}
	return rotErr
}

func (a *Appender) open() (*os.File, error) {
	f, err := os.OpenFile(a.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if errors.Is(err, fs.ErrNotExist) {
		if mkErr := os.MkdirAll(filepath.Dir(a.Path), 0o750); mkErr != nil {
			return nil, fmt.Errorf("history: %w", mkErr)
		}
		f, err = os.OpenFile(a.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	}
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	return f, nil
}

// rotate moves the file to Path+".1" when n more bytes would take it past
// MaxSize, and returns the file to write to: f itself, or the new file.
// A file of any size takes a first line, so one line longer than MaxSize
// is still written. The error is a failed rotation, to report; the file
// returned is nil only when none could be opened.
func (a *Appender) rotate(f *os.File, n int64) (*os.File, error) {
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 || fi.Size()+n <= a.MaxSize {
		return f, nil
	}
	// Only the file this writer has open is moved: if another writer
	// rotated it a moment ago, the new file is not moved over the old.
	if cur, err := os.Stat(a.Path); err == nil && os.SameFile(fi, cur) {
		err = os.Rename(a.Path, a.Path+".1")
		if err != nil {
			if a.rotateFailed {
				return f, nil
			}
			a.rotateFailed = true
			return f, fmt.Errorf("history: rotating %s: %w", a.Path, err)
		}
	}
	a.rotateFailed = false
	f.Close()
	return a.open()
}

// Record is one block read back from a blocked or history file.
type Record struct {
	Addr  netip.Addr
	Port  uint16
	Proto string // "TCP" or "UDP"
}

// ParseRecord reads one 1.2 block record:
//
//	1795311636 - 11/22/2026 01:40:36 Host: name/10.99.0.1 Port: 143 TCP Blocked
func ParseRecord(line string) (Record, error) {
	var r Record
	_, rest, ok := strings.Cut(line, " Host: ")
	if !ok {
		return r, errors.New(`no "Host:" field`)
	}
	host, rest, ok := strings.Cut(rest, " Port: ")
	if !ok {
		return r, errors.New(`no "Port:" field`)
	}
	// The address is what follows the last slash: a resolved name never
	// holds one, and the address never does either.
	addr, err := netip.ParseAddr(host[strings.LastIndexByte(host, '/')+1:])
	if err != nil {
		return r, fmt.Errorf("bad address: %w", err)
	}
	f := strings.Fields(rest)
	if len(f) != 3 || f[2] != "Blocked" || (f[1] != "TCP" && f[1] != "UDP") {
		return r, errors.New(`expected "Port: N TCP|UDP Blocked"`)
	}
	port, err := strconv.ParseUint(f[0], 10, 16)
	if err != nil {
		return r, fmt.Errorf("bad port %q", f[0])
	}
	return Record{Addr: addr.Unmap().WithZone(""), Port: uint16(port), Proto: f[1]}, nil
}

// LoadBlocked reads a blocked file: the copy its rotation keeps
// (path+".1") first, then the file itself, so that the hosts blocked before
// the last rotation are still known after a restart. A missing file is an
// empty one. Lines that cannot be read are returned as *config.Error values
// ("FILE:LINE: problem") beside the records that could: a damaged line must
// not make the daemon forget the others.
func LoadBlocked(path string) ([]Record, []error, error) {
	var recs []Record
	var bad []error
	for _, p := range []string{path + ".1", path} {
		r, b, err := loadFile(p)
		recs, bad = append(recs, r...), append(bad, b...)
		if err != nil {
			return recs, bad, err
		}
	}
	return recs, bad, nil
}

func loadFile(path string) ([]Record, []error, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("history: %w", err)
	}
	defer f.Close()
	return readBlocked(f, path)
}

func readBlocked(r io.Reader, name string) ([]Record, []error, error) {
	var recs []Record
	var bad []error
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		rec, err := ParseRecord(line)
		if err != nil {
			bad = append(bad, &config.Error{File: name, Line: n, Err: err})
			continue
		}
		recs = append(recs, rec)
	}
	if err := sc.Err(); err != nil {
		return recs, bad, fmt.Errorf("history: %s: %w", name, err)
	}
	return recs, bad, nil
}
