//go:build linux

// The server refuses every peer where it cannot read credentials, so its
// tests run where it can.

package control

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portsentry-go/portsentry/internal/enforce/bans"
)

// fakeDaemon is a Handler over an in-memory ban store, serialized by a
// mutex as the daemon's loop serializes its requests.
type fakeDaemon struct {
	mu       sync.Mutex
	store    *bans.Store
	blockErr error
	panicOn  string
	clock    atomic.Int64 // Unix nanoseconds
}

func (f *fakeDaemon) setNow(t time.Time) { f.clock.Store(t.UnixNano()) }

func newFake(t *testing.T) *fakeDaemon {
	f := &fakeDaemon{}
	f.setNow(t0)
	s, err := bans.Open("", bans.Policy{Base: time.Hour}, func() time.Time { return time.Unix(0, f.clock.Load()).UTC() })
	if err != nil {
		t.Fatal(err)
	}
	f.store = s
	return f
}

func (f *fakeDaemon) List() []bans.Ban {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.panicOn == "list" {
		panic("boom")
	}
	return f.store.Active()
}

func (f *fakeDaemon) Block(a netip.Addr, d time.Duration, reason string) (bans.Ban, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.blockErr != nil {
		return bans.Ban{}, f.blockErr
	}
	return f.store.BanFor(a, d, reason), nil
}

func (f *fakeDaemon) Unblock(p netip.Prefix) ([]bans.Ban, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.store.Unban(p), nil
}

func (f *fakeDaemon) Status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Status{Version: "test", PID: 42, Started: t0, Modes: []string{"atcp", "audp"}, Blocker: "nftables", Bans: f.store.Len(), Sources: 7, Events: 1000, Dropped: 3}
}

// serve starts a server on a fresh socket and stops it when the test
// ends.
func serve(t *testing.T, h Handler) (string, *Server) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run", "portsentry", "portsentry.sock")
	s, err := Listen(path, h, nil)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return path, s
}

func dial(t *testing.T, path string) *Client {
	t.Helper()
	c, err := Dial(path)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRoundTrip(t *testing.T) {
	f := newFake(t)
	path, _ := serve(t, f)
	c := dial(t, path)

	got, err := c.Block(netip.MustParseAddr("192.0.2.7"), time.Hour, "")
	if err != nil {
		t.Fatalf("Block: %v", err)
	}
	want := bans.Ban{Addr: netip.MustParseAddr("192.0.2.7"), Reason: "manual", Since: t0, Expires: t0.Add(time.Hour), Count: 1}
	if diff := cmp.Diff(want, got, addrEq); diff != "" {
		t.Errorf("Block (-want +got):\n%s", diff)
	}
	f.setNow(t0.Add(time.Second))
	if _, err := c.Block(netip.MustParseAddr("::ffff:192.0.2.8"), 0, "seen on the web log"); err != nil {
		t.Fatalf("Block: %v", err)
	}
	f.setNow(t0.Add(2 * time.Second))
	if _, err := c.Block(netip.MustParseAddr("2001:db8::7"), 7*24*time.Hour, "manual"); err != nil {
		t.Fatalf("Block: %v", err)
	}

	list, err := c.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if diff := cmp.Diff(f.store.Active(), list, addrEq); diff != "" {
		t.Errorf("List (-daemon +client):\n%s", diff)
	}
	if len(list) != 3 || list[1].Addr != netip.MustParseAddr("192.0.2.8") || !list[1].Permanent() {
		t.Errorf("List = %+v", list)
	}

	removed, err := c.Unblock(netip.MustParsePrefix("192.0.2.0/24"))
	if err != nil {
		t.Fatalf("Unblock: %v", err)
	}
	if len(removed) != 2 || removed[0].Addr != netip.MustParseAddr("192.0.2.7") {
		t.Errorf("Unblock removed %+v", removed)
	}
	if removed, err := c.Unblock(netip.MustParsePrefix("203.0.113.1/32")); err != nil || len(removed) != 0 {
		t.Errorf("Unblock of nothing = %+v, %v", removed, err)
	}
	if list, err := c.List(); err != nil || len(list) != 1 {
		t.Errorf("List after Unblock = %+v, %v", list, err)
	}

	st, err := c.Status()
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	wantSt := Status{Version: "test", PID: 42, Started: t0, Modes: []string{"atcp", "audp"}, Blocker: "nftables", Bans: 1, Sources: 7, Events: 1000, Dropped: 3}
	if diff := cmp.Diff(wantSt, st); diff != "" {
		t.Errorf("Status (-want +got):\n%s", diff)
	}
}

func TestEmptyList(t *testing.T) {
	path, _ := serve(t, newFake(t))
	list, err := dial(t, path).List()
	if err != nil || len(list) != 0 {
		t.Errorf("List = %+v, %v", list, err)
	}
}

func TestHandlerErrorReported(t *testing.T) {
	f := newFake(t)
	f.blockErr = errors.New("192.0.2.7 is on the ignore list: not blocking it")
	path, _ := serve(t, f)
	_, err := dial(t, path).Block(netip.MustParseAddr("192.0.2.7"), 0, "")
	var re *RemoteError
	if !errors.As(err, &re) || re.Code != codeFailed || !strings.Contains(err.Error(), "ignore list") {
		t.Errorf("Block error = %v, want the handler's", err)
	}
}

func TestHandlerPanicAnswered(t *testing.T) {
	f := newFake(t)
	f.panicOn = "list"
	path, _ := serve(t, f)
	if _, err := dial(t, path).List(); err == nil || !strings.Contains(err.Error(), "internal error") {
		t.Errorf("List with a panicking handler: %v", err)
	}
	// The server is still up.
	f.mu.Lock()
	f.panicOn = ""
	f.mu.Unlock()
	if _, err := dial(t, path).List(); err != nil {
		t.Errorf("List after a panic: %v", err)
	}
}

// rawExchange sends line as is and returns the response line.
func rawExchange(t *testing.T, path, line string) string {
	t.Helper()
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, line); err != nil {
		t.Fatal(err)
	}
	conn.(*net.UnixConn).CloseWrite()
	resp, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil && err != io.EOF {
		t.Fatalf("reading the response to %q: %v", line, err)
	}
	return resp
}

