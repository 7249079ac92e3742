package output

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/portsentry-go/portsentry/internal/event"
)

func TestPriority(t *testing.T) {
	tests := []struct {
		level slog.Level
		want  int
	}{
		{slog.LevelError + 4, 3},
		{slog.LevelError, 3},
		{slog.LevelWarn + 1, 4},
		{slog.LevelWarn, 4},
		{slog.LevelInfo + 1, 5},
		{slog.LevelInfo, 5}, // attackalert, Scan from: notice, as PortSentry logged them
		{slog.LevelInfo - 1, 6},
		{LevelVerbose, 6},
		{LevelVerbose - 1, 7},
		{slog.LevelDebug, 7},
		{slog.LevelDebug - 8, 7},
	}
	for _, tt := range tests {
		if got := priority(tt.level); got != tt.want {
			t.Errorf("priority(%v) = %d, want %d", tt.level, got, tt.want)
		}
	}
}

func TestParseJournalStream(t *testing.T) {
	tests := []struct {
		in       string
		dev, ino uint64
		ok       bool
	}{
		{"8:1234", 8, 1234, true},
		{"0:0", 0, 0, true},
		{"18446744073709551615:18446744073709551615", 1<<64 - 1, 1<<64 - 1, true},
		{"", 0, 0, false},
		{"8", 0, 0, false},
		{"8:", 0, 0, false},
		{":8", 0, 0, false},
		{"8:12:3", 0, 0, false},
		{"-8:12", 0, 0, false},
		{"8:x", 0, 0, false},
		{" 8:12", 0, 0, false},
		{"18446744073709551616:1", 0, 0, false},
	}
	for _, tt := range tests {
		dev, ino, ok := parseJournalStream(tt.in)
		if ok != tt.ok || dev != tt.dev || ino != tt.ino {
			t.Errorf("parseJournalStream(%q) = %d, %d, %v; want %d, %d, %v", tt.in, dev, ino, ok, tt.dev, tt.ino, tt.ok)
		}
	}
}

func FuzzParseJournalStream(f *testing.F) {
	for _, s := range []string{"8:1234", "0:0", "", "8:", ":", "1:2:3", "-1:2", "99999999999999999999:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		dev, ino, ok := parseJournalStream(s)
		if !ok {
			return
		}
		// What parses names exactly the stream it was formatted from.
		d2, i2, ok2 := parseJournalStream(fmt.Sprintf("%d:%d", dev, ino))
		if !ok2 || d2 != dev || i2 != ino {
			t.Errorf("%q parsed as %d:%d, which does not parse back", s, dev, ino)
		}
	})
}

// streamID is JOURNAL_STREAM for f, as systemd sets it.
func streamID(t *testing.T, f *os.File) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

func TestToJournal(t *testing.T) {
	// A socket, as systemd's stream to journald is; and a file the unit's
	// process might have redirected its output to.
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	journal, peer := os.NewFile(uintptr(fds[0]), "journal"), os.NewFile(uintptr(fds[1]), "peer")
	defer journal.Close()
	defer peer.Close()
	file, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()

	id := streamID(t, journal)
	tests := []struct {
		name string
		env  string
		f    *os.File
		want bool
	}{
		{"the journal's stream", id, journal, true},
		{"redirected to a file", id, file, false},
		{"the stream's other end", id, peer, false},
		{"unset", "", journal, false},
		{"malformed", strings.Replace(id, ":", "-", 1), journal, false},
		{"same inode, other device", "999999:" + strings.Split(id, ":")[1], journal, false},
		{"no file", id, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvJournalStream, tt.env)
			if got := ToJournal(tt.f); got != tt.want {
				t.Errorf("ToJournal = %v, want %v (JOURNAL_STREAM=%q)", got, tt.want, tt.env)
			}
		})
	}
}

// parseNative decodes one message of the journal's native protocol, as
// journald does; it fails on anything journald would not take whole.
func parseNative(b []byte) (map[string][]string, error) {
	m := map[string][]string{}
	for len(b) > 0 {
		nl := bytes.IndexByte(b, '\n')
		if nl < 0 {
			return nil, errors.New("field without a newline")
		}
		if eq := bytes.IndexByte(b[:nl], '='); eq >= 0 {
			m[string(b[:eq])] = append(m[string(b[:eq])], string(b[eq+1:nl]))
			b = b[nl+1:]
			continue
		}
		key := string(b[:nl])
		b = b[nl+1:]
		if len(b) < 8 {
			return nil, fmt.Errorf("%s: no length", key)
		}
		n := binary.LittleEndian.Uint64(b)
		b = b[8:]
		if uint64(len(b)) < n+1 || b[n] != '\n' {
			return nil, fmt.Errorf("%s: length %d does not match", key, n)
		}
		m[key] = append(m[key], string(b[:n]))
		b = b[n+1:]
	}
	for k := range m {
		if k == "" || strings.ToUpper(k) != k || strings.HasPrefix(k, "_") {
			return nil, fmt.Errorf("field name %q: journald would drop it", k)
		}
	}
	return m, nil
}

