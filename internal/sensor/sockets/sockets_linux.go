package sockets

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/portsentry-go/portsentry/internal/event"
)

// The sock_diag wire format (linux/sock_diag.h, linux/inet_diag.h). x/sys/unix
// has the constants but not the inet_diag structs, so requests are laid out
// by hand. Netlink headers and inet_diag_bc_op are in host byte order; ports
// inside inet_diag_sockid are big-endian.
const (
	nlmsgHdrLen    = 16 // struct nlmsghdr
	diagReqV2Len   = 56 // struct inet_diag_req_v2 (with struct inet_diag_sockid, 48)
	diagReqOldLen  = 60 // struct inet_diag_req, the body of TCPDIAG_GETSOCK
	diagMsgLen     = 72 // struct inet_diag_msg
	nlaHdrLen      = 4  // struct nlattr
	bytecodeLen    = 16 // two port comparisons, two inet_diag_bc_op each
	maxRequestSize = nlmsgHdrLen + diagReqOldLen + nlaHdrLen + bytecodeLen

	tcpDiagGetSock      = 18 // TCPDIAG_GETSOCK: the pre-3.3 request, still served
	inetDiagReqBytecode = 1  // INET_DIAG_REQ_BYTECODE
	inetDiagBcSGE       = 2  // INET_DIAG_BC_S_GE: local port >= op[1].no
	inetDiagBcSLE       = 3  // INET_DIAG_BC_S_LE: local port <= op[1].no

	// State masks (1 << state) of the queries.
	tcpListening = 1 << stateListen
	tcpOther     = ^uint32(0) &^ (1<<stateListen | 1<<stateTimeWait)
	udpAll       = ^uint32(0) // 7 unconnected, 1 connected: every state counts

	// recvBufSize holds one netlink dump batch whole: the kernel builds
	// them at most 32 KiB (plus overhead), so none is ever truncated.
	recvBufSize = 64 << 10

	// ioTimeout bounds a send or receive on the netlink socket, in
	// seconds. The kernel answers at once; this only keeps a broken
	// kernel from hanging the engine.
	ioTimeout = 5
)

// replyError is an error the kernel sent back (NLMSG_ERROR, or a failed
// dump's NLMSG_DONE), as opposed to a failure to talk to it.
type replyError struct{ errno syscall.Errno }

func (e *replyError) Error() string { return "sockets: sock_diag: " + e.errno.Error() }
func (e *replyError) Unwrap() error { return e.errno }

// noHandler reports whether err says the kernel has no sock_diag handler
// for the protocol or family (inet_diag, tcp_diag, udp_diag or IPv6 not
// built): /proc/net must answer instead.
//
// query returns *replyError unwrapped, so a type assertion (which, unlike
// errors.As, allocates nothing) finds it.
func noHandler(err error) bool {
	r, ok := err.(*replyError)
	return ok && (r.errno == unix.ENOENT || r.errno == unix.EOPNOTSUPP)
}

// sysChecker is the Linux part of Checker. Its methods run under Checker.mu.
type sysChecker struct {
	// fd is the NETLINK_SOCK_DIAG socket, or -1: not opened yet, or
	// dropped after a dump was abandoned midway (see query).
	fd int
	// noDiag[proto] is set once sock_diag has said it cannot answer for
	// that protocol; /proc/net answers from then on.
	noDiag [2]bool
	// noOld is set once the kernel has refused a TCPDIAG_GETSOCK request;
	// TCP is then asked per family with SOCK_DIAG_BY_FAMILY.
	noOld bool
	// noExact is set once the kernel has refused to look a TCP socket up
	// by its addresses and ports; owns then walks the table as inUse.
	noExact bool
	seq     uint32
	req     [maxRequestSize]byte
	buf     []byte
}

func (s *sysChecker) open() error {
	s.fd = -1
	s.buf = make([]byte, recvBufSize)
	fd, err := openDiag()
	switch {
	case err == nil:
		s.fd = fd
		return nil
	case errors.Is(err, unix.EPROTONOSUPPORT), errors.Is(err, unix.EAFNOSUPPORT),
		errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		// No netlink here (a kernel without sock_diag, a seccomp or LSM
		// policy): that will not change, so use /proc/net for good.
		if _, perr := os.Stat(procFiles[event.TCP][0]); perr != nil {
			return fmt.Errorf("sockets: neither sock_diag (%v) nor /proc/net: %w", err, perr)
		}
		s.noDiag = [2]bool{true, true}
		return nil
	}
	return err
}

