package bans

// The file format is described in the package documentation.

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
	"time"
	"unicode/utf8"

	"github.com/portsentry-go/portsentry/internal/config"
)

const (
	formatVersion = 1
	// maxLine bounds a line: a record is a few hundred bytes, so anything
	// longer is damage, reported without reading it into memory.
	maxLine = 64 << 10
	// writeBuffer is what a crash of the process can lose (see package
	// documentation): appends reach the kernel at least this often.
	writeBuffer = 64 << 10
	// maxReason and maxProto bound what a ban records (longer ones are
	// cut), so that a line stays small.
	maxReason = 1024
	maxProto  = 16
)

type journal struct {
	path string
	f    *os.File // O_APPEND
	w    *bufio.Writer
	lock *os.File
	buf  []byte // reused by encoders
	// appended counts records written since the file was last compacted.
	appended int
	// err is the first write error since the last good Sync; broken says
	// the file may miss records, so that the next Sync rewrites it whole.
	err    error
	broken bool
}

func openJournal(path string, s *Store) (*journal, *CorruptError, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, nil, fmt.Errorf("bans: %w", err)
	}
	j := &journal{path: path}
	lock, err := lockFile(path + ".lock")
	if err != nil {
		return nil, nil, err
	}
	j.lock = lock
	fail := func(err error) (*journal, *CorruptError, error) {
		j.lock.Close()
		return nil, nil, err
	}
	// Temporary files are left only by a crash during a compaction: the
	// journal beside them is whole, they are not.
	if ents, err := os.ReadDir(dir); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), base+".tmp-") {
				os.Remove(filepath.Join(dir, e.Name()))
			}
		}
	}

	var ld loader
	f, err := os.Open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		ld.clean = true
	case err != nil:
		return fail(fmt.Errorf("bans: %w", err))
	default:
		// Sized from the file (a record is about 150 bytes), the map and
		// heap are not grown a hundred times over while loading.
		if fi, err := f.Stat(); err == nil {
			hint := int(min(fi.Size()/128, int64(s.opts.MaxBans)))
			s.byAddr = make(map[netip.Addr]*entry, hint)
			s.active.items = make([]*entry, 0, hint)
		}
		err = ld.load(f, path, s)
		f.Close()
		if err != nil {
			return fail(err)
		}
	}

	var corrupt *CorruptError
	if len(ld.bad) > 0 {
		corrupt = &CorruptError{Lines: ld.bad}
		// Keep the damaged file for a human to look at; the snapshot
		// written next replaces it.
		kept := path + ".corrupt"
		os.Remove(kept)
		if os.Link(path, kept) == nil {
			corrupt.Kept = kept
		}
	}
	if f == nil || !ld.clean || len(ld.bad) > 0 || !ld.header || ld.records != len(s.byAddr) {
		if err := j.compact(s); err != nil {
			return fail(err)
		}
		return j, corrupt, nil
	}
	af, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fail(fmt.Errorf("bans: %w", err))
	}
	j.f = af
	j.w = bufio.NewWriterSize(af, writeBuffer)
	return j, corrupt, nil
}

func (j *journal) append(line []byte) {
	j.buf = line[:0]
	j.appended++
	if j.err != nil {
		return
	}
	if _, err := j.w.Write(line); err != nil {
		j.err = fmt.Errorf("bans: %s: %w", j.path, err)
		j.broken = true
	}
}

func (j *journal) sync(s *Store) error {
	if j.f == nil {
		return ErrClosed
	}
	if !j.broken {
		err := j.w.Flush()
		if err == nil {
			err = j.f.Sync()
		}
		if err != nil {
			j.err = fmt.Errorf("bans: %s: %w", j.path, err)
			j.broken = true
		}
	}
	if j.broken || (j.appended >= s.opts.CompactAfter && j.appended > len(s.byAddr)) {
		if err := j.compact(s); err != nil {
			if j.err != nil {
				return j.err
			}
			return err
		}
	}
	return nil
}

// compact writes s whole to a temporary file, fsyncs it, renames it over
// the journal and fsyncs the directory; the temporary file, open for
// appending at its end, becomes the journal. On error the old journal is
// kept as it was.
func (j *journal) compact(s *Store) error {
	dir, base := filepath.Split(j.path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, base+".tmp-*")
	if err != nil {
		return fmt.Errorf("bans: %w", err)
	}
	w := bufio.NewWriterSize(tmp, 256<<10)
	j.buf = writeSnapshot(w, s, j.buf)
	err = w.Flush()
	if err == nil {
		err = tmp.Sync()
	}
	if err == nil {
		err = os.Rename(tmp.Name(), j.path)
	}
	if err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("bans: compacting %s: %w", j.path, err)
	}
	// Without this the rename itself may not survive a power loss.
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	if j.f != nil {
		j.f.Close()
	}
	j.f = tmp
	if j.w == nil {
		j.w = bufio.NewWriterSize(tmp, writeBuffer)
	} else {
		j.w.Reset(tmp)
	}
	j.appended, j.err, j.broken = 0, nil, false
	return nil
}

// writeSnapshot writes s whole, as a compacted file holds it: the format
// line, then one record per address. Write errors are w's to keep (a
// bufio.Writer reports them at Flush). b is a scratch buffer, returned for
// reuse.
func writeSnapshot(w io.Writer, s *Store, b []byte) []byte {
	b = encodeFormat(b[:0])
	w.Write(b)
	for _, e := range s.entries() {
		if e.active {
			b = encodeBan(b[:0], e)
		} else {
			b = encodePast(b[:0], e)
		}
		w.Write(b)
	}
	return b[:0]
}