func TestBadRequests(t *testing.T) {
	path, _ := serve(t, newFake(t))
	tests := []struct {
		line, want string
	}{
		{"hello\n", `not a JSON object`},
		{`{"op":"list"} {"op":"list"}` + "\n", `data after its JSON object`},
		{`{}` + "\n", `no \"op\"`},
		{`{"op":"nuke"}` + "\n", `unknown op \"nuke\"`},
		{`{"op":"list","force":true}` + "\n", `unknown field \"force\"`},
		{`{"op":"list","addr":"192.0.2.1"}` + "\n", `list: unexpected field \"addr\"`},
		{`{"op":"block"}` + "\n", `block: bad address \"\"`},
		{`{"op":"block","addr":"192.0.2.0/24"}` + "\n", `block: bad address`},
		{`{"op":"block","addr":"0.0.0.0"}` + "\n", `not a host address`},
		{`{"op":"block","addr":"192.0.2.1","duration":"-1h"}` + "\n", `negative duration`},
		{`{"op":"block","addr":"192.0.2.1","duration":"soon"}` + "\n", `bad duration \"soon\"`},
		{`{"op":"block","addr":"192.0.2.1","reason":"a\nb"}` + "\n", `control characters`},
		{`{"op":"block","addr":"192.0.2.1","reason":"` + strings.Repeat("x", 201) + `"}` + "\n", `reason longer than 200`},
		{`{"op":"block","addr":"192.0.2.1","target":"192.0.2.1"}` + "\n", `block: unexpected field \"target\"`},
		{`{"op":"unblock"}` + "\n", `unblock: empty address`},
		{`{"op":"unblock","target":"10.0.0.0/40"}` + "\n", `unblock: bad prefix`},
		{strings.Repeat(" ", maxRequest+10) + "\n", `request longer than 4096 bytes`},
		{`{"op":"list"}`, `"ok":true`}, // no newline: the half-close ends it
	}
	for _, tt := range tests {
		got := rawExchange(t, path, tt.line)
		if !strings.Contains(got, tt.want) {
			t.Errorf("%.60q: response %s, want it to contain %s", tt.line, got, tt.want)
		}
		if tt.want != `"ok":true` && !strings.Contains(got, `"code":"bad_request"`) {
			t.Errorf("%.60q: response %s is not a bad_request", tt.line, got)
		}
	}
	// A client's error matches ErrBadRequest.
	_, err := dial(t, path).Unblock(netip.Prefix{})
	if !errors.Is(err, ErrBadRequest) {
		t.Errorf("Unblock of an invalid prefix: %v, want ErrBadRequest", err)
	}
}

// A client that connects and says nothing is dropped without an answer
// and without disturbing the others.
func TestSilentConnection(t *testing.T) {
	path, _ := serve(t, newFake(t))
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if got := rawExchange(t, path, ""); got != "" {
		t.Errorf("empty request answered %q", got)
	}
	if _, err := dial(t, path).Status(); err != nil {
		t.Errorf("Status: %v", err)
	}
}

func TestSocketFileModes(t *testing.T) {
	path, _ := serve(t, newFake(t))
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	// 0755 as the umask allows: never more.
	if extra := di.Mode().Perm() &^ 0o755; extra != 0 || di.Mode().Perm()&0o700 != 0o700 {
		t.Errorf("directory mode %v, want 0755 (less by the umask)", di.Mode().Perm())
	}
	// No temporary name is left beside it.
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Errorf("directory holds %d entries, want the socket alone", len(ents))
	}
}

func TestStaleSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "portsentry.sock")

	// A socket whose daemon died: nobody listens, the file stays.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket not left: %v", err)
	}
	s, err := Listen(path, newFake(t), nil)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()

	// A live one: refused, and left working.
	if _, err := Listen(path, newFake(t), nil); !errors.Is(err, ErrInUse) {
		t.Errorf("Listen over a live socket: %v, want ErrInUse", err)
	}
	if _, err := dial(t, path).Status(); err != nil {
		t.Errorf("the live daemon stopped answering: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket left after Close: %v", err)
	}

	// Not a socket: refused and untouched.
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path, newFake(t), nil); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Error("regular file modified")
	}
}

