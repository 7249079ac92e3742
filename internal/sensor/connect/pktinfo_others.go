//go:build !linux

package connect

import (
	"net/netip"
	"syscall"
)

// udpControl is nil: outside Linux the sensor does not ask for packet info,
// and UDP events leave Dst invalid.
var udpControl func(network, address string, c syscall.RawConn) error

// packetDst returns the invalid address: see udpControl.
func packetDst([]byte) netip.Addr { return netip.Addr{} }
