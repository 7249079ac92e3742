package bans

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// dump lists everything the Store knows, bans and history, for comparing
// two Stores.
func dump(s *Store) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.entries() {
		b := e.ban()
		if e.active {
			line := fmt.Sprintf("ban %v %q %d %q since=%v expires=%v count=%d", b.Addr, b.Reason, b.Port, b.Proto, b.Since.UTC(), b.Expires.UTC(), b.Count)
			if b.Origin != "" {
				line += fmt.Sprintf(" origin=%q", b.Origin)
			}
			out = append(out, line)
		} else {
			out = append(out, fmt.Sprintf("past %v ended=%v count=%d", b.Addr, b.Expires.UTC(), b.Count))
		}
	}
	return out
}

func readAll(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func write(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCrashAtEveryByte writes a journal, then loads it cut at every byte
// offset of its appended records, as a crash in the middle of a write
// leaves it: every complete record must load, the cut one must vanish
// without an error, and the file must be whole again after the load.
func TestCrashAtEveryByte(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	path := filepath.Join(dir, "bans.jsonl")
	s := open(t, path, c, Options{Policy: hour})
	// History from an earlier session, in the snapshot.
	s.BanFor(addr("203.0.113.9"), time.Minute, "manual")
	c.advance(time.Minute)
	s.Expire()
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	size := func() int {
		if err := s.Sync(); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return int(fi.Size())
	}
	start := size()
	// Each step appends exactly one record.
	steps := []func(){
		func() { s.Ban(addr("192.0.2.1"), "TCP SYN/Normal scan", 143, "TCP") },
		func() { s.Ban(addr("2001:db8::1"), "UDP", 53, "UDP") },
		func() { s.BanFor(addr("198.51.100.7"), 0, `manual "quoted"`) },
		func() { s.Ban(addr("203.0.113.9"), "TCP FIN scan", 22, "TCP") }, // repeat offender
		func() { s.Unban(prefix("192.0.2.0/24")) },
		func() { s.BanFor(addr("2001:db8::1"), 5*time.Minute, "manual") },
		func() { s.Unban(prefix("2001:db8::/32")) },
		func() { s.BanFor(addr("192.0.2.1"), time.Hour, "é\x01") },
	}
	ends := []int{start}
	states := [][]string{dump(s)}
	for _, step := range steps {
		step()
		ends = append(ends, size())
		states = append(states, dump(s))
		if ends[len(ends)-1] <= ends[len(ends)-2] {
			t.Fatalf("step %d appended nothing", len(ends)-1)
		}
	}
	full := readAll(t, path)
	mustClose(t, s)

	cut := filepath.Join(dir, "cut.jsonl")
	for k := start; k <= len(full); k++ {
		// The state is that of the last step whose record is complete;
		// a record missing only its newline is complete.
		i := 0
		for i+1 < len(ends) && ends[i+1]-1 <= k {
			i++
		}
		write(t, cut, full[:k])
		s, err := OpenOptions(cut, Options{Policy: hour, Now: c.now})
		if err != nil {
			t.Fatalf("cut at %d: Open: %v", k, err)
		}
		if diff := cmp.Diff(states[i], dump(s)); diff != "" {
			t.Fatalf("cut at %d (in step %d): state (-want +got):\n%s", k, i+1, diff)
		}
		// Appends after a crash must follow a whole line.
		s.BanFor(addr("192.0.2.99"), 0, "manual")
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s, err = OpenOptions(cut, Options{Policy: hour, Now: c.now})
		if err != nil {
			t.Fatalf("cut at %d: reopen: %v", k, err)
		}
		if _, ok := s.Get(addr("192.0.2.99")); !ok || s.Len() != len(s.Active()) {
			t.Fatalf("cut at %d: ban after the crash lost", k)
		}
		s.Close()
	}
}

func TestCorruptLinesReported(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bans.jsonl")
	content := strings.Join([]string{
		`{"op":"format","v":1}`,
		`{"op":"ban","addr":"192.0.2.1","reason":"UDP","port":53,"proto":"UDP","since":"2026-11-22T01:00:00Z","expires":"2026-11-22T03:00:00Z","count":1}`,
		`garbage`,
		`{"op":"ban","addr":"192.0.2.2","since":"2026-11-22T01:00:00Z","count":2}`,
		`{"op":"ban","addr":"192.0.2.999","since":"2026-11-22T01:00:00Z","count":1}`,
		`{"op":"ban","addr":"2001:db8::3","reason":"manual","since":"2026-11-22T01:00:00Z","count":1}`,
		`{"op":"frobnicate"}`,
		`{"op":"ban","addr":"192.0.2.4","since":"2026-11-22T01:00:00Z","count":0}`,
		`{"op":"ban","addr":"192.0.2.5","since":"2026-11-22T01:00:00Z","proto":"ICMPICMPICMPICMPICMP","count":1}`,
		`{"op":"past","addr":"192.0.2.6","count":1}`,
		`{"op":"unban","prefix":"192.0.2.0/33"}`,
		`{"op":"ban","addr":"192.0.2.7","since":"3026-11-22T01:00:00Z","count":1}`,
		``,
	}, "\n")
	write(t, path, []byte(content))
	s, err := OpenOptions(path, Options{Policy: hour, Now: newClock().now})
	var ce *CorruptError
	if !errors.As(err, &ce) {
		t.Fatalf("Open: %v, want a *CorruptError", err)
	}
	if s == nil {
		t.Fatal("Open returned no Store with a CorruptError")
	}
	defer s.Close()
	var lines []string
	for _, l := range ce.Lines {
		lines = append(lines, fmt.Sprintf("%s:%d", filepath.Base(l.File), l.Line))
		if l.File != path {
			t.Errorf("line error names %q, want %q", l.File, path)
		}
	}
	want := []string{"bans.jsonl:3", "bans.jsonl:5", "bans.jsonl:7", "bans.jsonl:8", "bans.jsonl:9", "bans.jsonl:10", "bans.jsonl:11", "bans.jsonl:12"}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("corrupt lines (-want +got):\n%s", diff)
	}
	if !strings.Contains(err.Error(), path+":3: ") {
		t.Errorf("error %q does not name %s:3", err, path)
	}
	var got []string
	for _, b := range s.Active() {
		got = append(got, b.Addr.String())
	}
	if diff := cmp.Diff([]string{"192.0.2.1", "192.0.2.2", "2001:db8::3"}, got); diff != "" {
		t.Errorf("loaded (-want +got):\n%s", diff)
	}
	if ce.Kept != path+".corrupt" || !bytes.Equal(readAll(t, ce.Kept), []byte(content)) {
		t.Errorf("damaged file not kept as %s.corrupt (Kept %q)", path, ce.Kept)
	}
	// The file was rewritten clean: the next start reports nothing.
	mustClose(t, s)
	s, err = OpenOptions(path, Options{Policy: hour, Now: newClock().now})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	s.Close()
}

func TestLongLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bans.jsonl")
	long := `{"op":"ban","addr":"192.0.2.1","reason":"` + strings.Repeat("x", 2*maxLine) + `","since":"2026-11-22T01:00:00Z","count":1}`
	ok := `{"op":"ban","addr":"192.0.2.2","since":"2026-11-22T01:00:00Z","count":1}`
	for _, tail := range []string{"\n", ""} {
		write(t, path, []byte(ok+"\n"+long+"\n"+ok+"\n"+long+tail))
		s, err := OpenOptions(path, Options{Now: newClock().now})
		var ce *CorruptError
		if !errors.As(err, &ce) || len(ce.Lines) != 2 || ce.Lines[0].Line != 2 || ce.Lines[1].Line != 4 {
			t.Errorf("tail %q: Open error %v", tail, err)
		}
		if s == nil || s.Len() != 1 {
			t.Fatalf("tail %q: good lines not loaded", tail)
		}
		s.Close()
	}
}

func TestNewerFormatRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bans.jsonl")
	content := []byte(`{"op":"format","v":2}` + "\n" + `{"op":"ban","addr":"192.0.2.1","since":"2026-11-22T01:00:00Z","count":1}` + "\n")
	write(t, path, content)
	s, err := Open(path, Policy{}, newClock().now)
	if !errors.Is(err, ErrFormat) || s != nil {
		t.Fatalf("Open = %v, %v; want nil, ErrFormat", s, err)
	}
	if !bytes.Equal(readAll(t, path), content) {
		t.Error("a newer file was modified")
	}
	// And the lock was released.
	write(t, path, nil)
	s, err = Open(path, Policy{}, newClock().now)
	if err != nil {
		t.Fatalf("Open after refusal: %v", err)
	}
	s.Close()
}

// TestGoldenSnapshot pins the file format.
func TestGoldenSnapshot(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "bans.jsonl")
	s := open(t, path, c, Options{Policy: hour})
	s.BanFor(addr("198.51.100.9"), time.Minute, "manual")
	c.advance(time.Minute)
	s.Expire()
	c.advance(time.Second)
	s.Ban(addr("192.0.2.7"), "TCP SYN/Normal scan", 143, "TCP")
	s.Ban(addr("::ffff:192.0.2.8"), "Unknown Type: TCP Packet Flags: \"odd\"\t\\", 8, "TCP")
	c.advance(time.Second + 5*time.Millisecond)
	s.BanFor(addr("2001:db8::7"), 0, "manual")
	s.Ban(addr("2001:db8::8"), "UDP", 53, "UDP")
	s.Import(addr("203.0.113.4"), 4*time.Hour, "crowdsecurity/ssh-bf", "crowdsec")
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, path)
	golden := filepath.Join("testdata", "snapshot.golden.jsonl")
	if *update {
		write(t, golden, got)
	}
	if diff := cmp.Diff(string(readAll(t, golden)), string(got)); diff != "" {
		t.Errorf("snapshot (-golden +got):\n%s", diff)
	}
}

