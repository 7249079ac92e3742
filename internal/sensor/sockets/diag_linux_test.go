package sockets

import (
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/portsentry-go/portsentry/internal/event"
)

// TestFillRequest pins the request bytes, as `ss -tan sport = :8080` would
// send them (ss uses S_GE/S_LE pairs for "=" too).
func TestFillRequest(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("golden bytes are little-endian")
	}
	tests := []struct {
		name string
		r    request
		want string // hex, blanks ignored
	}{
		{"v2 UDP AF_INET6", request{unix.AF_INET6, event.UDP, udpAll, false},
			"5c000000 1400 0103 07000000 00000000" + // nlmsghdr: len 92, SOCK_DIAG_BY_FAMILY, REQUEST|DUMP, seq 7
				"0a 11 00 00 ffffffff" + // AF_INET6, IPPROTO_UDP, states all
				strings.Repeat("00", 48) + // sockid
				"1400 0100" + // nlattr: len 20, INET_DIAG_REQ_BYTECODE
				"02 08 1400 0000 901f" + // S_GE 8080 yes 8 no 20
				"03 08 0c00 0000 901f"}, // S_LE 8080 yes 8 no 12
		{"old TCP listening", request{unix.AF_UNSPEC, event.TCP, tcpListening, true},
			"60000000 1200 0103 07000000 00000000" + // len 96, TCPDIAG_GETSOCK
				"00 00 00 00" + // AF_UNSPEC, src_len, dst_len, ext
				strings.Repeat("00", 48) + // sockid
				"00040000 00000000" + // states 1<<10, dbs
				"1400 0100" +
				"02 08 1400 0000 901f" +
				"03 08 0c00 0000 901f"},
		{"v2 TCP other", request{unix.AF_INET, event.TCP, tcpOther, false},
			"5c000000 1400 0103 07000000 00000000" +
				"02 06 00 00 bffbffff" + // AF_INET, IPPROTO_TCP, all but LISTEN and TIME_WAIT
				strings.Repeat("00", 48) +
				"1400 0100" +
				"02 08 1400 0000 901f" +
				"03 08 0c00 0000 901f"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b [maxRequestSize]byte
			n := fillRequest(&b, 7, tt.r, 8080)
			want, err := hex.DecodeString(strings.ReplaceAll(tt.want, " ", ""))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, b[:n]); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
}

// nlmsg builds one netlink message of type typ and sequence seq.
func nlmsg(typ uint16, seq uint32, body []byte) []byte {
	l := nlmsgHdrLen + len(body)
	b := make([]byte, nlmsgAlign(l))
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(l))
	ne.PutUint16(b[4:], typ)
	ne.PutUint32(b[8:], seq)
	copy(b[nlmsgHdrLen:], body)
	return b
}

func diagMsg(state uint8, sport uint16) []byte {
	b := make([]byte, diagMsgLen)
	b[0], b[1] = unix.AF_INET, state
	binary.BigEndian.PutUint16(b[4:], sport)
	return b
}

func errnoBody(e syscall.Errno) []byte {
	b := make([]byte, 4+nlmsgHdrLen)
	binary.NativeEndian.PutUint32(b, uint32(-int32(e)))
	return b
}

func cat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

func TestParseDump(t *testing.T) {
	const seq, port = 9, 8080
	done := nlmsg(unix.NLMSG_DONE, seq, make([]byte, 4))
	tests := []struct {
		name        string
		proto       event.Proto
		in          []byte
		found, done bool
		err         syscall.Errno // from a *replyError
		otherErr    bool
	}{
		{"empty dump", event.TCP, done, false, true, 0, false},
		{"listener", event.TCP, cat(nlmsg(unix.SOCK_DIAG_BY_FAMILY, seq, diagMsg(stateListen, port)), done), true, true, 0, false},
		{"old reply type", event.TCP, nlmsg(tcpDiagGetSock, seq, diagMsg(stateEstablished, port)), true, false, 0, false},
		{"time wait is not a user", event.TCP, cat(nlmsg(unix.SOCK_DIAG_BY_FAMILY, seq, diagMsg(stateTimeWait, port)), done), false, true, 0, false},
		{"udp state 6 counts", event.UDP, nlmsg(unix.SOCK_DIAG_BY_FAMILY, seq, diagMsg(stateTimeWait, port)), true, false, 0, false},
		{"other port", event.TCP, cat(nlmsg(unix.SOCK_DIAG_BY_FAMILY, seq, diagMsg(stateListen, port+1)), done), false, true, 0, false},
		{"stale sequence", event.TCP, cat(nlmsg(unix.SOCK_DIAG_BY_FAMILY, seq-1, diagMsg(stateListen, port)), done), false, true, 0, false},
		{"batch without done", event.TCP, nlmsg(unix.SOCK_DIAG_BY_FAMILY, seq, diagMsg(stateListen, port+1)), false, false, 0, false},
		{"no handler", event.UDP, nlmsg(unix.NLMSG_ERROR, seq, errnoBody(unix.ENOENT)), false, true, unix.ENOENT, false},
		{"ack then done", event.TCP, cat(nlmsg(unix.NLMSG_ERROR, seq, errnoBody(0)), done), false, true, 0, false},
		{"failed dump", event.TCP, nlmsg(unix.NLMSG_DONE, seq, errnoBody(unix.EINTR)[:4]), false, true, unix.EINTR, false},
		{"short header", event.TCP, []byte{1, 2, 3}, false, false, 0, true},
		{"bad length", event.TCP, func() []byte { b := nlmsg(unix.NLMSG_DONE, seq, nil); b[0] = 200; return b }(), false, false, 0, true},
		{"short diag msg", event.TCP, nlmsg(unix.SOCK_DIAG_BY_FAMILY, seq, make([]byte, 10)), false, false, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			found, done, err := parseDump(tt.in, seq, tt.proto, port)
			if found != tt.found || done != tt.done {
				t.Errorf("found, done = %v, %v; want %v, %v", found, done, tt.found, tt.done)
			}
			r, isReply := err.(*replyError)
			switch {
			case tt.err != 0 && (!isReply || r.errno != tt.err):
				t.Errorf("error %v, want reply %v", err, tt.err)
			case tt.otherErr && (err == nil || isReply):
				t.Errorf("error %v, want a parse error", err)
			case tt.err == 0 && !tt.otherErr && err != nil:
				t.Errorf("error %v, want none", err)
			}
		})
	}
	if !noHandler(&replyError{unix.EOPNOTSUPP}) || noHandler(&replyError{unix.EINVAL}) {
		t.Error("noHandler: wrong classification")
	}
}

