package block

import (
	"bytes"
	"os"
)

// Forwarding reports whether this host forwards IPv4 and IPv6 packets
// (net.ipv4.ip_forward, net.ipv6.conf.all.forwarding), in the caller's
// network namespace: whether the forward path is in use, as on a router
// or a container host (Docker turns ip_forward on when it starts). A
// setting that cannot be read counts as off.
func Forwarding() (v4, v6 bool) {
	on := func(path string) bool {
		b, err := os.ReadFile(path)
		return err == nil && string(bytes.TrimSpace(b)) != "0"
	}
	return on("/proc/sys/net/ipv4/ip_forward"), on("/proc/sys/net/ipv6/conf/all/forwarding")
}
