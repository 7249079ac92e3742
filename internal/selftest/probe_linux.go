//go:build linux

package selftest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/portsentry-go/portsentry/internal/event"
	"github.com/portsentry-go/portsentry/internal/sensor/packet"
	"github.com/portsentry-go/portsentry/internal/sensor/sockets"
)

func (n *linuxNetns) Probe(ctx context.Context, f Feature) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	switch f {
	case PacketSocket:
		return n.do(func() error {
			fd, err := packetSocket()
			if err == nil {
				unix.Close(fd)
			}
			return err
		})
	case SocketFilter:
		return n.do(socketFilter)
	case SockDiag:
		return n.do(sockDiag)
	case NFTables:
		return n.nft(func(*nftables.Conn, *nftables.Table) error { return nil })
	case NFTSocket:
		// meta l4proto tcp socket transparent 1 return
		return n.nftRule(
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Socket{Key: expr.SocketKeyTransparent, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{1}},
			&expr.Verdict{Kind: expr.VerdictReturn})
	case NFTConntrack:
		// ct state established,related return
		return n.nftRule(
			&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
				Xor:  binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Verdict{Kind: expr.VerdictReturn})
	case NFTFib:
		// fib saddr type local return
		return n.nftRule(
			&expr.Fib{Register: 1, FlagSADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
			&expr.Verdict{Kind: expr.VerdictReturn})
	case NFTSetTimeout:
		return n.nft(setTimeouts)
	}
	return fmt.Errorf("selftest: unknown feature %d", f)
}

// packetSocket opens the socket the capture sensor uses.
func packetSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket(AF_PACKET): %w", err)
	}
	return fd, nil
}

// socketFilter attaches the daemon's own filter program to a packet socket.
func socketFilter() error {
	fd, err := packetSocket()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	prog, err := packet.Filter(packet.FilterOptions{Outgoing: true})
	if err != nil {
		return err
	}
	f := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		f[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		return fmt.Errorf("setsockopt(SO_ATTACH_FILTER) of a %d-instruction program: %w", len(f), err)
	}
	return nil
}

// sockDiag binds a TCP listener and a UDP socket in the namespace and asks
// a sockets.Checker made there about their ports. The Checker's fallback,
// /proc/net, shows this process's main namespace, not this one, so a
// right answer comes from sock_diag.
func sockDiag() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer u.Close()
	c, err := sockets.NewChecker()
	if err != nil {
		return err
	}
	defer c.Close()
	for _, s := range []struct {
		proto event.Proto
		port  int
	}{{event.TCP, l.Addr().(*net.TCPAddr).Port}, {event.UDP, u.LocalAddr().(*net.UDPAddr).Port}} {
		used, err := c.InUse(s.proto, uint16(s.port))
		if err != nil {
			return fmt.Errorf("%s port %d: %w", s.proto, s.port, err)
		}
		if !used {
			return fmt.Errorf("a %s socket bound to port %d was not seen: sock_diag did not answer, /proc/net did", s.proto, s.port)
		}
	}
	return nil
}

// nft creates a table in the namespace, lets build add to it, loads it all
// in one batch, and deletes the table.
func (n *linuxNetns) nft(build func(*nftables.Conn, *nftables.Table) error) error {
	c, err := nftables.New(nftables.WithNetNSFd(n.ns.Fd()))
	if err != nil {
		return err
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: nftTable + "_probe"})
	if err := build(c, t); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return nftError(err)
	}
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("deleting the table: %w", nftError(err))
	}
	return nil
}

// nftRule loads one rule made of exprs in an input chain.
func (n *linuxNetns) nftRule(exprs ...expr.Any) error {
	return n.nft(func(c *nftables.Conn, t *nftables.Table) error {
		ch := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: exprs})
		return nil
	})
}

// setTimeouts adds a dynamic set with timeouts, an element with its own
// timeout and a rule adding the source address with a timeout: what
// BAN_TIME and the kernel trap use.
func setTimeouts(c *nftables.Conn, t *nftables.Table) error {
	s := &nftables.Set{Table: t, Name: "ban4", KeyType: nftables.TypeIPAddr,
		HasTimeout: true, Dynamic: true, Timeout: time.Hour}
	if err := c.AddSet(s, []nftables.SetElement{{Key: []byte{10, 239, 0, 3}, Timeout: time.Minute}}); err != nil {
		return err
	}
	ch := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
	// meta nfproto ipv4 add @ban4 { ip saddr timeout 1m } drop
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Dynset{SrcRegKey: 1, SetName: s.Name, SetID: s.ID, Operation: unix.NFT_DYNSET_OP_ADD, Timeout: time.Minute},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	return nil
}

// nftError says what the usual netlink errors mean here.
func nftError(err error) error {
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("%w (the kernel lacks the module)", err)
	case errors.Is(err, unix.EPROTONOSUPPORT), errors.Is(err, unix.EAFNOSUPPORT):
		return fmt.Errorf("%w (no nf_tables in this kernel)", err)
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("%w (needs CAP_NET_ADMIN)", err)
	}
	return err
}