// TestOrigin: a ban's origin survives the journal, a snapshot and a
// reopen; a file written before origins existed reads as this host's own
// bans; a line with an origin too long is damage, reported by line.
func TestOrigin(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bans.jsonl")
	c := newClock()
	s := open(t, path, c, Options{Policy: hour})
	s.Import(addr("203.0.113.4"), time.Hour, "portsentry/scan", "fleet:b")
	s.Ban(addr("192.0.2.7"), "UDP", 53, "UDP")
	s.Sync()
	mustClose(t, s)
	s = open(t, path, c, Options{Policy: hour})
	got := map[string]string{}
	for _, b := range s.Active() {
		got[b.Addr.String()] = b.Origin
	}
	if diff := cmp.Diff(map[string]string{"203.0.113.4": "fleet:b", "192.0.2.7": ""}, got); diff != "" {
		t.Errorf("origins after reopen (-want +got):\n%s", diff)
	}
	mustClose(t, s)

	old := `{"op":"format","v":1}` + "\n" + `{"op":"ban","addr":"192.0.2.9","reason":"UDP","port":53,"proto":"UDP","since":"2026-11-22T01:00:00Z","expires":"2026-11-22T03:00:00Z","count":1}` + "\n" +
		`{"op":"ban","addr":"192.0.2.10","origin":"` + strings.Repeat("x", maxOrigin+1) + `","since":"2026-11-22T01:00:00Z","count":1}` + "\n"
	write(t, path, []byte(old))
	s, err := OpenOptions(path, Options{Policy: hour, Now: c.now})
	var ce *CorruptError
	if !errors.As(err, &ce) || len(ce.Lines) != 1 || ce.Lines[0].Line != 3 || !strings.Contains(ce.Lines[0].Error(), "origin too long") {
		t.Fatalf("Open: %v, want line 3's origin reported", err)
	}
	defer s.Close()
	b, ok := s.Get(addr("192.0.2.9"))
	if !ok || b.Origin != "" || b.Reason != "UDP" {
		t.Errorf("old line read as %+v, %v", b, ok)
	}
}

