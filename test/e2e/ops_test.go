package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/netns"
	"github.com/portsentry-go/portsentry/internal/syncbuf"
)

// Helpers of the operations tests (reload, restart, -D, failures): signals,
// processes found by namespace, and a stand-in for a real service.

// signal sends sig to the daemon process (ip netns exec execs it, so the
// process started is the daemon itself).
func (d *daemon) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("sending %v to the daemon: %v", sig, err)
	}
}

// waitExit waits for the daemon process to end and returns Wait's error.
func (d *daemon) waitExit(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-d.done:
		return d.err
	case <-time.After(timeout):
		t.Fatalf("daemon still running %v after it was told to stop", timeout)
		return nil
	}
}

// startListener runs `netclient -listen` inside h's namespace: a service
// bound to addr (e.g. ":143", dual stack) that sends reply to each TCP
// client, or answers UDP datagrams with reply (never, when reply is "").
// It returns once the socket is bound, with stop, which kills it (the
// service stops); Cleanup calls stop. extra are more netclient flags (e.g.
// "-delay", "1s").
func startListener(t *testing.T, h host, proto, addr, reply string, extra ...string) (stop func()) {
	t.Helper()
	cmd := h.ns.Command(clientPath, append([]string{"-listen", "-proto", proto, "-addr", addr, "-reply", reply}, extra...)...)
	var stderr syncbuf.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %v: %v", cmd.Args, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		})
	}
	t.Cleanup(stop)
	first := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		first <- line
	}()
	select {
	case line := <-first:
		var l struct {
			Listening bool `json:"listening"`
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil || !l.Listening {
			t.Fatalf("service %s %s in %s did not start: %q %s", proto, addr, h.ns, line, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("service %s %s in %s not listening after 10s: %s", proto, addr, h.ns, stderr.String())
	}
	return stop
}

// nsPids lists the processes in a namespace.
func nsPids(t *testing.T, ns *netns.NS) []int {
	t.Helper()
	pids, err := netns.Pids(ns.Name())
	if err != nil {
		t.Fatal(err)
	}
	return pids
}

// procStat is what the tests read of /proc/PID/stat.
type procStat struct {
	state byte // R, S, Z, …
	ppid  int
	pgrp  int
	sid   int
}

// readProcStat reads /proc/PID/stat; ok is false when the process is gone.
func readProcStat(pid int) (procStat, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, false
	}
	// "pid (comm) state ppid pgrp session …"; comm may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 4 {
		return procStat{}, false
	}
	var st procStat
	st.state = f[0][0]
	st.ppid, _ = strconv.Atoi(f[1])
	st.pgrp, _ = strconv.Atoi(f[2])
	st.sid, _ = strconv.Atoi(f[3])
	return st, true
}

// running reports whether pid is alive (a zombie has ended: it only waits
// to be reaped by whichever process inherited it).
func running(pid int) bool {
	st, ok := readProcStat(pid)
	return ok && st.state != 'Z' && st.state != 'X'
}
