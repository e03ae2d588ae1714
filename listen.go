package sshfwd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/internal/wire"
)

// cancelTimeout bounds the cancel request a Listener sends when it closes.
const cancelTimeout = 10 * time.Second

// remoteForward is one forward the server listens on for this Session.
type remoteForward struct {
	unix    bool
	addr    string // the host as requested, or the socket path
	port    int    // the bound port; the requested one while pending
	pending bool   // requested, not yet answered
	q       *queue // where its channels wait: a Listener's, or the AcceptForward queue
}

// ListenForward asks the server to listen on address and port and forward
// every connection to it back to this client (tcpip-forward, RFC 4254 7.1;
// ssh_channel_listen_forward in libssh). address is sent as given: "" means
// every address the server allows, "localhost" is resolved by the server.
// Port 0 lets the server choose; the bound port is returned either way.
// Connections arrive through AcceptForward.
//
// ctx bounds the wait for the server's answer; a forward the server grants
// after ctx ended is cancelled again.
func (s *Session) ListenForward(ctx context.Context, address string, port int) (boundPort int, err error) {
	if err := errors.Join(checkString("address", address), checkPort("port", port, 0)); err != nil {
		return 0, fmt.Errorf("sshfwd: ListenForward: %w", err)
	}
	f := &remoteForward{addr: address, port: port, pending: true, q: s.acceptQ}
	if err := s.requestForward(ctx, f); err != nil {
		return 0, err
	}
	return f.boundPort(), nil
}

// AcceptForward waits for the next connection to any forward made with
// ListenForward, in arrival order, and returns it with the port it arrived
// on (ssh_channel_accept_forward and ssh_channel_open_forward_port in
// libssh). The Channel's RemoteAddr is the originator and its LocalAddr the
// forwarded address. ctx replaces libssh's timeout; once the connection
// ends, AcceptForward fails with an error matching net.ErrClosed.
func (s *Session) AcceptForward(ctx context.Context) (ch *Channel, destinationPort int, err error) {
	for {
		in, ok, err := s.acceptQ.pop(ctx, s.done)
		if err != nil {
			return nil, 0, fmt.Errorf("sshfwd: AcceptForward: %w", err)
		}
		if !ok {
			return nil, 0, fmt.Errorf("sshfwd: AcceptForward: %w", ErrSessionClosed)
		}
		c, err := s.acceptIncoming(in)
		if err == nil {
			return c, in.port, nil
		}
		if s.over() {
			return nil, 0, fmt.Errorf("sshfwd: AcceptForward: %w", ErrSessionClosed)
		}
		// The originator gave up before we accepted; wait for the next one.
	}
}

// CancelForward asks the server to stop listening on address and port, as
// they were passed to ListenForward (port the bound one), with
// cancel-tcpip-forward (ssh_channel_cancel_forward in libssh). Connections
// of that forward still waiting for AcceptForward are refused.
func (s *Session) CancelForward(ctx context.Context, address string, port int) error {
	if err := errors.Join(checkString("address", address), checkPort("port", port, 1)); err != nil {
		return fmt.Errorf("sshfwd: CancelForward: %w", err)
	}
	if f := s.forget(func(f *remoteForward) bool {
		return !f.unix && f.q == s.acceptQ && f.addr == address && f.port == port
	}); f != nil {
		s.acceptQ.remove(func(in incoming) bool { return in.fwd == f }, "sshfwd: forward cancelled")
	}
	payload := ssh.Marshal(&wire.TCPIPForwardMsg{Addr: address, Port: uint32(port)})
	if _, err := s.request(ctx, wire.CancelTCPIPForward, payload, nil); err != nil {
		return fmt.Errorf("sshfwd: CancelForward %s: %w", net.JoinHostPort(address, fmt.Sprint(port)), err)
	}
	return nil
}

// Listen asks the server to listen on address and returns a net.Listener
// whose Accept returns each connection made to it, as a *Channel. network is
// "tcp", "tcp4" or "tcp6" with a host:port address (port 0 lets the server
// choose; Addr reports the bound port), or "unix" with a socket path on the
// server (streamlocal-forward@openssh.com). Closing the Listener cancels the
// forward on the server. Each Listener has its own queue, so one that is not
// accepted on never holds up the others.
func (s *Session) Listen(network, address string) (net.Listener, error) {
	f := &remoteForward{pending: true, q: newQueue()}
	switch network {
	case "tcp", "tcp4", "tcp6":
		host, port, err := splitHostPort(address)
		if err == nil {
			err = errors.Join(checkString("address", host), checkPort("port", port, 0))
		}
		if err != nil {
			return nil, fmt.Errorf("sshfwd: Listen: %w", err)
		}
		f.addr, f.port = host, port
	case "unix":
		if err := checkHost("socket path", address); err != nil {
			return nil, fmt.Errorf("sshfwd: Listen: %w", err)
		}
		f.addr, f.unix = address, true
	default:
		return nil, fmt.Errorf("sshfwd: Listen: %w: unsupported network %q", ErrBadAddress, network)
	}
	if err := s.requestForward(context.Background(), f); err != nil {
		return nil, err
	}
	return &Listener{s: s, f: f}, nil
}

