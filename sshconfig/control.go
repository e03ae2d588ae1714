package sshconfig

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd"
)

// ErrControlMasterForward is returned at once for a remote forward asked
// of a Session that rides an OpenSSH ControlMaster: OpenSSH's master sends
// the tcpip-forward request on, but never relays its reply, so the request
// would wait forever.
//
// Its text has no "sshfwd:" prefix, as the Session's error wrapping it has.
var ErrControlMasterForward = errors.New("remote forwarding is not available through an OpenSSH ControlMaster (the master does not relay the server's reply); connect without ControlPath for -R")

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
	client := ssh.NewClient(&controlConn{Conn: c}, chans, reqs)
	s, err := sshfwd.New(client)
	if err != nil {
		client.Close()
		return nil, err
	}
	return s, nil
}

// controlConn is an SSH connection through a ControlMaster. OpenSSH's
// master (9.2 measured) drops a proxy client that sends a global request
// other than tcpip-forward, and relays no reply to that one; so the
// requests that would break or hang the connection are answered here.
type controlConn struct {
	ssh.Conn
}

func (c *controlConn) SendRequest(name string, wantReply bool, payload []byte) (bool, []byte, error) {
	switch name {
	case "keepalive@openssh.com":
		// A session channel, opened and closed, makes the round trip
		// to the server instead. A channel the server refuses would
		// not do: OpenSSH 9.2's master keeps such a channel half-made,
		// and dies ("chan_send_close2: no remote_id") when this client
		// disconnects.
		ch, reqs, err := c.Conn.OpenChannel("session", nil)
		if err != nil {
			return false, nil, err
		}
		ch.Close()
		for range reqs {
		}
		return false, nil, nil
	case "tcpip-forward", "cancel-tcpip-forward",
		"streamlocal-forward@openssh.com", "cancel-streamlocal-forward@openssh.com":
		return false, nil, ErrControlMasterForward
	}
	return false, nil, fmt.Errorf("global request %q cannot go through an OpenSSH ControlMaster", name)
}
