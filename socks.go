package sshfwd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/internal/relay"
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
// with OpenForward, naming the client's address as the originator, answers,
// and relays data both ways, passing half-closes on.
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
// ServeSOCKS blocks until ctx ends, the Session ends or ln.Accept fails. It
// closes ln in every case (closing is what stops Accept), closes the
// connections it is serving and their channels, and returns only when all of
// its goroutines have finished. It returns ctx.Err() when ctx ended, an
// error matching ErrSessionClosed when the Session ended, and otherwise the
// error from Accept.
func (s *Session) ServeSOCKS(ctx context.Context, ln net.Listener) error {
	serveCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-serveCtx.Done():
		case <-s.Done():
			cancel()
		}
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case isClosed(s.Done()):
				return fmt.Errorf("sshfwd: ServeSOCKS: %w", ErrSessionClosed)
			}
			return fmt.Errorf("sshfwd: ServeSOCKS: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveSOCKSConn(serveCtx, c)
		}()
	}
}

// serveSOCKSConn serves one SOCKS client until its connection ends or ctx
// does, and closes c.
func (s *Session) serveSOCKSConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	// Closing c interrupts whatever is blocked on it when ctx ends, and a
	// relay that loses one side closes the other, the channel.
	closed := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		c.Close()
		close(closed)
	})
	defer func() {
		if !stop() {
			<-closed
		}
	}()
	if ch := s.socksHandshake(ctx, c); ch != nil {
		relay.Relay(c, ch)
	}
}

// socksHandshake reads c's request, opens the channel it asks for and
// answers; it returns the open channel, or nil when the client was turned
// away or went away.
func (s *Session) socksHandshake(ctx context.Context, c net.Conn) *Channel {
	ctx, cancel := context.WithTimeout(ctx, socksHandshakeTimeout)
	defer cancel()
	if err := c.SetDeadline(time.Now().Add(socksHandshakeTimeout)); err != nil {
		return nil
	}
	req, err := socks.ReadRequest(c, c)
	if err != nil {
		var re *socks.RequestError
		if errors.As(err, &re) && re.Version != 0 {
			socks.WriteReply(c, re.Version, re.Reply, netip.AddrPort{})
		}
		return nil
	}
	if req.Command != socks.Connect {
		socks.WriteReply(c, req.Version, socks.CommandNotSupported, netip.AddrPort{})
		return nil
	}
	originHost, originPort := "0.0.0.0", 0
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		originHost, originPort = a.IP.String(), a.Port
	}
	ch, err := s.OpenForward(ctx, req.Host, req.Port, originHost, originPort)
	if err != nil {
		socks.WriteReply(c, req.Version, socksReply(err), netip.AddrPort{})
		return nil
	}
	if socks.WriteReply(c, req.Version, socks.Succeeded, netip.AddrPort{}) != nil || c.SetDeadline(time.Time{}) != nil {
		ch.Close()
		return nil
	}
	return ch
}

// socksReply chooses the SOCKS5 reply for an OpenForward error. Servers
// give the reason for a failed connection only as text: OpenSSH sends
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
