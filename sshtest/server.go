// Package sshtest provides an in-process SSH server for tests, in the manner
// of net/http/httptest: NewServer starts a server on a loopback port, and
// ClientConfig returns a ready client configuration for it, with the host key
// pinned.
//
// The server speaks enough SSH for forwarding tests, with the OpenSSH client
// as well as with x/crypto/ssh clients:
//
//   - direct-tcpip and direct-streamlocal@openssh.com channels (ssh -L):
//     the server connects and relays, passing half-closes on;
//   - tcpip-forward and streamlocal-forward@openssh.com requests and their
//     cancels (ssh -R): the server listens and opens forwarded-tcpip or
//     forwarded-streamlocal@openssh.com channels back for each connection;
//   - session channels whose exec request runs the command with /bin/sh -c,
//     the channel as standard input and output, extended data as standard
//     error, env requests added to its environment, and exit-status (or
//     exit-signal) sent when it ends. Shells, terminals and subsystems are
//     refused. On Unix the command gets a process group of its own, killed
//     when the channel or the connection closes.
//   - x11-req on a session (ssh -X), as sshd with X11UseLocalhost yes
//     answers it: a display from :10 up on loopback, the client's cookie in
//     an Xauthority file of the session's own, DISPLAY and XAUTHORITY set
//     for its command, and an x11 channel to the client for each X client.
//
// Callbacks in Config decide which forwards are permitted; by default all
// are, bound to loopback.
package sshtest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/internal/wire"
)

// Config configures a Server. The zero value is a server on 127.0.0.1 with
// fresh keys that permits every forward on loopback.
type Config struct {
	// Addr is the address to listen on; "" means "127.0.0.1:0".
	Addr string

	// HostKey is the server's host key; nil means a generated ed25519 key.
	HostKey ssh.Signer

	// ClientKey is the key that ClientConfig authenticates with; nil means
	// a generated ed25519 key. The server accepts it for any user.
	ClientKey ssh.Signer

	// User is the user name in ClientConfig; "" means "sshtest".
	User string

	// AuthorizedKeys are more public keys accepted for any user.
	AuthorizedKeys []ssh.PublicKey

	// Passwords maps user names to passwords. Password authentication is
	// offered only when it is not empty.
	Passwords map[string]string

	// SSHConfig holds the algorithms (ciphers, key exchanges, MACs) of both
	// the server and ClientConfig.
	SSHConfig ssh.Config

	// PermitOpenCallback decides whether a direct-tcpip channel to host
	// and port may be opened (OpenSSH's PermitOpen); nil permits all.
	PermitOpenCallback func(host string, port int) bool

	// PermitOpenUnixCallback decides whether a
	// direct-streamlocal@openssh.com channel to the socket at path may be
	// opened; nil permits all.
	PermitOpenUnixCallback func(path string) bool

	// PermitListenCallback decides whether a tcpip-forward request may
	// listen (OpenSSH's PermitListen). It gets host and port as the client
	// requested them, before GatewayPorts applies; nil permits all.
	PermitListenCallback func(host string, port int) bool

	// PermitListenUnixCallback decides whether a
	// streamlocal-forward@openssh.com request may listen on path; nil
	// permits all.
	PermitListenUnixCallback func(path string) bool

	// GatewayPorts lets tcpip-forward requests bind the address the client
	// asks for, "" and "*" meaning every interface (OpenSSH's GatewayPorts
	// clientspecified). When false, as with OpenSSH's GatewayPorts no,
	// every forward binds 127.0.0.1 ("", "0.0.0.0", "*", "::" and
	// "localhost" included), except that "::1" binds ::1.
	GatewayPorts bool

	// DisableX11 refuses x11-req, as OpenSSH's X11Forwarding no does.
	DisableX11 bool

	// Logf, if not nil, receives a line for each connection, refusal and
	// failure.
	Logf func(format string, args ...any)
}

// Server is an in-process SSH server for tests. Its methods may be called
// from different goroutines. Every connection, listener, process and
// goroutine it starts ends by Close at the latest.
type Server struct {
	// Config is the configuration with defaults filled in: the keys and
	// the user are always set. It may be changed after NewUnstartedServer
	// and before Start, except for Addr, which has been used already; it
	// must not be changed after Start.
	Config *Config

	listener net.Listener

	closeOnce sync.Once
	closeErr  error // what the first Close returned, for the later ones

	mu      sync.Mutex // guards started, closed and conns
	started bool
	closed  bool
	conns   map[net.Conn]struct{} // every accepted connection not yet ended

	wg sync.WaitGroup // every goroutine the Server started
}

