package output

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portsentry-go/portsentry/internal/event"
)

// EnvJournalStream is what systemd sets when it connects standard output or
// standard error to the journal: "DEVICE:INODE" of that stream, in decimal
// (systemd.exec(5)).
const EnvJournalStream = "JOURNAL_STREAM"

// JournalSocket is where journald takes messages in its native protocol.
// Under LogNamespace= systemd mounts the namespace's socket directory here,
// so the path is the same for every service.
const JournalSocket = "/run/systemd/journal/socket"

// Identifier is the journal's SYSLOG_IDENTIFIER and syslog's tag.
const Identifier = "portsentry"

// ToJournal reports whether f is the stream systemd connected to the
// journal: JOURNAL_STREAM names its device and inode. The variable alone is
// not enough: a process started from the unit may have redirected the
// stream (a shell's "> file"), and then keeps the plain output.
func ToJournal(f *os.File) bool {
	dev, ino, ok := parseJournalStream(os.Getenv(EnvJournalStream))
	if !ok || f == nil {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return uint64(st.Dev) == dev && st.Ino == ino
}

// parseJournalStream parses JOURNAL_STREAM's "DEVICE:INODE".
func parseJournalStream(s string) (dev, ino uint64, ok bool) {
	d, i, found := strings.Cut(s, ":")
	if !found {
		return 0, 0, false
	}
	dev, err := strconv.ParseUint(d, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	ino, err = strconv.ParseUint(i, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return dev, ino, true
}

// priority is the syslog priority of a level, the same for the journal
// and for syslog: errors are err (3), warnings warning (4), the daemon's
// ordinary lines, PortSentry's attackalert and Scan from lines among them,
// notice (5), as PortSentry logged them; what -v adds is info (6), -d's
// debug (7).
func priority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3
	case l >= slog.LevelWarn:
		return 4
	case l >= slog.LevelInfo:
		return 5
	case l >= LevelVerbose:
		return 6
	}
	return 7
}

// Event is an attribute for a line about ev, which the journal keeps as
// fields of their own, for `journalctl PORTSENTRY_SRC=10.0.0.5` and
// `journalctl -o json`: PORTSENTRY_SRC, _DST (when known), _PORT, _PROTO
// (tcp, udp), _KIND (syn, fin, …), _TYPE (as PortSentry names it), _MODE,
// and _ACTION when action is not "" (the event log's action: blocked,
// counted, …). Standard output and syslog leave it out: the line says it.
func Event(ev event.Event, action string) slog.Attr {
	return slog.Any(fieldsKey, fields{ev: ev, event: true, action: action})
}

// Source is an attribute for a line about addr, not about one event (a ban
// lifted): the journal's PORTSENTRY_SRC, and PORTSENTRY_ACTION when action
// is not "".
func Source(addr netip.Addr, action string) slog.Attr {
	return slog.Any(fieldsKey, fields{ev: event.Event{Src: addr}, action: action})
}

const fieldsKey = "journal"

// fields are the journal fields of a line (Event, Source).
type fields struct {
	ev     event.Event
	event  bool // ev is a whole event, not only its source
	action string
}

// journalFields returns the fields of a, if a holds some.
func journalFields(a slog.Attr) (fields, bool) {
	if a.Value.Kind() != slog.KindAny {
		return fields{}, false
	}
	f, ok := a.Value.Any().(fields)
	return f, ok
}

// append adds f's journal fields to b.
func (f fields) append(b []byte) []byte {
	ev := f.ev
	if ev.Src.IsValid() {
		b = appendField(b, "PORTSENTRY_SRC", ev.Src.String())
	}
	if f.event {
		if ev.Dst.IsValid() {
			b = appendField(b, "PORTSENTRY_DST", ev.Dst.String())
		}
		b = appendField(b, "PORTSENTRY_PORT", strconv.Itoa(int(ev.Port)))
		b = appendField(b, "PORTSENTRY_PROTO", strings.ToLower(ev.Proto.String()))
		b = appendField(b, "PORTSENTRY_KIND", ev.Kind.Name())
		b = appendField(b, "PORTSENTRY_TYPE", ev.Describe())
		b = appendField(b, "PORTSENTRY_MODE", ev.Mode.String())
	}
	if f.action != "" {
		b = appendField(b, "PORTSENTRY_ACTION", f.action)
	}
	return b
}

// appendField adds one field in the journal's native protocol: KEY=value
// and a newline, or, for a value with a newline in it, KEY, a newline, the
// value's length as 64-bit little endian, the value and a newline.
func appendField(b []byte, key, value string) []byte {
	b = append(b, key...)
	if strings.IndexByte(value, '\n') < 0 {
		b = append(b, '=')
		b = append(b, value...)
		return append(b, '\n')
	}
	b = append(b, '\n')
	b = binary.LittleEndian.AppendUint64(b, uint64(len(value)))
	b = append(b, value...)
	return append(b, '\n')
}

// NewJournal returns a logger that writes to the journal in its native
// protocol: a datagram per line on JournalSocket, with PRIORITY, the line
// as MESSAGE (no time stamp: the journal has its own), SYSLOG_IDENTIFIER
// and the Event fields. A line the socket does not take (journald
// restarting, a sandbox without the socket) goes to stream, the journal's
// stdout connection, with sd-daemon's "<N>" priority prefix, which journald
// reads as the line's priority (SyslogLevelPrefix=yes, systemd's default).
func NewJournal(stream io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(&handler{w: newJournalWriter(JournalSocket, stream), level: level})
}

// journalWriter sends lines to journald.
type journalWriter struct {
	mu     sync.Mutex
	fd     int // an unbound AF_UNIX datagram socket; -1 when none could be made
	addr   unix.SockaddrUnix
	stream io.Writer
	buf    []byte
}

func newJournalWriter(socket string, stream io.Writer) *journalWriter {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fd = -1
	}
	return &journalWriter{fd: fd, addr: unix.SockaddrUnix{Name: socket}, stream: stream}
}

