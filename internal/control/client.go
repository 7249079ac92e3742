package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/portsentry-go/portsentry/internal/enforce/bans"
)

// Client talks to a daemon's control socket. Each call is one connection.
// A Client is not safe for concurrent use.
type Client struct {
	path string
	// conn is the connection Dial made, used by the first call.
	conn net.Conn
	// Timeout bounds each call, connection included (default 30s).
	Timeout time.Duration
}

// Dial connects to the daemon at path (DefaultPath when ""). The error
// wraps ErrNotRunning when nothing answers there and ErrDenied when the
// socket's mode keeps this user out.
func Dial(path string) (*Client, error) {
	if path == "" {
		path = DefaultPath
	}
	c := &Client{path: path, Timeout: 30 * time.Second}
	conn, err := c.dial()
	if err != nil {
		return nil, err
	}
	c.conn = conn
	return c, nil
}

func (c *Client) dial() (net.Conn, error) {
	conn, err := net.DialTimeout("unix", c.path, c.Timeout)
	switch {
	case err == nil:
		return conn, nil
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return nil, fmt.Errorf("%w: nothing answers on %s (is portsentry running?)", ErrNotRunning, c.path)
	case errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("%w: %s: run as root", ErrDenied, c.path)
	}
	return nil, fmt.Errorf("control: %w", err)
}

// Close releases the connection Dial made if no call used it.
func (c *Client) Close() error {
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn = nil
	return err
}

// call sends req and reads the response; a daemon's refusal is a
// *RemoteError.
func (c *Client) call(req request) (*wireResponse, error) {
	conn := c.conn
	c.conn = nil
	if conn == nil {
		var err error
		if conn, err = c.dial(); err != nil {
			return nil, err
		}
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(c.Timeout))
	b, err := json.Marshal(encodeRequest(req))
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	// A daemon that refuses the peer answers before reading the request
	// and closes: the write then fails, but the answer is there to read.
	_, werr := conn.Write(append(b, '\n'))
	var resp wireResponse
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		if werr != nil {
			return nil, fmt.Errorf("control: sending %s: %w", req.op, werr)
		}
		return nil, fmt.Errorf("control: reading the answer to %s: %w", req.op, err)
	}
	if !resp.OK {
		return nil, &RemoteError{Code: resp.Code, Message: resp.Error}
	}
	return &resp, nil
}

// List returns the bans in force, sorted by start.
func (c *Client) List() ([]bans.Ban, error) {
	resp, err := c.call(request{op: opList})
	if err != nil {
		return nil, err
	}
	return fromWireList(resp.Bans), nil
}

// Block bans addr for d (0: permanent) with reason ("" for "manual") and
// returns the ban the daemon recorded.
func (c *Client) Block(addr netip.Addr, d time.Duration, reason string) (bans.Ban, error) {
	if d < 0 {
		return bans.Ban{}, fmt.Errorf("%w: negative duration %v", ErrBadRequest, d)
	}
	resp, err := c.call(request{op: opBlock, addr: addr, dur: d, reason: reason})
	if err != nil {
		return bans.Ban{}, err
	}
	if resp.Ban == nil {
		return bans.Ban{}, errors.New("control: the daemon's answer holds no ban")
	}
	return fromWire(*resp.Ban), nil
}

// Unblock lifts every ban inside prefix and returns those lifted.
func (c *Client) Unblock(prefix netip.Prefix) ([]bans.Ban, error) {
	resp, err := c.call(request{op: opUnblock, target: prefix})
	if err != nil {
		return nil, err
	}
	return fromWireList(resp.Bans), nil
}

// Status describes the running daemon.
func (c *Client) Status() (Status, error) {
	resp, err := c.call(request{op: opStatus})
	if err != nil {
		return Status{}, err
	}
	if resp.Status == nil {
		return Status{}, errors.New("control: the daemon's answer holds no status")
	}
	return *resp.Status, nil
}

func fromWireList(ws []wireBan) []bans.Ban {
	out := make([]bans.Ban, len(ws))
	for i, w := range ws {
		out[i] = fromWire(w)
	}
	return out
}