func (s *sysChecker) close() error {
	if s.fd < 0 {
		return nil
	}
	err := unix.Close(s.fd)
	s.fd = -1
	return err
}

func (s *sysChecker) inUse(proto event.Proto, port uint16) (bool, error) {
	if !s.noDiag[proto] {
		found, err := s.diagInUse(proto, port)
		if !noHandler(err) {
			return found, err
		}
		s.noDiag[proto] = true
	}
	return procFilesInUse(proto, port)
}

// request is one dump request: sockets of family and proto in states whose
// local port is the asked one.
type request struct {
	family uint8 // AF_INET, AF_INET6; AF_UNSPEC (both) with old only
	proto  event.Proto
	states uint32 // 1 << state for each state wanted
	old    bool   // TCPDIAG_GETSOCK rather than SOCK_DIAG_BY_FAMILY
}

// diagInUse asks sock_diag.
//
// What a dump costs is the kernel's walk of a socket hash table, not the
// sockets it returns: listening TCP sockets sit in a small table, all other
// TCP sockets in the established table (hundreds of thousands of buckets on
// a large host, most of them empty), UDP sockets in a table of their own.
// So TCP is asked in two steps, listeners first (the usual service, answered
// in tens of microseconds), then every other state but TIME_WAIT (the
// ephemeral port of an outgoing connection, the connections accepted by a
// listener closed since). Each step uses the old TCPDIAG_GETSOCK request,
// which covers IPv4 and IPv6 in one walk where SOCK_DIAG_BY_FAMILY needs a
// walk per family; kernels that refuse it are asked per family.
//
// Per family, IPv6 comes first: dual-stack listeners (the usual daemon
// socket) are AF_INET6 and end the search there.
func (s *sysChecker) diagInUse(proto event.Proto, port uint16) (bool, error) {
	families := [...]uint8{unix.AF_INET6, unix.AF_INET}
	if proto == event.UDP {
		for _, f := range families {
			if found, err := s.query(request{f, event.UDP, udpAll, false}, port); err != nil || found {
				return found, err
			}
		}
		return false, nil
	}
	for _, states := range [...]uint32{tcpListening, tcpOther} {
		if found, err := s.diagTCP(states, port); err != nil || found {
			return found, err
		}
	}
	return false, nil
}

// diagTCP asks sock_diag whether a TCP socket in one of states has local
// port port: in one walk with TCPDIAG_GETSOCK, else one per family.
func (s *sysChecker) diagTCP(states uint32, port uint16) (bool, error) {
	if !s.noOld {
		found, err := s.query(request{unix.AF_UNSPEC, event.TCP, states, true}, port)
		if _, refused := err.(*replyError); !refused {
			return found, err
		}
		// Any refusal of the old request (EOPNOTSUPP without the
		// compat handler, EINVAL were it ever removed): ask the
		// modern way, which gives the real answer.
		s.noOld = true
	}
	for _, f := range [...]uint8{unix.AF_INET6, unix.AF_INET} {
		if found, err := s.query(request{f, event.TCP, states, false}, port); err != nil || found {
			return found, err
		}
	}
	return false, nil
}

// owns is Checker.Owns for TCP: the socket the kernel would hand p to,
// asked by p's addresses and ports (connection): a hash lookup of p's
// connection, then of the listeners on p's address and port. When that
// finds p's connection in TIME_WAIT (it ended while p waited to be
// checked, or the peer connects again from the same port, which a
// listener may still accept), the listeners are asked alone: as for a
// packet from port 0, which no connection has.
func (s *sysChecker) owns(p Packet) (bool, error) {
	if s.noDiag[event.TCP] || s.noExact {
		return s.inUse(event.TCP, p.DstPort)
	}
	state, found, err := s.connection(p)
	if err == nil && found && state == stateTimeWait {
		p.SrcPort = 0
		state, found, err = s.connection(p)
	}
	if _, refused := err.(*replyError); refused {
		// A kernel that cannot look a socket up by its addresses:
		// ask about the port, as inUse does.
		s.noExact = true
		return s.inUse(event.TCP, p.DstPort)
	}
	return found && state != stateTimeWait, err
}

