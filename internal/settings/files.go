package settings

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/sandbox"
	"golang.org/x/sys/unix"
)

// A written file is a path the daemon writes, named by the key that
// configures it.
type writtenFile struct {
	key  string
	path string
	// required: a file the daemon cannot write is an error (it records
	// state or events that would otherwise be lost without a word); else a
	// warning (a step that fails on its own, logged, while the rest works).
	required bool
	// socket: the path is a Unix socket the daemon replaces, not a file it
	// appends to.
	socket bool
}

// writtenFiles are the paths these settings make the daemon write.
func (s *Settings) writtenFiles() []writtenFile {
	c := s.Conf
	var out []writtenFile
	add := func(f writtenFile) {
		if f.path != "" {
			out = append(out, f)
		}
	}
	if c.EventLog != "-" && c.EventLog != "stdout" {
		add(writtenFile{key: "EVENT_LOG", path: c.EventLog, required: true})
	}
	add(writtenFile{key: "HISTORY_FILE", path: c.HistoryFile, required: true})
	add(writtenFile{key: "BLOCKED_FILE", path: c.BlockedFile, required: true})
	add(writtenFile{key: "BAN_FILE", path: c.BanFile, required: true})
	if c.KillHostsDeny != "" && (c.BlockTCP == config.Block || c.BlockUDP == config.Block) {
		add(writtenFile{key: "KILL_HOSTS_DENY", path: c.HostsDenyFile})
	}
	add(writtenFile{key: "CONTROL_SOCKET", path: c.ControlSocket, socket: true})
	return out
}

// access asks whether the daemon (root) can write path; a variable so that
// tests can play an unwritable directory as root.
var access = func(path string) error { return unix.Access(path, unix.W_OK) }

// checkFiles checks that the daemon can write every file it is configured
// to write: that the path is not a directory, that the file or the
// directory it will be created in (the nearest that exists: the daemon
// makes the rest) is writable, and, with a unit (Options.Unit), that the
// unit's sandbox lets the daemon write there. It returns the errors and
// the warnings, each naming file, line and key.
func (s *Settings) checkFiles() (errs []error, warnings []string) {
	for _, f := range s.writtenFiles() {
		for _, p := range s.checkFile(f) {
			e := s.Conf.ErrorAt(f.key, fmt.Errorf("%s: %w", f.path, p.err))
			if f.required && !p.warning {
				errs = append(errs, e)
			} else {
				warnings = append(warnings, e.Error())
			}
		}
	}
	return errs, warnings
}

// problem is one thing wrong with a written file.
type problem struct {
	err     error
	warning bool // a warning even for a required file
}

func (s *Settings) checkFile(f writtenFile) []problem {
	fi, err := os.Stat(f.path)
	switch {
	case err == nil && fi.IsDir():
		return []problem{{err: errors.New("is a directory; want the path of a file")}}
	case err == nil && !f.socket:
		if err := writable(f.path); err != nil {
			return []problem{{err: err}}
		}
	case err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR):
		return []problem{{err: err}}
	}
	// The directory: the file is created there, and replaced or rotated
	// through a new name beside it.
	dir := filepath.Dir(f.path)
	existing := dir
	for {
		fi, err := os.Stat(existing)
		if err == nil {
			if !fi.IsDir() {
				return []problem{{err: fmt.Errorf("%s is not a directory", existing)}}
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return []problem{{err: err}}
		}
		parent := filepath.Dir(existing)
		if parent == existing {
			break
		}
		existing = parent
	}
	if err := writable(existing); err != nil {
		return []problem{{err: err}}
	}
	return s.checkUnit(dir, existing)
}

// writable reports why the daemon cannot write path, or nil. Permission is
// judged only for root, as the daemon runs: `portsentry check` run by
// another user cannot tell, and says nothing; a read-only file system
// holds for everyone.
func writable(path string) error {
	err := access(path)
	if err == nil || (errors.Is(err, syscall.EACCES) && os.Geteuid() != 0) {
		return nil
	}
	msg := fmt.Sprintf("%s is not writable: %v", path, err)
	if errors.Is(err, syscall.EROFS) && os.Getenv("INVOCATION_ID") != "" {
		// Under systemd, the unit's sandbox is the likely cause.
		msg += " (under systemd: the unit's ProtectSystem= or ReadOnlyPaths=; allow it with ReadWritePaths= in a drop-in, systemctl edit portsentry)"
	}
	return errors.New(msg)
}

// checkUnit says whether the unit lets the daemon write in dir, of which
// existing is the part that exists now.
func (s *Settings) checkUnit(dir, existing string) []problem {
	u := s.Opts.Unit
	if u == nil {
		return nil
	}
	// The unit sees the file system's real paths: /var/run is /run.
	if real, err := filepath.EvalSymlinks(existing); err == nil {
		rest, _ := filepath.Rel(existing, dir)
		dir = filepath.Join(real, rest)
	}
	switch a, why := u.Access(dir); a {
	case sandbox.ReadOnly, sandbox.Inaccessible:
		fix := "ReadWritePaths=" + dir
		if existing != dir && a == sandbox.ReadOnly {
			fix = "ReadWritePaths=" + dir + " (after install -d -m 0750 " + dir + ")"
		}
		return []problem{{err: fmt.Errorf("%s is %s under %s (%s): use a path in a directory the unit lets it write (%s), or add %s in a drop-in (systemctl edit %s)",
			dir, a, u.Name, why, strings.Join(u.Writable(), ", "), fix, u.Name)}}
	case sandbox.Private:
		return []problem{{warning: true, err: fmt.Errorf("%s is private to %s (%s): other programs do not see what is written there, and it is emptied when the service stops",
			dir, u.Name, why)}}
	}
	return nil
}
