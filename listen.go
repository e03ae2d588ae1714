package sshfwd

import (
	"context"
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
	unix      bool
	addr      string // the host as requested, or the socket path
	port      int    // the bound port; the requested one while pending
	requested int    // the port as requested: 0 when the server chose
	pending   bool   // requested, not yet answered
	q         *queue // where its channels wait: a Listener's, or the AcceptForward queue
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
	if err := badAddress(checkString("address", address), checkPort("port", port, 0)); err != nil {
		return 0, wrap("ListenForward", err)
	}
	f := &remoteForward{addr: address, port: port, requested: port, pending: true, q: s.acceptQ}
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
			return nil, 0, wrap("AcceptForward", err)
		}
		if !ok {
			return nil, 0, wrap("AcceptForward", ErrSessionClosed)
		}
		c, err := s.acceptIncoming(in)
		if err == nil {
			return c, in.port, nil
		}
		if s.over() {
			return nil, 0, wrap("AcceptForward", ErrSessionClosed)
		}
		// The originator gave up before we accepted; wait for the next one.
	}
}

// CancelForward asks the server to stop listening on address and port, as
// they were passed to ListenForward (port the bound one), with
// cancel-tcpip-forward (ssh_channel_cancel_forward in libssh). Connections
// of that forward still waiting for AcceptForward are refused.
func (s *Session) CancelForward(ctx context.Context, address string, port int) error {
	if err := badAddress(checkString("address", address), checkPort("port", port, 1)); err != nil {
		return wrap("CancelForward", err)
	}
	if f := s.forget(func(f *remoteForward) bool {
		return !f.unix && f.q == s.acceptQ && f.addr == address && f.port == port
	}); f != nil {
		s.acceptQ.remove(func(in incoming) bool { return in.fwd == f }, "sshfwd: forward cancelled")
	}
	payload := ssh.Marshal(&wire.TCPIPForwardMsg{Addr: address, Port: uint32(port)})
	if _, err := s.request(ctx, wire.CancelTCPIPForward, payload, nil); err != nil {
		return wrapf(err, "CancelForward %s", net.JoinHostPort(address, fmt.Sprint(port)))
	}
	return nil
}

// Listen asks the server to listen on address and returns a net.Listener
// whose Accept returns each connection made to it, as a *Channel. network is
// "tcp", "tcp4" or "tcp6" with a host:port address (port 0 lets the server
// choose; Addr reports the bound port), or "unix" with a socket path on the
// server (streamlocal-forward@openssh.com). Closing the Listener cancels the
// forward on the server. Each Listener has its own queue, so one that is not
// accepted on never holds up the others. Listen waits for the server's
// answer as long as the connection lasts; ListenContext bounds the wait.
func (s *Session) Listen(network, address string) (net.Listener, error) {
	return s.ListenContext(context.Background(), network, address)
}

// ListenContext is Listen with ctx bounding the wait for the server's
// answer, as net.ListenConfig.Listen. A forward the server grants after ctx
// ended is cancelled again, and connections it sends for it are refused.
func (s *Session) ListenContext(ctx context.Context, network, address string) (net.Listener, error) {
	ln, err := s.listen(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return ln, nil
}

// listen is ListenContext returning the concrete type.
func (s *Session) listen(ctx context.Context, network, address string) (*Listener, error) {
	f := &remoteForward{pending: true, q: newQueue()}
	switch network {
	case "tcp", "tcp4", "tcp6":
		host, port, err := splitHostPort(address)
		if err == nil {
			err = badAddress(checkString("address", host), checkPort("port", port, 0))
		}
		if err != nil {
			return nil, wrap("Listen", err)
		}
		f.addr, f.port, f.requested = host, port, port
	case "unix":
		if err := badAddress(checkHost("socket path", address)); err != nil {
			return nil, wrap("Listen", err)
		}
		f.addr, f.unix = address, true
	default:
		return nil, wrap("Listen", fmt.Errorf("%w: unsupported network %q", ErrBadAddress, network))
	}
	if err := s.requestForward(ctx, f); err != nil {
		return nil, err
	}
	return &Listener{s: s, f: f}, nil
}

// Listener is a forward on the server, made by Session.Listen.
type Listener struct {
	s      *Session
	f      *remoteForward
	closed sync.Once
	// full, if not nil, says whether the channel at the head of the queue
	// must be refused, with ResourceShortage, rather than accepted: it is
	// set before the first Accept and not changed after.
	full func() bool
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
		if l.full != nil && l.full() {
			in.nc.Reject(ssh.ResourceShortage, "sshfwd: too many forwarded connections")
			continue
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
			err = &net.OpError{Op: "close", Net: l.Addr().Network(), Addr: l.Addr(), Err: wrap(name, rerr)}
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
		return wrapf(ErrSessionClosed, "forward %s", f)
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
		s.drop(f)
		return wrapf(err, "forward %s", f)
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
	return s.await(ctx, func() (bool, []byte, error) {
		return s.client.SendRequest(name, true, payload)
	}, late)
}

// await runs send, a request that blocks until the server answers, in a
// goroutine of the Session, and waits for its answer until ctx ends or the
// connection does. late, if not nil, gets the answer of a request that
// succeeded after the caller stopped waiting.
func (s *Session) await(ctx context.Context, send func() (bool, []byte, error), late func(reply []byte)) ([]byte, error) {
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
		ok, reply, err := send()
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

// drop forgets a forward the server refused, or that was given up on, and
// refuses the channels that raced ahead of the answer: nobody will accept
// them.
func (s *Session) drop(f *remoteForward) {
	s.forget(func(g *remoteForward) bool { return g == f })
	f.q.remove(func(in incoming) bool { return in.fwd == f }, "sshfwd: forward refused")
	if f.q != s.acceptQ {
		f.q.close("sshfwd: forward refused")
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
// port-0 request still waiting for its answer. Port 0 itself is what
// asyncssh before 2.13 sends for a forward whose port it chose: it goes to
// the only forward requested with port 0 on that address.
//
// It returns the forward with the port the channel arrived on: the bound
// port in place of asyncssh's 0.
func (s *Session) findForward(host string, port int) (*remoteForward, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var onPort, alike, waiting, chosen []*remoteForward
	for _, f := range s.forwards {
		switch {
		case f.unix:
		case port == 0:
			if f.requested == 0 && sameAddress(f.addr, host) {
				chosen = append(chosen, f)
			}
		case f.port == port && f.addr == host:
			return f, port
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
			return fs[0], port
		}
	}
	if len(chosen) == 1 {
		return chosen[0], chosen[0].port
	}
	return nil, 0
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
		return nil, wrapf(err, "accept %s", in.nc.ChannelType())
	}
	return s.adopt(ch, reqs, in.local, in.remote)
}