// TestLoadFixture loads a hand-written journal: a snapshot followed by
// appends, the last one cut short by a crash.
func TestLoadFixture(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bans.jsonl")
	write(t, path, readAll(t, filepath.Join("testdata", "journal-torn.jsonl")))
	c := newClock()
	s, err := OpenOptions(path, Options{Policy: hour, Now: c.now})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	want := []string{
		`ban 192.0.2.7 "TCP SYN/Normal scan" 143 "TCP" since=2026-11-22 01:00:00 +0000 UTC expires=2026-11-22 03:00:00 +0000 UTC count=2`,
		`ban 2001:db8::7 "manual" 0 "" since=2026-11-22 01:30:00 +0000 UTC expires=0001-01-01 00:00:00 +0000 UTC count=1`,
		`past 198.51.100.9 ended=2026-11-21 12:00:00 +0000 UTC count=3`,
	}
	if diff := cmp.Diff(want, dump(s)); diff != "" {
		t.Errorf("loaded (-want +got):\n%s", diff)
	}
	if b := s.Ban(addr("198.51.100.9"), "UDP", 1, "UDP"); b.Count != 4 || b.Expires.Sub(b.Since) != 8*time.Hour {
		t.Errorf("repeat offender from fixture: %+v", b)
	}
}

// loadSeeds are ban files to load: the golden snapshot, a torn journal, and
// damage. FuzzLoad starts from them; TestLoadReopen opens them as real
// files.
func loadSeeds(t testing.TB) [][]byte {
	t.Helper()
	var seeds [][]byte
	for _, name := range []string{"snapshot.golden.jsonl", "journal-torn.jsonl"} {
		seeds = append(seeds, readAll(t, filepath.Join("testdata", name)))
	}
	return append(seeds,
		[]byte(`{"op":"format","v":1}`+"\n"+`{"op":"unban","prefix":"::/0"}`),
		[]byte(`{"op":"ban","addr":"::ffff:1.2.3.4%x","since":"2026-11-22T01:00:00+02:00","expires":"2026-11-22T01:00:00.5Z","count":1073741824}`),
		[]byte("\n\n\xff\x00{}"),
	)
}

// TestLoadReopen: whatever Open makes of a real file, it rewrites it so that
// the next Open reads the same state with no error. (FuzzLoad checks the
// same of any content, in memory.)
func TestLoadReopen(t *testing.T) {
	for i, data := range loadSeeds(t) {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bans.jsonl")
			write(t, path, data)
			c := newClock()
			o := Options{Policy: hour, Now: c.now, MaxBans: 50}
			s, err := OpenOptions(path, o)
			var ce *CorruptError
			if err != nil && !errors.As(err, &ce) {
				if !errors.Is(err, ErrFormat) {
					t.Fatalf("Open: %v", err)
				}
				return
			}
			first := dump(s)
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			s, err = OpenOptions(path, o)
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			defer s.Close()
			if diff := cmp.Diff(first, dump(s)); diff != "" {
				t.Fatalf("reopen changed the state (-first +second):\n%s", diff)
			}
		})
	}
}

// loadBytes reads data as Open reads a ban file, into a Store in memory.
func loadBytes(data []byte, o Options) (*Store, *loader, error) {
	s, err := OpenOptions("", o)
	if err != nil {
		return nil, nil, err
	}
	ld := new(loader)
	return s, ld, ld.load(bytes.NewReader(data), "bans.jsonl", s)
}

// FuzzLoad: no file content makes the loader panic, and whatever it makes
// of a file, the snapshot Open then writes (when the file was damaged, torn
// or not compacted) reads back as the same state with no error and needs no
// rewriting itself. In memory, with no file, lock or fsync, so that it runs
// thousands of times a second; TestLoadReopen does the same through real
// files.
func FuzzLoad(f *testing.F) {
	for _, b := range loadSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := newClock()
		o := Options{Policy: hour, Now: c.now, MaxBans: 50}
		s, _, err := loadBytes(data, o)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("load: %v", err)
			}
			return
		}
		first := dump(s)
		var snap bytes.Buffer
		writeSnapshot(&snap, s, nil)
		s, ld, err := loadBytes(snap.Bytes(), o)
		if err != nil {
			t.Fatalf("loading the snapshot: %v\n%s", err, snap.Bytes())
		}
		if len(ld.bad) > 0 {
			t.Fatalf("the snapshot has bad lines: %v\n%s", ld.bad, snap.Bytes())
		}
		if !ld.clean || !ld.header || ld.records != len(s.byAddr) {
			t.Fatalf("the snapshot would be rewritten at the next Open (clean %v, header %v, %d records for %d addresses):\n%s",
				ld.clean, ld.header, ld.records, len(s.byAddr), snap.Bytes())
		}
		if diff := cmp.Diff(first, dump(s)); diff != "" {
			t.Fatalf("the snapshot changed the state (-first +second):\n%s", diff)
		}
	})
}

