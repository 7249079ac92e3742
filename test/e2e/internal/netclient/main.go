// Command netclient is the end-to-end tests' scanner: run inside a test
// network namespace (ip netns exec NS netclient ...), it makes one TCP
// connection or sends one UDP datagram and reports what came back as one
// JSON object on stdout. It exits 0 whenever it could try; the test decides
// what the outcome means.
//
//	netclient -proto tcp -addr 10.231.0.1:143
//	netclient -proto udp -addr [fd00:231::1]:69 -wait 1s
//	netclient -proto udp -addr 10.231.0.130:53 -sport 600 -wait 200ms
//
// -sport makes the client send from a fixed local port (the host's own
// outgoing traffic from a watched port); -dial bounds the TCP handshake.
//
// With -listen it is a stand-in for a real service instead: it binds addr,
// prints {"listening":true,...} once bound, and serves until killed. A TCP
// client gets -reply and is closed; a UDP datagram is answered with -reply,
// or dropped when -reply is empty (a server that never answers). With
// -delay a UDP reply is sent that long after the datagram came (a late
// answer, after the client may have closed its socket).
//
//	netclient -listen -proto tcp -addr :143 -reply 'SSH-2.0-OpenSSH_9.2'
//	netclient -listen -proto udp -addr 127.0.0.1:53 -reply ''
//	netclient -listen -proto udp -addr :53 -reply 'answer' -delay 1s
//
// With -forge it sends, instead, one TCP SYN or UDP datagram to each port
// of -ports on addr's host, from the source address -forge (any address:
// a raw socket) with TTL -ttl: a forger elsewhere.
//
//	netclient -forge 10.231.0.130 -ttl 50 -proto tcp -addr 10.231.0.1:0 -ports 900-919
//
// With -http it GETs a URL instead (a metrics scrape from inside the
// namespace): the body goes to stdout; a status other than 200 or a
// transport error goes to stderr with exit status 1.
//
//	netclient -http http://127.0.0.1:9617/metrics
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// result is what the test reads.
type result struct {
	Connected bool   `json:"connected"` // TCP: handshake done; UDP: datagram sent
	Data      string `json:"data"`      // bytes received (banner or reply)
	Error     string `json:"error,omitempty"`
}

func main() {
	proto := flag.String("proto", "tcp", "tcp or udp")
	addr := flag.String("addr", "", "host:port to reach (IPv6 as [addr]:port)")
	wait := flag.Duration("wait", 2*time.Second, "how long to wait for data")
	payload := flag.String("send", "pse2e probe\n", "UDP: datagram to send")
	listen := flag.Bool("listen", false, "serve on addr instead of reaching it")
	reply := flag.String("reply", "", "-listen: what a client gets back")
	delay := flag.Duration("delay", 0, "-listen, UDP: send each reply this long after the datagram came")
	sport := flag.Int("sport", 0, "send from this local port (0: any)")
	dial := flag.Duration("dial", 3*time.Second, "TCP: how long the handshake may take")
	httpURL := flag.String("http", "", "GET this URL and print the body")
	forgeSrc := flag.String("forge", "", "send raw packets from this source address instead")
	ttl := flag.Uint("ttl", 64, "-forge: TTL or hop limit of the packets")
	ports := flag.String("ports", "", "-forge: FIRST-LAST ports to send to")
	flag.Parse()
	if *forgeSrc != "" {
		if err := forgeMain(*proto, *forgeSrc, *addr, *ports, *ttl); err != nil {
			fmt.Fprintln(os.Stderr, "netclient:", err)
			os.Exit(1)
		}
		return
	}
	if *httpURL != "" {
		if err := httpGet(*httpURL, *wait); err != nil {
			fmt.Fprintln(os.Stderr, "netclient:", err)
			os.Exit(1)
		}
		return
	}
	if *sport < 0 || *sport > 65535 {
		fmt.Fprintln(os.Stderr, "netclient: -sport out of range")
		os.Exit(2)
	}
	if *listen && *addr != "" && (*proto == "tcp" || *proto == "udp") {
		if err := serve(*proto, *addr, *reply, *delay); err != nil {
			fmt.Fprintln(os.Stderr, "netclient:", err)
			os.Exit(1)
		}
		return
	}
	if *addr == "" || (*proto != "tcp" && *proto != "udp") {
		fmt.Fprintln(os.Stderr, "usage: netclient -proto tcp|udp -addr HOST:PORT [-wait D] [-send S] [-sport N] [-dial D]\n       netclient -listen -proto tcp|udp -addr HOST:PORT [-reply S] [-delay D]")
		os.Exit(2)
	}
	var r result
	if *proto == "tcp" {
		r = tcp(*addr, *sport, *dial, *wait)
	} else {
		r = udp(*addr, *sport, *payload, *wait)
	}
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		os.Exit(1)
	}
}

// tcp connects and reads until EOF, until the wait runs out, or until the
// peer has been quiet for a moment after sending something (a banner that is
// not followed by a close must not cost the whole wait).
func tcp(addr string, sport int, dial, wait time.Duration) result {
	var r result
	d := net.Dialer{Timeout: dial}
	if sport != 0 {
		d.LocalAddr = &net.TCPAddr{Port: sport}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	defer c.Close()
	r.Connected = true
	deadline := time.Now().Add(wait)
	buf := make([]byte, 4096)
	var got []byte
	for {
		d := deadline
		if len(got) > 0 {
			if quiet := time.Now().Add(300 * time.Millisecond); quiet.Before(d) {
				d = quiet
			}
		}
		_ = c.SetReadDeadline(d)
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			var ne net.Error
			if !errors.Is(err, io.EOF) && (!errors.As(err, &ne) || !ne.Timeout()) {
				r.Error = err.Error() // e.g. connection reset
			}
			break
		}
	}
	r.Data = string(got)
	return r
}

// udp sends one datagram and waits for one reply.
func udp(addr string, sport int, payload string, wait time.Duration) result {
	var r result
	d := net.Dialer{}
	if sport != 0 {
		d.LocalAddr = &net.UDPAddr{Port: sport}
	}
	c, err := d.Dial("udp", addr)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	defer c.Close()
	if _, err := c.Write([]byte(payload)); err != nil {
		r.Error = err.Error()
		return r
	}
	r.Connected = true
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			r.Error = err.Error() // e.g. ICMP port unreachable: nothing listens
		}
		return r
	}
	r.Data = string(buf[:n])
	return r
}

// listening is what -listen prints once its socket is bound.
type listening struct {
	Listening bool   `json:"listening"`
	Addr      string `json:"addr"`
}

// serve binds addr and serves until the process is killed.
func serve(proto, addr, reply string, delay time.Duration) error {
	if proto == "udp" {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return err
		}
		if err := json.NewEncoder(os.Stdout).Encode(listening{true, pc.LocalAddr().String()}); err != nil {
			return err
		}
		buf := make([]byte, 65535)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return err
			}
			switch {
			case reply == "":
			case delay > 0:
				time.AfterFunc(delay, func() { _, _ = pc.WriteTo([]byte(reply), from) })
			default:
				_, _ = pc.WriteTo([]byte(reply), from)
			}
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if err := json.NewEncoder(os.Stdout).Encode(listening{true, ln.Addr().String()}); err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			_, _ = io.WriteString(c, reply)
		}()
	}
}

// httpGet fetches url within wait and copies a 200 answer's body to stdout.
func httpGet(url string, wait time.Duration) error {
	c := http.Client{Timeout: wait}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	_, err = io.Copy(os.Stdout, resp.Body)
	return err
}
