package nft

import (
	"sync/atomic"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// conn is the part of *nftables.Conn the blocker uses. Narrowing the
// library to it lets the tests run the blocker's logic against an
// in-memory fake (fake_linux_test.go) and record the exact netlink bytes
// without a kernel (golden_linux_test.go).
//
// The mutating methods only queue; Flush sends the queue as one netlink
// batch, which the kernel applies as one transaction or not at all.
type conn interface {
	AddTable(*nftables.Table) *nftables.Table
	AddChain(*nftables.Chain) *nftables.Chain
	FlushChain(*nftables.Chain)
	DelChain(*nftables.Chain)
	ListChain(*nftables.Table, string) (*nftables.Chain, error)
	AddSet(*nftables.Set, []nftables.SetElement) error
	FlushSet(*nftables.Set)
	DelSet(*nftables.Set)
	SetAddElements(*nftables.Set, []nftables.SetElement) error
	SetDeleteElements(*nftables.Set, []nftables.SetElement) error
	AddRule(*nftables.Rule) *nftables.Rule
	Flush() error
	GetSetElements(*nftables.Set) ([]nftables.SetElement, error)
	GetRules(*nftables.Table, *nftables.Chain) ([]*nftables.Rule, error)
	CloseLasting() error
}

var _ conn = (*nftables.Conn)(nil)

// defaultSockbuf is Linux's usual net.core.wmem_default and rmem_default:
// batches up to this size need no socket option.
const defaultSockbuf = 212992

// bufSizes are the socket buffer sizes the next operation needs; zero
// fields keep the defaults. bigDump asks for large dump messages (see
// primeDump).
type bufSizes struct {
	snd, rcv int
	bigDump  bool
}

// kernelConn returns a connection to the kernel of network namespace
// netnsFD (0: the caller's own).
//
// Each operation opens its own netlink socket (no AsLasting): a batch that
// fails part way can leave unread acknowledgements behind, and a fresh
// socket per operation means they can never be mistaken for the answers to
// the next one.
//
// bufs is read at each dial: Commit stores what the batch it is about to
// send needs, as the nft tool does. The kernel refuses a batch larger than
// the socket's send buffer (EMSGSIZE), and restoring 100 000 bans is a
// batch of several megabytes, far above the usual 208 KiB. The kernel
// acknowledges each of the batch's messages (the library asks it to), all
// at once after the whole batch, so hundreds of acknowledgements must fit
// the receive buffer or the read fails with ENOBUFS. SO_SNDBUFFORCE and
// SO_RCVBUFFORCE (CAP_NET_ADMIN, which the blocker needs anyway) lift the
// limits.
func kernelConn(netnsFD int, bufs *atomic.Pointer[bufSizes]) (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.WithSockOptions(func(c *netlink.Conn) error {
		// NETLINK_CAP_ACK: an error does not echo the whole failed
		// message back. A failed 100 000-element batch would otherwise
		// answer with megabytes of echoes, overflow the receive buffer and
		// turn the real error into ENOBUFS.
		if err := c.SetOption(netlink.CapAcknowledge, true); err != nil {
			return err
		}
		sz := bufs.Load()
		if sz == nil {
			return nil
		}
		if sz.snd > defaultSockbuf {
			if err := setSockbuf(c, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, sz.snd); err != nil {
				return err
			}
		}
		if sz.rcv > defaultSockbuf {
			if err := setSockbuf(c, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, sz.rcv); err != nil {
				return err
			}
		}
		if sz.bigDump {
			return primeDump(c)
		}
		return nil
	})}
	if netnsFD != 0 {
		opts = append(opts, nftables.WithNetNSFd(netnsFD))
	}
	return nftables.New(opts...)
}

// setSockbuf sets a socket buffer to n bytes with the option force (past
// net.core.[rw]mem_max), or with plain when that is not allowed.
func setSockbuf(c *netlink.Conn, force, plain, n int) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, force, n)
		if serr != nil {
			// Without CAP_NET_ADMIN the batch is refused anyway; try the
			// unprivileged option so the error comes from the kernel's
			// nftables, not from here.
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, plain, n)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// dumpBuf is the receive size primeDump announces: the most the kernel
// will size a dump message by (SKB_WITH_OVERHEAD(32768) bytes).
const dumpBuf = 32768

// primeDump makes the kernel send the next dumps in 32 KiB messages
// instead of 4 KiB ones.
//
// The kernel sizes each dump message by the largest buffer the socket has
// received into (af_netlink.c, max_recvmsg_len), and the library reads into
// a page first. Listing a set costs the kernel a walk of the set from the
// start for every message (the walk skips what earlier messages held), so
// 100 000 bans in 4 KiB messages take about a thousand walks and seconds
// of kernel time; in 32 KiB messages, an eighth of that. Reading the answer
// to one small request into a 32 KiB buffer is enough to raise the size.
func primeDump(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	// NFT_MSG_GETGEN: the smallest nftables request with an answer.
	req := []byte{
		20, 0, 0, 0, // length
		unix.NFT_MSG_GETGEN, unix.NFNL_SUBSYS_NFTABLES, // type
		byte(unix.NLM_F_REQUEST), 0, // flags
		0, 0, 0, 0, // sequence: the library's start above 0
		0, 0, 0, 0, // port id: the kernel fills it in
		unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0, // nfgenmsg
	}
	var ioErr error
	err = raw.Control(func(fd uintptr) {
		if ioErr = unix.Sendto(int(fd), req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); ioErr != nil {
			return
		}
		// The kernel answers within the send (netlink requests run in
		// the sender's context), so the answer is already queued; it is
		// consumed here, never seen by the library.
		_, _, ioErr = unix.Recvfrom(int(fd), make([]byte, dumpBuf), 0)
	})
	if err != nil {
		return err
	}
	return ioErr
}
