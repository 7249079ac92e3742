package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/portsentry-go/portsentry/internal/enforce/bans"
)

const (
	// connTimeout bounds a whole exchange: a client that connects and
	// says nothing holds a slot no longer than this.
	connTimeout = 30 * time.Second
	// maxConns is how many connections are served at once; more wait in
	// the kernel's accept queue.
	maxConns = 16
)

// Server is a listening control socket.
type Server struct {
	path string
	h    Handler
	log  *slog.Logger
	ln   *net.UnixListener
	// file is the socket file as bound, so that Close removes it only if
	// it is still ours.
	file fs.FileInfo
	uid  int // the daemon's own uid, allowed beside root

	closeOnce sync.Once
	closeErr  error
	done      chan struct{}
	wg        sync.WaitGroup
}

// Listen creates the socket at path (mode 0600; its directory is created
// 0755 when missing) and returns the Server, which answers once Serve
// runs. A socket file left by a daemon that died is removed; one that a
// running daemon answers on is an error wrapping ErrInUse, and a path that
// is not a socket is left alone and refused. log may be nil.
func Listen(path string, h Handler, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	ln, err := bind(path)
	if err != nil {
		return nil, err
	}
	fi, err := os.Lstat(path)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("control: %w", err)
	}
	return &Server{path: path, h: h, log: log, ln: ln, file: fi, uid: os.Getuid(), done: make(chan struct{})}, nil
}

// removeStale removes a socket file nobody answers on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control: %s exists and is not a socket; not touching it", path)
	}
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%w: %s", ErrInUse, path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("control: %s: cannot tell whether a daemon answers: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("control: removing stale socket: %w", err)
	}
	return nil
}

// bind listens on path with mode 0600 from the first instant: the socket
// is bound under a temporary name, restricted, then renamed into place, so
// that nobody can connect through path while the umask's mode is on it.
func bind(path string) (*net.UnixListener, error) {
	tmp := fmt.Sprintf("%s.%d.new", path, os.Getpid())
	// sun_path holds 107 bytes: a path with no room for the suffix is
	// bound in place, protected by the peer check until the chmod.
	if len(tmp) > 107 {
		tmp = path
	}
	os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	ln.SetUnlinkOnClose(false) // Close removes path itself, if still ours
	err = os.Chmod(tmp, 0o600)
	if err == nil && tmp != path {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("control: %w", err)
	}
	return ln, nil
}

// Path returns the socket's path.
func (s *Server) Path() string { return s.path }

// Serve answers connections until ctx is done or Close is called, then
// waits for the requests under way and returns nil. Other errors come
// from accepting connections.
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	defer s.wg.Wait()
	// Close again on the way out: it returns once the first Close (maybe
	// the one the context started) has removed the socket file.
	defer s.Close()
	slots := make(chan struct{}, maxConns)
	var delay time.Duration
	for {
		conn, err := s.ln.AcceptUnix()
		if err != nil {
			select {
			case <-s.done:
				return nil
			default:
			}
			// Out of file descriptors and the like: wait, as net/http does.
			if ne, ok := err.(net.Error); ok && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ECONNABORTED) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn(fmt.Sprintf("control: accept: %v; retrying in %v", err, delay))
				select {
				case <-time.After(delay):
				case <-s.done:
					return nil
				}
				continue
			}
			return fmt.Errorf("control: accept: %w", err)
		}
		delay = 0
		select {
		case slots <- struct{}{}:
		case <-s.done:
			conn.Close()
			return nil
		}
		s.wg.Go(func() {
			defer func() { <-slots }()
			s.serveConn(conn)
		})
	}
}

// Close stops listening and removes the socket file (unless another
// daemon has replaced it since). Requests under way finish.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		s.closeErr = s.ln.Close()
		if fi, err := os.Lstat(s.path); err == nil && os.SameFile(fi, s.file) {
			if err := os.Remove(s.path); err != nil && s.closeErr == nil {
				s.closeErr = err
			}
		}
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("control: %w", s.closeErr)
		}
	})
	return s.closeErr
}