func (j *journalWriter) write(level slog.Level, _ time.Time, line string, f *fields) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	prio := priority(level)
	if j.fd >= 0 {
		b := appendField(j.buf[:0], "PRIORITY", strconv.Itoa(prio))
		b = appendField(b, "SYSLOG_FACILITY", "3") // daemon, as with -l syslog
		b = appendField(b, "SYSLOG_IDENTIFIER", Identifier)
		b = appendField(b, "MESSAGE", line)
		if f != nil {
			b = f.append(b)
		}
		j.buf = b
		if j.send(b) == nil {
			return nil
		}
	}
	_, err := io.WriteString(j.stream, "<"+strconv.Itoa(prio)+">"+line+"\n")
	return err
}

// send sends one message. One too large for a datagram goes, as
// libsystemd sends it, in a sealed memfd whose descriptor is the datagram.
func (j *journalWriter) send(b []byte) error {
	err := unix.Sendmsg(j.fd, b, nil, &j.addr, 0)
	if !errors.Is(err, unix.EMSGSIZE) && !errors.Is(err, unix.ENOBUFS) {
		return err
	}
	mfd, err := unix.MemfdCreate("journal-message", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return err
	}
	defer unix.Close(mfd)
	for rest := b; len(rest) > 0; {
		n, err := unix.Write(mfd, rest)
		if err != nil {
			return err
		}
		rest = rest[n:]
	}
	// journald takes only a memfd that nobody can change any more.
	if _, err := unix.FcntlInt(uintptr(mfd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE|unix.F_SEAL_SEAL); err != nil {
		return err
	}
	return unix.Sendmsg(j.fd, nil, unix.UnixRights(mfd), &j.addr, 0)
}

// Errors returns w, a standard error connected to the journal, with each
// line prefixed "<3>": what the daemon writes there (a configuration it
// cannot start with, its last words) is an error, not a notice.
func Errors(w io.Writer) io.Writer { return &prefixWriter{w: w, prefix: "<3>", bol: true} }

// prefixWriter puts prefix at the start of every line.
type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	bol    bool // the next byte starts a line
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []byte
	for _, c := range b {
		if p.bol {
			out = append(out, p.prefix...)
		}
		out = append(out, c)
		p.bol = c == '\n'
	}
	if _, err := p.w.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}
