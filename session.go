package sshfwd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/internal/wire"
)

// Session is the forwarding state of one SSH client connection (an
// ssh_session in libssh). It owns the incoming channel types that carry
// forwarded connections, routes each to whoever asked for it, and tracks
// every Channel it opened or accepted.
//
// A Session is safe for concurrent use.
type Session struct {
	client  *ssh.Client
	conn    *gatherConn   // the connection Dial made; nil for a client the caller made
	done    chan struct{} // closed once the Session is closed or its connection ended
	ended   sync.Once
	closing atomic.Bool // Close has begun: errors from here on say the Session closed

	// waiting counts Channels closed on this side whose close the server
	// has not answered; each holds goroutines and x/crypto's state.
	waiting atomic.Int64

	acceptQ *queue // forwarded-tcpip channels for AcceptForward
	x11Q    *queue // x11 channels for AcceptX11

	mu          sync.Mutex // guards the fields below
	closed      bool       // no more goroutines or channels may start
	wg          sync.WaitGroup
	channels    map[*Channel]struct{}
	forwards    []*remoteForward // granted or pending forwards, oldest first
	x11Asked    int              // RequestX11 calls waiting for the server's answer
	x11Granted  bool             // a RequestX11 was granted: x11 channels wait for AcceptX11
	x11Forwards []*x11Forward    // ForwardX11 calls, from their request until they end
	x11Setups   int              // x11 channels of ForwardX11 still reading their X client's setup
}

// routed are the channel types a Session claims on its client.
var routed = []string{wire.ForwardedTCPIP, wire.ForwardedStreamLocal, wire.X11}

// New returns a Session for client. It claims the incoming channel types
// forwarded-tcpip, forwarded-streamlocal@openssh.com and x11 with
// client.HandleChannelOpen, and fails with ErrClaimed if something else
// (ssh.Client.Listen, or another Session) claimed one first; types it did
// claim before failing stay claimed and are refused for the life of the
// connection. The Session does not take ownership of client until New
// succeeds; after that, Session.Close closes it.
func New(client *ssh.Client) (*Session, error) {
	return newSession(client, nil)
}

// newSession is New for a client on conn, when Dial made it.
func newSession(client *ssh.Client, conn *gatherConn) (*Session, error) {
	if client == nil {
		return nil, fmt.Errorf("sshfwd: New: nil client")
	}
	ins := make([]<-chan ssh.NewChannel, 0, len(routed))
	for _, t := range routed {
		in := client.HandleChannelOpen(t)
		if in == nil {
			for _, claimed := range ins {
				go rejectAll(claimed)
			}
			return nil, fmt.Errorf("%w: %s", ErrClaimed, t)
		}
		ins = append(ins, in)
	}
	s := &Session{
		client:   client,
		conn:     conn,
		done:     make(chan struct{}),
		acceptQ:  newQueue(),
		x11Q:     newQueue(),
		channels: make(map[*Channel]struct{}),
	}
	for _, in := range ins {
		s.spawn(func() { s.route(in) })
	}
	s.spawn(func() {
		client.Wait()
		s.end()
	})
	return s, nil
}

// Dial connects to the SSH server at addr, authenticates with config and
// returns a Session for the connection (ssh_new, ssh_connect and
// authentication in libssh). ctx bounds the connection and the handshake.
func Dial(ctx context.Context, network, addr string, config *ssh.ClientConfig) (*Session, error) {
	if config == nil {
		return nil, fmt.Errorf("sshfwd: Dial: nil ssh.ClientConfig")
	}
	var d net.Dialer
	if config.Timeout > 0 {
		d.Timeout = config.Timeout
	}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, wrapf(err, "dial %s", addr)
	}
	return NewClientConn(ctx, c, addr, config)
}

// NewClientConn runs the SSH handshake over c, a connection to the server
// at addr that the caller made (a proxy command's pipes, a channel of
// another Session), authenticates with config and returns a Session for it.
// ctx bounds the handshake. On success the Session owns c: Session.Close
// closes it. On failure c is closed.
func NewClientConn(ctx context.Context, c net.Conn, addr string, config *ssh.ClientConfig) (*Session, error) {
	if config == nil {
		c.Close()
		return nil, fmt.Errorf("sshfwd: NewClientConn: nil ssh.ClientConfig")
	}
	conn := gather(c)
	client, err := handshake(ctx, conn, addr, config)
	if err != nil {
		conn.Close()
		return nil, err
	}
	s, err := newSession(client, conn)
	if err != nil {
		client.Close()
		return nil, err
	}
	return s, nil
}

