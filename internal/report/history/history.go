// Package history keeps PortSentry's two records on disk: the history file
// (append-only, never truncated) and the blocked file (the hosts blocked so
// far, reloaded at start so a restart does not act on them twice).
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

// Appender appends lines to a file. The file is opened for each write with
// O_APPEND, so a logrotate move or a deletion is followed without a signal
// and concurrent writers never interleave within a line.
type Appender struct {
	Path string
	mu   sync.Mutex
}

// Append writes line and a newline. The parent directory is created (0750)
// when missing, the file (0640) too.
func (a *Appender) Append(line string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	f, err := os.OpenFile(a.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if errors.Is(err, fs.ErrNotExist) {
		if mkErr := os.MkdirAll(filepath.Dir(a.Path), 0o750); mkErr != nil {
			return fmt.Errorf("history: %w", mkErr)
		}
		f, err = os.OpenFile(a.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	}
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	_, err = io.WriteString(f, line+"\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("history: %s: %w", a.Path, err)
	}
	return nil
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

// LoadBlocked reads a blocked file. A missing file is an empty one. Lines
// that cannot be read are returned as *config.Error values ("FILE:LINE: problem") beside the records
// that could: a damaged line must not make the daemon forget the others.
func LoadBlocked(path string) ([]Record, []error, error) {
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
