package sshtest

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"

	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd"
	"github.com/sshfwd/sshfwd/internal/wire"
)

// forwardKey names a forward the way its cancel request does: the address
// as the client requested it and the port the server bound (0 for Unix
// sockets).
type forwardKey struct {
	network string // "tcp" or "unix"
	addr    string
	port    int
}

// opener opens the channel back to the client for a connection that
// arrived on a forward.
type opener func(ctx context.Context, nc net.Conn) (io.ReadWriteCloser, error)

// bindHost returns the host a tcpip-forward for requested binds, following
// the GatewayPorts policy.
func (s *Server) bindHost(requested string) string {
	switch {
	case s.Config.GatewayPorts && requested == "*":
		return ""
	case s.Config.GatewayPorts:
		return requested
	case requested == "::1":
		return requested
	default:
		return "127.0.0.1"
	}
}

// tcpipForward answers a tcpip-forward request (RFC 4254 7.1) and returns
// the reply: the bound port when the client asked for port 0.
func (c *conn) tcpipForward(payload []byte) (bool, []byte) {
	var msg wire.TCPIPForwardMsg
	if err := wire.Parse(wire.TCPIPForward, payload, &msg); err != nil {
		c.logf("refused %s: %v", wire.TCPIPForward, err)
		return false, nil
	}
	if msg.Port > 65535 {
		c.logf("refused %s: port %d outside 0..65535", wire.TCPIPForward, msg.Port)
		return false, nil
	}
	requested := net.JoinHostPort(msg.Addr, strconv.Itoa(int(msg.Port)))
	if f := c.srv.Config.PermitListenCallback; f != nil && !f(msg.Addr, int(msg.Port)) {
		c.logf("refused %s %s: not permitted", wire.TCPIPForward, requested)
		return false, nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort(c.srv.bindHost(msg.Addr), strconv.Itoa(int(msg.Port))))
	if err != nil {
		c.logf("refused %s %s: %v", wire.TCPIPForward, requested, err)
		return false, nil
	}
	bound := l.Addr().(*net.TCPAddr).Port
	open := func(ctx context.Context, nc net.Conn) (io.ReadWriteCloser, error) {
		origin, ok := nc.RemoteAddr().(*net.TCPAddr)
		if !ok {
			return nil, errors.New("sshtest: connection without a TCP origin")
		}
		return sshfwd.OpenReverseForward(ctx, c.sconn, msg.Addr, bound, origin.IP.String(), origin.Port)
	}
	if !c.addForward(forwardKey{"tcp", msg.Addr, bound}, l, open) {
		return false, nil
	}
	c.logf("forwarding %s from %s", requested, l.Addr())
	if msg.Port == 0 {
		return true, ssh.Marshal(&wire.TCPIPForwardReply{Port: uint32(bound)})
	}
	return true, nil
}

// cancelTCPIPForward answers cancel-tcpip-forward (RFC 4254 7.1).
func (c *conn) cancelTCPIPForward(payload []byte) bool {
	var msg wire.TCPIPForwardMsg
	if err := wire.Parse(wire.CancelTCPIPForward, payload, &msg); err != nil {
		c.logf("refused %s: %v", wire.CancelTCPIPForward, err)
		return false
	}
	return c.cancelForward(forwardKey{"tcp", msg.Addr, int(msg.Port)})
}

// streamLocalForward answers streamlocal-forward@openssh.com (OpenSSH
// PROTOCOL 2.4). Like OpenSSH with StreamLocalBindUnlink yes, it replaces a
// stale socket left at the path.
func (c *conn) streamLocalForward(payload []byte) bool {
	var msg wire.StreamLocalForwardMsg
	if err := wire.Parse(wire.StreamLocalForward, payload, &msg); err != nil {
		c.logf("refused %s: %v", wire.StreamLocalForward, err)
		return false
	}
	path := msg.SocketPath
	if path == "" {
		c.logf("refused %s: empty socket path", wire.StreamLocalForward)
		return false
	}
	if f := c.srv.Config.PermitListenUnixCallback; f != nil && !f(path) {
		c.logf("refused %s %s: not permitted", wire.StreamLocalForward, path)
		return false
	}
	key := forwardKey{"unix", path, 0}
	if c.hasForward(key) {
		// Unlinking would take the socket from under the live forward.
		c.logf("refused %s %s: already forwarded", wire.StreamLocalForward, path)
		return false
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		os.Remove(path)
	}
	// A Unix listener removes its socket file when closed.
	l, err := net.Listen("unix", path)
	if err != nil {
		c.logf("refused %s %s: %v", wire.StreamLocalForward, path, err)
		return false
	}
	open := func(ctx context.Context, nc net.Conn) (io.ReadWriteCloser, error) {
		return sshfwd.OpenReverseForwardUnix(ctx, c.sconn, path)
	}
	if !c.addForward(key, l, open) {
		return false
	}
	c.logf("forwarding %s", path)
	return true
}

// cancelStreamLocalForward answers cancel-streamlocal-forward@openssh.com.
func (c *conn) cancelStreamLocalForward(payload []byte) bool {
	var msg wire.StreamLocalForwardMsg
	if err := wire.Parse(wire.CancelStreamLocalForward, payload, &msg); err != nil {
		c.logf("refused %s: %v", wire.CancelStreamLocalForward, err)
		return false
	}
	return c.cancelForward(forwardKey{"unix", msg.SocketPath, 0})
}

func (c *conn) hasForward(key forwardKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.forwards[key]
	return ok
}

// addForward records l under key, to be closed by a cancel or when the
// connection ends, and starts accepting on it. It closes l and reports
// false if the connection has ended or key is taken.
func (c *conn) addForward(key forwardKey, l net.Listener, open opener) bool {
	c.mu.Lock()
	_, taken := c.forwards[key]
	if c.ended || taken {
		c.mu.Unlock()
		l.Close()
		return false
	}
	c.forwards[key] = l
	c.held[l] = struct{}{}
	c.mu.Unlock()
	c.srv.spawn(func() { c.acceptForwarded(l, open) })
	return true
}

// cancelForward closes the forward under key; it reports false if there is
// none.
func (c *conn) cancelForward(key forwardKey) bool {
	c.mu.Lock()
	l, ok := c.forwards[key]
	if ok {
		delete(c.forwards, key)
		delete(c.held, l)
	}
	c.mu.Unlock()
	if !ok {
		c.logf("no forward %s %s port %d to cancel", key.network, key.addr, key.port)
		return false
	}
	l.Close()
	return true
}

// acceptForwarded opens a channel to the client for each connection to l
// and relays it, until l is closed.
func (c *conn) acceptForwarded(l net.Listener, open opener) {
	for {
		nc, err := l.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				c.logf("accept on %s: %v", l.Addr(), err)
			}
			return
		}
		c.srv.spawn(func() {
			ch, err := open(c.ctx, nc)
			if err != nil {
				nc.Close()
				c.logf("forward from %s: %v", nc.RemoteAddr(), err)
				return
			}
			c.relay(ch, nc)
		})
	}
}
