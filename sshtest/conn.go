package sshtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/internal/relay"
	"github.com/sshfwd/sshfwd/internal/wire"
)

// Conn is a client's connection to a Server, as the server sees it: tests
// get one from Server.Conns or Event.Conn, to freeze or close it. Its
// methods may be called from any goroutine.
type Conn struct {
	srv    *Server
	gate   *gate              // the accepted TCP connection, which Freeze stops
	nc     net.Conn           // what SSH runs on: gate, wrapped by Config.WrapConn
	ctx    context.Context    // done when the connection ends
	cancel context.CancelFunc // ends ctx, which kills the connection's processes

	// sconn is set once the client has authenticated, before any of the
	// goroutines that serve its channels and requests start, which read
	// it without the lock.
	sconn *ssh.ServerConn

	mu       sync.Mutex // guards sconn's writing, ended, held, forwards, channels and sessions
	ended    bool
	held     map[io.Closer]struct{}  // closed when the connection ends
	forwards map[forwardKey]*forward // tcpip-forward and streamlocal-forward listeners
	channels int                     // channels open, both ways, for MaxChannels
	sessions int                     // session channels open, for MaxSessions
}

func newConn(s *Server, tcp net.Conn) *Conn {
	g := newGate(tcp)
	var nc net.Conn = g
	if s.Config.WrapConn != nil {
		nc = s.Config.WrapConn(g)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Conn{
		srv:      s,
		gate:     g,
		nc:       nc,
		ctx:      ctx,
		cancel:   cancel,
		held:     make(map[io.Closer]struct{}),
		forwards: make(map[forwardKey]*forward),
	}
}

// RemoteAddr returns the client's address.
func (c *Conn) RemoteAddr() net.Addr { return c.gate.RemoteAddr() }

// User returns the user the client authenticated as, or "" until it has.
func (c *Conn) User() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sconn == nil {
		return ""
	}
	return c.sconn.User()
}

// Freeze makes the server stop reading from and writing to the connection,
// leaving the TCP connection open: to the client the server has gone
// silent, as behind a network that drops everything, which is what
// keep-alives are there to notice. What the client sends waits in the
// socket buffers, and what the server has to send waits in the server,
// until Resume. Freezing a frozen connection does nothing.
func (c *Conn) Freeze() { c.gate.freeze() }

// Resume undoes Freeze: the connection carries on where it stopped.
func (c *Conn) Resume() { c.gate.resume() }

