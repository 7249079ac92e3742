//go:build linux

package netns

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NS is a named network namespace and an open descriptor on it. Its
// methods may be called from any goroutine.
type NS struct {
	name string
	fd   int // open on Dir/name; -1 once closed
}

// New creates the namespace ID(prefix) + "-" + role.
func New(prefix, role string) (*NS, error) { return Create(ID(prefix) + "-" + role) }

// Create creates a namespace called name, with its loopback up and no
// other link or route.
func Create(name string) (*NS, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	shareDir()
	path := filepath.Join(Dir, name)
	err := onThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
		}
		f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
		if err != nil {
			return err
		}
		f.Close()
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(self, path, "none", unix.MS_BIND, ""); err != nil {
			os.Remove(path)
			return fmt.Errorf("bind-mounting it on %s: %w", path, err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("netns: creating %s: %w", name, err)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		_ = Delete(name)
		return nil, fmt.Errorf("netns: opening %s: %w", path, err)
	}
	n := &NS{name: name, fd: fd}
	if err := n.LinkUp("lo"); err != nil {
		_ = n.Delete()
		return nil, err
	}
	return n, nil
}

func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("netns: bad namespace name %q", name)
	}
	return nil
}

var shareMu sync.Mutex

// shareDir makes Dir a shared mount point, as `ip netns add` does (binding
// it on itself first), so that the namespaces mounted there show in mount
// namespaces made later (`ip netns exec`, unshare). Best effort: creating
// works without it.
func shareDir() {
	shareMu.Lock()
	defer shareMu.Unlock()
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		return
	}
	err := unix.Mount("", Dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) { // not a mount point yet
		if unix.Mount(Dir, Dir, "none", unix.MS_BIND|unix.MS_REC, "") == nil {
			_ = unix.Mount("", Dir, "none", unix.MS_SHARED|unix.MS_REC, "")
		}
	}
}

// Name is the namespace's name, as `ip netns list` prints it.
func (n *NS) Name() string { return n.name }

// String is the name.
func (n *NS) String() string { return n.name }

// Fd is a descriptor open on the namespace, for the APIs that take one
// (nftables.WithNetNSFd, netlink.NewHandleAt). It is valid until Delete.
func (n *NS) Fd() int { return n.fd }

// Delete ends the processes left in the namespace (SIGKILL; never this
// one) and removes it, with its links. Deleting twice is not an error.
func (n *NS) Delete() error {
	if n.fd >= 0 {
		unix.Close(n.fd)
		n.fd = -1
	}
	return Delete(n.name)
}

// Delete ends the processes in namespace name (SIGKILL; never this one)
// and removes it. A namespace that is already gone is not an error.
func Delete(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if pids, err := Pids(name); err == nil {
		for _, pid := range pids {
			if pid > 1 && pid != os.Getpid() {
				_ = unix.Kill(pid, unix.SIGKILL)
			}
		}
	}
	path := filepath.Join(Dir, name)
	switch err := unix.Unmount(path, unix.MNT_DETACH); {
	case err == nil, errors.Is(err, unix.EINVAL): // EINVAL: not mounted (any more)
	case errors.Is(err, unix.ENOENT):
		return nil
	default:
		return fmt.Errorf("netns: deleting %s: %w", name, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("netns: deleting %s: %w", name, err)
	}
	return nil
}

// Pids lists the processes whose network namespace is name, as
// `ip netns pids` does.
func Pids(name string) ([]int, error) {
	var ns unix.Stat_t
	if err := unix.Stat(filepath.Join(Dir, name), &ns); err != nil {
		return nil, fmt.Errorf("netns: %s: %w", name, err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+e.Name()+"/ns/net", &st) == nil && st.Dev == ns.Dev && st.Ino == ns.Ino {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// List returns the names of the namespaces that start with prefix.
func List(prefix string) ([]string, error) {
	ents, err := os.ReadDir(Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// Sweep deletes the leftovers of runs that died before their clean-up:
// the namespaces named with ID(prefix) whose creator no longer runs. A live
// concurrent run's namespaces are kept. It returns the names deleted.
func Sweep(prefix string) ([]string, error) { return SweepFunc(prefix, Runs) }

// SweepFunc is Sweep with the test of whether a creator still runs given:
// a program that can tell its own processes from others can also delete
// the namespaces of a dead run whose PID was reused.
func SweepFunc(prefix string, alive func(pid int) bool) ([]string, error) {
	names, err := List(prefix)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, name := range names {
		pid := Owner(prefix, name)
		if pid == 0 || pid == os.Getpid() || alive(pid) {
			continue
		}
		if err := Delete(name); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, name)
	}
	return removed, errors.Join(errs...)
}

// Runs reports whether a process with this PID exists (or may: a
// permission error says it does).
func Runs(pid int) bool { return !errors.Is(unix.Kill(pid, 0), unix.ESRCH) }

// onThread runs fn on a fresh goroutine locked to its OS thread, which fn
// may move into another network namespace. The thread is moved back
// afterwards; should that fail, it is not reused (the goroutine exits
// still locked, so the runtime ends the thread) and the test or program
// never carries on in the wrong namespace.
func onThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: this thread's namespace: %w", err)
			return
		}
		defer orig.Close()
		err = fn()
		if rerr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); rerr == nil {
			runtime.UnlockOSThread()
		} else if err == nil {
			err = fmt.Errorf("netns: returning to the original namespace: %w", rerr)
		}
		errc <- err
	}()
	return <-errc
}

// Do runs fn on an OS thread inside the namespace and returns its error.
// Sockets fn opens belong to the namespace, whichever thread uses them
// later; a child process forked there (exec.Cmd.Start) inherits it.
func (n *NS) Do(fn func() error) error {
	return onThread(func() error {
		if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("netns: entering %s: %w", n.name, err)
		}
		return fn()
	})
}

// Argv returns argv prefixed to run inside the namespace with iproute2's
// `ip netns exec`, which also gives the program a /sys of the namespace.
// ip execs the program, so the process started is the program itself.
func (n *NS) Argv(argv ...string) []string {
	return append([]string{"ip", "netns", "exec", n.name}, argv...)
}

// Command returns a command running the program inside the namespace
// through `ip netns exec` (Argv). Without iproute2 it fails to start:
// it never runs outside the namespace. See Start for hosts without it.
func (n *NS) Command(name string, arg ...string) *exec.Cmd {
	argv := n.Argv(append([]string{name}, arg...)...)
	return exec.Command(argv[0], argv[1:]...)
}

// CommandContext is Command with a context, as exec.CommandContext.
func (n *NS) CommandContext(ctx context.Context, name string, arg ...string) *exec.Cmd {
	argv := n.Argv(append([]string{name}, arg...)...)
	return exec.CommandContext(ctx, argv[0], argv[1:]...)
}

// Start starts cmd, a plain command (not one made by Command), inside the
// namespace without iproute2: it is forked from a thread that entered the
// namespace, and a child inherits the network namespace of the thread
// that forks it.
func (n *NS) Start(cmd *exec.Cmd) error { return n.Do(cmd.Start) }

// handle is a netlink socket inside the namespace.
func (n *NS) handle() (*netlink.Handle, error) {
	h, err := netlink.NewHandleAt(vnetns.NsHandle(n.fd))
	if err != nil {
		return nil, fmt.Errorf("netns: netlink in %s: %w", n.name, err)
	}
	return h, nil
}
