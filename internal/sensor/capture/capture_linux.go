package capture

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
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

// mmsghdr is struct mmsghdr, which x/sys/unix does not define. Go pads
// the struct to its alignment as C does (64 bytes on 64-bit systems).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

func supported() error { return nil }

// sysSensor is the packet socket. It is non-blocking and deliberately not
// in the Go runtime's poller: registered there, every packet that arrives
// makes the socket ready again and wakes an idle scheduler thread, one
// wake-up per packet of a flood even while the reader waits on purpose
// (readLoop). The reader waits in poll(2) itself instead, on the socket and
// on an eventfd that Close writes to end the wait; the socket is closed by
// the reader once it has stopped (or by Close if Run never started), never
// under a system call that uses it.
//
// The fields after wake are the reading goroutine's, allocated once so
// that a read allocates nothing.
type sysSensor struct {
	fd, wake int
	live     bool // fd and wake are open

	bufs [][readBufSize]byte         // readBatch packets
	sas  []unix.RawSockaddrLinklayer // their link-layer addresses
	iovs []unix.Iovec                // bufs, for the kernel
	msgs []mmsghdr                   // iovs and sas, for the kernel
	fds  [2]unix.PollFd              // fd and wake, for poll
	n    int                         // packets the last read got
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
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return fmt.Errorf("capture: eventfd: %w", err)
	}
	s.fd, s.wake, s.live = fd, wake, true
	s.bufs = make([][readBufSize]byte, readBatch)
	s.sas = make([]unix.RawSockaddrLinklayer, readBatch)
	s.iovs = make([]unix.Iovec, readBatch)
	s.msgs = make([]mmsghdr, readBatch)
	for i := range s.msgs {
		s.iovs[i].Base = &s.bufs[i][0]
		s.iovs[i].SetLen(readBufSize)
		h := &s.msgs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&s.sas[i]))
		h.Iov = &s.iovs[i]
		h.SetIovlen(1)
	}
	s.fds = [2]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(wake), Events: unix.POLLIN}}
	return nil
}

// read takes what is queued, up to readBatch packets, with one recvmmsg
// straight into the preallocated buffers and addresses; EAGAIN when
// nothing is.
func (s *sysSensor) read() unix.Errno {
	for i := range s.msgs {
		s.msgs[i].hdr.Namelen = unix.SizeofSockaddrLinklayer
	}
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(s.fd),
		uintptr(unsafe.Pointer(&s.msgs[0])), uintptr(len(s.msgs)), unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		s.n = 0
		return errno
	}
	s.n = int(n)
	return 0
}

// packet returns the i-th packet of the last read and its address.
func (s *sysSensor) packet(i int) ([]byte, *unix.RawSockaddrLinklayer) {
	return s.bufs[i][:min(s.msgs[i].len, readBufSize)], &s.sas[i]
}

// wait blocks until a packet is queued or interrupt was called; it
// reports which.
func (s *sysSensor) wait() (interrupted bool, err error) {
	for {
		s.fds[0].Revents, s.fds[1].Revents = 0, 0
		_, _, errno := unix.Syscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&s.fds[0])), uintptr(len(s.fds)), 0, 0, 0, 0)
		switch {
		case errno == unix.EINTR:
			continue
		case errno != 0:
			return false, errno
		case s.fds[1].Revents != 0:
			return true, nil
		case s.fds[0].Revents&(unix.POLLERR|unix.POLLNVAL) != 0:
			return false, fmt.Errorf("poll: events %#x", s.fds[0].Revents)
		}
		return false, nil
	}
}

// interrupt ends the reader's wait, now or at its next one.
func (s *sysSensor) interrupt() {
	if !s.live {
		return
	}
	one := [8]byte{1}
	unix.Write(s.wake, one[:])
}

func (s *sysSensor) close() error {
	if !s.live {
		return nil
	}
	s.live = false
	unix.Close(s.wake)
	return unix.Close(s.fd)
}

// setFilter replaces the kernel filter.
func (s *sysSensor) setFilter(o packet.FilterOptions) error {
	if !s.live {
		return fmt.Errorf("capture: set filter: %w", os.ErrClosed)
	}
	return attachFilter(s.fd, o)
}

// drops returns the packets the kernel dropped for want of buffer space
// since the previous call (PACKET_STATISTICS resets on read).
func (s *sysSensor) drops() (uint64, error) {
	if !s.live {
		return 0, os.ErrClosed
	}
	st, err := unix.GetsockoptTpacketStats(s.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
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

// readLoop reads until Close interrupts it or ctx is done. Each read takes
// what is queued, up to readBatch packets, and hands their probes to emit
// at once. While packets arrive faster than a scan sends them (a flood), it
// waits coalesceDelay after each read that emptied the socket, so that the
// packets of that time are read, decided and handed over together rather
// than waking the daemon once per packet (see pacer).
func (s *Sensor) readLoop(ctx context.Context) error {
	sys := &s.sys
	var delay time.Duration
	var pace pacer
	for ctx.Err() == nil {
		switch errno := sys.read(); errno {
		case 0:
		case unix.EAGAIN:
			interrupted, err := sys.wait()
			if interrupted || ctx.Err() != nil {
				return nil
			}
			if err != nil {
				return fmt.Errorf("capture: wait: %w", err)
			}
			continue
		case unix.EINTR:
			continue
		default:
			// ENOBUFS, ENOMEM and the like: back off rather than spin,
			// and say so once per episode.
			delay = backoff.Next(delay)
			if delay == backoff.First {
				s.log.Warn("capture: read failed; retrying", "err", errno)
			}
			if !backoff.Sleep(ctx, delay) {
				return nil
			}
			continue
		}
		delay = 0
		now := time.Now()
		for i := range sys.n {
			b, sa := sys.packet(i)
			s.handlePacket(b, sa, now)
		}
		s.flush()
		if pace.flooded(now, sys.n) && sys.n < readBatch {
			time.Sleep(coalesceDelay)
		}
	}
	return nil
}

// handlePacket runs the per-packet path on a packet read from the socket
// with its link-layer address.
func (s *Sensor) handlePacket(b []byte, sa *unix.RawSockaddrLinklayer, now time.Time) {
	s.handle(b, sa.Pkttype, int(sa.Ifindex), now)
}
