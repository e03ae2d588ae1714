package sshfwd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/internal/socks"
)

// socksHandshakeTimeout bounds the time from accepting a SOCKS client to
// answering it: reading its request and opening the channel. A client that
// says nothing, or a destination the server cannot reach, does not hold a
// connection forever.
const socksHandshakeTimeout = 30 * time.Second

// ServeSOCKS is a SOCKS proxy whose connections leave through the SSH
// server, as ssh -D does (libssh has no call for it; its programs combine
// ssh_channel_open_forward with their own SOCKS code). It accepts clients
// on ln and serves each in its own goroutine: it reads a SOCKS4, SOCKS4a or
// SOCKS5 CONNECT request, opens a direct-tcpip channel to the destination
// as OpenForward does, naming the client's address as the originator,
// answers, and relays data both ways, passing half-closes on.
//
// Host names are sent to the server unresolved, so the SSH server resolves
// them (SOCKS4a and socks5h semantics); IP addresses are sent as text.
// SOCKS5 clients must offer "no authentication required". A destination
// the server refuses gets the matching SOCKS reply: "connection not allowed
// by ruleset" when the server prohibits it (OpenSSH's PermitOpen), "connection
// refused", "host unreachable" or "network unreachable" when the server
// could not connect, "general failure" otherwise; a SOCKS4 client gets
// "rejected" (0x5B) for each of them. BIND and UDP ASSOCIATE are answered
// "command not supported". Problems with single clients are answered to
// them and not reported. ServeSOCKS may run on several listeners at once.
//
// ServeSOCKS blocks until ctx ends, the Session ends or ln.Accept fails,
// and returns once every connection it served has been closed. Like
// ForwardLocal it leaves ln open, interrupting Accept with a deadline (or
// closing ln when it has no SetDeadline), so ln can serve again on the next
// Session. It returns ctx.Err() when ctx ended, an error matching
// ErrSessionClosed when the Session ended, and otherwise the error from
// Accept.
//
// ServeSOCKS serves any number of clients at once, as ssh -D does;
// ServeDynamic takes a bound.
func (s *Session) ServeSOCKS(ctx context.Context, ln net.Listener) error {
	return wrapForwardErr("ServeSOCKS", s.serveDynamic(ctx, DynamicForward{Listener: ln}))
}

// ServeDynamic is ServeSOCKS on f.Listener. With f.MaxConns above zero, a
// client accepted while that many are being served is disconnected at once.
func (s *Session) ServeDynamic(ctx context.Context, f DynamicForward) error {
	return wrapForwardErr("ServeDynamic", s.serveDynamic(ctx, f))
}

func (s *Session) serveDynamic(ctx context.Context, f DynamicForward) error {
	return s.serveUntil(ctx, f.Listener, newLimit(f.MaxConns), func(ctx context.Context, c net.Conn) io.ReadWriteCloser {
		return s.socksHandshake(ctx, c, f.OpenFailedCallback)
	})
}

// socksHandshake reads c's request, opens the channel it asks for and
// answers; it returns the open channel, or nil when the client was turned
// away or went away. A channel that does not open is also told to
// openFailedCallback.
func (s *Session) socksHandshake(ctx context.Context, c net.Conn, openFailedCallback func(net.Conn, error)) ssh.Channel {
	ctx, cancel := context.WithTimeout(ctx, socksHandshakeTimeout)
	defer cancel()
	// Stopping, or the end of the time the handshake has, must not wait
	// for a client that says nothing nor for a server that does not answer
	// the open, which cannot be interrupted: the client is let go.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	// The handshake comes in a few pieces, each a few fields that the
	// parser reads one at a time: buffered, each piece takes one read from
	// the socket rather than one per field.
	in := bufio.NewReaderSize(c, socksBufSize)
	req, err := readSOCKSConnect(struct {
		io.Reader
		io.Writer
	}{in, c})
	if err != nil {
		return nil
	}
	originHost, originPort := "0.0.0.0", 0
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		originHost, originPort = a.IP.String(), a.Port
	}
	t, err := tcpTarget(req.Host, req.Port, originHost, originPort)
	var ch ssh.Channel
	if err == nil {
		// Waited for here rather than abandoned when ctx ends, which
		// saves a goroutine on every open: a client whose time ran out
		// has been let go meanwhile, and a channel that comes late is
		// closed.
		ch, err = s.openTunnel(context.WithoutCancel(ctx), t)
	}
	if err == nil && ctx.Err() != nil {
		ch.Close()
		return nil
	}
	if err != nil {
		socks.WriteReply(c, req.Version, socksReply(err), netip.AddrPort{})
		openFailed(ctx, openFailedCallback, c, err)
		return nil
	}
	if socks.WriteReply(c, req.Version, socks.Succeeded, netip.AddrPort{}) != nil || sendBuffered(ch, in) != nil {
		ch.Close()
		return nil
	}
	return ch
}

// socksBufSize is the buffer the SOCKS handshake is read through: more than
// a SOCKS5 method offer or request, and most SOCKS4a ones, take.
const socksBufSize = 512

// sendBuffered writes to ch what the client sent after its request and in
// has read already: data a client sends without waiting for the reply.
func sendBuffered(ch io.Writer, in *bufio.Reader) error {
	if in.Buffered() == 0 {
		return nil
	}
	early, _ := in.Peek(in.Buffered())
	_, err := ch.Write(early)
	return err
}

// readSOCKSConnect reads a SOCKS request from c and returns it if it is a
// CONNECT; anything else is answered, with "command not supported" or what
// the parser chose, and returned as an error.
func readSOCKSConnect(c io.ReadWriter) (*socks.Request, error) {
	req, err := socks.ReadRequest(c, c)
	if err != nil {
		var re *socks.RequestError
		if errors.As(err, &re) && re.Version != 0 {
			socks.WriteReply(c, re.Version, re.Reply, netip.AddrPort{})
		}
		return nil, err
	}
	if req.Command != socks.Connect {
		socks.WriteReply(c, req.Version, socks.CommandNotSupported, netip.AddrPort{})
		return nil, fmt.Errorf("sshfwd: SOCKS %v not supported", req.Command)
	}
	return req, nil
}

// socksReply chooses the SOCKS5 reply for an error opening the channel.
// Servers give the reason for a failed connection only as text: OpenSSH sends
// strerror or gai_strerror of the failure, or a fixed "open failed" or
// "connect failed".
func socksReply(err error) socks.Reply {
	var oce *ssh.OpenChannelError
	if !errors.As(err, &oce) {
		return socks.GeneralFailure
	}
	switch oce.Reason {
	case ssh.Prohibited:
		return socks.NotAllowed
	case ssh.ConnectionFailed:
		msg := strings.ToLower(oce.Message)
		switch {
		case strings.Contains(msg, "network is unreachable"):
			return socks.NetworkUnreachable
		case containsAny(msg, "unreachable", "no route", "timed out", "not known", "name resolution", "no address associated"):
			return socks.HostUnreachable
		}
		return socks.ConnectionRefused
	}
	return socks.GeneralFailure
}

// containsAny reports whether s contains any of subs.
func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