func FuzzAppendField(f *testing.F) {
	for _, s := range []string{"", "plain", "two\nlines", "\n", "ends with\n", "a=b", "\x00bin\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		b := appendField(nil, "MESSAGE", value)
		b = appendField(b, "PRIORITY", "4")
		m, err := parseNative(b)
		if err != nil {
			t.Fatalf("%q encoded as %q: %v", value, b, err)
		}
		if got := m["MESSAGE"]; len(got) != 1 || got[0] != value {
			t.Errorf("MESSAGE %q came back as %q", value, got)
		}
		if got := m["PRIORITY"]; len(got) != 1 || got[0] != "4" {
			t.Errorf("the next field came back as %q", got)
		}
	})
}

// fakeJournald is a datagram socket standing in for journald's.
type fakeJournald struct {
	t    *testing.T
	path string
	conn *net.UnixConn
}

func newFakeJournald(t *testing.T) *fakeJournald {
	t.Helper()
	path := filepath.Join(t.TempDir(), "socket")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &fakeJournald{t: t, path: path, conn: conn}
}

// next receives one message, from the datagram or, for a large one, from
// the sealed memfd it carries, as journald accepts them.
func (j *fakeJournald) next() map[string][]string {
	j.t.Helper()
	if err := j.conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		j.t.Fatal(err)
	}
	buf, oob := make([]byte, 1<<16), make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := j.conn.ReadMsgUnix(buf, oob)
	if err != nil {
		j.t.Fatalf("no message: %v", err)
	}
	msg := buf[:n]
	if oobn > 0 {
		msg = j.memfd(oob[:oobn])
	}
	m, err := parseNative(msg)
	if err != nil {
		j.t.Fatalf("message %q: %v", msg, err)
	}
	return m
}

