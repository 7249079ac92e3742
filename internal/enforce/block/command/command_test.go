package command

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestExpand(t *testing.T) {
	v4 := Target{Addr: netip.MustParseAddr("10.99.0.1"), Port: 143, Mode: "atcp"}
	tests := []struct {
		name     string
		template string
		t        Target
		want     string
	}{
		{"route", "/sbin/route add -host $TARGET$ reject", v4, "/sbin/route add -host 10.99.0.1 reject"},
		{"target twice", "/sbin/iptables -I INPUT -s $TARGET$ -j DROP && logger blocked $TARGET$", v4,
			"/sbin/iptables -I INPUT -s 10.99.0.1 -j DROP && logger blocked 10.99.0.1"},
		{"all tokens, repeated", "$MODE$ $TARGET$:$PORT$ $PORT$ $MODE$", v4, "atcp 10.99.0.1:143 143 atcp"},
		{"adjacent tokens", "$TARGET$$PORT$$MODE$", v4, "10.99.0.1143atcp"},
		{"hosts.deny", "ALL: $TARGET$ : DENY", v4, "ALL: 10.99.0.1 : DENY"},
		{"no tokens", "/usr/local/bin/alert", v4, "/usr/local/bin/alert"},
		{"unknown and partial tokens kept", "$FOO$ $TARGET $PORT$$", v4, "$FOO$ $TARGET 143$"},
		{"lower case is not a token", "$target$", v4, "$target$"},
		{"mapped shown as ipv4", "ALL: $TARGET$", Target{Addr: netip.MustParseAddr("::ffff:192.0.2.7")}, "ALL: 192.0.2.7"},
		{"ipv6 compressed", "ip6tables -s $TARGET$", Target{Addr: netip.MustParseAddr("2001:0db8:0000:0000:0000:0000:0000:0001")}, "ip6tables -s 2001:db8::1"},
		{"zone dropped", "ip -6 route add blackhole $TARGET$", Target{Addr: netip.MustParseAddr("fe80::1%eth0")}, "ip -6 route add blackhole fe80::1"},
		{"hostile zone dropped", "echo $TARGET$", Target{Addr: netip.MustParseAddr("fe80::1%x;$(id)`id`")}, "echo fe80::1"},
		{"port zero and max", "$PORT$", Target{Port: 65535}, "65535"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Expand(tt.template, tt.t)); diff != "" {
				t.Errorf("Expand(%q) mismatch (-want +got):\n%s", tt.template, diff)
			}
		})
	}
}

// FuzzExpand: whatever the address, what $TARGET$ becomes is the address as
// net/netip prints it, without zone or mapping, so it holds no shell
// metacharacter beyond ':' and '.'.
func FuzzExpand(f *testing.F) {
	f.Add([]byte{10, 99, 0, 1}, "")
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1}, "")
	f.Add([]byte{0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, "$(reboot)")
	f.Fuzz(func(t *testing.T, raw []byte, zone string) {
		var a netip.Addr
		switch len(raw) {
		case 4:
			a = netip.AddrFrom4([4]byte(raw))
		case 16:
			a = netip.AddrFrom16([16]byte(raw)).WithZone(zone)
		default:
			return
		}
		got := Expand("<$TARGET$>", Target{Addr: a})
		want := "<" + a.Unmap().WithZone("").String() + ">"
		if got != want {
			t.Fatalf("Expand of %v = %q, want %q", a, got, want)
		}
		for _, c := range got[1 : len(got)-1] {
			if !strings.ContainsRune("0123456789abcdef:.", c) {
				t.Fatalf("Expand of %v = %q: holds %q", a, got, c)
			}
		}
	})
}

func TestShellRun(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		line    string
		wantErr bool
		inErr   []string // substrings the error must carry
	}{
		{"success", "true", false, nil},
		{"success with output", "echo hello; echo warn >&2", false, nil},
		{"pipes and && work", "echo a | grep -q a && test -d " + dir, false, nil},
		{"non-zero exit", "echo first line; echo 'iptables: Permission denied' >&2; exit 3",
			true, []string{"exit status 3", "first line iptables: Permission denied"}},
		{"not found", "/nonexistent/portsentry-kill-route 10.0.0.1",
			true, []string{"exit status 127", "/nonexistent/portsentry-kill-route"}},
		{"exit without output", "exit 1", true, []string{"exit status 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Shell{Timeout: 20 * time.Second}.Run(context.Background(), tt.line)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Run(%q) error = %v, want error %v", tt.line, err, tt.wantErr)
			}
			if err == nil {
				return
			}
			for _, s := range tt.inErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Run(%q) error %q lacks %q", tt.line, err, s)
				}
			}
			// The error goes on one log line: output newlines are folded.
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Errorf("Run(%q) error spans lines: %q", tt.line, err)
			}
			if errors.Is(err, ErrTimeout) {
				t.Errorf("Run(%q) error %v wraps ErrTimeout", tt.line, err)
			}
		})
	}
}

