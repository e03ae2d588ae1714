package sshfwd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/internal/relay"
)

// dialTimeout bounds how long ForwardRemote waits to connect to its local
// target.
const dialTimeout = 10 * time.Second

// ForwardLocal does what ssh -L does: every connection accepted on ln is
// forwarded through the server to remoteAddr, "host:port" (the host resolved
// by the server) or an absolute Unix socket path on the server, with the
// accepted peer as the originator. Data is copied both ways with exact
// half-close.
//
// ForwardLocal returns when ctx ends, the Session ends or ln fails, once
// every connection it forwarded has been closed. It does not close ln: it
// interrupts Accept with a deadline where ln supports one (as *net.TCPListener
// and *net.UnixListener do) and clears it before returning, so ln can be
// passed to ForwardLocal again, on a new Session after a reconnect for
// instance. A listener without SetDeadline is closed to stop it.
//
// ForwardLocal forwards any number of connections at once, as ssh does;
// ServeLocal takes a bound.
func (s *Session) ForwardLocal(ctx context.Context, ln net.Listener, remoteAddr string) error {
	return wrapForwardErr("ForwardLocal", s.serveLocal(ctx, LocalForward{Listener: ln, RemoteAddr: remoteAddr}))
}

// ServeLocal is ForwardLocal for f: connections accepted on f.Listener go
// to f.RemoteAddr. With f.MaxConns above zero, a connection accepted while
// that many are being forwarded is closed at once.
func (s *Session) ServeLocal(ctx context.Context, f LocalForward) error {
	return wrapForwardErr("ServeLocal", s.serveLocal(ctx, f))
}

func (s *Session) serveLocal(ctx context.Context, f LocalForward) error {
	dest, err := parseDestination(f.RemoteAddr)
	if err != nil {
		return err
	}
	return s.serveUntil(ctx, f.Listener, newLimit(f.MaxConns), func(ctx context.Context, c net.Conn) io.ReadWriteCloser {
		host, port := originOf(c.RemoteAddr())
		t, err := dest(host, port)
		if err != nil {
			return nil
		}
		// Stopping does not abandon the open: serveUntil closes c, and
		// the channel, once the server answers, finds the relay closed.
		// Waiting here saves a goroutine that would watch ctx meanwhile.
		ch, err := s.openTunnel(context.WithoutCancel(ctx), t)
		if err != nil {
			openFailed(ctx, f.OpenFailedCallback, c, err)
			return nil
		}
		return ch
	})
}

// openTunnel opens the channel t describes for one of the forwarding
// helpers, which relay it with nothing in between: the x/crypto channel
// itself, not a Channel, whose buffers and goroutines serve deadlines that a
// relay does not set. Its requests are discarded until it closes.
func (s *Session) openTunnel(ctx context.Context, t target) (ssh.Channel, error) {
	r, err := s.openRaw(ctx, t)
	if err != nil {
		return nil, err
	}
	if !s.spawn(func() { ssh.DiscardRequests(r.reqs) }) {
		r.ch.Close()
		return nil, ErrSessionClosed
	}
	if s.conn == nil {
		return r.ch, nil
	}
	return tunnelChannel{r.ch, s.conn}, nil
}

// tunnelChannel is the x/crypto channel of a tunnel, whose sends the
// connection's gatherConn counts.
type tunnelChannel struct {
	ssh.Channel
	conn *gatherConn
}

func (c tunnelChannel) Write(p []byte) (int, error) {
	c.conn.enter()
	defer c.conn.leave()
	return c.Channel.Write(p)
}

func (c tunnelChannel) CloseWrite() error {
	c.conn.enter()
	defer c.conn.leave()
	return c.Channel.CloseWrite()
}

func (c tunnelChannel) Close() error {
	c.conn.enter()
	defer c.conn.leave()
	return c.Channel.Close()
}

// ForwardRemote does what ssh -R does: the server listens on remoteAddr,
// "host:port" (an empty host means every address the server allows) or an
// absolute Unix socket path, and every connection to it is forwarded back
// and connected to localAddr, "host:port" or a Unix socket path here. With
// an empty localAddr this client is a SOCKS proxy for those connections, as
// ServeRemoteSOCKS. It returns when ctx or the Session ends, after
// cancelling the forward and closing every connection it forwarded; ctx
// also bounds the wait for the server to grant the forward.
//
// ForwardRemote forwards any number of connections at once, as ssh does;
// ServeRemote takes a bound.
func (s *Session) ForwardRemote(ctx context.Context, remoteAddr, localAddr string) error {
	return wrapForwardErr("ForwardRemote", s.serveRemote(ctx, RemoteForward{RemoteAddr: remoteAddr, LocalAddr: localAddr}))
}