func (j *journal) close(s *Store) error {
	err := j.sync(s)
	if cerr := j.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("bans: %w", cerr)
	}
	j.f = nil
	j.lock.Close() // releases the lock
	return err
}

// loader reads a ban file into a Store.
type loader struct {
	records int  // records applied (format lines aside)
	header  bool // the file began with a format line
	clean   bool // the file ended with a newline
	bad     []*config.Error
	intern  map[string]string
}

func (ld *loader) load(r io.Reader, name string, s *Store) error {
	br := bufio.NewReaderSize(r, maxLine)
	now := s.now()
	ld.intern = make(map[string]string)
	ld.clean = true
	for n := 1; ; n++ {
		line, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			line = line[:len(line)-1]
		case errors.Is(err, bufio.ErrBufferFull):
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			ld.bad = append(ld.bad, &config.Error{File: name, Line: n, Err: errors.New("line too long")})
			if err == io.EOF {
				ld.clean = false
				return nil
			}
			if err != nil {
				return fmt.Errorf("bans: %s: %w", name, err)
			}
			continue
		case err == io.EOF:
			if len(line) == 0 {
				return nil
			}
			// The last line has no newline: the process died while
			// writing it. A record is one JSON object, of which no
			// proper prefix parses, so it is used only if whole.
			ld.clean = false
			if rec, derr := decodeRecord(line, ld.str); derr == nil {
				if err := ld.apply(rec, n, now, s); err != nil {
					return err
				}
			}
			return nil
		default:
			return fmt.Errorf("bans: %s: %w", name, err)
		}
		if len(strings.TrimSpace(string(line))) == 0 {
			ld.clean = false // nothing we write; compact it away
			continue
		}
		rec, derr := decodeRecord(line, ld.str)
		if derr != nil {
			ld.bad = append(ld.bad, &config.Error{File: name, Line: n, Err: derr})
			continue
		}
		if rec.op == opFormat && rec.v != formatVersion {
			return fmt.Errorf("%w: %s:%d: version %d (this portsentry reads version %d)", ErrFormat, name, n, rec.v, formatVersion)
		}
		if err := ld.apply(rec, n, now, s); err != nil {
			return err
		}
	}
}

func (ld *loader) apply(rec record, n int, now int64, s *Store) error {
	switch rec.op {
	case opFormat:
		if n == 1 {
			ld.header = true
		}
		return nil
	case opUnban:
		s.unban(rec.prefix)
	case opBan, opPast:
		if old := s.byAddr[rec.addr]; old != nil {
			if old.active {
				s.active.remove(old.idx)
			} else {
				s.past.remove(old.idx)
			}
			delete(s.byAddr, rec.addr)
		}
		e := &entry{
			addr:    rec.addr,
			reason:  rec.reason,
			proto:   rec.proto,
			port:    rec.port,
			count:   rec.count,
			since:   rec.since,
			expires: rec.expires,
		}
		switch {
		case rec.op == opBan && (e.expires == 0 || e.expires > now):
			e.active = true
			s.activate(e)
		case s.opts.Remember >= 0 && e.expires+int64(s.opts.Remember) > now:
			s.byAddr[e.addr] = e
			s.retire(e, e.expires)
		}
	}
	ld.records++
	return nil
}

// str interns the few distinct reasons and protocols, so that a million
// bans share a handful of strings (and reading them allocates nothing).
func (ld *loader) str(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	if w, ok := ld.intern[string(v)]; ok {
		return w
	}
	w := string(v)
	if len(ld.intern) < 4096 {
		ld.intern[w] = w
	}
	return w
}

func encodeFormat(b []byte) []byte {
	return fmt.Appendf(b, `{"op":%q,"v":%d}`+"\n", opFormat, formatVersion)
}

func encodeBan(b []byte, e *entry) []byte {
	b = append(b, `{"op":"ban","addr":"`...)
	b = e.addr.AppendTo(b)
	b = append(b, '"')
	if e.reason != "" {
		b = append(b, `,"reason":`...)
		b = appendString(b, e.reason)
	}
	if e.port != 0 {
		b = append(b, `,"port":`...)
		b = strconv.AppendUint(b, uint64(e.port), 10)
	}
	if e.proto != "" {
		b = append(b, `,"proto":`...)
		b = appendString(b, e.proto)
	}
	b = append(b, `,"since":"`...)
	b = appendTime(b, e.since)
	if e.expires != 0 {
		b = append(b, `","expires":"`...)
		b = appendTime(b, e.expires)
	}
	b = append(b, `","count":`...)
	b = strconv.AppendInt(b, int64(e.count), 10)
	return append(b, "}\n"...)
}

func encodePast(b []byte, e *entry) []byte {
	b = append(b, `{"op":"past","addr":"`...)
	b = e.addr.AppendTo(b)
	b = append(b, `","expires":"`...)
	b = appendTime(b, e.expires)
	b = append(b, `","count":`...)
	b = strconv.AppendInt(b, int64(e.count), 10)
	return append(b, "}\n"...)
}

func encodeUnban(b []byte, p netip.Prefix) []byte {
	b = append(b, `{"op":"unban","prefix":"`...)
	b = p.AppendTo(b)
	return append(b, "\"}\n"...)
}

func appendTime(b []byte, ns int64) []byte {
	return time.Unix(0, ns).UTC().AppendFormat(b, time.RFC3339Nano)
}

// appendString appends s as a JSON string: control characters, quotes
// and backslashes escaped, invalid UTF-8 replaced, so that no reason can
// break a line or the JSON around it.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