// NewServer starts and returns a new Server. A nil cfg means the zero
// Config. The caller should call Close when finished, to shut it down.
// NewServer panics if it cannot listen or generate a key, like
// httptest.NewServer.
func NewServer(cfg *Config) *Server {
	s := NewUnstartedServer(cfg)
	s.Start()
	return s
}

// NewUnstartedServer returns a new Server that listens but does not accept
// connections yet. Call Start to serve, or Close. A nil cfg means the zero
// Config; cfg itself is not modified.
func NewUnstartedServer(cfg *Config) *Server {
	c := Config{}
	if cfg != nil {
		c = *cfg
	}
	if c.Addr == "" {
		c.Addr = "127.0.0.1:0"
	}
	if c.User == "" {
		c.User = "sshtest"
	}
	if c.HostKey == nil {
		c.HostKey = generateKey()
	}
	if c.ClientKey == nil {
		c.ClientKey = generateKey()
	}
	l, err := net.Listen("tcp", c.Addr)
	if err != nil {
		panic(fmt.Sprintf("sshtest: failed to listen on %s: %v", c.Addr, err))
	}
	return &Server{
		Config:   &c,
		listener: l,
		conns:    make(map[net.Conn]struct{}),
	}
}

func generateKey() ssh.Signer {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic("sshtest: failed to generate a key: " + err.Error())
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		panic("sshtest: failed to make a signer: " + err.Error())
	}
	return signer
}

// Start starts serving connections. It panics if the server was already
// started or closed.
func (s *Server) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		panic("sshtest: Server already started")
	}
	if s.closed {
		panic("sshtest: Server already closed")
	}
	s.started = true
	sc := s.serverConfig()
	s.spawn(func() { s.serve(sc) })
}

// Addr returns the address the server listens on, as host:port.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// HostKey returns the server's public host key.
func (s *Server) HostKey() ssh.PublicKey { return s.Config.HostKey.PublicKey() }

// ClientSigner returns the private key that ClientConfig authenticates with.
func (s *Server) ClientSigner() ssh.Signer { return s.Config.ClientKey }

// ClientConfig returns a new client configuration for the server: its user,
// the client key and the server's host key pinned with ssh.FixedHostKey.
func (s *Server) ClientConfig() *ssh.ClientConfig {
	return &ssh.ClientConfig{
		Config:          s.Config.SSHConfig,
		User:            s.Config.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(s.Config.ClientKey)},
		HostKeyCallback: ssh.FixedHostKey(s.HostKey()),
		Timeout:         10 * time.Second,
	}
}

// Dial connects to the server with ClientConfig. The caller should close
// the client.
func (s *Server) Dial() (*ssh.Client, error) {
	client, err := ssh.Dial("tcp", s.Addr(), s.ClientConfig())
	if err != nil {
		return nil, fmt.Errorf("sshtest: dial %s: %w", s.Addr(), err)
	}
	return client, nil
}

// Close shuts the server down: it stops listening, closes every connection
// (and with it every channel, forward listener and Unix socket it made),
// kills every process it started, and blocks until all of that is done and
// every goroutine of the server has returned. Calling it again, even
// concurrently, waits for the same and returns the same error.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		conns := make([]net.Conn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()

		if err := s.listener.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			s.closeErr = fmt.Errorf("sshtest: close listener: %w", err)
		}
		for _, c := range conns {
			c.Close()
		}
		s.wg.Wait()
	})
	return s.closeErr
}

// spawn runs f in a goroutine that Close waits for. It must be called only
// by Start or by goroutines that spawn started, so that the WaitGroup is
// never incremented from zero while Close waits.
func (s *Server) spawn(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

func (s *Server) logf(format string, args ...any) {
	if s.Config.Logf != nil {
		s.Config.Logf(format, args...)
	}
}

func (s *Server) serverConfig() *ssh.ServerConfig {
	cfg := s.Config
	sc := &ssh.ServerConfig{
		Config:            cfg.SSHConfig,
		PublicKeyCallback: s.checkKey,
	}
	if len(cfg.Passwords) > 0 {
		sc.PasswordCallback = s.checkPassword
	}
	sc.AddHostKey(cfg.HostKey)
	return sc
}

var errAuth = errors.New("sshtest: authentication failed")

func (s *Server) checkKey(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	offered := key.Marshal()
	if bytes.Equal(offered, s.Config.ClientKey.PublicKey().Marshal()) {
		return nil, nil
	}
	for _, k := range s.Config.AuthorizedKeys {
		if bytes.Equal(offered, k.Marshal()) {
			return nil, nil
		}
	}
	return nil, errAuth
}

func (s *Server) checkPassword(meta ssh.ConnMetadata, password []byte) (*ssh.Permissions, error) {
	want, ok := s.Config.Passwords[meta.User()]
	if ok && subtle.ConstantTimeCompare([]byte(want), password) == 1 {
		return nil, nil
	}
	return nil, errAuth
}

func (s *Server) serve(sc *ssh.ServerConfig) {
	for {
		nc, err := s.listener.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.logf("sshtest: accept: %v", err)
			}
			return
		}
		if !s.track(nc) {
			nc.Close()
			return
		}
		s.spawn(func() {
			defer s.untrack(nc)
			s.serveConn(nc, sc)
		})
	}
}