// ServeRemote is ForwardRemote for f. With f.MaxConns above zero, a
// connection the server forwards while that many are being forwarded is
// refused with ResourceShortage, which the server reports to its originator
// as a failed forward.
func (s *Session) ServeRemote(ctx context.Context, f RemoteForward) error {
	return wrapForwardErr("ServeRemote", s.serveRemote(ctx, f))
}

// serveRemote asks for the remote forward f and serves it.
func (s *Session) serveRemote(ctx context.Context, f RemoteForward) error {
	connect, err := f.connector()
	if err != nil {
		return wrap("local address", err)
	}
	ln, err := s.listenRemote(ctx, f.RemoteAddr)
	if err != nil {
		return err
	}
	return s.serveListener(ctx, ln, newLimit(f.MaxConns), connect)
}

// connectFunc returns the local end for a channel forwarded back by the
// server.
type connectFunc func(ctx context.Context, ch *Channel) (net.Conn, error)

// localConnector returns how a remote forward connects its channels here:
// by dialing addr, a Unix socket path or host:port, or, when addr is empty,
// as a SOCKS proxy.
func localConnector(addr string) (connectFunc, error) {
	if addr == "" {
		return socksConnect, nil
	}
	network := "tcp"
	if strings.HasPrefix(addr, "/") {
		network = "unix"
	} else if _, _, err := splitHostPort(addr); err != nil {
		return nil, err
	}
	return func(ctx context.Context, _ *Channel) (net.Conn, error) {
		var d net.Dialer
		ctx, cancel := context.WithTimeout(ctx, dialTimeout)
		defer cancel()
		return d.DialContext(ctx, network, addr)
	}, nil
}

// listenRemote asks the server to listen on remoteAddr, a Unix socket path
// when it begins with "/", else host:port, waiting for its answer until ctx
// ends.
func (s *Session) listenRemote(ctx context.Context, remoteAddr string) (*Listener, error) {
	network := "tcp"
	if strings.HasPrefix(remoteAddr, "/") {
		network = "unix"
	}
	return s.listen(ctx, network, remoteAddr)
}

// serveListener relays every connection that arrives on ln to what connect
// returns for it, until ctx or the Session ends; then it closes ln, which
// cancels the forward. Beyond lim, the server's channels are refused before
// they are accepted.
func (s *Session) serveListener(ctx context.Context, ln *Listener, lim *limit, connect connectFunc) error {
	defer ln.Close()
	ln.full = lim.full
	return s.serveUntil(ctx, ln, lim, func(ctx context.Context, c net.Conn) io.ReadWriteCloser {
		local, err := connect(ctx, c.(*Channel))
		if err != nil {
			return nil
		}
		return local
	})
}

// limit bounds the connections a forwarding helper serves at once. A nil
// limit, or one of zero, bounds nothing.
type limit struct {
	max    int64
	active atomic.Int64
}

func newLimit(max int) *limit {
	if max <= 0 {
		return nil
	}
	return &limit{max: int64(max)}
}

// full reports whether a new connection would exceed the bound.
func (l *limit) full() bool { return l != nil && l.active.Load() >= l.max }

// add counts a connection starting (+1) or ending (-1).
func (l *limit) add(n int64) {
	if l != nil {
		l.active.Add(n)
	}
}

// serveUntil accepts on ln until ctx or the Session ends or Accept fails,
// and serves each connection in a goroutine of the Session: setup returns
// the stream to relay it with, or nil to turn it away. Then it closes every
// connection it accepted and every stream it relays, and waits for the
// relays. A setup that waits for the server, which an open cannot stop
// waiting for, may end after that: the stream it returns is closed at once.
// A connection accepted while lim is full is closed at once.
func (s *Session) serveUntil(ctx context.Context, ln net.Listener, lim *limit, setup func(context.Context, net.Conn) io.ReadWriteCloser) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var open tunnelSet
	stop := make(chan struct{})
	var watcher sync.WaitGroup
	watcher.Add(1)
	go func() {
		defer watcher.Done()
		select {
		case <-ctx.Done():
		case <-s.done:
		case <-stop:
			return
		}
		cancel()
		interruptAccept(ln)
		open.closeAll()
	}()

	var err error
	for {
		var c net.Conn
		c, err = ln.Accept()
		if err != nil {
			break
		}
		if lim.full() || !open.hold(c) {
			c.Close()
			continue
		}
		lim.add(1)
		serve := func() {
			defer lim.add(-1)
			if far := setup(ctx, c); far != nil {
				open.relay(c, far)
			} else {
				open.drop(c)
			}
		}
		if !s.spawn(serve) {
			lim.add(-1)
			open.drop(c)
		}
	}
	close(stop)
	watcher.Wait()
	open.closeAll()
	open.wait()
	if d, ok := ln.(interface{ SetDeadline(time.Time) error }); ok {
		d.SetDeadline(time.Time{})
	}
	switch {
	case s.over():
		return ErrSessionClosed
	case ctx.Err() != nil:
		return context.Cause(ctx)
	}
	return err
}