// FuzzReason: any reason survives the file (invalid UTF-8 as U+FFFD) and
// never breaks its line.
func FuzzReason(f *testing.F) {
	f.Add("TCP SYN/Normal scan")
	f.Add("\"\\\n\r\t\x00\x7f\u2028é\xff")
	f.Fuzz(func(t *testing.T, reason string) {
		want := clean(reason, maxReason)
		if len(want) > maxReason || !utf8.ValidString(want) || (utf8.ValidString(reason) && len(reason) <= maxReason && want != reason) {
			t.Fatalf("clean(%q) = %q", reason, want)
		}
		e := &entry{addr: addr("192.0.2.1"), reason: want, active: true, count: 1, since: t0.UnixNano()}
		line := encodeBan(nil, e)
		if bytes.IndexByte(line, '\n') != len(line)-1 {
			t.Fatalf("encoded line %q has an inner newline", line)
		}
		rec, err := decodeRecord(line[:len(line)-1], nil)
		if err != nil {
			t.Fatalf("decode %q: %v", line, err)
		}
		if rec.reason != want {
			t.Fatalf("reason %q came back as %q", want, rec.reason)
		}
	})
}

func writeBans(b *testing.B, path string, n int, o Options) {
	c := newClock()
	o.Now = c.now
	s, err := OpenOptions(path, o)
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if i%4 == 0 {
			a = netip.AddrFrom16([16]byte{0x20, 0x01, 0xd, 0xb8, 12: byte(i >> 24), 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
		}
		s.Ban(a, "TCP SYN/Normal scan", uint16(i), "TCP")
		if i%1000 == 0 {
			c.advance(time.Second)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkOpen100k loads a compacted file of 100 000 bans (the usual
// start: the previous daemon compacted at Close).
func BenchmarkOpen100k(b *testing.B) {
	path := filepath.Join(b.TempDir(), "bans.jsonl")
	writeBans(b, path, 100_000, Options{Policy: hour})
	if err := func() error { s, err := Open(path, hour, newClock().now); s.Compact(); s.Close(); return err }(); err != nil {
		b.Fatal(err)
	}
	// Memory held per ban, measured once outside the timed loop.
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	s, err := Open(path, hour, newClock().now)
	if err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	held := float64(ms1.HeapAlloc-ms0.HeapAlloc) / 100_000
	s.Close()
	runtime.KeepAlive(s)
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		s, err := Open(path, hour, newClock().now)
		if err != nil {
			b.Fatal(err)
		}
		if s.Len() != 100_000 {
			b.Fatalf("loaded %d bans", s.Len())
		}
		s.Close()
	}
	b.ReportMetric(held, "heapbytes/ban")
	b.ReportMetric(float64(fi.Size())/100_000, "filebytes/ban")
}

// BenchmarkOpen100kCrashed loads a journal of 100 000 bans whose writer
// was killed in the middle of a line: the load also compacts it (a
// snapshot written, fsynced, renamed into place).
func BenchmarkOpen100kCrashed(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "bans.jsonl")
	writeBans(b, path, 100_000, Options{Policy: hour, CompactAfter: 1 << 30})
	orig := append(readAll(b, path), `{"op":"ban","addr":"192.0`...)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		write(b, path, orig)
		b.StartTimer()
		s, err := Open(path, hour, newClock().now)
		if err != nil {
			b.Fatal(err)
		}
		if s.Len() != 100_000 {
			b.Fatalf("loaded %d bans", s.Len())
		}
		s.Close()
	}
}

// BenchmarkBan is the cost of recording a ban, syncing every 100 (a
// batch).
func BenchmarkBan(b *testing.B) {
	c := newClock()
	s, err := Open(filepath.Join(b.TempDir(), "bans.jsonl"), hour, c.now)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	i := 0
	for b.Loop() {
		s.Ban(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), "TCP SYN/Normal scan", 22, "TCP")
		if i++; i%100 == 0 {
			s.Sync()
		}
	}
}