func (j *fakeJournald) memfd(oob []byte) []byte {
	j.t.Helper()
	cmsgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil || len(cmsgs) != 1 {
		j.t.Fatalf("control message: %v (%d)", err, len(cmsgs))
	}
	fds, err := unix.ParseUnixRights(&cmsgs[0])
	if err != nil || len(fds) != 1 {
		j.t.Fatalf("descriptors: %v (%d)", err, len(fds))
	}
	f := os.NewFile(uintptr(fds[0]), "memfd")
	defer f.Close()
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	if err != nil {
		j.t.Fatalf("not a memfd: %v", err)
	}
	if want := unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE; seals&want != want {
		j.t.Errorf("memfd seals %#x: journald refuses one without %#x", seals, want)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
	if err != nil {
		j.t.Fatal(err)
	}
	return b
}

var probe = event.Event{
	Time: time.Now(), Src: netip.MustParseAddr("10.0.0.5"), Dst: netip.MustParseAddr("10.0.0.1"),
	Port: 143, Proto: event.TCP, Kind: event.SYN, Mode: event.ModeATCP,
}

func TestJournalNative(t *testing.T) {
	jd := newFakeJournald(t)
	var stream bytes.Buffer
	log := slog.New(&handler{w: newJournalWriter(jd.path, &stream), level: slog.LevelDebug})

	log.Error("adminalert: ERROR: boom", "err", "exit status 3")
	log.Warn("adminalert: WARNING: ignore file missing")
	log.Info("Scan from: [10.0.0.5] ...", Event(probe, "blocked"))
	log.Log(t.Context(), LevelVerbose, "bound", "port", 143)
	log.Debug("first\nsecond")
	log.With(Source(probe.Src, "")).Info("attackalert: 10.0.0.5 unblocked")

	common := map[string][]string{"SYSLOG_IDENTIFIER": {"portsentry"}, "SYSLOG_FACILITY": {"3"}}
	want := []map[string][]string{
		{"PRIORITY": {"3"}, "MESSAGE": {`adminalert: ERROR: boom err="exit status 3"`}},
		{"PRIORITY": {"4"}, "MESSAGE": {"adminalert: WARNING: ignore file missing"}},
		{"PRIORITY": {"5"}, "MESSAGE": {"Scan from: [10.0.0.5] ..."},
			"PORTSENTRY_SRC": {"10.0.0.5"}, "PORTSENTRY_DST": {"10.0.0.1"}, "PORTSENTRY_PORT": {"143"},
			"PORTSENTRY_PROTO": {"tcp"}, "PORTSENTRY_KIND": {"syn"}, "PORTSENTRY_TYPE": {"TCP SYN/Normal scan"},
			"PORTSENTRY_MODE": {"atcp"}, "PORTSENTRY_ACTION": {"blocked"}},
		{"PRIORITY": {"6"}, "MESSAGE": {"bound port=143"}},
		{"PRIORITY": {"7"}, "MESSAGE": {"first\nsecond"}},
		{"PRIORITY": {"5"}, "MESSAGE": {"attackalert: 10.0.0.5 unblocked"}, "PORTSENTRY_SRC": {"10.0.0.5"}},
	}
	for i, w := range want {
		for k, v := range common {
			w[k] = v
		}
		if diff := cmp.Diff(w, jd.next()); diff != "" {
			t.Errorf("message %d (-want +got):\n%s", i, diff)
		}
	}
	if stream.Len() > 0 {
		t.Errorf("the stream got %q while the socket took every line", stream.String())
	}
}

// TestJournalLarge: a line too large for a datagram reaches journald whole,
// in a sealed memfd.
func TestJournalLarge(t *testing.T) {
	jd := newFakeJournald(t)
	var stream bytes.Buffer
	log := slog.New(&handler{w: newJournalWriter(jd.path, &stream), level: slog.LevelInfo})
	line := strings.Repeat("x", 1<<20)
	log.Warn(line)
	m := jd.next()
	if got := m["MESSAGE"]; len(got) != 1 || got[0] != line {
		t.Errorf("MESSAGE of %d bytes arrived as %d values, first %d bytes", len(line), len(got), len(got[0]))
	}
	if got := m["PRIORITY"]; len(got) != 1 || got[0] != "4" {
		t.Errorf("PRIORITY %q, want 4", got)
	}
	if stream.Len() > 0 {
		t.Errorf("the stream got %d bytes", stream.Len())
	}
}

// TestJournalFallback: without the socket, lines go to the stream with
// sd-daemon's priority prefix and without a time stamp.
func TestJournalFallback(t *testing.T) {
	var stream bytes.Buffer
	log := slog.New(&handler{w: newJournalWriter(filepath.Join(t.TempDir(), "none"), &stream), level: slog.LevelDebug})
	log.Error("adminalert: ERROR: boom")
	log.Warn("adminalert: WARNING: careful", Event(probe, "forged"))
	log.Info("adminalert: PortSentry is now active and listening.")
	log.Log(t.Context(), LevelVerbose, "bound", "port", 143)
	log.Debug("detail")
	want := "<3>adminalert: ERROR: boom\n" +
		"<4>adminalert: WARNING: careful\n" +
		"<5>adminalert: PortSentry is now active and listening.\n" +
		"<6>bound port=143\n" +
		"<7>detail\n"
	if diff := cmp.Diff(want, stream.String()); diff != "" {
		t.Errorf("stream (-want +got):\n%s", diff)
	}
}

// TestJournalFieldsNotInText: outside the journal nothing changes; the
// fields are not in the line.
func TestJournalFieldsNotInText(t *testing.T) {
	var buf bytes.Buffer
	h := New(&buf, slog.LevelDebug).Handler()
	emit(t, h, slog.LevelInfo, "Scan from: x", Event(probe, "blocked"), slog.Int("n", 1))
	emit(t, h.WithAttrs([]slog.Attr{Source(probe.Src, "")}), slog.LevelWarn, "unblocked")
	want := "2026-11-22T01:42:52.875+0000 Scan from: x n=1\n" +
		"2026-11-22T01:42:52.875+0000 unblocked\n"
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
}

func TestErrors(t *testing.T) {
	var buf bytes.Buffer
	w := Errors(&buf)
	fmt.Fprintln(w, "portsentry: daemon: cannot bind")
	fmt.Fprint(w, "two\nlines")
	fmt.Fprint(w, " end\n")
	want := "<3>portsentry: daemon: cannot bind\n<3>two\n<3>lines end\n"
	if buf.String() != want {
		t.Errorf("got %q, want %q", buf.String(), want)
	}
}

// BenchmarkLine compares one Scan from line with its event written as
// outside systemd (time stamp, to a stream socket, as systemd's stdout
// connection is) and natively to the journal (a datagram with fields),
// both drained by a reader as journald drains them.
func BenchmarkLine(b *testing.B) {
	line := "Scan from: [10.0.0.5] (10.0.0.5) protocol: [TCP] port: [143] type: [TCP SYN/Normal scan] IP opts: [not set] ignored: [false] triggered: [true] noblock: [false] blocked: [true]"
	drain := func(f *os.File) {
		buf := make([]byte, 1<<16)
		for {
			if _, err := f.Read(buf); err != nil {
				return
			}
		}
	}
	b.Run("stdout", func(b *testing.B) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		w, r := os.NewFile(uintptr(fds[0]), "w"), os.NewFile(uintptr(fds[1]), "r")
		defer w.Close()
		defer r.Close()
		go drain(r)
		log := New(w, slog.LevelInfo)
		b.ReportAllocs()
		for b.Loop() {
			log.Info(line, Event(probe, "blocked"))
		}
	})
	b.Run("journal", func(b *testing.B) {
		path := filepath.Join(b.TempDir(), "socket")
		conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		f, err := conn.File()
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		go drain(f)
		var stream bytes.Buffer
		log := slog.New(&handler{w: newJournalWriter(path, &stream), level: slog.LevelInfo})
		b.ReportAllocs()
		for b.Loop() {
			log.Info(line, Event(probe, "blocked"))
		}
		if stream.Len() > 0 {
			b.Fatalf("%d bytes fell back to the stream", stream.Len())
		}
	})
}
