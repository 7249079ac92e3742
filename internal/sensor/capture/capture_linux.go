package capture

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/portsentry-go/portsentry/internal/sensor/backoff"
	"github.com/portsentry-go/portsentry/internal/sensor/packet"
)

const (
	// rcvBufSize is the socket receive buffer asked for: at the filter's
	// snap length of 128 bytes a packet costs about 1 KiB of buffer with
	// its overhead, so 4 MiB holds a burst of a few thousand probes.
	rcvBufSize = 4 << 20

	// readBufSize exceeds the filter's largest snap length (256 bytes):
	// only headers are ever read.
	readBufSize = 512
)

func supported() error { return nil }

// sysSensor is the packet socket. The fields after rc are the reading
// goroutine's, allocated once so that a read allocates nothing: readFn is
// built once because a closure passed to RawConn.Read would otherwise
// escape to the heap on every call.
type sysSensor struct {
	file *os.File
	rc   syscall.RawConn

	buf    []byte
	sa     unix.RawSockaddrLinklayer
	salen  uint32
	n      int
	errno  syscall.Errno
	readFn func(fd uintptr) bool
}

// open creates the socket. Protocol 0 at creation means the socket receives
// nothing until bind, which comes after the filter is attached: otherwise
// every packet of the host would be queued, unfiltered, in between.
func (s *sysSensor) open(o packet.FilterOptions) error {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return fmt.Errorf("capture: open packet socket: %w (needs CAP_NET_RAW: run as root)", err)
		}
		return fmt.Errorf("capture: open packet socket: %w", err)
	}
	if err := attachFilter(fd, o); err != nil {
		unix.Close(fd)
		return err
	}
	// SO_RCVBUFFORCE passes net.core.rmem_max (root, CAP_NET_ADMIN);
	// SO_RCVBUF is clamped to it.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBufSize) != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBufSize)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL)}); err != nil {
		unix.Close(fd)
		return fmt.Errorf("capture: bind packet socket: %w", err)
	}
	// A non-blocking descriptor makes os.NewFile register it with the
	// runtime's poller: a read parks the goroutine, not a thread, and
	// Close wakes it.
	f := os.NewFile(uintptr(fd), "packet-capture")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return fmt.Errorf("capture: packet socket: %w", err)
	}
	s.file, s.rc = f, rc
	s.buf = make([]byte, readBufSize)
	s.readFn = s.read
	return nil
}

// read is the RawConn.Read callback: one recvfrom straight into the
// preallocated buffer and address. unix.Recvfrom would allocate a Sockaddr
// per packet. It returns false to wait for the socket to become readable.
func (s *sysSensor) read(fd uintptr) bool {
	s.salen = unix.SizeofSockaddrLinklayer
	n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd,
		uintptr(unsafe.Pointer(&s.buf[0])), uintptr(len(s.buf)), 0,
		uintptr(unsafe.Pointer(&s.sa)), uintptr(unsafe.Pointer(&s.salen)))
	if errno == unix.EAGAIN {
		return false
	}
	s.n, s.errno = int(n), errno
	return true
}

func (s *sysSensor) close() error {
	if s.file == nil {
		return nil
	}
	return s.file.Close()
}

// setFilter replaces the kernel filter.
func (s *sysSensor) setFilter(o packet.FilterOptions) error {
	var err error
	cerr := s.rc.Control(func(fd uintptr) { err = attachFilter(int(fd), o) })
	if cerr != nil {
		return fmt.Errorf("capture: set filter: %w", cerr)
	}
	return err
}

// drops returns the packets the kernel dropped for want of buffer space
// since the previous call (PACKET_STATISTICS resets on read).
func (s *sysSensor) drops() (uint64, error) {
	var st *unix.TpacketStats
	var err error
	cerr := s.rc.Control(func(fd uintptr) {
		st, err = unix.GetsockoptTpacketStats(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS)
	})
	if cerr != nil {
		return 0, cerr
	}
	if err != nil {
		return 0, err
	}
	return uint64(st.Drops), nil
}

func attachFilter(fd int, o packet.FilterOptions) error {
	prog, err := packet.Filter(o)
	if err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	f := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		f[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		return fmt.Errorf("capture: attach filter: %w", err)
	}
	return nil
}

// htons converts a 16-bit value to network byte order, as sll_protocol
// wants it.
func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// readLoop reads until the socket is closed.
func (s *Sensor) readLoop(ctx context.Context) error {
	sys := &s.sys
	var delay time.Duration
	for {
		if err := sys.rc.Read(sys.readFn); err != nil {
			// Closing the socket is how Run stops, and ctx is always
			// cancelled first (see Run and Close). The error itself
			// is internal/poll's "use of closed file", which no
			// exported error matches.
			if ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("capture: read: %w", err)
		}
		if sys.errno != 0 {
			if sys.errno == unix.EINTR {
				continue
			}
			// ENOBUFS, ENOMEM and the like: back off rather than spin,
			// and say so once per episode.
			delay = backoff.Next(delay)
			if delay == backoff.First {
				s.log.Warn("capture: read failed; retrying", "err", sys.errno)
			}
			if !backoff.Sleep(ctx, delay) {
				return nil
			}
			continue
		}
		delay = 0
		s.handlePacket(sys.buf[:sys.n], &sys.sa)
	}
}

// handlePacket runs the per-packet path on a packet read from the socket
// with its link-layer address.
func (s *Sensor) handlePacket(b []byte, sa *unix.RawSockaddrLinklayer) {
	s.handle(b, sa.Pkttype, int(sa.Ifindex), time.Now())
}