func TestShellRunExitCode(t *testing.T) {
	err := Shell{Timeout: 20 * time.Second}.Run(context.Background(), "exit 42")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 42 {
		t.Errorf("Run(exit 42) = %v, want an *exec.ExitError with code 42", err)
	}
}

func TestShellRunOutputTail(t *testing.T) {
	// 3000 bytes of output: the error keeps the end, bounded.
	line := `i=0; while [ $i -lt 100 ]; do echo "line-$i-aaaaaaaaaaaaaaaaaaaa"; i=$((i+1)); done; echo THE-END; exit 2`
	err := Shell{Timeout: 20 * time.Second}.Run(context.Background(), line)
	if err == nil {
		t.Fatal("Run succeeded, want exit status 2")
	}
	msg := err.Error()
	if !strings.HasSuffix(msg, "THE-END") {
		t.Errorf("error does not end with the last output: %q", msg)
	}
	if strings.Contains(msg, "line-0-") {
		t.Errorf("error keeps the start of a long output: %q", msg)
	}
	if len(msg) > maxOutput+100 {
		t.Errorf("error is %d bytes long, want about %d", len(msg), maxOutput)
	}
}

// procGone reports whether pid has exited (it may linger as a zombie until
// its new parent reaps it).
func procGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

func TestShellRunTimeoutKillsProcessGroup(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc")
	}
	pidFile := filepath.Join(t.TempDir(), "bg.pid")
	line := "sleep 30 & echo $! > " + pidFile + "; sleep 30"
	start := time.Now()
	err := Shell{Timeout: 200 * time.Millisecond}.Run(context.Background(), line)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Run = %v, want ErrTimeout", err)
	}
	// Not a speed claim: only that the shell did not run its 30 s course.
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("Run returned after %v: the timeout did not stop the command", d)
	}
	b, rerr := os.ReadFile(pidFile)
	if rerr != nil {
		t.Fatalf("background pid not written: %v", rerr)
	}
	pid, rerr := strconv.Atoi(strings.TrimSpace(string(b)))
	if rerr != nil {
		t.Fatalf("bad pid %q: %v", b, rerr)
	}
	// SIGKILL was sent to the group before Run returned; give the kernel a
	// moment to finish the kill.
	for i := 0; i < 100 && !procGone(pid); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if !procGone(pid) {
		t.Errorf("background sleep (pid %d) outlived the timeout", pid)
	}
}

func TestShellRunParentContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := (Shell{Timeout: 20 * time.Second}).Run(ctx, "sleep 30"); err == nil {
		t.Error("Run with a cancelled context succeeded")
	}
}