// Close removes the socket file only if it is still the one it bound.
func TestCloseLeavesAReplacedSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "portsentry.sock")
	s, err := Listen(path, newFake(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	other, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("Close removed another daemon's socket: %v", err)
	}
	if err := s.Serve(context.Background()); err != nil {
		t.Errorf("Serve after Close = %v, want nil", err)
	}
}

func TestServeStopsWhenContextDone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "portsentry.sock")
	s, err := Listen(path, newFake(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after its context was cancelled")
	}
	if _, err := Dial(path); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Dial after stop: %v, want ErrNotRunning", err)
	}
}

func TestDialNotRunning(t *testing.T) {
	if _, err := Dial(filepath.Join(t.TempDir(), "none.sock")); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Dial of a missing socket: %v, want ErrNotRunning", err)
	}
}

func TestConcurrentClients(t *testing.T) {
	f := newFake(t)
	path, _ := serve(t, f)
	var wg sync.WaitGroup
	for g := range 20 {
		wg.Go(func() {
			for i := range 10 {
				c, err := Dial(path)
				if err != nil {
					t.Error(err)
					return
				}
				a := netip.AddrFrom4([4]byte{10, 0, byte(g), byte(i)})
				switch i % 3 {
				case 0:
					_, err = c.Block(a, time.Hour, "")
				case 1:
					_, err = c.List()
				case 2:
					_, err = c.Unblock(netip.PrefixFrom(a, 32))
				}
				c.Close()
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if n := f.store.Len(); n != 20*4 {
		t.Errorf("%d bans after the storm, want %d", n, 20*4)
	}
}

// A Client makes one connection per call.
func TestClientReuse(t *testing.T) {
	path, _ := serve(t, newFake(t))
	c := dial(t, path)
	for range 3 {
		if _, err := c.Status(); err != nil {
			t.Fatalf("Status: %v", err)
		}
	}
}

func TestAllowed(t *testing.T) {
	s := &Server{uid: 1000}
	for _, tt := range []struct {
		uid  int
		want bool
	}{{0, true}, {1000, true}, {1001, false}, {65534, false}} {
		if got := s.allowed(peer{uid: tt.uid}); got != tt.want {
			t.Errorf("allowed(uid %d) = %v, want %v", tt.uid, got, tt.want)
		}
	}
}

func TestPeerCred(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("unix", path)
		if err == nil {
			time.Sleep(100 * time.Millisecond)
			c.Close()
		}
	}()
	conn, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	p, err := peerCred(conn)
	if err != nil {
		t.Fatalf("peerCred: %v", err)
	}
	if p.uid != os.Getuid() || p.pid != os.Getpid() || p.gid != os.Getgid() {
		t.Errorf("peerCred = %+v, want uid %d pid %d gid %d", p, os.Getuid(), os.Getpid(), os.Getgid())
	}
}

// helperEnv makes the test binary a control client (see
// TestHelperClient), run under another uid by TestOtherUserRefused.
const helperEnv = "PORTSENTRY_CONTROL_HELPER_SOCKET"

func TestHelperClient(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("helper process for TestOtherUserRefused")
	}
	c, err := Dial(path)
	if err == nil {
		_, err = c.Block(netip.MustParseAddr("192.0.2.66"), 0, "")
	}
	var re *RemoteError
	switch {
	case err == nil:
		fmt.Println("RESULT ok")
	case errors.As(err, &re) && errors.Is(err, ErrDenied):
		fmt.Println("RESULT remote-denied")
	case errors.Is(err, ErrDenied):
		fmt.Println("RESULT connect-denied")
	default:
		fmt.Println("RESULT error", err)
	}
}

// TestOtherUserRefused runs a client as nobody: the socket's mode stops
// it at connect; with the mode opened up, the peer check stops it.
func TestOtherUserRefused(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	// A directory every user may traverse, holding a copy of this test
	// binary that nobody may run.
	dir, err := os.MkdirTemp("", "control-peer-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "control.test")
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	f := newFake(t)
	path := filepath.Join(dir, "run", "portsentry.sock")
	s, err := Listen(path, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() { cancel(); <-done }()

	run := func() string {
		cmd := exec.Command(bin, "-test.run=^TestHelperClient$", "-test.v")
		cmd.Env = append(os.Environ(), helperEnv+"="+path)
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helper: %v\n%s", err, out)
		}
		for l := range strings.Lines(string(out)) {
			if r, ok := strings.CutPrefix(l, "RESULT "); ok {
				return strings.TrimSpace(r)
			}
		}
		t.Fatalf("helper printed no result:\n%s", out)
		return ""
	}
	if got := run(); got != "connect-denied" {
		t.Errorf("nobody against the 0600 socket: %s, want connect-denied", got)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if got := run(); got != "remote-denied" {
		t.Errorf("nobody against a 0666 socket: %s, want remote-denied (the peer check)", got)
	}
	if f.store.Len() != 0 {
		t.Error("another user's block went through")
	}
}