// connection asks sock_diag for the TCP socket p would be handed to: a
// request without NLM_F_DUMP names one socket by its addresses, ports and
// interface, which the kernel looks up as it does for an arriving packet
// (inet_diag_find_one_icsk: the connection, else a listener). The answer
// is that socket, with its state, or ENOENT: none.
func (s *sysChecker) connection(p Packet) (state uint8, found bool, err error) {
	if s.fd < 0 {
		fd, err := openDiag()
		if err != nil {
			return 0, false, err
		}
		s.fd = fd
	}
	s.seq++
	n := fillExact(&s.req, s.seq, p)
	if err := s.send(s.req[:n]); err != nil {
		s.close()
		return 0, false, fmt.Errorf("sockets: sock_diag send: %w", err)
	}
	for {
		n, err := s.recv()
		if err != nil {
			s.close()
			return 0, false, fmt.Errorf("sockets: sock_diag receive: %w", err)
		}
		state, found, done, err := parseExact(s.buf[:n], s.seq)
		if err != nil {
			if r, ok := err.(*replyError); ok && r.errno == unix.ENOENT {
				return 0, false, nil
			}
			if !done {
				s.close()
			}
			return 0, false, err
		}
		if done {
			return state, found, nil
		}
	}
}

// query sends one dump request and reports whether it lists a socket.
//
// It stops at the first match. A dump left unread would make the next
// request fail with EBUSY, so when the batch that held the match did not
// also end the dump, the socket is dropped and the next query opens a new
// one: cheaper than reading the thousands of connections of a busy port.
func (s *sysChecker) query(r request, port uint16) (bool, error) {
	if s.fd < 0 {
		fd, err := openDiag()
		if err != nil {
			return false, err
		}
		s.fd = fd
	}
	s.seq++
	n := fillRequest(&s.req, s.seq, r, port)
	if err := s.send(s.req[:n]); err != nil {
		s.close()
		return false, fmt.Errorf("sockets: sock_diag send: %w", err)
	}
	for {
		n, err := s.recv()
		if err != nil {
			s.close()
			return false, fmt.Errorf("sockets: sock_diag receive: %w", err)
		}
		found, done, err := parseDump(s.buf[:n], s.seq, r.proto, port)
		if !done && (found || err != nil) {
			// Abandoned midway, or malformed: do not trust what
			// is left on the socket.
			s.close()
		}
		if err != nil || found || done {
			return found, err
		}
	}
}

// send writes one request; the kernel is the default destination of an
// unconnected netlink socket.
func (s *sysChecker) send(b []byte) error {
	for {
		_, err := unix.Write(s.fd, b)
		if err != unix.EINTR {
			return err
		}
	}
}

// recv reads one netlink datagram into s.buf with a raw recvfrom, which
// reports truncation (MSG_TRUNC gives the real length) and allocates
// nothing.
func (s *sysChecker) recv() (int, error) {
	for {
		n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(s.fd),
			uintptr(unsafe.Pointer(&s.buf[0])), uintptr(len(s.buf)), unix.MSG_TRUNC, 0, 0)
		switch {
		case errno == unix.EINTR:
			// With SO_RCVTIMEO the kernel returns EINTR rather than
			// restart when a signal (Go's preemption) arrives.
			continue
		case errno != 0:
			return 0, errno
		case int(n) > len(s.buf):
			return 0, fmt.Errorf("netlink message of %d bytes truncated to %d", n, len(s.buf))
		}
		return int(n), nil
	}
}

// openDiag opens a NETLINK_SOCK_DIAG socket with send and receive timeouts.
func openDiag() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return -1, fmt.Errorf("sockets: open sock_diag: %w", err)
	}
	tv := unix.Timeval{Sec: ioTimeout}
	for _, opt := range [...]int{unix.SO_RCVTIMEO, unix.SO_SNDTIMEO} {
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, opt, &tv); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("sockets: sock_diag timeout: %w", err)
		}
	}
	return fd, nil
}