// track records a new connection for Close; it reports false once Close
// has begun.
func (s *Server) track(nc net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[nc] = struct{}{}
	return true
}

func (s *Server) untrack(nc net.Conn) {
	s.mu.Lock()
	delete(s.conns, nc)
	s.mu.Unlock()
}

// serveConn runs one SSH connection until it ends, then releases
// everything it holds.
func (s *Server) serveConn(nc net.Conn, sc *ssh.ServerConfig) {
	defer nc.Close()
	sconn, chans, reqs, err := ssh.NewServerConn(nc, sc)
	if err != nil {
		s.logf("sshtest: handshake with %s: %v", nc.RemoteAddr(), err)
		return
	}
	s.logf("sshtest: %s logged in as %q", nc.RemoteAddr(), sconn.User())
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{
		srv:      s,
		sconn:    sconn,
		ctx:      ctx,
		cancel:   cancel,
		held:     make(map[io.Closer]struct{}),
		forwards: make(map[forwardKey]net.Listener),
	}
	s.spawn(func() { c.serveRequests(reqs) })
	for nch := range chans {
		c.serveChannel(nch)
	}
	// The connection has ended: chans is closed only then.
	c.shutdown()
	sconn.Close()
}

// conn is the state of one SSH connection.
type conn struct {
	srv    *Server
	sconn  *ssh.ServerConn
	ctx    context.Context // done when the connection ends
	cancel context.CancelFunc

	mu       sync.Mutex // guards ended, held and forwards
	ended    bool
	held     map[io.Closer]struct{}      // closed when the connection ends
	forwards map[forwardKey]net.Listener // tcpip-forward and streamlocal-forward listeners
}

// hold arranges for cl to be closed when the connection ends, so that
// nothing the connection started outlives it. It returns a function that
// cancels the arrangement. If the connection has already ended, hold closes
// cl and reports false.
func (c *conn) hold(cl io.Closer) (release func(), ok bool) {
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
func (c *conn) shutdown() {
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

func (c *conn) logf(format string, args ...any) {
	c.srv.logf("sshtest: %s: "+format, append([]any{c.sconn.RemoteAddr()}, args...)...)
}

// serveChannel answers a channel open. It must not block: the connection's
// channel opens queue behind it.
func (c *conn) serveChannel(nch ssh.NewChannel) {
	switch typ := nch.ChannelType(); typ {
	case wire.DirectTCPIP:
		c.srv.spawn(func() { c.directTCPIP(nch) })
	case wire.DirectStreamLocal:
		c.srv.spawn(func() { c.directStreamLocal(nch) })
	case wire.Session:
		c.srv.spawn(func() { c.session(nch) })
	default:
		c.logf("rejected channel type %q", typ)
		nch.Reject(ssh.UnknownChannelType, "sshtest: unknown channel type "+typ)
	}
}

// serveRequests answers global requests until the connection ends.
func (c *conn) serveRequests(reqs <-chan *ssh.Request) {
	for req := range reqs {
		var (
			ok    bool
			reply []byte
		)
		switch req.Type {
		case wire.TCPIPForward:
			ok, reply = c.tcpipForward(req.Payload)
		case wire.CancelTCPIPForward:
			ok = c.cancelTCPIPForward(req.Payload)
		case wire.StreamLocalForward:
			ok = c.streamLocalForward(req.Payload)
		case wire.CancelStreamLocalForward:
			ok = c.cancelStreamLocalForward(req.Payload)
		default:
			// keepalive@openssh.com included: OpenSSH answers failure too,
			// which tells the client the connection is alive.
		}
		req.Reply(ok, reply)
	}
}
