// Package labsvc holds the lab benchmarks' hidden helper subcommands: a
// benchmark (scanlab, floodlab) re-executes itself inside a namespace
// (ip netns exec NS /path/to/benchmark _serve) to play the target's real
// services and the innocent client. Each helper runs until its stdin
// closes, which also happens when the benchmark dies. A benchmark's main
// calls Main first.
package labsvc

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The helpers' names, ports and output marks.
const (
	// Serve is the subcommand playing T's services.
	Serve = "_serve"
	// Innocent is the subcommand playing the innocent client.
	Innocent = "_innocent"

	// ServicePortTCP is the TCP service's port.
	ServicePortTCP = 80
	// ServicePortUDP is the UDP service's port.
	ServicePortUDP = 53
	serviceReply   = "scanlab-ok\n"
	// ReadyMark is printed once a helper is ready.
	ReadyMark  = "scanlab-ready"
	resultMark = "scanlab-result "
)

// Main runs a hidden subcommand; ok is false when args name none.
func Main(args []string) (code int, ok bool) {
	if len(args) == 0 {
		return 0, false
	}
	var err error
	switch args[0] {
	case Serve:
		err = serve()
	case Innocent:
		err = innocent(args[1:])
	default:
		return 0, false
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s %s: %v\n", filepath.Base(os.Args[0]), args[0], err)
		return 1, true
	}
	return 0, true
}

// UntilStdinCloses returns a channel closed when stdin reaches EOF.
func UntilStdinCloses() <-chan struct{} {
	c := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(c)
	}()
	return c
}

// Wait waits for the next tick or for stop, and reports whether stop is
// closed. Stop wins over a tick that is also ready: a round that took
// longer than the interval (requests timing out one after the other)
// leaves a tick waiting, and a random choice between the two could run
// round after round while the benchmark waits for the result.
func Wait(stop <-chan struct{}, tick <-chan time.Time) bool {
	select {
	case <-stop:
		return true
	default:
	}
	select {
	case <-stop:
		return true
	case <-tick:
		return false
	}
}

// serve plays T's real services on every address: a TCP service on port 80
// that greets each client and closes, and a UDP service on port 53 that
// answers every datagram.
func serve() error {
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", ServicePortTCP))
	if err != nil {
		return err
	}
	pc, err := net.ListenPacket("udp", fmt.Sprintf(":%d", ServicePortUDP))
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(2 * time.Second))
				_, _ = io.WriteString(c, serviceReply)
			}()
		}
	}()
	go func() {
		buf := make([]byte, 2048)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			_, _ = pc.WriteTo([]byte(serviceReply), from)
		}
	}()
	fmt.Println(ReadyMark)
	<-UntilStdinCloses()
	ln.Close()
	pc.Close()
	return nil
}

// InnocentResult is what the innocent client reports when it stops.
type InnocentResult struct {
	Requests int      `json:"requests"`
	Failures int      `json:"failures"`
	Errors   []string `json:"errors,omitempty"` // the first few
}

// innocent makes ordinary use of T's services, every -every: over IPv4 and
// IPv6, a TCP connection to port 80 that must return the greeting, and a UDP
// query to port 53 that must be answered. It prints ReadyMark after the
// first round in which every request succeeded (failures before that are
// set-up, not counted), and its result as one JSON line when stdin closes.
func innocent(args []string) error {
	fs := flag.NewFlagSet(Innocent, flag.ContinueOnError)
	v4 := fs.String("v4", "", "T's IPv4 address")
	v6 := fs.String("v6", "", "T's IPv6 address")
	every := fs.Duration("every", 50*time.Millisecond, "interval between rounds")
	timeout := fs.Duration("timeout", time.Second, "timeout of one request")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var targets []string
	for _, a := range []string{*v4, *v6} {
		if a != "" {
			targets = append(targets, a)
		}
	}
	if len(targets) == 0 {
		return errors.New("need -v4 and/or -v6")
	}
	stop := UntilStdinCloses()
	var (
		res   InnocentResult
		ready bool
		start = time.Now()
	)
	tick := time.NewTicker(*every)
	defer tick.Stop()
	for {
		var errs []string
		for _, t := range targets {
			if err := tcpRequest(t, *timeout); err != nil {
				errs = append(errs, "tcp "+err.Error())
			}
			if err := udpRequest(t, *timeout); err != nil {
				errs = append(errs, "udp "+err.Error())
			}
		}
		if ready {
			res.Requests += 2 * len(targets)
			res.Failures += len(errs)
			for _, e := range errs {
				if len(res.Errors) < 5 {
					res.Errors = append(res.Errors, fmt.Sprintf("+%.3fs %s", time.Since(start).Seconds(), e))
				}
			}
		} else if len(errs) == 0 {
			ready = true
			fmt.Println(ReadyMark)
		} else {
			fmt.Fprintln(os.Stderr, "warm-up:", errs)
		}
		if Wait(stop, tick.C) {
			b, err := json.Marshal(res)
			if err != nil {
				return err
			}
			fmt.Printf("%s%s\n", resultMark, b)
			return nil
		}
	}
}

func tcpRequest(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(addr, fmt.Sprint(ServicePortTCP)), timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if string(b) != serviceReply {
		return fmt.Errorf("%s: got %q", addr, b)
	}
	return nil
}

func udpRequest(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("udp", net.JoinHostPort(addr, fmt.Sprint(ServicePortUDP)), timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("scanlab query\n")); err != nil {
		return err
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if !bytes.Equal(buf[:n], []byte(serviceReply)) {
		return fmt.Errorf("%s: got %q", addr, buf[:n])
	}
	return nil
}

// ParseInnocent finds the innocent client's result in its output.
func ParseInnocent(out string) (InnocentResult, error) {
	var r InnocentResult
	i := strings.LastIndex(out, resultMark)
	if i < 0 {
		return r, errors.New("the innocent client printed no result")
	}
	line, _, _ := strings.Cut(out[i+len(resultMark):], "\n")
	err := json.Unmarshal([]byte(line), &r)
	return r, err
}
