package sshfwd

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/internal/wire"
)

// OpenForward opens a direct-tcpip channel (RFC 4254 7.2): the server
// connects to remoteHost:remotePort and the channel carries that connection
// (ssh_channel_open_forward in libssh). sourceHost and sourcePort name the
// originator, as OpenSSH's -L reports the local peer; the server uses them
// only for logging and policy. remoteHost is sent as given and resolved by
// the server.
//
// ctx bounds the open only; a channel the server confirms after ctx ended is
// closed at once. A refusal by the server wraps *ssh.OpenChannelError.
func (s *Session) OpenForward(ctx context.Context, remoteHost string, remotePort int, sourceHost string, sourcePort int) (*Channel, error) {
	t, err := tcpTarget(remoteHost, remotePort, sourceHost, sourcePort)
	if err != nil {
		return nil, wrap("OpenForward", err)
	}
	return s.open(ctx, t)
}

// target is a direct channel to open, checked and encoded.
type target struct {
	typ           string
	payload       []byte
	local, remote net.Addr
}

func tcpTarget(remoteHost string, remotePort int, sourceHost string, sourcePort int) (target, error) {
	if err := badAddress(
		checkHost("remote host", remoteHost),
		checkPort("remote port", remotePort, 1),
		checkHost("source host", sourceHost),
		checkPort("source port", sourcePort, 0),
	); err != nil {
		return target{}, err
	}
	return target{
		typ: wire.DirectTCPIP,
		payload: ssh.Marshal(&wire.TCPIP{
			Host:       remoteHost,
			Port:       uint32(remotePort),
			OriginHost: sourceHost,
			OriginPort: uint32(sourcePort),
		}),
		local:  tcpAddr(sourceHost, sourcePort),
		remote: tcpAddr(remoteHost, remotePort),
	}, nil
}

func unixTarget(remotePath string, sourceHost string, sourcePort int) (target, error) {
	if err := badAddress(
		checkHost("remote path", remotePath),
		checkString("source host", sourceHost),
		checkPort("source port", sourcePort, 0),
	); err != nil {
		return target{}, err
	}
	return target{
		typ: wire.DirectStreamLocal,
		payload: ssh.Marshal(&wire.DirectStreamLocalMsg{
			SocketPath: remotePath,
			Reserved0:  sourceHost,
			Reserved1:  uint32(sourcePort),
		}),
		local:  unixAddr(""),
		remote: unixAddr(remotePath),
	}, nil
}

// OpenForwardUnix opens a direct-streamlocal@openssh.com channel: the server
// connects to the Unix socket at remotePath (ssh_channel_open_forward_unix in
// libssh). sourceHost and sourcePort name the originator; OpenSSH ignores
// them, as libssh documents.
func (s *Session) OpenForwardUnix(ctx context.Context, remotePath string, sourceHost string, sourcePort int) (*Channel, error) {
	t, err := unixTarget(remotePath, sourceHost, sourcePort)
	if err != nil {
		return nil, wrap("OpenForwardUnix", err)
	}
	return s.open(ctx, t)
}

// DialContext connects to addr through the server, for network "tcp",
// "tcp4", "tcp6" (addr is host:port, the host resolved by the server) or
// "unix" (addr is a socket path on the server). Its signature fits
// http.Transport.DialContext and similar hooks.
func (s *Session) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
		host, port, err := splitHostPort(addr)
		if err != nil {
			return nil, wrap("DialContext", err)
		}
		if err := checkFamily(network, host); err != nil {
			return nil, wrap("DialContext", err)
		}
		return s.OpenForward(ctx, host, port, "0.0.0.0", 0)
	case "unix":
		return s.OpenForwardUnix(ctx, addr, "", 0)
	default:
		return nil, wrap("DialContext", fmt.Errorf("%w: unsupported network %q", ErrBadAddress, network))
	}
}

// checkFamily rejects an IP literal of the wrong family for tcp4 or tcp6.
func checkFamily(network, host string) error {
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return nil
	}
	if (network == "tcp4" && !ip.Unmap().Is4()) || (network == "tcp6" && ip.Is4()) {
		return fmt.Errorf("%w: %s is not an address for %s", ErrBadAddress, host, network)
	}
	return nil
}

type opened struct {
	ch   ssh.Channel
	reqs <-chan *ssh.Request
	err  error
}

// open opens the channel t describes and tracks it.
func (s *Session) open(ctx context.Context, t target) (*Channel, error) {
	r, err := s.openRaw(ctx, t)
	if err != nil {
		return nil, err
	}
	return s.adopt(r.ch, r.reqs, t.local, t.remote)
}

// openRaw opens the channel t describes, giving up when ctx ends; a channel
// that is confirmed after that is closed. A ctx that can never end, such as
// context.Background(), needs no goroutine to watch it: the open is made
// from the caller's, which saves a hand-off on every open.
func (s *Session) openRaw(ctx context.Context, t target) (opened, error) {
	if err := ctx.Err(); err != nil {
		return opened{}, err
	}
	if ctx.Done() == nil {
		if s.over() {
			return opened{}, ErrSessionClosed
		}
		return s.opened(t, s.openChannel(t))
	}
	result := make(chan opened)
	abandoned := make(chan struct{})
	ok := s.spawn(func() {
		r := s.openChannel(t)
		select {
		case result <- r:
		case <-abandoned:
			if r.err == nil {
				r.ch.Close()
				ssh.DiscardRequests(r.reqs)
			}
		}
	})
	if !ok {
		return opened{}, ErrSessionClosed
	}
	select {
	case r := <-result:
		return s.opened(t, r)
	case <-ctx.Done():
		close(abandoned)
		return opened{}, wrapf(ctx.Err(), "open %s to %s", t.typ, t.remote)
	}
}

// openChannel sends the open for t and waits for the server's answer.
func (s *Session) openChannel(t target) opened {
	s.conn.enter()
	defer s.conn.leave()
	ch, reqs, err := s.client.OpenChannel(t.typ, t.payload)
	return opened{ch, reqs, err}
}

// opened turns the outcome of opening t into openRaw's result.
func (s *Session) opened(t target, r opened) (opened, error) {
	if r.err != nil {
		if s.over() {
			r.err = ErrSessionClosed
		}
		return opened{}, wrapf(r.err, "open %s to %s", t.typ, t.remote)
	}
	return r, nil
}