// Close closes the connection, frozen or not, and with it everything it
// held: channels, forwards, processes. The server's goroutines for it may
// still be ending when Close returns; Server.Close waits for them.
func (c *Conn) Close() error {
	// The TCP connection goes first, so that nothing WrapConn put on top
	// waits to send what it holds, through a frozen gate or to a client
	// that does not read.
	err := c.gate.Close()
	c.nc.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// handshake runs the SSH handshake and authentication, closing the
// connection if they take longer than LoginGraceTime.
func (c *Conn) handshake() (*ssh.ServerConn, <-chan ssh.NewChannel, <-chan *ssh.Request, error) {
	grace := c.srv.Config.LoginGraceTime
	var timer *time.Timer
	if grace > 0 {
		timer = time.AfterFunc(grace, func() { c.Close() })
	}
	sconn, chans, reqs, err := ssh.NewServerConn(c.nc, c.srv.serverConfig(c))
	if timer != nil && !timer.Stop() {
		// The timer fired, even if authentication won the race to
		// finish: the connection is closed, or about to be.
		if err == nil {
			sconn.Close()
		}
		err = fmt.Errorf("%w: not authenticated within LoginGraceTime %v", ErrLimit, grace)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	c.mu.Lock()
	c.sconn = sconn
	c.mu.Unlock()
	return sconn, chans, reqs, nil
}

// event returns an Event of kind on the connection.
func (c *Conn) event(kind EventKind, typ, target string, err error) Event {
	return Event{Kind: kind, Conn: c, User: c.User(), Type: typ, Target: target, Err: err}
}

// hold arranges for cl to be closed when the connection ends, so that
// nothing the connection started outlives it. It returns a function that
// cancels the arrangement. If the connection has already ended, hold closes
// cl and reports false.
func (c *Conn) hold(cl io.Closer) (release func(), ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		cl.Close()
		return nil, false
	}
	c.held[cl] = struct{}{}
	return func() {
		c.mu.Lock()
		delete(c.held, cl)
		c.mu.Unlock()
	}, true
}

// shutdown closes everything held for the connection and cancels its
// context, which kills its processes.
func (c *Conn) shutdown() {
	c.cancel()
	c.mu.Lock()
	c.ended = true
	held := c.held
	c.held = nil
	c.forwards = nil
	c.mu.Unlock()
	for cl := range held {
		cl.Close()
	}
}

func (c *Conn) logf(format string, args ...any) {
	c.srv.logf("sshtest: %s: "+format, append([]any{c.RemoteAddr()}, args...)...)
}

// claimChannel takes one of the connection's MaxChannels, and for a
// session one of its MaxSessions, and returns the function that gives them
// back; over a limit it returns an error wrapping ErrLimit.
func (c *Conn) claimChannel(session bool) (release func(), err error) {
	cfg := c.srv.Config
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case !fits(c.channels, cfg.MaxChannels):
		return nil, fmt.Errorf("%w: MaxChannels %d channels open", ErrLimit, cfg.MaxChannels)
	case session && !fits(c.sessions, cfg.MaxSessions):
		return nil, fmt.Errorf("%w: MaxSessions %d sessions open", ErrLimit, cfg.MaxSessions)
	}
	c.channels++
	if session {
		c.sessions++
	}
	return func() {
		c.mu.Lock()
		c.channels--
		if session {
			c.sessions--
		}
		c.mu.Unlock()
	}, nil
}

// channelOpen is a channel open from the client, parsed.
type channelOpen struct {
	nch    ssh.NewChannel
	target string // the host:port or socket path it names, for events
	origin string // the originator's host:port, for events
	host   string // direct-tcpip's destination
	port   int
	path   string // direct-streamlocal's socket, cleaned
}

// serveChannel answers a channel open. It must not block: the connection's
// channel opens queue behind it. Limits are checked here, so that refused
// opens cost no goroutine.
func (c *Conn) serveChannel(nch ssh.NewChannel) {
	o := &channelOpen{nch: nch}
	var (
		serve func(*channelOpen)
		err   error
	)
	switch typ := nch.ChannelType(); typ {
	case wire.DirectTCPIP:
		serve, err = c.directTCPIP, o.parseTCPIP()
	case wire.DirectStreamLocal:
		serve, err = c.directStreamLocal, o.parseStreamLocal()
	case wire.Session:
		serve = c.session
	default:
		c.reject(o, ssh.UnknownChannelType, fmt.Errorf("sshtest: unknown channel type %q", typ))
		return
	}
	if err != nil {
		c.reject(o, ssh.ConnectionFailed, err)
		return
	}
	release, err := c.claimChannel(nch.ChannelType() == wire.Session)
	if err != nil {
		c.reject(o, ssh.ResourceShortage, err)
		return
	}
	c.srv.spawn(func() {
		defer release()
		serve(o)
	})
}

// channelEvent reports the answer to a channel open from the client.
func (c *Conn) channelEvent(o *channelOpen, err error) {
	e := c.event(EventChannelOpen, o.nch.ChannelType(), o.target, err)
	e.Origin = o.origin
	c.srv.emit(e)
}

func (c *Conn) reject(o *channelOpen, reason ssh.RejectionReason, err error) {
	c.channelEvent(o, err)
	o.nch.Reject(reason, err.Error())
}

