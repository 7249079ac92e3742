package connect

import (
	"net/netip"
	"syscall"
)

// udpControl asks the kernel for the destination address of every datagram
// (IPV6_PKTINFO, IP_PKTINFO): a trap bound to the wildcard address cannot
// otherwise tell which local address was probed. A failure only costs
// Event.Dst, so it does not fail the bind.
func udpControl(network, _ string, c syscall.RawConn) error {
	return c.Control(func(fd uintptr) {
		switch network {
		case "udp6":
			syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IPV6, syscall.IPV6_RECVPKTINFO, 1)
			// IPv4 datagrams on a dual-stack socket carry IP_PKTINFO.
			syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_PKTINFO, 1)
		case "udp4":
			syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_PKTINFO, 1)
		}
	})
}

// packetDst returns the destination address from the control messages of
// one datagram, unmapped; invalid when they hold none.
func packetDst(oob []byte) netip.Addr {
	if len(oob) == 0 {
		return netip.Addr{}
	}
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return netip.Addr{}
	}
	for _, m := range msgs {
		switch {
		case m.Header.Level == syscall.IPPROTO_IPV6 && m.Header.Type == syscall.IPV6_PKTINFO &&
			len(m.Data) >= syscall.SizeofInet6Pktinfo:
			// struct in6_pktinfo { struct in6_addr ipi6_addr; int ipi6_ifindex; }
			return netip.AddrFrom16([16]byte(m.Data[:16])).Unmap()
		case m.Header.Level == syscall.IPPROTO_IP && m.Header.Type == syscall.IP_PKTINFO &&
			len(m.Data) >= syscall.SizeofInet4Pktinfo:
			// struct in_pktinfo { int ipi_ifindex; struct in_addr ipi_spec_dst, ipi_addr; }
			// ipi_addr is the header's destination.
			return netip.AddrFrom4([4]byte(m.Data[8:12]))
		}
	}
	return netip.Addr{}
}
