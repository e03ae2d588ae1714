package sshtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/internal/wire"
)

// dialTimeout bounds how long a direct channel waits for its destination.
const dialTimeout = 10 * time.Second

// parseTCPIP reads a direct-tcpip open (RFC 4254 7.2): the client asks the
// server to connect to host:port and carry the stream.
func (o *channelOpen) parseTCPIP() error {
	var msg wire.TCPIP
	if err := wire.Parse(wire.DirectTCPIP, o.nch.ExtraData(), &msg); err != nil {
		return fmt.Errorf("sshtest: %w", err)
	}
	o.target = joinHostPort(msg.Host, msg.Port)
	o.origin = joinHostPort(msg.OriginHost, msg.OriginPort)
	switch {
	case msg.Host == "":
		return errors.New("sshtest: empty host")
	case msg.Port > 65535:
		return fmt.Errorf("sshtest: port %d outside 0..65535", msg.Port)
	}
	o.host, o.port = msg.Host, int(msg.Port)
	return nil
}

func joinHostPort(host string, port uint32) string {
	return net.JoinHostPort(host, strconv.FormatUint(uint64(port), 10))
}

// parseStreamLocal reads a direct-streamlocal@openssh.com open (OpenSSH
// PROTOCOL 2.4): direct-tcpip for a Unix socket.
func (o *channelOpen) parseStreamLocal() error {
	var msg wire.DirectStreamLocalMsg
	if err := wire.Parse(wire.DirectStreamLocal, o.nch.ExtraData(), &msg); err != nil {
		return fmt.Errorf("sshtest: %w", err)
	}
	o.target = msg.SocketPath
	path, err := cleanSocketPath(msg.SocketPath)
	if err != nil {
		return err
	}
	o.target, o.path = path, path
	return nil
}

// cleanSocketPath checks a Unix socket path the client sent and returns it
// cleaned, so that the callbacks and the file system see the same path and
// a prefix rule cannot be climbed out of with "..". A relative path would
// depend on the server's working directory, and is refused.
func cleanSocketPath(p string) (string, error) {
	switch {
	case p == "":
		return "", errors.New("sshtest: empty socket path")
	case strings.ContainsRune(p, 0):
		return "", fmt.Errorf("sshtest: socket path %q contains a NUL byte", p)
	case !filepath.IsAbs(p):
		return "", fmt.Errorf("sshtest: socket path %q is not absolute", p)
	}
	return filepath.Clean(p), nil
}

// directTCPIP connects to the destination of a direct-tcpip channel and
// relays.
func (c *Conn) directTCPIP(o *channelOpen) {
	ctx, cancel := context.WithTimeout(c.ctx, dialTimeout)
	defer cancel()
	nc, err := c.dialPermitted(ctx, o)
	if err != nil {
		reason := ssh.ConnectionFailed
		if errors.Is(err, ErrNotPermitted) {
			reason = ssh.Prohibited
		}
		c.reject(o, reason, err)
		return
	}
	c.acceptAndRelay(o, nc)
}

// dialPermitted resolves the host of a direct-tcpip channel, puts each of
// its addresses to PermitOpenCallback in the form connecting reaches, and
// connects to the first permitted one that answers. It dials exactly the
// address the callback approved, so no other spelling of an address, and
// no answer of a name server that changed its mind, gets past a rule. It
// returns the first error if none connects.
func (c *Conn) dialPermitted(ctx context.Context, o *channelOpen) (net.Conn, error) {
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", o.host)
	if err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	permit := c.srv.Config.PermitOpenCallback
	var firstErr error
	for _, ip := range ips {
		addr := reachedAddr(netip.AddrPortFrom(ip, uint16(o.port)))
		if permit != nil && !permit(c.sconn, OpenRequest{Host: o.host, Port: o.port, Addr: addr}) {
			err = fmt.Errorf("%w: opening %s (%v)", ErrNotPermitted, o.target, addr)
		} else {
			var d net.Dialer
			var nc net.Conn
			if nc, err = d.DialContext(ctx, "tcp", addr.String()); err == nil {
				return nc, nil
			}
			err = fmt.Errorf("sshtest: %w", err)
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}

// reachedAddr returns the address that connecting to ap reaches: an
// IPv4-mapped address is the IPv4 one, and an unspecified address is taken
// to mean this host's loopback, which is where Linux and the BSDs connect
// it.
func reachedAddr(ap netip.AddrPort) netip.AddrPort {
	ip := ap.Addr().Unmap()
	switch {
	case ip.IsUnspecified() && ip.Is4():
		ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	case ip.IsUnspecified():
		ip = netip.IPv6Loopback()
	}
	return netip.AddrPortFrom(ip, ap.Port())
}

// directStreamLocal connects to the socket of a
// direct-streamlocal@openssh.com channel and relays.
func (c *Conn) directStreamLocal(o *channelOpen) {
	if f := c.srv.Config.PermitOpenUnixCallback; f != nil && !f(c.sconn, o.path) {
		c.reject(o, ssh.Prohibited, fmt.Errorf("%w: opening %s", ErrNotPermitted, o.path))
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, dialTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", o.path)
	if err != nil {
		c.reject(o, ssh.ConnectionFailed, fmt.Errorf("sshtest: %w", err))
		return
	}
	c.acceptAndRelay(o, nc)
}

// acceptAndRelay accepts the channel and carries the stream both ways
// between it and nc until both ends are done or the connection ends. The
// channel takes no requests.
func (c *Conn) acceptAndRelay(o *channelOpen, nc net.Conn) {
	c.channelEvent(o, nil)
	ch, reqs, err := o.nch.Accept()
	if err != nil {
		nc.Close()
		c.logf("accept %s: %v", o.nch.ChannelType(), err)
		return
	}
	c.srv.spawn(func() { ssh.DiscardRequests(reqs) })
	c.relay(ch, nc)
}