// Listener is a forward on the server, made by Session.Listen.
type Listener struct {
	s      *Session
	f      *remoteForward
	closed sync.Once
}

// Accept waits for the next connection and returns it as a *Channel whose
// RemoteAddr is the originator. After Close, or once the connection ended,
// it returns an error matching net.ErrClosed.
func (l *Listener) Accept() (net.Conn, error) {
	return l.AcceptContext(context.Background())
}

// AcceptContext is Accept bounded by ctx.
func (l *Listener) AcceptContext(ctx context.Context) (*Channel, error) {
	for {
		in, ok, err := l.f.q.pop(ctx, l.s.done)
		if err != nil {
			return nil, l.opError(err)
		}
		if !ok {
			return nil, l.opError(net.ErrClosed)
		}
		c, err := l.s.acceptIncoming(in)
		if err == nil {
			return c, nil
		}
		if isClosed(l.s.done) {
			return nil, l.opError(net.ErrClosed)
		}
	}
}

// Close refuses queued connections, makes Accept fail and cancels the
// forward on the server, waiting up to ten seconds for its answer.
// Channels already accepted stay open.
func (l *Listener) Close() error {
	var err error
	l.closed.Do(func() {
		l.f.q.close("sshfwd: listener closed")
		l.s.forget(func(f *remoteForward) bool { return f == l.f })
		if isClosed(l.s.done) {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), cancelTimeout)
		defer cancel()
		name, payload := l.f.cancelRequest()
		if _, rerr := l.s.request(ctx, name, payload, nil); rerr != nil && !isClosed(l.s.done) {
			err = l.opError(rerr)
		}
	})
	return err
}

// Addr returns the forwarded address with the bound port, or the socket path.
func (l *Listener) Addr() net.Addr {
	if l.f.unix {
		return unixAddr(l.f.addr)
	}
	return tcpAddr(l.f.addr, l.f.port)
}

func (l *Listener) opError(err error) error {
	return &net.OpError{Op: "accept", Net: l.Addr().Network(), Addr: l.Addr(), Err: err}
}

// request returns the global request that sets up f.
func (f *remoteForward) request() (string, []byte) {
	if f.unix {
		return wire.StreamLocalForward, ssh.Marshal(&wire.StreamLocalForwardMsg{SocketPath: f.addr})
	}
	return wire.TCPIPForward, ssh.Marshal(&wire.TCPIPForwardMsg{Addr: f.addr, Port: uint32(f.port)})
}

// cancelRequest returns the global request that undoes f.
func (f *remoteForward) cancelRequest() (string, []byte) {
	if f.unix {
		return wire.CancelStreamLocalForward, ssh.Marshal(&wire.StreamLocalForwardMsg{SocketPath: f.addr})
	}
	return wire.CancelTCPIPForward, ssh.Marshal(&wire.TCPIPForwardMsg{Addr: f.addr, Port: uint32(f.port)})
}

// requestForward registers f, then asks the server for it. Registering first
// lets the router place a channel that races ahead of the server's answer.
func (s *Session) requestForward(ctx context.Context, f *remoteForward) error {
	s.mu.Lock()
	if s.closed || s.over() {
		s.mu.Unlock()
		return fmt.Errorf("sshfwd: forward %s: %w", f, ErrSessionClosed)
	}
	s.forwards = append(s.forwards, f)
	s.mu.Unlock()

	name, payload := f.request()
	reply, err := s.request(ctx, name, payload, func(late []byte) {
		// Granted after the caller gave up: take it back.
		g := *f
		if port, err := g.parseBound(late); err == nil {
			g.port = port
			cname, cpayload := g.cancelRequest()
			s.client.SendRequest(cname, true, cpayload)
		}
	})
	var port int
	if err == nil {
		port, err = f.parseBound(reply)
	}
	if err != nil {
		s.forget(func(g *remoteForward) bool { return g == f })
		return fmt.Errorf("sshfwd: forward %s: %w", f, err)
	}
	s.mu.Lock()
	f.port, f.pending = port, false
	s.mu.Unlock()
	return nil
}

