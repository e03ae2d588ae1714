package mux

import (
	"fmt"
	"net"
	"time"
)

// Client is a command-mode connection to a master. Requests go one at a
// time, as the master answers them, so a Client is not safe for
// concurrent use.
type Client struct {
	conn net.Conn
	next uint32 // the id of the next request
}

// Dial connects to the master listening on the Unix socket path and
// exchanges hellos, all within timeout. A failure to connect is returned
// as the *net.OpError it is, for the caller to word; a master that does
// not speak Version is an error.
func Dial(path string, timeout time.Duration) (*Client, error) {
	conn, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(timeout))
	err = Write(conn, &Message{Type: Hello, Version: Version})
	var hello Message
	if err == nil {
		hello, err = Read(conn)
	}
	switch {
	case err != nil:
	case hello.Type != Hello:
		err = fmt.Errorf("mux: hello expected, got message type %#08x", uint32(hello.Type))
	case hello.Version != Version:
		err = fmt.Errorf("mux protocol version %d, want %d", hello.Version, Version)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return &Client{conn: conn}, nil
}

// Do sends req with the next request id and returns the master's answer
// to it. An answer to another request is an error.
func (c *Client) Do(req Message) (Message, error) {
	req.ID = c.next
	c.next++
	if err := Write(c.conn, &req); err != nil {
		return Message{}, err
	}
	m, err := Read(c.conn)
	if err != nil {
		return Message{}, err
	}
	if m.ID != req.ID {
		return Message{}, fmt.Errorf("mux: answer to request %d, want %d", m.ID, req.ID)
	}
	return m, nil
}

// SetDeadline bounds the requests that follow, as net.Conn's does.
func (c *Client) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

// Close closes the connection; a request waiting for its answer returns.
func (c *Client) Close() error { return c.conn.Close() }
