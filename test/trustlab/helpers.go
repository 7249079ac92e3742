package main

// trustlab's hidden helper subcommands: trustlab re-executes itself inside
// a namespace (ip netns exec NS /path/to/trustlab _session ...) to play a
// service of T or a client. Each runs until its stdin closes (which also
// happens when trustlab dies), then prints its result as one JSON line
// after resultMark. labsvc's _serve (T's web and DNS services) and
// _innocent (a client fetching a page and making a DNS query every 50 ms)
// are used as they are.

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/portsentry-go/portsentry/test/internal/labsvc"
)

const (
	helperService = "_service"
	helperSession = "_session"
	helperConnect = "_connect"
	resultMark    = "trustlab-result "
	// sessionPort is the SSH-like service's port on T.
	sessionPort = 22
	// restartPort is the port of the service the restart scenario stops
	// and starts again (a web application's, as in issue 9).
	restartPort = 8080
	// greeting is what a greeting service sends each client.
	greeting = "trustlab-ok\n"
)

// helperMain runs a hidden subcommand; ok is false when args name none.
func helperMain(args []string) (code int, ok bool) {
	if len(args) == 0 {
		return 0, false
	}
	var err error
	switch args[0] {
	case helperService:
		err = serviceMain(args[1:])
	case helperSession:
		err = sessionMain(args[1:])
	case helperConnect:
		err = connectMain(args[1:])
	default:
		return 0, false
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "trustlab %s: %v\n", args[0], err)
		return 1, true
	}
	return 0, true
}

// printResult prints v as the helper's result line.
func printResult(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	fmt.Printf("%s%s\n", resultMark, b)
	return nil
}

// parseResult finds a helper's result in its output.
func parseResult(out string, v any) error {
	i := strings.LastIndex(out, resultMark)
	if i < 0 {
		return errors.New("the helper printed no result")
	}
	line, _, _ := strings.Cut(out[i+len(resultMark):], "\n")
	return json.Unmarshal([]byte(line), v)
}

// serviceMain serves TCP -port on every address until stdin closes: each
// client is greeted and closed, or, with -echo, gets back every line it
// sends for as long as it keeps the connection (an SSH-like session).
func serviceMain(args []string) error {
	fs := flag.NewFlagSet(helperService, flag.ContinueOnError)
	port := fs.Int("port", 0, "TCP port")
	echo := fs.Bool("echo", false, "echo lines instead of greeting")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", *port))
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
				if *echo {
					_, _ = io.Copy(c, c)
					return
				}
				_ = c.SetDeadline(time.Now().Add(2 * time.Second))
				_, _ = io.WriteString(c, greeting)
			}()
		}
	}()
	fmt.Println(labsvc.ReadyMark)
	<-labsvc.UntilStdinCloses()
	return ln.Close()
}

// sessionResult is what the SSH-like client went through, per family.
type sessionResult struct {
	Family   string `json:"family"`
	Rounds   int    `json:"rounds"`   // lines sent and echoed
	Failures int    `json:"failures"` // lines not echoed within the timeout
	Alive    bool   `json:"alive"`    // the connection still worked at the end
	Error    string `json:"error,omitempty"`
}

// sessionMain keeps one TCP connection per address to the echo service,
// for its whole life, and sends a line on each every -every: an
// interactive session. A line not echoed within -timeout is a failure and
// the session is dead from then on (no reconnection: the session's
// survival is what is measured). ReadyMark is printed once every session
// has echoed a line.
func sessionMain(args []string) error {
	fs := flag.NewFlagSet(helperSession, flag.ContinueOnError)
	every := fs.Duration("every", 100*time.Millisecond, "interval between two lines")
	timeout := fs.Duration("timeout", time.Second, "how long a line may take to come back")
	port := fs.Int("port", sessionPort, "the echo service's port")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("want the server's addresses")
	}
	type session struct {
		c  net.Conn
		rd *bufio.Reader
		r  sessionResult
	}
	var ss []*session
	for _, a := range fs.Args() {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(a, fmt.Sprint(*port)), *timeout)
		if err != nil {
			return err
		}
		defer c.Close()
		fam := "IPv4"
		if strings.Contains(a, ":") {
			fam = "IPv6"
		}
		ss = append(ss, &session{c: c, rd: bufio.NewReader(c), r: sessionResult{Family: fam, Alive: true}})
	}
	stop := labsvc.UntilStdinCloses()
	tick := time.NewTicker(*every)
	defer tick.Stop()
	for n, ready := 0, false; ; n++ {
		for _, s := range ss {
			if !s.r.Alive {
				continue
			}
			line := fmt.Sprintf("%s line %d\n", s.r.Family, n)
			_ = s.c.SetDeadline(time.Now().Add(*timeout))
			_, err := io.WriteString(s.c, line)
			var got string
			if err == nil {
				got, err = s.rd.ReadString('\n')
			}
			if err == nil && got != line {
				err = fmt.Errorf("echoed %q for %q", got, line)
			}
			if err != nil {
				s.r.Failures++
				s.r.Alive = false
				s.r.Error = fmt.Sprintf("line %d: %v", n, err)
				continue
			}
			s.r.Rounds++
		}
		if !ready {
			ready = true
			fmt.Println(labsvc.ReadyMark)
		}
		if labsvc.Wait(stop, tick.C) {
			out := make([]sessionResult, len(ss))
			for i, s := range ss {
				out[i] = s.r
			}
			return printResult(out)
		}
	}
}

// attempt is one connection of a restart client.
type attempt struct {
	At    time.Time `json:"at"`   // when the connection was started
	Took  float64   `json:"took"` // seconds until served or failed
	Addr  string    `json:"addr"`
	OK    bool      `json:"ok"`
	Error string    `json:"error,omitempty"`
}

// connectMain connects to -port of every address given, one after the
// other, every -every, until stdin closes: a client of a web service.
// An attempt succeeds when the greeting comes back within -timeout.
// ReadyMark is printed after the first round that succeeded everywhere.
func connectMain(args []string) error {
	fs := flag.NewFlagSet(helperConnect, flag.ContinueOnError)
	every := fs.Duration("every", 50*time.Millisecond, "interval between two rounds")
	timeout := fs.Duration("timeout", time.Second, "how long one attempt may take")
	port := fs.Int("port", restartPort, "the service's port")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("want the server's addresses")
	}
	stop := labsvc.UntilStdinCloses()
	tick := time.NewTicker(*every)
	defer tick.Stop()
	var all []attempt
	for ready := false; ; {
		okAll := true
		for _, a := range fs.Args() {
			at := attempt{At: time.Now(), Addr: a}
			err := greeted(net.JoinHostPort(a, fmt.Sprint(*port)), *timeout)
			at.Took = time.Since(at.At).Seconds()
			if at.OK = err == nil; !at.OK {
				at.Error = err.Error()
				okAll = false
			}
			all = append(all, at)
		}
		if okAll && !ready {
			ready = true
			fmt.Println(labsvc.ReadyMark)
		}
		if labsvc.Wait(stop, tick.C) {
			return printResult(all)
		}
	}
}

// greeted connects to addr and reads the greeting.
func greeted(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if string(b) != greeting {
		return fmt.Errorf("got %q", b)
	}
	return nil
}