// handshake runs the SSH handshake on conn, bounded by ctx and config.Timeout.
func handshake(ctx context.Context, conn net.Conn, addr string, config *ssh.ClientConfig) (*ssh.Client, error) {
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if config.Timeout > 0 {
		conn.SetDeadline(time.Now().Add(config.Timeout))
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, config)
	interrupted := !stop()
	if err == nil && interrupted {
		c.Close()
		err = ctx.Err()
	}
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, wrapf(err, "ssh handshake with %s", addr)
	}
	conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// Client returns the underlying x/crypto/ssh client, for sessions (exec,
// shell) and global requests of the caller's own.
func (s *Session) Client() *ssh.Client { return s.client }

// Close closes the connection and every Channel of the Session, and returns
// once every goroutine the Session started has returned. Pending Accept and
// open calls fail with an error matching net.ErrClosed. Calling it again
// does nothing.
func (s *Session) Close() error {
	s.closing.Store(true)
	for _, c := range s.liveChannels() {
		c.shut()
	}
	err := s.client.Close()
	s.end()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.wg.Wait()
	for _, c := range s.liveChannels() {
		c.Close()
	}
	if err != nil && isClosedConn(err) {
		err = nil
	}
	return err
}

// Done returns a channel that is closed when the Session is closed or its
// connection ends.
func (s *Session) Done() <-chan struct{} { return s.done }

// Wait blocks until the connection ends and returns why, as ssh.Client.Wait.
func (s *Session) Wait() error { return s.client.Wait() }

// over reports whether the Session is closed or closing, or its connection
// ended: whether a failing call should say ErrSessionClosed.
func (s *Session) over() bool { return s.closing.Load() || isClosed(s.done) }

// end marks the Session over and refuses every queued channel.
func (s *Session) end() {
	s.ended.Do(func() {
		close(s.done)
		s.mu.Lock()
		qs := []*queue{s.acceptQ, s.x11Q}
		for _, f := range s.forwards {
			qs = append(qs, f.q)
		}
		s.mu.Unlock()
		for _, q := range qs {
			q.close("sshfwd: session closed")
		}
	})
}