// TestShellRunBackgroundJob: a template that starts a job in the background
// and returns, as system() allowed in 1.2, is a success; the job is not
// killed and may still write its output.
func TestShellRunBackgroundJob(t *testing.T) {
	done := filepath.Join(t.TempDir(), "done")
	line := "(sleep 0.3; echo late output; echo ok > " + done + ") &"
	if err := (Shell{Timeout: 20 * time.Second}).Run(context.Background(), line); err != nil {
		t.Fatalf("Run(%q) = %v, want success", line, err)
	}
	for i := 0; i < 200; i++ {
		if b, err := os.ReadFile(done); err == nil && string(b) == "ok\n" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Error("the background job did not finish its work")
}

// TestShellRunAttackerTextLiteral: only Expand's output reaches the shell,
// and an IPv6 target (colons), a mapped one, or one with a hostile zone runs
// as the literal address.
func TestShellRunAttackerTextLiteral(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	canary := filepath.Join(dir, "pwned")
	template := "printf '%s\\n' $TARGET$ >> " + out
	tests := []struct {
		addr netip.Addr
		want string
	}{
		{netip.MustParseAddr("2001:db8::1"), "2001:db8::1"},
		{netip.MustParseAddr("::ffff:10.0.0.1"), "10.0.0.1"},
		{netip.MustParseAddr("fe80::1%eth0;touch " + canary), "fe80::1"},
		{netip.MustParseAddr("fe80::2%$(touch " + canary + ")"), "fe80::2"},
		{netip.MustParseAddr("::"), "::"},
	}
	var want []string
	for _, tt := range tests {
		line := Expand(template, Target{Addr: tt.addr})
		if err := (Shell{Timeout: 20 * time.Second}).Run(context.Background(), line); err != nil {
			t.Fatalf("Run(%q) = %v", line, err)
		}
		want = append(want, tt.want)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, strings.Fields(string(b))); diff != "" {
		t.Errorf("shell saw (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(canary); err == nil {
		t.Error("text from a zone was run by the shell")
	}
}

// TestSimple: only a line with nothing for a shell to do runs without
// /bin/sh; anything with quoting, expansion, redirection, operators, globs,
// comments, assignments or a shell builtin first stays the shell's.
func TestSimple(t *testing.T) {
	for _, tt := range []struct {
		line string
		want []string
	}{
		{"iptables -I INPUT -s 192.0.2.1 -j DROP", []string{"iptables", "-I", "INPUT", "-s", "192.0.2.1", "-j", "DROP"}},
		{"/sbin/route add -host 192.0.2.1 reject", []string{"/sbin/route", "add", "-host", "192.0.2.1", "reject"}},
		{"  ip6tables\t-I INPUT -s 2001:db8::1 -j DROP ", []string{"ip6tables", "-I", "INPUT", "-s", "2001:db8::1", "-j", "DROP"}},
		{"/usr/local/bin/notify host=192.0.2.1 port=22 mode=atcp x,y+z@w%v", []string{"/usr/local/bin/notify", "host=192.0.2.1", "port=22", "mode=atcp", "x,y+z@w%v"}},
		{"/bin/true", []string{"/bin/true"}},
		{"", nil},
		{"   ", nil},
		{"true", nil},
		{"echo 192.0.2.1", nil},
		{"test -d /tmp", nil},
		{"[ -d /tmp ]", nil},
		{"exec iptables -L", nil},
		{"kill 1", nil},
		{"FOO=1 iptables -L", nil},
		{"iptables -L; reboot", nil},
		{"iptables -L && x", nil},
		{"iptables -L | x", nil},
		{"iptables -L > /tmp/x", nil},
		{"iptables -L &", nil},
		{"iptables $HOME", nil},
		{"iptables `id`", nil},
		{"iptables 'a b'", nil},
		{`iptables "a"`, nil},
		{`iptables a\ b`, nil},
		{"iptables *", nil},
		{"iptables a?", nil},
		{"iptables [ab]", nil},
		{"iptables ~/x", nil},
		{"iptables # comment", nil},
		{"iptables {a,b}", nil},
		{"iptables (x)", nil},
		{"iptables !x", nil},
		{"iptables -L\nreboot", nil},
	} {
		got, ok := Simple(tt.line)
		if ok != (tt.want != nil) || strings.Join(got, "|") != strings.Join(tt.want, "|") {
			t.Errorf("Simple(%q) = %q, %v; want %q", tt.line, got, ok, tt.want)
		}
	}
}

// TestShellRunDirect: a simple line runs its program directly, found on
// PATH, with the words as arguments and the program's name as argv[0]; a
// program that is not there leaves the line to the shell, which fails as
// before (127).
func TestShellRunDirect(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	prog := filepath.Join(dir, "ps-kill-route")
	script := "#!/bin/sh\nprintf '%s|' \"$0\" \"$@\" > " + out + "\nexit 0\n"
	if err := os.WriteFile(prog, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	sh := Shell{Timeout: 20 * time.Second}
	if err := sh.Run(context.Background(), "ps-kill-route -I INPUT -s 2001:db8::1 -j DROP"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	// $0 of a script started by name is the path execve found it at.
	if want := prog + "|-I|INPUT|-s|2001:db8::1|-j|DROP|"; string(b) != want {
		t.Errorf("ran with %q, want %q", b, want)
	}
	cmd, _ := command(context.Background(), "ps-kill-route -L")
	if cmd.Path != prog || cmd.Args[0] != "ps-kill-route" {
		t.Errorf("command: path %q, argv[0] %q; want %q run as ps-kill-route", cmd.Path, cmd.Args[0], prog)
	}
	if cmd, _ := command(context.Background(), "ps-kill-route -L; true"); cmd.Path != "/bin/sh" {
		t.Errorf("a line with an operator runs as %q, want /bin/sh", cmd.Path)
	}
	err = sh.Run(context.Background(), "ps-no-such-program 192.0.2.1")
	if err == nil || !strings.Contains(err.Error(), "exit status 127") {
		t.Errorf("missing program: %v, want the shell's exit status 127", err)
	}
}

// writeProgram writes a program at dir/name that appends dir to out.
func writeProgram(t *testing.T, dir, name, out string) {
	t.Helper()
	script := "#!/bin/sh\nprintf '%s\\n' " + dir + " >> " + out + "\n"
	if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

// ranFrom returns the directories the programs of writeProgram ran from.
func ranFrom(t *testing.T, out string) []string {
	t.Helper()
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// TestShellRunProgramGone: a program run directly whose path was
// remembered, and that is no longer there, is searched for again at once:
// the line runs the one PATH holds now, as a shell would have.
func TestShellRunProgramGone(t *testing.T) {
	first, second, out := t.TempDir(), t.TempDir(), filepath.Join(t.TempDir(), "out")
	t.Setenv("PATH", first+string(os.PathListSeparator)+second+string(os.PathListSeparator)+os.Getenv("PATH"))
	writeProgram(t, first, "ps-gone", out)
	writeProgram(t, second, "ps-gone", out)
	sh := Shell{Timeout: 20 * time.Second}
	if err := sh.Run(context.Background(), "ps-gone 192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(first, "ps-gone")); err != nil {
		t.Fatal(err)
	}
	if err := sh.Run(context.Background(), "ps-gone 192.0.2.1"); err != nil {
		t.Fatalf("after the program moved: %v", err)
	}
	if diff := cmp.Diff([]string{first, second}, ranFrom(t, out)); diff != "" {
		t.Errorf("ran from (-want +got):\n%s", diff)
	}
	// Gone from PATH altogether: the shell runs the line and fails as
	// it would have.
	if err := os.Remove(filepath.Join(second, "ps-gone")); err != nil {
		t.Fatal(err)
	}
	if err := sh.Run(context.Background(), "ps-gone 192.0.2.1"); err == nil || !strings.Contains(err.Error(), "exit status 127") {
		t.Errorf("program gone: %v, want the shell's exit status 127", err)
	}
}

// TestShellRunProgramInstalledEarlier: a program installed in an earlier
// PATH directory than the one remembered is run from the line after the
// next on (the search that finds it follows a line that used the path
// remembered), not never.
func TestShellRunProgramInstalledEarlier(t *testing.T) {
	first, second, out := t.TempDir(), t.TempDir(), filepath.Join(t.TempDir(), "out")
	t.Setenv("PATH", first+string(os.PathListSeparator)+second+string(os.PathListSeparator)+os.Getenv("PATH"))
	writeProgram(t, second, "ps-shadowed", out)
	sh := Shell{Timeout: 20 * time.Second}
	run := func() {
		t.Helper()
		if err := sh.Run(context.Background(), "ps-shadowed 192.0.2.1"); err != nil {
			t.Fatal(err)
		}
	}
	run()
	writeProgram(t, first, "ps-shadowed", out)
	run()
	run()
	got := ranFrom(t, out)
	if len(got) != 3 || got[0] != second || got[2] != first {
		t.Errorf("ran from %q, want %s first and %s last", got, second, first)
	}
}

// TestProgramsBounded: however many programs are searched for, the cache
// holds at most programsMax.
func TestProgramsBounded(t *testing.T) {
	c := programCache{m: map[programKey]string{}}
	for i := range programsMax * 3 {
		name := "sh"
		if i%2 == 1 {
			name = "ls"
		}
		t.Setenv("PATH", strconv.Itoa(i)+string(os.PathListSeparator)+"/bin:/usr/bin")
		if _, err := c.search(name); err != nil {
			t.Fatal(err)
		}
		if len(c.m) > programsMax {
			t.Fatalf("after %d searches the cache holds %d, want at most %d", i+1, len(c.m), programsMax)
		}
	}
	if _, ok := c.lookup("ls"); !ok {
		t.Error("the last search is not remembered")
	}
}
