//go:build !linux

package control

import (
	"fmt"
	"net"
	"runtime"
)

// peerCred is not implemented here: without the peer's credentials every
// connection is refused, which is safe, and the socket's mode is all the
// protection this OS would get anyway.
func peerCred(*net.UnixConn) (peer, error) {
	return peer{}, fmt.Errorf("peer credentials not implemented on %s", runtime.GOOS)
}