// TestFillExact pins the request for one TCP socket, as `ss -K`-style
// tools name a socket: the local end is the packet's destination.
func TestFillExact(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("golden bytes are little-endian")
	}
	var b [maxRequestSize]byte
	p := Packet{Proto: event.TCP, Src: netip.MustParseAddr("192.0.2.7"), SrcPort: 40000,
		Dst: netip.MustParseAddr("::ffff:198.51.100.1"), DstPort: 8080, Ifindex: 3}
	n := fillExact(&b, 7, p)
	want, err := hex.DecodeString(strings.ReplaceAll(
		"48000000 1400 0100 07000000 00000000"+ // nlmsghdr: len 72, SOCK_DIAG_BY_FAMILY, REQUEST only, seq 7
			"02 06 00 00 ffffffff"+ // AF_INET (the mapped address unmapped), IPPROTO_TCP, any state
			"1f90 9c40"+ // sport 8080 (local), dport 40000 (remote), big-endian
			"c6336401"+strings.Repeat("00", 12)+ // src: 198.51.100.1, this host
			"c0000207"+strings.Repeat("00", 12)+ // dst: 192.0.2.7, the sender
			"03000000 ffffffff ffffffff", " ", "")) // if 3, INET_DIAG_NOCOOKIE
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, b[:n]); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
}

func TestParseExact(t *testing.T) {
	const seq = 9
	for _, tt := range []struct {
		name        string
		b           []byte
		state       uint8
		found, done bool
		errno       syscall.Errno
	}{
		{"the socket", nlmsg(unix.SOCK_DIAG_BY_FAMILY, seq, diagMsg(1, 8080)), 1, true, true, 0},
		{"TIME_WAIT", nlmsg(unix.SOCK_DIAG_BY_FAMILY, seq, diagMsg(stateTimeWait, 8080)), stateTimeWait, true, true, 0},
		{"none", nlmsg(unix.NLMSG_ERROR, seq, errnoBody(unix.ENOENT)), 0, false, true, unix.ENOENT},
		{"refused", nlmsg(unix.NLMSG_ERROR, seq, errnoBody(unix.EOPNOTSUPP)), 0, false, true, unix.EOPNOTSUPP},
		{"an earlier request's answer first", cat(nlmsg(unix.SOCK_DIAG_BY_FAMILY, seq-1, diagMsg(1, 22)), nlmsg(unix.NLMSG_ERROR, seq, errnoBody(unix.ENOENT))), 0, false, true, unix.ENOENT},
		{"nothing of this request yet", nlmsg(unix.SOCK_DIAG_BY_FAMILY, seq-1, diagMsg(1, 22)), 0, false, false, 0},
	} {
		state, found, done, err := parseExact(tt.b, seq)
		var errno syscall.Errno
		if r, ok := err.(*replyError); ok {
			errno = r.errno
		} else if err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
		if state != tt.state || found != tt.found || done != tt.done || errno != tt.errno {
			t.Errorf("%s: parseExact = %d, %v, %v, %v; want %d, %v, %v, %v", tt.name, state, found, done, errno, tt.state, tt.found, tt.done, tt.errno)
		}
	}
	if _, _, _, err := parseExact([]byte{1, 2, 3}, seq); err == nil {
		t.Error("a short message parsed")
	}
}
