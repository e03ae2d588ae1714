package sshfwd

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/sshfwd/sshfwd/internal/socks"
)

// ServeRemoteSOCKS does what ssh -R [bind_address:]port does with no
// destination (OpenSSH 7.6 and later): the server listens on remoteAddr,
// "host:port" (an empty host means every address the server allows) or an
// absolute Unix socket path, and this client is a SOCKS4, SOCKS4a and SOCKS5
// proxy for every connection made to it. Each client's CONNECT destination
// is dialed from here, with a net.Dialer, and data is relayed both ways with
// exact half-close. Host names are resolved here. Anyone who can reach the
// remote port can reach whatever this machine can: bind it to loopback on
// the server unless that is what is wanted.
//
// A destination that cannot be reached gets the matching SOCKS reply
// ("connection refused", "host unreachable", "network unreachable", "general
// failure"); BIND and UDP ASSOCIATE get "command not supported".
//
// ServeRemoteSOCKS returns when ctx ends (with ctx.Err()) or the Session
// ends (with an error matching net.ErrClosed), after cancelling the forward
// and closing every connection it relayed. A forward the server refuses
// fails at once, wrapping ErrRequestDenied; ctx bounds the wait for the
// server's answer. ServeRemote with an empty LocalAddr is the same with a
// bound on the connections served at once.
func (s *Session) ServeRemoteSOCKS(ctx context.Context, remoteAddr string) error {
	return wrapForwardErr("ServeRemoteSOCKS", s.serveRemote(ctx, RemoteForward{RemoteAddr: remoteAddr}))
}

// socksConnect reads a SOCKS request from ch, connects to its destination
// from this machine and answers; the connection is returned once the client
// has been told it succeeded.
func socksConnect(ctx context.Context, ch *Channel) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, socksHandshakeTimeout)
	defer cancel()
	if err := ch.SetDeadline(time.Now().Add(socksHandshakeTimeout)); err != nil {
		return nil, err
	}
	req, err := readSOCKSConnect(ch)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	local, err := d.DialContext(ctx, "tcp", net.JoinHostPort(req.Host, strconv.Itoa(req.Port)))
	if err != nil {
		socks.WriteReply(ch, req.Version, dialReply(err), netip.AddrPort{})
		return nil, err
	}
	var bound netip.AddrPort
	if a, ok := local.LocalAddr().(*net.TCPAddr); ok && (req.Version == socks.Version5 || a.IP.To4() != nil) {
		bound = a.AddrPort()
	}
	if err := errors.Join(socks.WriteReply(ch, req.Version, socks.Succeeded, bound), ch.SetDeadline(time.Time{})); err != nil {
		local.Close()
		return nil, err
	}
	return local, nil
}

// dialReply chooses the SOCKS5 reply for a failed local dial.
func dialReply(err error) socks.Reply {
	var dns *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return socks.ConnectionRefused
	case errors.Is(err, syscall.ENETUNREACH):
		return socks.NetworkUnreachable
	case errors.Is(err, syscall.EHOSTUNREACH), errors.As(err, &dns), errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return socks.HostUnreachable
	}
	return socks.GeneralFailure
}
