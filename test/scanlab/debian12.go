package main

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/portsentry-go/portsentry/test/internal/labproc"
)

// The program under test in one scan: this repository's daemon, or
// Debian's PortSentry 1.2 (-debian12), the program it replaces.
const (
	daemonOurs = "portsentry"
	daemon12   = "PortSentry 1.2"
)

// debian12 is Debian's portsentry 1.2 binary, extracted from the package
// (never installed: the host's /etc and /usr are left alone).
type debian12 struct {
	bin     string // usr/sbin/portsentry of the extracted package
	version string // the package's version, e.g. 1.2-14+b1
}

// debianDir is where scripts/test-deps extracts Debian's package (for the
// configuration test); scanlab uses, or makes, the same copy.
const debianDir = ".cache/debian-portsentry"

// fetchDebian12 returns Debian's portsentry 1.2 from root's .cache,
// downloading it with apt-get and extracting it with dpkg-deb when it is
// not there yet.
func fetchDebian12(ctx context.Context, root string) (*debian12, error) {
	dir := filepath.Join(root, debianDir)
	bin := filepath.Join(dir, "usr", "sbin", "portsentry")
	if _, err := os.Stat(bin); err != nil {
		tmp, err := os.MkdirTemp("", "pslab-deb-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		// apt-get download drops privileges to _apt when it can.
		if err := os.Chmod(tmp, 0o777); err != nil {
			return nil, err
		}
		get := exec.CommandContext(ctx, "apt-get", "download", "portsentry")
		get.Dir = tmp
		if out, err := get.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("apt-get download portsentry (run apt-get update first?): %v\n%s", err, out)
		}
		debs, _ := filepath.Glob(filepath.Join(tmp, "portsentry_1.2*.deb"))
		if len(debs) == 0 {
			return nil, errors.New("apt-get download portsentry fetched no portsentry_1.2*.deb")
		}
		// dpkg-deb makes dir but not its parents (.cache in a fresh clone).
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], dir).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("dpkg-deb -x %s: %v\n%s", filepath.Base(debs[0]), err, out)
		}
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("Debian's portsentry package has no usr/sbin/portsentry: %w", err)
	}
	return &debian12{bin: bin, version: debianVersion(filepath.Join(dir, "usr", "share", "doc", "portsentry"))}, nil
}

var changelogVersionRE = regexp.MustCompile(`^portsentry \(([^)]+)\)`)

// debianVersion reads the package's version from its changelog (the
// binNMU's, which names a +bN rebuild, first).
func debianVersion(doc string) string {
	for _, name := range []string{"changelog.Debian.amd64.gz", "changelog.Debian.gz"} {
		f, err := os.Open(filepath.Join(doc, name))
		if err != nil {
			continue
		}
		defer f.Close()
		z, err := gzip.NewReader(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(z)
		if sc.Scan() {
			if m := changelogVersionRE.FindStringSubmatch(sc.Text()); m != nil {
				return m[1]
			}
		}
	}
	return "1.2 (version unknown)"
}

// start12Script runs in T under unshare (a mount and a PID namespace of its
// own): 1.2 reads only /etc/portsentry/portsentry.conf, so an overlay over
// /etc, visible to this process tree only, holds the scan's file there;
// 1.2 always puts itself in the background, so the shell stays as the PID
// namespace's init, whose end (the lab kills unshare, which kills it) ends
// every 1.2 process. Arguments: upper dir, overlay work dir, config file,
// binary, then one mode flag per process (1.2 runs one mode a process).
const start12Script = `set -e
mount -t overlay scanlab-etc -o "lowerdir=/etc,upperdir=$1,workdir=$2" /etc
mkdir -p /etc/portsentry
cp "$3" /etc/portsentry/portsentry.conf
conf=$3 bin=$4
shift 4
for mode in "$@"; do "$bin" "$mode"; done
echo scanlab: portsentry 1.2 started
exec sleep 2147483647
`

// startDebian12 starts PortSentry 1.2 in T on the scan's configuration,
// one process per mode, and waits until its raw sockets are open (1.2 logs
// only to syslog, which the lab has not got).
func (sc *scanRun) startDebian12(conf string) (*labproc.Proc, error) {
	upper, work := filepath.Join(sc.dir, "etc-upper"), filepath.Join(sc.dir, "etc-work")
	for _, d := range []string{upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, err
		}
	}
	argv := []string{"unshare", "--mount", "--pid", "--fork", "--kill-child", "/bin/sh", "-c", start12Script, "sh", upper, work, conf, sc.legacy.bin}
	for _, m := range sc.o.modes {
		argv = append(argv, "-"+m)
	}
	p, err := labproc.Start("portsentry 1.2", false, sc.l.T.ns.Argv(argv...)...)
	if err != nil {
		return nil, err
	}
	sc.undo = append(sc.undo, func() {
		p.Kill()
		_ = os.WriteFile(filepath.Join(sc.dir, "daemon.log"), []byte(p.Output()), 0o644)
	})
	if err := p.WaitOutput(sc.ctx, "portsentry 1.2 started", 15*time.Second); err != nil {
		return nil, fmt.Errorf("starting portsentry 1.2: %w", err)
	}
	// Each process checks its ports (binding each once), then opens its
	// raw socket: one per mode, IPPROTO_TCP (6) or IPPROTO_UDP (17).
	want := map[string]bool{}
	for _, m := range sc.o.modes {
		if strings.HasSuffix(m, "tcp") {
			want["0006"] = true
		} else {
			want["0011"] = true
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		raw, err := labproc.Run(sc.ctx, 5*time.Second, sc.l.T.ns.Argv("cat", "/proc/net/raw")...)
		if err != nil {
			return nil, err
		}
		if rawSocketsOpen(raw, want) {
			break
		}
		if p.Exited() {
			return nil, fmt.Errorf("portsentry 1.2 exited:\n%s", p.Tail())
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("portsentry 1.2 opened no raw socket within 15 s:\n%s", p.Tail())
		}
		select {
		case <-sc.ctx.Done():
			return nil, sc.ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return p, nil
}

// rawSocketsOpen reports whether /proc/net/raw lists a socket for every
// protocol in want (hexadecimal, as the local address's port column
// shows it: 0006 for TCP, 0011 for UDP).
func rawSocketsOpen(procNetRaw string, want map[string]bool) bool {
	have := map[string]bool{}
	for _, line := range strings.Split(procNetRaw, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		if _, proto, ok := strings.Cut(f[1], ":"); ok {
			have[proto] = true
		}
	}
	for p := range want {
		if !have[p] {
			return false
		}
	}
	return true
}
