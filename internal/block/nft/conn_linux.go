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
	AddSet(*nftables.Set, []nftables.SetElement) error
	FlushSet(*nftables.Set)
	SetAddElements(*nftables.Set, []nftables.SetElement) error
	SetDeleteElements(*nftables.Set, []nftables.SetElement) error
	AddRule(*nftables.Rule) *nftables.Rule
	Flush() error
	GetSetElements(*nftables.Set) ([]nftables.SetElement, error)
	GetRules(*nftables.Table, *nftables.Chain) ([]*nftables.Rule, error)
	CloseLasting() error
}

var _ conn = (*nftables.Conn)(nil)

// defaultSndbuf is Linux's usual net.core.wmem_default: batches up to this
// size need no socket option.
const defaultSndbuf = 212992

// kernelConn returns a connection to the kernel of network namespace
// netnsFD (0: the caller's own).
//
// Each operation opens its own netlink socket (no AsLasting): a batch that
// fails part way can leave unread acknowledgements behind, and a fresh
// socket per operation means they can never be mistaken for the answers to
// the next one.
//
// sndbuf is read at each dial: Commit stores the size of the batch it is
// about to send. The kernel refuses a netlink message larger than the
// socket's send buffer (EMSGSIZE), and restoring 100 000 bans is a batch of
// several megabytes, far above the usual 208 KiB limit; SO_SNDBUFFORCE
// (CAP_NET_ADMIN, which the blocker needs anyway) lifts it, as the nft tool
// does.
func kernelConn(netnsFD int, sndbuf *atomic.Int64) (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.WithSockOptions(func(c *netlink.Conn) error {
		// NETLINK_CAP_ACK: an error does not echo the whole failed
		// message back. A failed 100 000-element batch would otherwise
		// answer with megabytes of echoes, overflow the receive buffer and
		// turn the real error into ENOBUFS.
		if err := c.SetOption(netlink.CapAcknowledge, true); err != nil {
			return err
		}
		if n := sndbuf.Load(); n > defaultSndbuf {
			return setSndbuf(c, int(n))
		}
		return nil
	})}
	if netnsFD != 0 {
		opts = append(opts, nftables.WithNetNSFd(netnsFD))
	}
	return nftables.New(opts...)
}

// setSndbuf raises the socket's send buffer to n bytes, past
// net.core.wmem_max when allowed.
func setSndbuf(c *netlink.Conn, n int) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, n)
		if serr != nil {
			// Without CAP_NET_ADMIN the batch is refused anyway; try the
			// unprivileged option so the error comes from the kernel's
			// nftables, not from here.
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, n)
		}
	})
	if err != nil {
		return err
	}
	return serr
}
