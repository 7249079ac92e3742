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
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/portsentry-go/portsentry/internal/config"
)

const (
	formatVersion = 1
	// maxLine bounds a line: a record is a few hundred bytes, so anything
	// longer is damage, reported without reading it into memory.
	maxLine = 64 << 10
	// maxPending bounds the changes held in memory between two Syncs
	// (some 25 000 records). Past it they are let go and the next Sync
	// rewrites the file whole from the Store, which holds them.
	maxPending = 4 << 20
	// retryMin and retryMax bound the wait before rewriting the file again
	// after a failure: retryMin, doubled at each failure in a row, up to
	// retryMax. A full disk must not cost a snapshot every second.
	retryMin = time.Second
	retryMax = 5 * time.Minute
	// maxReason and maxProto bound what a ban records (longer ones are
	// cut), so that a line stays small.
	maxReason = 1024
	maxProto  = 16
	maxOrigin = 256
)

// journal is the Store's file. Store.mu guards what Ban and the other
// changes touch (pending and the fields below it); io serializes the
// file's I/O (sync, close). io is taken before Store.mu, never while
// holding it, and Store.mu is held only to take or hand back state, never
// during a write or an fsync: a slow or failing disk never makes Ban, Get
// or Active wait.
type journal struct {
	path string
	lock *os.File
	// createTemp makes the file a snapshot is written to: os.CreateTemp,
	// a failing disk in tests.
	createTemp func(dir, pattern string) (*os.File, error)

	io sync.Mutex
	// f is the journal, open for appending at its end; nil once closed.
	// Changed under io and Store.mu, read under either.
	f *os.File
	// Under io only:
	spare    []byte // the pending buffer not in use
	scratch  []byte // the snapshot encoder's buffer
	failures int    // rewrites failed in a row
	retryAt  int64  // no rewrite before this (Unix ns), after a failure

	// Under Store.mu:
	buf     []byte // reused by encoders
	pending []byte // records appended and not yet written
	// appended counts records appended since the file was last compacted.
	appended int
	// broken says the file misses records that pending does not hold (a
	// write failed, or pending overflowed): the next write is a rewrite.
	broken bool
	// compacting says a rewrite is writing a snapshot: records appended
	// meanwhile are kept, for the new file, even when broken.
	compacting bool
	// failing is the error that began the current run of failures, nil
	// when the last Sync left every change on disk.
	failing error
}

func openJournal(path string, s *Store) (*journal, *CorruptError, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, nil, fmt.Errorf("bans: %w", err)
	}
	j := &journal{path: path, createTemp: os.CreateTemp}
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
		// Nothing else has the Store yet: no lock needed.
		nf, err := j.writeSnapshotFile(s.snapshot())
		if err != nil {
			return fail(err)
		}
		j.f = nf
		return j, corrupt, nil
	}
	af, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fail(fmt.Errorf("bans: %w", err))
	}
	j.f = af
	return j, corrupt, nil
}

// append records a change (Store.mu held). It is kept in memory until the
// next sync writes it; nothing here touches the disk.
func (j *journal) append(line []byte) {
	j.buf = line[:0]
	j.appended++
	if j.broken && !j.compacting {
		return // the next rewrite, from the Store, holds it
	}
	if len(j.pending)+len(line) > maxPending {
		j.pending = j.pending[:0]
		j.broken = true
		return
	}
	j.pending = append(j.pending, line...)
}

// syncMode says what a sync must do beyond writing the appends.
type syncMode int

const (
	syncAuto    syncMode = iota // compact when grown; retry a rewrite when its time has come
	syncForce                   // as syncAuto, with no wait for a rewrite (Close)
	syncCompact                 // compact now, whatever the size or the wait (Compact)
)

