package sshconfig

import (
	"context"
	"fmt"
	"net"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd"
	"github.com/sshfwd/sshfwd/internal/wire"
)

// dialControl connects through the OpenSSH ControlMaster listening on the
// Unix socket path, in the mux protocol's proxy mode: the master carries
// the SSH connection, already authenticated, and this client speaks SSH
// through it without keys or prompts.
func dialControl(ctx context.Context, path string) (*sshfwd.Session, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	c, chans, reqs, err := ssh.NewControlClientConn(conn)
	if !stop() && err == nil {
		c.Close()
		err = ctx.Err()
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("sshfwd: ControlMaster %s: %w", path, err)
	}
	conn.SetDeadline(time.Time{})
	fwds := newMuxForwards(path)
	go fwds.merge(chans)
	client := ssh.NewClient(&controlConn{Conn: c, fwds: fwds}, fwds.in, reqs)
	s, err := sshfwd.New(client)
	if err != nil {
		client.Close()
		return nil, err
	}
	return s, nil
}

// controlConn is an SSH connection through a ControlMaster. OpenSSH's
// master (9.2 measured) drops a proxy client that sends a global request
// other than tcpip-forward, and relays no answer to that one; so the
// requests that would break or hang the connection take other roads.
type controlConn struct {
	ssh.Conn
	fwds *muxForwards
}

// Close cancels the forwards asked of the master, closes the connection
// and waits for the goroutine that passes its channels on, which the
// connection's end stops.
func (c *controlConn) Close() error {
	c.fwds.teardown()
	err := c.Conn.Close()
	<-c.fwds.merged
	return err
}

func (c *controlConn) SendRequest(name string, wantReply bool, payload []byte) (bool, []byte, error) {
	switch name {
	case wire.KeepAlive:
		// A session channel, opened and closed, makes the round trip
		// to the server instead. A channel the server refuses would
		// not do: OpenSSH 9.2's master keeps such a channel half-made,
		// and dies ("chan_send_close2: no remote_id") when this client
		// disconnects.
		ch, reqs, err := c.Conn.OpenChannel(wire.Session, nil)
		if err != nil {
			return false, nil, err
		}
		ch.Close()
		for range reqs {
		}
		return false, nil, nil
	case wire.TCPIPForward, wire.CancelTCPIPForward:
		var m wire.TCPIPForwardMsg
		if err := wire.Parse(name, payload, &m); err != nil {
			return false, nil, err
		}
		if name == wire.CancelTCPIPForward {
			return c.fwds.close(false, m.Addr, m.Port), nil, nil
		}
		bound, ok, err := c.fwds.open(false, m.Addr, m.Port)
		if !ok || m.Port != 0 {
			return ok, nil, err
		}
		return true, ssh.Marshal(&wire.TCPIPForwardReply{Port: bound}), nil
	case wire.StreamLocalForward, wire.CancelStreamLocalForward:
		var m wire.StreamLocalForwardMsg
		if err := wire.Parse(name, payload, &m); err != nil {
			return false, nil, err
		}
		if name == wire.CancelStreamLocalForward {
			return c.fwds.close(true, m.SocketPath, 0), nil, nil
		}
		_, ok, err := c.fwds.open(true, m.SocketPath, 0)
		return ok, nil, err
	}
	return false, nil, fmt.Errorf("global request %q cannot go through an OpenSSH ControlMaster", name)
}