// forwardToClient opens a channel to the client for nc, a connection that
// reached one of the server's listeners for this client, and relays
// between them; ctx bounds the open. Over MaxChannels it closes nc instead.
func (c *Conn) forwardToClient(ctx context.Context, nc net.Conn, typ, target string, open opener) {
	e := c.event(EventChannelOpen, typ, target, nil)
	e.ByServer = true
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		e.Origin = a.String()
	}
	var ch io.ReadWriteCloser
	release, err := c.claimChannel(false)
	if err == nil {
		ch, err = open(ctx, nc)
		if err != nil {
			release()
		}
	}
	e.Err = err
	c.srv.emit(e)
	if err != nil {
		nc.Close()
		return
	}
	defer release()
	c.relay(ch, nc)
}

// opener opens the channel to the client for a connection that arrived on
// one of the server's listeners.
type opener func(ctx context.Context, nc net.Conn) (io.ReadWriteCloser, error)

// acceptForwarded forwards each connection to l to the client until l is
// closed.
func (c *Conn) acceptForwarded(ctx context.Context, l net.Listener, typ, target string, open opener) {
	for {
		nc, err := l.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				c.logf("accept on %s: %v", l.Addr(), err)
			}
			return
		}
		c.srv.spawn(func() { c.forwardToClient(ctx, nc, typ, target, open) })
	}
}

// relay carries a channel's stream to and from nc, closing nc should the
// connection end first, since the channel's end alone would only half-close
// it.
func (c *Conn) relay(ch io.ReadWriteCloser, nc net.Conn) {
	release, ok := c.hold(nc)
	if !ok {
		ch.Close()
		return
	}
	defer release()
	if err := relay.Relay(ch, nc); err != nil {
		c.logf("relay to %s: %v", nc.RemoteAddr(), err)
	}
}

// serveRequests answers global requests until the connection ends. Each
// is reported before its reply, so that a client that has its answer finds
// the event there.
func (c *Conn) serveRequests(reqs <-chan *ssh.Request) {
	for req := range reqs {
		var (
			target string
			reply  []byte
			err    error
		)
		switch req.Type {
		case wire.TCPIPForward:
			target, reply, err = c.tcpipForward(req.Payload)
		case wire.CancelTCPIPForward:
			target, err = c.cancelTCPIPForward(req.Payload)
		case wire.StreamLocalForward:
			target, err = c.streamLocalForward(req.Payload)
		case wire.CancelStreamLocalForward:
			target, err = c.cancelStreamLocalForward(req.Payload)
		default:
			// keepalive@openssh.com included: OpenSSH answers failure too,
			// which tells the client the connection is alive.
			err = fmt.Errorf("sshtest: unsupported request %q", req.Type)
		}
		c.srv.emit(c.event(EventGlobalRequest, req.Type, target, err))
		req.Reply(err == nil, reply)
	}
}

// gate passes a connection's reads and writes through while open, and
// holds them while frozen.
type gate struct {
	net.Conn
	closed    chan struct{} // closed by Close, which releases the held
	closeOnce sync.Once

	mu   sync.Mutex    // guards open
	open chan struct{} // closed unless frozen; a frozen gate has a fresh one
}

func newGate(c net.Conn) *gate {
	open := make(chan struct{})
	close(open)
	return &gate{Conn: c, closed: make(chan struct{}), open: open}
}

func (g *gate) freeze() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
		g.open = make(chan struct{})
	default:
	}
}

func (g *gate) resume() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
	default:
		close(g.open)
	}
}

// pass waits while the gate is frozen.
func (g *gate) pass() error {
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	select {
	case <-open:
		return nil
	case <-g.closed:
		return net.ErrClosed
	}
}

// Read waits at the gate before reading, so that nothing is read while
// frozen, and after, so that what a read already waiting took in is held
// back until Resume.
func (g *gate) Read(p []byte) (int, error) {
	if err := g.pass(); err != nil {
		return 0, err
	}
	n, err := g.Conn.Read(p)
	if perr := g.pass(); perr != nil {
		return 0, perr
	}
	return n, err
}

func (g *gate) Write(p []byte) (int, error) {
	if err := g.pass(); err != nil {
		return 0, err
	}
	return g.Conn.Write(p)
}

func (g *gate) Close() error {
	err := net.ErrClosed
	g.closeOnce.Do(func() {
		close(g.closed)
		err = g.Conn.Close()
	})
	return err
}
