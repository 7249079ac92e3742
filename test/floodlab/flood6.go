package main

// floodlab's IPv6 flooder (hping3 has no IPv6): TCP SYNs from random
// sources at the highest rate one thread can send, through a raw socket
// whose packets carry their own IPv6 header (as test/internal/forge, the
// forger of the end-to-end tests and of trustlab, sends them; the header is
// written by hand here and only the source, port, sequence number and
// checksum change from one packet to the next, so that building a packet
// costs next to nothing beside the send).

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/portsentry-go/portsentry/test/internal/labsvc"
)

const (
	helperFlood6 = "_flood6"
	// flood6Mark starts the flooder's last line, with the packets it sent.
	flood6Mark = "floodlab-flood6 sent "
)

// floodHelperMain runs floodlab's own hidden subcommand; ok is false when
// args name none.
func floodHelperMain(args []string) (code int, ok bool) {
	if len(args) == 0 || args[0] != helperFlood6 {
		return 0, false
	}
	if err := flood6Main(args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "floodlab %s: %v\n", helperFlood6, err)
		return 1, true
	}
	return 0, true
}

// flood6Main floods until stdin closes, then prints flood6Mark and the
// number of packets sent.
func flood6Main(args []string) error {
	fs := flag.NewFlagSet(helperFlood6, flag.ContinueOnError)
	dst := fs.String("dst", "", "the target's IPv6 address")
	port := fs.Uint("port", floodPort, "the target's TCP port")
	src := fs.String("src", flood6Sources, "the prefix the sources are drawn from")
	if err := fs.Parse(args); err != nil {
		return err
	}
	to, err := netip.ParseAddr(*dst)
	if err != nil || !to.Is6() || to.Is4In6() {
		return fmt.Errorf("-dst %q: want an IPv6 address", *dst)
	}
	from, err := netip.ParsePrefix(*src)
	if err != nil || !from.Addr().Is6() {
		return fmt.Errorf("-src %q: want an IPv6 prefix", *src)
	}
	if *port == 0 || *port > 65535 {
		return fmt.Errorf("-port %d: want 1-65535", *port)
	}
	var stop atomic.Bool
	go func() {
		<-labsvc.UntilStdinCloses()
		stop.Store(true)
	}()
	sent, err := flood6(from.Masked(), to, uint16(*port), &stop)
	fmt.Printf("%s%d\n", flood6Mark, sent)
	return err
}

// flood6 sends SYNs to dst:port from random addresses of src until stop
// is set, and returns how many the kernel took.
func flood6(src netip.Prefix, dst netip.Addr, port uint16, stop *atomic.Bool) (int64, error) {
	// IPPROTO_RAW: the packet starts with its IPv6 header.
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_RAW)
	if err != nil {
		return 0, fmt.Errorf("raw socket: %w", err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrInet6{Addr: dst.As16()}
	g := newSynGen(src, dst, port)
	var sent int64
	for !stop.Load() {
		err := unix.Sendto(fd, g.next(), 0, to)
		switch {
		case err == nil:
			sent++
		case errors.Is(err, unix.ENOBUFS), errors.Is(err, unix.EAGAIN):
			// The queue is full: that is the highest rate.
		default:
			return sent, fmt.Errorf("send: %w", err)
		}
	}
	return sent, nil
}

// synGen builds the flood's packets: one buffer, rewritten in place.
type synGen struct {
	pkt [ipv6HeaderLen + tcpHeaderLen]byte
	src netip.Prefix
	rnd *rand.ChaCha8
}

const (
	ipv6HeaderLen = 40
	tcpHeaderLen  = 20
)

func newSynGen(src netip.Prefix, dst netip.Addr, port uint16) *synGen {
	var seed [32]byte
	for i := range seed {
		seed[i] = byte(rand.Uint32())
	}
	g := &synGen{src: src, rnd: rand.NewChaCha8(seed)}
	p := g.pkt[:]
	p[0] = 0x60 // version 6
	binary.BigEndian.PutUint16(p[4:6], tcpHeaderLen)
	p[6], p[7] = unix.IPPROTO_TCP, 64
	d := dst.As16()
	copy(p[24:40], d[:])
	t := p[ipv6HeaderLen:]
	binary.BigEndian.PutUint16(t[2:4], port)
	t[12] = 5 << 4 // data offset: 5 words
	t[13] = 0x02   // SYN
	binary.BigEndian.PutUint16(t[14:16], 1024)
	return g
}

// next returns the next packet: a fresh source inside the prefix, source
// port and sequence number, and the checksum that goes with them.
func (g *synGen) next() []byte {
	p := g.pkt[:]
	var a [16]byte
	binary.BigEndian.PutUint64(a[0:8], g.rnd.Uint64())
	binary.BigEndian.PutUint64(a[8:16], g.rnd.Uint64())
	pre := g.src.Addr().As16()
	bits := g.src.Bits()
	for i := range a {
		switch {
		case bits >= 8*(i+1):
			a[i] = pre[i]
		case bits > 8*i:
			keep := byte(0xff) << (8 - (bits - 8*i))
			a[i] = pre[i]&keep | a[i]&^keep
		}
	}
	copy(p[8:24], a[:])
	t := p[ipv6HeaderLen:]
	r := g.rnd.Uint64()
	binary.BigEndian.PutUint16(t[0:2], uint16(r)|1024) // a source port above 1023
	binary.BigEndian.PutUint32(t[4:8], uint32(r>>32))
	t[16], t[17] = 0, 0
	binary.BigEndian.PutUint16(t[16:18], tcpChecksum6(p[8:24], p[24:40], t))
	return p
}

// tcpChecksum6 is the TCP checksum over the IPv6 pseudo-header (source,
// destination, length, next header) and the segment, whose checksum field
// is zero.
func tcpChecksum6(src, dst, seg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(src)
	add(dst)
	sum += uint32(len(seg)) + unix.IPPROTO_TCP
	add(seg)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
