package main

import (
	"fmt"
	"net/netip"

	"github.com/portsentry-go/portsentry/test/internal/forge"
)

// forgeMain reads -forge's flags and forges (package forge sends: a TCP
// SYN or UDP datagram to each port, from any source address, with the
// TTL given).
func forgeMain(proto, src, addr, ports string, ttl uint) error {
	from, err := netip.ParseAddr(src)
	if err != nil {
		return fmt.Errorf("-forge: %w", err)
	}
	to, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("-addr: %w", err)
	}
	first, last, err := forge.Ports(ports)
	if err != nil {
		return fmt.Errorf("-ports: %w", err)
	}
	if ttl < 1 || ttl > 255 {
		return fmt.Errorf("-ttl %d: want 1-255", ttl)
	}
	return forge.Send(proto, from.Unmap(), to.Addr().Unmap(), first, last, uint8(ttl))
}
