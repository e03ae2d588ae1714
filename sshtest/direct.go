package sshtest

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/internal/relay"
	"github.com/sshfwd/sshfwd/internal/wire"
)

// dialTimeout bounds how long a direct channel waits for its destination.
const dialTimeout = 10 * time.Second

// directTCPIP serves a direct-tcpip channel (RFC 4254 7.2): the client asks
// the server to connect to host:port and carry the stream.
func (c *conn) directTCPIP(nch ssh.NewChannel) {
	var msg wire.TCPIP
	if err := wire.Parse(wire.DirectTCPIP, nch.ExtraData(), &msg); err != nil {
		c.reject(nch, ssh.ConnectionFailed, "sshtest: "+err.Error())
		return
	}
	if msg.Host == "" {
		c.reject(nch, ssh.ConnectionFailed, "sshtest: empty host")
		return
	}
	if msg.Port > 65535 {
		c.reject(nch, ssh.ConnectionFailed, fmt.Sprintf("sshtest: port %d outside 0..65535", msg.Port))
		return
	}
	host, port := msg.Host, int(msg.Port)
	if f := c.srv.Config.PermitOpenCallback; f != nil && !f(host, port) {
		c.reject(nch, ssh.Prohibited, fmt.Sprintf("sshtest: opening %s is not permitted", net.JoinHostPort(host, strconv.Itoa(port))))
		return
	}
	c.dialAndRelay(nch, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
}

// directStreamLocal serves a direct-streamlocal@openssh.com channel
// (OpenSSH PROTOCOL 2.4): direct-tcpip for a Unix socket.
func (c *conn) directStreamLocal(nch ssh.NewChannel) {
	var msg wire.DirectStreamLocalMsg
	if err := wire.Parse(wire.DirectStreamLocal, nch.ExtraData(), &msg); err != nil {
		c.reject(nch, ssh.ConnectionFailed, "sshtest: "+err.Error())
		return
	}
	if msg.SocketPath == "" {
		c.reject(nch, ssh.ConnectionFailed, "sshtest: empty socket path")
		return
	}
	if f := c.srv.Config.PermitOpenUnixCallback; f != nil && !f(msg.SocketPath) {
		c.reject(nch, ssh.Prohibited, fmt.Sprintf("sshtest: opening %s is not permitted", msg.SocketPath))
		return
	}
	c.dialAndRelay(nch, "unix", msg.SocketPath)
}

func (c *conn) reject(nch ssh.NewChannel, reason ssh.RejectionReason, message string) {
	c.logf("rejected %s: %s", nch.ChannelType(), message)
	nch.Reject(reason, message)
}

// dialAndRelay connects to address, accepts the channel and carries the
// stream both ways until both ends are done or the connection ends.
func (c *conn) dialAndRelay(nch ssh.NewChannel, network, address string) {
	ctx, cancel := context.WithTimeout(c.ctx, dialTimeout)
	d := net.Dialer{}
	nc, err := d.DialContext(ctx, network, address)
	cancel()
	if err != nil {
		c.reject(nch, ssh.ConnectionFailed, "sshtest: "+err.Error())
		return
	}
	ch, reqs, err := nch.Accept()
	if err != nil {
		nc.Close()
		c.logf("accept %s: %v", nch.ChannelType(), err)
		return
	}
	c.srv.spawn(func() { ssh.DiscardRequests(reqs) })
	c.relay(ch, nc)
}

// relay carries a channel's stream to and from nc, closing nc should the
// connection end first, since the channel's end alone would only half-close
// it.
func (c *conn) relay(ch io.ReadWriteCloser, nc net.Conn) {
	release, ok := c.hold(nc)
	if !ok {
		ch.Close()
		return
	}
	defer release()
	if err := relay.Relay(ch, nc); err != nil {
		c.logf("relay to %s: %v", nc.RemoteAddr(), err)
	}
}
