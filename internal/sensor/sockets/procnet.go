package sockets

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/portsentry-go/portsentry/internal/event"
)

// Kernel socket states that matter here (include/net/tcp_states.h).
const (
	stateEstablished = 1
	stateTimeWait    = 6
	stateClose       = 7 // also every bound, unconnected UDP socket
	stateListen      = 10
)

// procEntry is what the service check needs from one socket line of
// /proc/net/{tcp,tcp6,udp,udp6}.
type procEntry struct {
	Port  uint16 // local port
	State uint8  // kernel socket state (state* constants)
}

// maxProcLine bounds one line of a /proc/net table; real lines are about 150
// bytes, so anything near this is not such a table.
const maxProcLine = 4096

// scanProcNet reads a /proc/net/{tcp,tcp6,udp,udp6} table: a header line
// starting with "sl", then one socket per line,
//
//	"   1: 0100007F:9487 00000000:0000 0A 00000000:00000000 ..."
//
// (slot, local address:port, remote address:port, state, then fields this
// package does not need). Ports and states are printed as numbers, not in
// memory order, so the parser does not depend on the host's byte order;
// addresses are checked for shape only (8 or 32 hex digits).
//
// It calls yield for each socket until yield returns false. A line that is
// not in this shape stops the scan with an error naming its line number.
func scanProcNet(r io.Reader, yield func(procEntry) bool) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), maxProcLine)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Bytes()
		if n == 1 {
			if f, _ := field(line); string(f) != "sl" {
				return errors.New("line 1: not a /proc/net socket table (no \"sl\" header)")
			}
			continue
		}
		if len(skipSpaces(line)) == 0 {
			continue // a trailing blank line costs nothing
		}
		e, err := parseProcLine(line)
		if err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
		if !yield(e) {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("line %d: longer than %d bytes", n+1, maxProcLine)
		}
		return err
	}
	if n == 0 {
		return errors.New("empty: not a /proc/net socket table")
	}
	return nil
}

// parseProcLine reads the first four fields of a socket line.
func parseProcLine(line []byte) (procEntry, error) {
	sl, rest := field(line)
	if len(sl) < 2 || sl[len(sl)-1] != ':' || !isDec(sl[:len(sl)-1]) {
		return procEntry{}, fmt.Errorf("bad slot %q", sl)
	}
	local, rest := field(rest)
	port, ok := endpointPort(local)
	if !ok {
		return procEntry{}, fmt.Errorf("bad local address %q", local)
	}
	remote, rest := field(rest)
	if _, ok := endpointPort(remote); !ok {
		return procEntry{}, fmt.Errorf("bad remote address %q", remote)
	}
	st, _ := field(rest)
	state, ok := parseHex(st, 2)
	if !ok {
		return procEntry{}, fmt.Errorf("bad state %q", st)
	}
	return procEntry{Port: uint16(port), State: uint8(state)}, nil
}

// endpointPort checks "HEX8:PORT4" or "HEX32:PORT4" and returns the port.
func endpointPort(f []byte) (uint32, bool) {
	if len(f) != 8+1+4 && len(f) != 32+1+4 {
		return 0, false
	}
	addr, port := f[:len(f)-5], f[len(f)-4:]
	if f[len(f)-5] != ':' {
		return 0, false
	}
	for i := 0; i < len(addr); i += 8 {
		if _, ok := parseHex(addr[i:i+8], 8); !ok {
			return 0, false
		}
	}
	return parseHex(port, 4)
}

// parseHex reads exactly n hex digits (either case) from b.
func parseHex(b []byte, n int) (uint32, bool) {
	if len(b) != n {
		return 0, false
	}
	var v uint32
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		default:
			return 0, false
		}
		v = v<<4 | uint32(c)
	}
	return v, true
}

func isDec(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// field returns the first blank-separated field of b and what follows it,
// without allocating (bytes.Fields would build a slice per line).
func field(b []byte) (f, rest []byte) {
	b = skipSpaces(b)
	i := 0
	for i < len(b) && b[i] != ' ' && b[i] != '\t' {
		i++
	}
	return b[:i], b[i:]
}

func skipSpaces(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r') {
		b = b[1:]
	}
	return b
}

// procInUse answers InUse from /proc/net tables already opened by the
// caller: a socket on port counts unless it is a TCP socket in TIME_WAIT.
func procInUse(r io.Reader, proto event.Proto, port uint16) (bool, error) {
	found := false
	err := scanProcNet(r, func(e procEntry) bool {
		if e.Port == port && !(proto == event.TCP && e.State == stateTimeWait) {
			found = true
			return false
		}
		return true
	})
	return found, err
}