// spawn runs f in a goroutine that Close waits for. It reports false, and
// runs nothing, once Close has begun.
func (s *Session) spawn(f func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// adopt wraps an accepted or opened SSH channel in a Channel that the
// Session tracks until it is closed.
func (s *Session) adopt(ch ssh.Channel, reqs <-chan *ssh.Request, local, remote net.Addr) (*Channel, error) {
	c, ok := newChannel(ch, reqs, local, remote, s)
	if ok {
		s.mu.Lock()
		if ok = !s.closed; ok {
			s.channels[c] = struct{}{}
		}
		s.mu.Unlock()
	}
	if !ok {
		c.Close()
		return nil, ErrSessionClosed
	}
	return c, nil
}

// release forgets a closed Channel.
func (s *Session) release(c *Channel) {
	s.mu.Lock()
	delete(s.channels, c)
	s.mu.Unlock()
}

func (s *Session) liveChannels() []*Channel {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := make([]*Channel, 0, len(s.channels))
	for c := range s.channels {
		cs = append(cs, c)
	}
	return cs
}

// maxUnconfirmed bounds the Channels closed on this side whose close the
// server has not answered. A server that answers none could otherwise make
// a client that accepts and closes its channels hold each one for the life
// of the connection; past the bound, its new channels are refused.
const maxUnconfirmed = 128

// unconfirmed implements owner.
func (s *Session) unconfirmed(delta int64) { s.waiting.Add(delta) }

// gathering implements owner.
func (s *Session) gathering() *gatherConn { return s.conn }

// route hands each incoming channel to its taker. It never blocks on a
// taker: a connection whose router stalls stalls every channel on it.
func (s *Session) route(in <-chan ssh.NewChannel) {
	for nc := range in {
		in, reason, why := s.place(nc)
		if reason == 0 && s.waiting.Load() >= maxUnconfirmed {
			reason, why = ssh.ResourceShortage, "sshfwd: too many closed channels not confirmed by the server"
		}
		if reason == 0 {
			reason, why = s.deliver(in)
		}
		if reason != 0 {
			nc.Reject(reason, why)
		}
	}
}

// deliver hands a placed channel to its taker: an x11 channel to ForwardX11
// while one is active, within the bound on X clients in setup, and anything
// else to the queue of whoever accepts it. It says why when it cannot.
func (s *Session) deliver(in incoming) (ssh.RejectionReason, string) {
	if in.fwd == nil {
		switch s.takeX11Setup() {
		case x11Forwarded:
			if !s.spawn(func() { s.forwardX11(in) }) {
				s.putX11Setup()
				return ssh.ConnectionFailed, "sshfwd: session closed"
			}
			return 0, ""
		case x11Busy:
			return ssh.ResourceShortage, "sshfwd: too many X11 connections being set up"
		}
	}
	if !in.fwdQueue(s).push(in) {
		return ssh.ResourceShortage, "sshfwd: too many connections waiting to be accepted"
	}
	return 0, ""
}

// place decides where an incoming channel goes, or why it is refused.
func (s *Session) place(nc ssh.NewChannel) (incoming, ssh.RejectionReason, string) {
	in := incoming{nc: nc}
	switch nc.ChannelType() {
	case wire.ForwardedTCPIP:
		var m wire.TCPIP
		if err := wire.Parse(wire.ForwardedTCPIP, nc.ExtraData(), &m); err != nil {
			return in, ssh.ConnectionFailed, "sshfwd: " + err.Error()
		}
		if m.Port > 65535 || m.OriginPort > 65535 {
			return in, ssh.ConnectionFailed, "sshfwd: forwarded-tcpip port out of range"
		}
		in.fwd, in.port = s.findForward(m.Host, int(m.Port))
		if in.fwd == nil {
			return in, ssh.Prohibited, fmt.Sprintf("sshfwd: no forward requested for %s", net.JoinHostPort(m.Host, fmt.Sprint(m.Port)))
		}
		in.local = tcpAddr(m.Host, in.port)
		in.remote = tcpAddr(m.OriginHost, int(m.OriginPort))
	case wire.ForwardedStreamLocal:
		var m wire.ForwardedStreamLocalMsg
		if err := wire.Parse(wire.ForwardedStreamLocal, nc.ExtraData(), &m); err != nil {
			return in, ssh.ConnectionFailed, "sshfwd: " + err.Error()
		}
		in.fwd = s.findUnixForward(m.SocketPath)
		if in.fwd == nil {
			return in, ssh.Prohibited, fmt.Sprintf("sshfwd: no forward requested for %s", m.SocketPath)
		}
		in.local, in.remote = unixAddr(m.SocketPath), unixAddr("")
	case wire.X11:
		var m wire.X11OpenMsg
		if err := wire.Parse(wire.X11, nc.ExtraData(), &m); err != nil {
			return in, ssh.ConnectionFailed, "sshfwd: " + err.Error()
		}
		if m.OriginPort > 65535 {
			return in, ssh.ConnectionFailed, "sshfwd: x11 origin port out of range"
		}
		if !s.x11Wanted() {
			return in, ssh.Prohibited, "sshfwd: X11 forwarding was not requested"
		}
		in.local = tcpAddr("127.0.0.1", 0)
		in.remote = tcpAddr(m.OriginAddr, int(m.OriginPort))
	default:
		return in, ssh.UnknownChannelType, "sshfwd: unexpected channel type " + nc.ChannelType()
	}
	return in, 0, ""
}

// fwdQueue returns the queue in waits in.
func (in incoming) fwdQueue(s *Session) *queue {
	if in.fwd == nil {
		return s.x11Q
	}
	return in.fwd.q
}

// rejectAll refuses every channel from in until the connection ends.
func rejectAll(in <-chan ssh.NewChannel) {
	for nc := range in {
		nc.Reject(ssh.Prohibited, "sshfwd: channel type not handled")
	}
}

func isClosedConn(err error) bool {
	return errors.Is(err, net.ErrClosed)
}