// sync writes the records appended since the last sync and fsyncs the
// file; then rewrites it whole when it misses records (a write failed), or
// has grown beyond the state (compaction). A rewrite that fails is retried
// no sooner than retryMin later, doubling up to retryMax, unless mode says
// otherwise; meanwhile appends still go to the file while it is whole.
//
// It returns whether every change made before it is now on disk, and the
// error of this sync, if any.
func (j *journal) sync(s *Store, mode syncMode) (clean bool, err error) {
	j.io.Lock()
	defer j.io.Unlock()
	if j.f == nil {
		return false, ErrClosed
	}
	s.mu.Lock()
	now := s.now()
	if !j.broken && len(j.pending) > 0 {
		buf := j.pending
		j.pending = j.spare[:0]
		s.mu.Unlock()
		_, err = j.f.Write(buf)
		if err == nil {
			err = j.f.Sync()
		}
		j.spare = buf[:0]
		s.mu.Lock()
		if err != nil {
			err = fmt.Errorf("bans: %s: %w", j.path, err)
			// The file may end in a torn line: only a rewrite mends it.
			j.broken = true
			j.pending = j.pending[:0]
		}
	}
	grown := j.appended >= s.opts.CompactAfter && j.appended > len(s.byAddr)
	waiting := j.failures > 0 && now < j.retryAt
	if mode != syncCompact && (!(j.broken || grown) || (waiting && mode == syncAuto)) {
		clean = !j.broken && err == nil
		s.mu.Unlock()
		return clean, err
	}

	// Rewrite: the state is copied under the lock, written without it.
	// Records appended meanwhile stay in pending: after pending[mark:]
	// in the new file, before it in the old.
	snap := s.snapshot()
	mark, n, wasBroken := len(j.pending), j.appended, j.broken
	j.broken, j.compacting = false, true
	s.mu.Unlock()

	nf, cerr := j.writeSnapshotFile(snap)

	s.mu.Lock()
	j.compacting = false
	if cerr != nil {
		j.broken = j.broken || wasBroken
		if j.broken {
			j.pending = j.pending[:0]
		}
		j.failures++
		j.retryAt = now + int64(backoff(j.failures))
		s.mu.Unlock()
		if err == nil {
			err = cerr
		}
		return false, err
	}
	old := j.f
	j.f = nf
	j.appended -= n
	if j.broken {
		// pending overflowed during the rewrite: another one is due.
		j.pending = j.pending[:0]
	} else {
		j.pending = append(j.pending[:0], j.pending[mark:]...)
	}
	j.failures, j.retryAt = 0, 0
	clean = !j.broken
	s.mu.Unlock()
	old.Close()
	// The write error, if any, is mended: everything is on disk.
	return clean, nil
}

// backoff is the wait after the n-th rewrite failed in a row.
func backoff(n int) time.Duration {
	d := retryMin
	for i := 1; i < n && d < retryMax; i++ {
		d *= 2
	}
	return min(d, retryMax)
}

// report turns the outcome of a sync into what Sync returns: an error once
// per run of failures (the first), nil while the run goes on and when it
// ends, so that a full disk is logged once, not every second. Err tells the
// state at any time.
func (j *journal) report(s *Store, clean bool, err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case clean:
		j.failing = nil
		return nil
	case err == nil || errors.Is(err, ErrClosed):
		return err
	case j.failing == nil:
		j.failing = err
		return err
	default:
		return nil
	}
}

// writeSnapshotFile writes snap whole to a temporary file, fsyncs it,
// renames it over the journal and fsyncs the directory; the temporary file,
// open for appending at its end, is returned: it is the journal now. On
// error the journal is kept as it was. No lock is needed: snap is a copy,
// and the caller holds io (or has the Store to itself).
func (j *journal) writeSnapshotFile(snap []entry) (*os.File, error) {
	dir, base := filepath.Split(j.path)
	if dir == "" {
		dir = "."
	}
	tmp, err := j.createTemp(dir, base+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("bans: compacting %s: %w", j.path, err)
	}
	w := bufio.NewWriterSize(tmp, 256<<10)
	j.scratch = writeEntries(w, snap, j.scratch)
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
		return nil, fmt.Errorf("bans: compacting %s: %w", j.path, err)
	}
	// Without this the rename itself may not survive a power loss.
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return tmp, nil
}

// writeSnapshot writes s whole, as a compacted file holds it: the format
// line, then one record per address. The caller holds s.mu (or has s to
// itself). Write errors are w's to keep (a bufio.Writer reports them at
// Flush). b is a scratch buffer, returned for reuse.
func writeSnapshot(w io.Writer, s *Store, b []byte) []byte {
	return writeEntries(w, s.snapshot(), b)
}

// writeEntries writes a snapshot taken by Store.snapshot, in the order
// of Store.entries.
func writeEntries(w io.Writer, snap []entry, b []byte) []byte {
	slices.SortFunc(snap, func(a, b entry) int { return compareEntries(&a, &b) })
	b = encodeFormat(b[:0])
	w.Write(b)
	for i := range snap {
		e := &snap[i]
		if e.active {
			b = encodeBan(b[:0], e)
		} else {
			b = encodePast(b[:0], e)
		}
		w.Write(b)
	}
	return b[:0]
}

// close syncs the file, with no wait for a rewrite, and releases it.
func (j *journal) close(s *Store) error {
	_, err := j.sync(s, syncForce)
	j.io.Lock()
	defer j.io.Unlock()
	if j.f == nil {
		return err
	}
	if cerr := j.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("bans: %w", cerr)
	}
	s.mu.Lock()
	j.f = nil
	s.mu.Unlock()
	j.lock.Close() // releases the lock
	if errors.Is(err, ErrClosed) {
		err = nil
	}
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
			origin:  rec.origin,
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
	if e.origin != "" {
		b = append(b, `,"origin":`...)
		b = appendString(b, e.origin)
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