// fillRequest writes the dump request r for local port port into b and
// returns its length.
//
// The port filter is inet_diag bytecode, run by the kernel on each socket:
// each op jumps "yes" bytes forward when its test holds and "no" bytes when
// it fails; a socket is listed when the program ends exactly at its end and
// skipped when a jump lands past it. A port comparison takes two ops, the
// second carrying the port in its "no" field. So:
//
//	off 0: S_GE port   yes → 8 (next test)   no → 20 (past the end: skip)
//	off 8: S_LE port   yes → 16 (the end: list)   no → 8+12 = 20 (skip)
//
// INET_DIAG_BC_S_EQ would take one op but exists only since Linux 4.17. The
// sockid's idiag_sport could filter too, but UDP compares it in the wrong
// byte order on some kernels; the bytecode means the same everywhere.
func fillRequest(b *[maxRequestSize]byte, seq uint32, r request, port uint16) int {
	ne := binary.NativeEndian
	*b = [maxRequestSize]byte{}
	typ, bodyLen := uint16(unix.SOCK_DIAG_BY_FAMILY), diagReqV2Len
	if r.old {
		typ, bodyLen = tcpDiagGetSock, diagReqOldLen
	}
	n := nlmsgHdrLen + bodyLen + nlaHdrLen + bytecodeLen

	// struct nlmsghdr; nlmsg_pid 0.
	ne.PutUint32(b[0:], uint32(n))
	ne.PutUint16(b[4:], typ)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(b[8:], seq)

	body := b[nlmsgHdrLen:]
	body[0] = r.family
	if r.old {
		// struct inet_diag_req: family, src_len, dst_len, ext, then
		// sockid (48), idiag_states, idiag_dbs. The protocol is the
		// message type's: TCP.
		ne.PutUint32(body[52:], r.states)
	} else {
		// struct inet_diag_req_v2: family, protocol, ext, pad,
		// idiag_states, then sockid (48).
		body[1] = unix.IPPROTO_UDP
		if r.proto == event.TCP {
			body[1] = unix.IPPROTO_TCP
		}
		ne.PutUint32(body[4:], r.states)
	}

	// struct nlattr, then the bytecode.
	a := body[bodyLen:]
	ne.PutUint16(a[0:], nlaHdrLen+bytecodeLen)
	ne.PutUint16(a[2:], inetDiagReqBytecode)
	bc := a[nlaHdrLen:]
	putOp(bc[0:], inetDiagBcSGE, 8, bytecodeLen+4)
	putOp(bc[4:], 0, 0, port)
	putOp(bc[8:], inetDiagBcSLE, 8, bytecodeLen-8+4)
	putOp(bc[12:], 0, 0, port)
	return n
}