// parseBound returns the port the server bound, from its answer.
func (f *remoteForward) parseBound(reply []byte) (int, error) {
	if f.unix || f.port != 0 {
		return f.port, nil
	}
	var r wire.TCPIPForwardReply
	if err := wire.Parse("tcpip-forward reply", reply, &r); err != nil {
		return 0, err
	}
	if r.Port == 0 || r.Port > 65535 {
		return 0, fmt.Errorf("sshfwd: server bound port %d", r.Port)
	}
	return int(r.Port), nil
}

// String names the forward in errors.
func (f *remoteForward) String() string {
	if f.unix {
		return f.addr
	}
	return net.JoinHostPort(f.addr, fmt.Sprint(f.port))
}

// boundPort returns the port the server bound.
func (f *remoteForward) boundPort() int { return f.port }

// request sends a global request and waits for the answer until ctx ends or
// the connection does. late, if not nil, gets the answer of a request that
// succeeded after the caller stopped waiting.
func (s *Session) request(ctx context.Context, name string, payload []byte, late func(reply []byte)) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	type answer struct {
		ok    bool
		reply []byte
		err   error
	}
	result := make(chan answer)
	abandoned := make(chan struct{})
	if !s.spawn(func() {
		ok, reply, err := s.client.SendRequest(name, true, payload)
		select {
		case result <- answer{ok, reply, err}:
		case <-abandoned:
			if ok && err == nil && late != nil {
				late(reply)
			}
		}
	}) {
		return nil, ErrSessionClosed
	}
	select {
	case a := <-result:
		switch {
		case a.err != nil && s.over():
			return nil, ErrSessionClosed
		case a.err != nil:
			return nil, a.err
		case !a.ok:
			return nil, ErrRequestDenied
		}
		return a.reply, nil
	case <-ctx.Done():
		close(abandoned)
		return nil, ctx.Err()
	}
}

// forget removes the first forward for which match is true and returns it.
func (s *Session) forget(match func(*remoteForward) bool) *remoteForward {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.forwards {
		if match(f) {
			s.forwards = append(s.forwards[:i], s.forwards[i+1:]...)
			return f
		}
	}
	return nil
}

// findForward returns the forward a forwarded-tcpip channel for host:port
// belongs to. Servers answer with the address as it was requested, but some
// spell it differently ("127.0.0.1" for "localhost", "0.0.0.0" for ""), so
// an exact match is tried first, then the only forward on that port, then
// the only one on that port whose address means the same, and last a
// port-0 request still waiting for its answer.
func (s *Session) findForward(host string, port int) *remoteForward {
	s.mu.Lock()
	defer s.mu.Unlock()
	var onPort, alike, waiting []*remoteForward
	for _, f := range s.forwards {
		switch {
		case f.unix:
		case f.port == port && f.addr == host:
			return f
		case f.port == port:
			onPort = append(onPort, f)
			if sameAddress(f.addr, host) {
				alike = append(alike, f)
			}
		case f.pending && f.port == 0 && sameAddress(f.addr, host):
			waiting = append(waiting, f)
		}
	}
	for _, fs := range [][]*remoteForward{onPort, alike, waiting} {
		if len(fs) == 1 {
			return fs[0]
		}
	}
	return nil
}

// findUnixForward returns the streamlocal forward for path.
func (s *Session) findUnixForward(path string) *remoteForward {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.forwards {
		if f.unix && f.addr == path {
			return f
		}
	}
	return nil
}

// sameAddress reports whether two spellings of a listen address mean the same.
func sameAddress(a, b string) bool {
	return addressClass(a) == addressClass(b)
}

func addressClass(a string) string {
	switch a = strings.ToLower(a); a {
	case "", "*", "0.0.0.0", "::", "[::]":
		return "any"
	case "localhost", "127.0.0.1", "::1", "[::1]":
		return "loopback"
	}
	return a
}

// acceptIncoming confirms a queued channel and wraps it.
func (s *Session) acceptIncoming(in incoming) (*Channel, error) {
	ch, reqs, err := in.nc.Accept()
	if err != nil {
		return nil, fmt.Errorf("sshfwd: accept %s: %w", in.nc.ChannelType(), err)
	}
	return s.adopt(ch, reqs, in.local, in.remote)
}
