// Package netns makes throwaway network namespaces and wires them together:
// the kernel-level tests, `portsentry selftest` and the scan-lab benchmark
// run everything they send and block inside namespaces of their own, so
// the host's links, routes and firewall are never touched.
//
// A namespace is named, under /run/netns as `ip netns add` makes it, so
// that `ip netns exec` and an operator see it. Its name is
//
//	prefix + PID + "-" + six random hex digits + "-" + role
//
// (ID and New make such names): the PID tells the leftovers of a run that
// died before deleting them (Sweep removes those) from the namespaces of a
// live concurrent run, and the random part keeps two labs of one process
// apart.
//
// On Linux, New creates one (loopback up), Delete ends the processes left
// in it and removes it, Pair and Star join namespaces with veth pairs and a
// bridge and give the ends their addresses, Do runs Go code on a thread
// inside a namespace (sockets it opens stay there) and Command runs a
// program there. Elsewhere creating, entering or wiring one fails with an
// error wrapping errors.ErrUnsupported, and there are none to list or sweep.
//
// The testing layer (Require, t.Cleanup, fatal errors) is package
// netnstest, below this one.
package netns

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// Dir is where named namespaces live (iproute2's convention).
const Dir = "/run/netns"

// ErrNoIPv6 is wrapped when an IPv6 address cannot be added because this
// kernel has IPv6 turned off (ipv6.disable=1, or disable_ipv6 set); the
// IPv4 part of the job is done by then.
var ErrNoIPv6 = errors.New("IPv6 is turned off in this kernel")

// ID returns a fresh stem for the names of one lab's namespaces: prefix,
// this process's PID, "-" and six random hex digits. Append "-" and a role
// to name each namespace.
func ID(prefix string) string {
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	return prefix + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(rnd[:])
}

// Owner returns the PID of the process that named name with ID(prefix),
// or 0 when name is not such a name.
func Owner(prefix, name string) int {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return 0
	}
	pid, _, _ := strings.Cut(rest, "-")
	n, err := strconv.Atoi(pid)
	if err != nil || n <= 0 {
		return 0
	}
	return n
}

// Own is the prefix of the names this process made with ID(prefix).
func Own(prefix string) string { return prefix + strconv.Itoa(os.Getpid()) + "-" }

// Iface is one end of a link: the namespace it is in, its name there and
// the addresses it gets (IPv4 ones with their broadcast address, IPv6 ones
// without duplicate address detection, so they are usable at once).
type Iface struct {
	NS    *NS
	Name  string
	Addrs []netip.Prefix
}

// OnLink returns each address with the lab subnets' usual length: /24 for
// IPv4, /64 for IPv6.
func OnLink(addrs ...netip.Addr) []netip.Prefix {
	out := make([]netip.Prefix, len(addrs))
	for i, a := range addrs {
		bits := 64
		if a.Is4() {
			bits = 24
		}
		out[i] = netip.PrefixFrom(a, bits)
	}
	return out
}