// fillExact writes into b the request for the one TCP socket of packet p
// (struct inet_diag_req_v2 without NLM_F_DUMP) and returns its length. In
// the socket's terms, the local end is p's destination.
func fillExact(b *[maxRequestSize]byte, seq uint32, p Packet) int {
	ne := binary.NativeEndian
	*b = [maxRequestSize]byte{}
	n := nlmsgHdrLen + diagReqV2Len
	ne.PutUint32(b[0:], uint32(n))
	ne.PutUint16(b[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(b[8:], seq)

	// struct inet_diag_req_v2: family, protocol, ext, pad, idiag_states,
	// then struct inet_diag_sockid: sport, dport (big-endian), src[4],
	// dst[4] (network order), if, cookie[2].
	body := b[nlmsgHdrLen:]
	local, remote := p.Dst.Unmap(), p.Src.Unmap()
	body[0] = unix.AF_INET6
	if local.Is4() {
		body[0] = unix.AF_INET
	}
	body[1] = unix.IPPROTO_TCP
	ne.PutUint32(body[4:], ^uint32(0))
	id := body[8:]
	binary.BigEndian.PutUint16(id[0:], p.DstPort)
	binary.BigEndian.PutUint16(id[2:], p.SrcPort)
	putAddr(id[4:20], local)
	putAddr(id[20:36], remote)
	if p.Ifindex > 0 {
		ne.PutUint32(id[36:], uint32(p.Ifindex))
	}
	// INET_DIAG_NOCOOKIE: any socket, whatever its cookie.
	ne.PutUint32(id[40:], ^uint32(0))
	ne.PutUint32(id[44:], ^uint32(0))
	return n
}

// putAddr writes a in network order, as inet_diag_sockid holds it (IPv4 in
// the first four bytes); netip.Addr.AsSlice would allocate.
func putAddr(b []byte, a netip.Addr) {
	if a.Is4() {
		v := a.As4()
		copy(b, v[:])
		return
	}
	v := a.As16()
	copy(b, v[:])
}

// parseExact reads the answer to fillExact's request: the socket (found,
// with its state), or an error reply (ENOENT: there is none). done is
// false while no message of the request has come.
func parseExact(b []byte, seq uint32) (state uint8, found, done bool, err error) {
	ne := binary.NativeEndian
	for len(b) > 0 {
		if len(b) < nlmsgHdrLen {
			return 0, false, false, fmt.Errorf("sockets: sock_diag: short netlink header (%d bytes)", len(b))
		}
		l := int(ne.Uint32(b[0:]))
		if l < nlmsgHdrLen || l > len(b) {
			return 0, false, false, fmt.Errorf("sockets: sock_diag: bad netlink length %d", l)
		}
		typ, mseq := ne.Uint16(b[4:]), ne.Uint32(b[8:])
		body := b[nlmsgHdrLen:l]
		b = b[min(nlmsgAlign(l), len(b)):]
		if mseq != seq {
			continue
		}
		switch typ {
		case unix.NLMSG_ERROR:
			if len(body) < 4 {
				return 0, false, true, errors.New("sockets: sock_diag: short error message")
			}
			if e := syscall.Errno(-int32(ne.Uint32(body))); e != 0 {
				return 0, false, true, &replyError{e}
			}
		case unix.SOCK_DIAG_BY_FAMILY:
			if len(body) < diagMsgLen {
				return 0, false, true, fmt.Errorf("sockets: sock_diag: short inet_diag_msg (%d bytes)", len(body))
			}
			return body[1], true, true, nil
		}
	}
	return 0, false, false, nil
}

// putOp writes struct inet_diag_bc_op { u8 code; u8 yes; u16 no; }.
func putOp(b []byte, code, yes uint8, no uint16) {
	b[0], b[1] = code, yes
	binary.NativeEndian.PutUint16(b[2:], no)
}

// parseDump walks one batch of a dump's answer. found: a socket on port is
// listed; done: the dump is over (NLMSG_DONE or an error reply), so the
// socket is ready for the next request.
func parseDump(b []byte, seq uint32, proto event.Proto, port uint16) (found, done bool, err error) {
	ne := binary.NativeEndian
	for len(b) > 0 {
		if len(b) < nlmsgHdrLen {
			return found, false, fmt.Errorf("sockets: sock_diag: short netlink header (%d bytes)", len(b))
		}
		l := int(ne.Uint32(b[0:]))
		if l < nlmsgHdrLen || l > len(b) {
			return found, false, fmt.Errorf("sockets: sock_diag: bad netlink length %d", l)
		}
		typ, mseq := ne.Uint16(b[4:]), ne.Uint32(b[8:])
		body := b[nlmsgHdrLen:l]
		b = b[min(nlmsgAlign(l), len(b)):]
		if mseq != seq {
			continue // a leftover of an earlier request; cannot happen after close
		}
		switch typ {
		case unix.NLMSG_DONE:
			// A dump that failed midway says so in DONE's payload.
			if len(body) >= 4 {
				if e := int32(ne.Uint32(body)); e < 0 {
					return found, true, &replyError{syscall.Errno(-e)}
				}
			}
			return found, true, nil
		case unix.NLMSG_ERROR:
			if len(body) < 4 {
				return found, true, errors.New("sockets: sock_diag: short error message")
			}
			e := syscall.Errno(-int32(ne.Uint32(body)))
			if e == 0 {
				continue // an acknowledgement
			}
			return found, true, &replyError{e}
		case unix.SOCK_DIAG_BY_FAMILY, tcpDiagGetSock:
			if len(body) < diagMsgLen {
				return found, false, fmt.Errorf("sockets: sock_diag: short inet_diag_msg (%d bytes)", len(body))
			}
			// The kernel filtered already; checking again costs
			// nothing and keeps a kernel that ignored the bytecode
			// from giving a wrong answer.
			state, sport := body[1], binary.BigEndian.Uint16(body[4:])
			if sport == port && !(proto == event.TCP && state == stateTimeWait) {
				found = true
			}
		}
	}
	return found, false, nil
}

func nlmsgAlign(n int) int { return (n + 3) &^ 3 }

// procFiles are the /proc/net tables for each protocol, IPv4 first.
var procFiles = [2][2]string{
	event.TCP: {"/proc/net/tcp", "/proc/net/tcp6"},
	event.UDP: {"/proc/net/udp", "/proc/net/udp6"},
}

// procFilesInUse is the fallback: scan /proc/net. A missing IPv6 table
// (IPv6 disabled) is no error.
func procFilesInUse(proto event.Proto, port uint16) (bool, error) {
	for i, name := range procFiles[proto] {
		f, err := os.Open(name)
		if err != nil {
			if i > 0 && errors.Is(err, os.ErrNotExist) {
				continue
			}
			return false, fmt.Errorf("sockets: %w", err)
		}
		found, err := procInUse(f, proto, port)
		f.Close()
		if err != nil {
			return false, fmt.Errorf("sockets: %s: %w", name, err)
		}
		if found {
			return true, nil
		}
	}
	return false, nil
}