// interruptAccept makes a pending Accept on ln return.
func interruptAccept(ln net.Listener) {
	if d, ok := ln.(interface{ SetDeadline(time.Time) error }); ok {
		d.SetDeadline(time.Unix(1, 0))
		return
	}
	ln.Close()
}

func wrapForwardErr(op string, err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return wrap(op, err)
}

// parseDestination returns how to open channels to addr, "host:port" or an
// absolute Unix socket path, for an originator.
func parseDestination(addr string) (func(host string, port int) (target, error), error) {
	if strings.HasPrefix(addr, "/") {
		if _, err := unixTarget(addr, "", 0); err != nil {
			return nil, err
		}
		return func(string, int) (target, error) { return unixTarget(addr, "", 0) }, nil
	}
	host, port, err := splitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if _, err := tcpTarget(host, port, "127.0.0.1", 0); err != nil {
		return nil, err
	}
	return func(ohost string, oport int) (target, error) { return tcpTarget(host, port, ohost, oport) }, nil
}

// originOf names the originator of a local connection as SSH wants it: an
// IP address and a port, or 127.0.0.1:0 for a Unix socket peer.
func originOf(a net.Addr) (string, int) {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String(), t.Port
	}
	return "127.0.0.1", 0
}

// tunnelSet is the set of connections a forwarding helper accepted and of
// the streams it relays them with, so that they can all be closed at once.
type tunnelSet struct {
	mu     sync.Mutex // guards open and closed
	open   map[io.Closer]struct{}
	closed bool
	relays sync.WaitGroup // relay calls that have not returned
}

// hold adds c to the set, unless the set was closed.
func (t *tunnelSet) hold(c io.Closer) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	if t.open == nil {
		t.open = make(map[io.Closer]struct{})
	}
	t.open[c] = struct{}{}
	return true
}

// drop closes c, which hold added, and forgets it.
func (t *tunnelSet) drop(c io.Closer) {
	t.mu.Lock()
	delete(t.open, c)
	t.mu.Unlock()
	c.Close()
}

// relay copies between a, which hold added, and b until both directions
// end, unless the set was closed already, in which case it closes both at
// once.
func (t *tunnelSet) relay(a, b io.ReadWriteCloser) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		a.Close()
		b.Close()
		return
	}
	t.open[b] = struct{}{}
	t.relays.Add(1)
	t.mu.Unlock()
	defer t.relays.Done()
	relay.Relay(a, b)
	t.mu.Lock()
	delete(t.open, a)
	delete(t.open, b)
	t.mu.Unlock()
}

// closeAll closes everything in the set, and everything added later.
func (t *tunnelSet) closeAll() {
	t.mu.Lock()
	t.closed = true
	open := t.open
	t.open = nil
	t.mu.Unlock()
	for c := range open {
		c.Close()
	}
}

// wait waits for the relays in progress; closeAll ends them.
func (t *tunnelSet) wait() { t.relays.Wait() }

// DialSSH connects to the SSH server at addr through this one and returns a
// Session to it, as ssh -J does: the new connection runs inside a
// direct-tcpip channel, so addr is resolved and reached by this Session's
// server. Closing the returned Session closes that channel; closing this
// Session ends both.
func (s *Session) DialSSH(ctx context.Context, addr string, config *ssh.ClientConfig) (*Session, error) {
	if config == nil {
		return nil, fmt.Errorf("sshfwd: DialSSH: nil ssh.ClientConfig")
	}
	conn, err := s.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, wrapf(err, "DialSSH %s", addr)
	}
	return NewClientConn(ctx, conn, addr, config)
}