// peer is who is on the other end of a connection.
type peer struct {
	pid, uid, gid int
}

// allowed says whether p may use the socket: root, or the daemon's user.
func (s *Server) allowed(p peer) bool {
	return p.uid == 0 || p.uid == s.uid
}

func (s *Server) serveConn(conn *net.UnixConn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(connTimeout))
	w := bufio.NewWriter(conn)
	defer w.Flush()

	p, err := peerCred(conn)
	if err != nil {
		s.log.Warn("control: refusing a connection: cannot identify the peer: " + err.Error())
		writeError(w, codeDenied, "cannot identify the client: "+err.Error())
		return
	}
	if !s.allowed(p) {
		s.log.Warn(fmt.Sprintf("control: refusing uid %d (pid %d): only root may use the control socket", p.uid, p.pid))
		writeError(w, codeDenied, "permission denied: only root may control portsentry")
		return
	}

	line, err := bufio.NewReaderSize(io.LimitReader(conn, maxRequest+1), 512).ReadBytes('\n')
	switch {
	case len(line) > maxRequest:
		writeError(w, codeBadRequest, fmt.Sprintf("request longer than %d bytes", maxRequest))
		return
	case err != nil && err != io.EOF:
		s.log.Debug("control: reading a request: " + err.Error())
		return
	case len(line) == 0:
		return // connected and left: a liveness probe, say
	}
	req, err := decodeRequest(line)
	if err != nil {
		writeError(w, codeBadRequest, err.Error())
		return
	}
	s.dispatch(w, p, req)
}

// dispatch calls the Handler. A panic in it is answered as a failure and
// logged, not allowed to take the daemon down.
func (s *Server) dispatch(w *bufio.Writer, p peer, req request) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error(fmt.Sprintf("control: %s request panicked: %v\n%s", req.op, r, debug.Stack()))
			writeError(w, codeFailed, "internal error in the daemon (logged)")
		}
	}()
	switch req.op {
	case opList:
		writeBans(w, s.h.List())
	case opStatus:
		st := s.h.Status()
		writeJSON(w, wireResponse{OK: true, Status: &st})
	case opBlock:
		b, err := s.h.Block(req.addr, req.dur, req.reason)
		if err != nil {
			s.log.Warn(fmt.Sprintf("control: uid %d (pid %d): block %s failed: %v", p.uid, p.pid, req.addr, err))
			writeError(w, codeFailed, err.Error())
			return
		}
		s.log.Info(fmt.Sprintf("control: uid %d (pid %d) blocked %s for %s: %s", p.uid, p.pid, req.addr, FormatDuration(req.dur), req.reason))
		wb := toWire(b)
		writeJSON(w, wireResponse{OK: true, Ban: &wb})
	case opUnblock:
		removed, err := s.h.Unblock(req.target)
		if err != nil {
			s.log.Warn(fmt.Sprintf("control: uid %d (pid %d): unblock %s failed: %v", p.uid, p.pid, req.target, err))
			writeError(w, codeFailed, err.Error())
			return
		}
		s.log.Info(fmt.Sprintf("control: uid %d (pid %d) unblocked %s: %d bans lifted", p.uid, p.pid, req.target, len(removed)))
		writeBans(w, removed)
	}
}

func writeError(w *bufio.Writer, code, msg string) {
	writeJSON(w, wireResponse{Code: code, Error: msg})
}

func writeJSON(w *bufio.Writer, v any) {
	b, err := json.Marshal(v)
	if err != nil { // cannot happen with these types
		b, _ = json.Marshal(wireResponse{Code: codeFailed, Error: err.Error()})
	}
	w.Write(b)
	w.WriteByte('\n')
}

// writeBans streams a ban list: a million bans are written one by one,
// never held in memory as one JSON document.
func writeBans(w *bufio.Writer, bs []bans.Ban) {
	w.WriteString(`{"ok":true,"bans":[`)
	for i, b := range bs {
		if i > 0 {
			w.WriteByte(',')
		}
		j, _ := json.Marshal(toWire(b))
		w.Write(j)
	}
	w.WriteString("]}\n")
}
