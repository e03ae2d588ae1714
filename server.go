package sshfwd

import (
	"context"
	"net"

	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/internal/wire"
)

// OpenReverseForward opens a forwarded-tcpip channel (RFC 4254 7.2) from a
// server to its client, for a connection that arrived on a port the client
// asked the server to listen on with tcpip-forward
// (ssh_channel_open_reverse_forward in libssh). remoteHost and remotePort
// are the forwarded address as the client requested it; sourceHost and
// sourcePort are the originator. The Channel's LocalAddr is the forwarded
// address and its RemoteAddr the originator.
//
// ctx bounds the open only. A refusal by the client wraps
// *ssh.OpenChannelError.
func OpenReverseForward(ctx context.Context, conn ssh.Conn, remoteHost string, remotePort int, sourceHost string, sourcePort int) (*Channel, error) {
	if err := badAddress(
		checkString("forwarded address", remoteHost),
		checkPort("forwarded port", remotePort, 1),
		checkHost("source host", sourceHost),
		checkPort("source port", sourcePort, 0),
	); err != nil {
		return nil, wrap("OpenReverseForward", err)
	}
	payload := ssh.Marshal(&wire.TCPIP{
		Host:       remoteHost,
		Port:       uint32(remotePort),
		OriginHost: sourceHost,
		OriginPort: uint32(sourcePort),
	})
	return openOn(ctx, conn, wire.ForwardedTCPIP, payload, tcpAddr(remoteHost, remotePort), tcpAddr(sourceHost, sourcePort))
}

// OpenReverseForwardUnix opens a forwarded-streamlocal@openssh.com channel
// from a server to its client, for a connection that arrived on a Unix
// socket the client asked the server to listen on with
// streamlocal-forward@openssh.com. socketPath is the path as the client
// requested it.
func OpenReverseForwardUnix(ctx context.Context, conn ssh.Conn, socketPath string) (*Channel, error) {
	if err := badAddress(checkHost("socket path", socketPath)); err != nil {
		return nil, wrap("OpenReverseForwardUnix", err)
	}
	payload := ssh.Marshal(&wire.ForwardedStreamLocalMsg{SocketPath: socketPath})
	return openOn(ctx, conn, wire.ForwardedStreamLocal, payload, unixAddr(socketPath), unixAddr(""))
}

// OpenX11 opens an x11 channel (RFC 4254 6.3.2) from a server to its client,
// for an X client that connected to the display the server set up after an
// x11-req (ssh_channel_open_x11 in libssh). originAddr and originPort name
// the X client's end.
func OpenX11(ctx context.Context, conn ssh.Conn, originAddr string, originPort int) (*Channel, error) {
	if err := badAddress(
		checkHost("origin address", originAddr),
		checkPort("origin port", originPort, 0),
	); err != nil {
		return nil, wrap("OpenX11", err)
	}
	payload := ssh.Marshal(&wire.X11OpenMsg{OriginAddr: originAddr, OriginPort: uint32(originPort)})
	return openOn(ctx, conn, wire.X11, payload, tcpAddr("0.0.0.0", 0), tcpAddr(originAddr, originPort))
}

// openOn opens a channel on conn, giving up when ctx ends; a channel that is
// confirmed after that is closed. It waits for nothing it started: the
// opener ends when the peer answers or the connection dies.
func openOn(ctx context.Context, conn ssh.Conn, typ string, payload []byte, local, remote net.Addr) (*Channel, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	result := make(chan opened, 1)
	go func() {
		ch, reqs, err := conn.OpenChannel(typ, payload)
		result <- opened{ch, reqs, err}
	}()
	select {
	case r := <-result:
		if r.err != nil {
			return nil, wrapf(r.err, "open %s from %s", typ, remote)
		}
		return WrapChannel(r.ch, r.reqs, local, remote), nil
	case <-ctx.Done():
		go func() {
			if r := <-result; r.err == nil {
				r.ch.Close()
				ssh.DiscardRequests(r.reqs)
			}
		}()
		return nil, wrapf(ctx.Err(), "open %s from %s", typ, remote)
	}
}
