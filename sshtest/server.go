package sshtest

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Server is an in-process SSH server for tests. Its methods may be called
// from different goroutines. Every connection, listener, process and
// goroutine it starts ends by Close at the latest.
type Server struct {
	// Config is the configuration with defaults filled in: the keys, the
	// user and the limits are always set. It may be changed after
	// NewUnstartedServer and before Start, except for Addr, which has been
	// used already; it must not be changed after Start.
	Config *Config

	listener net.Listener

	closeOnce sync.Once
	closeErr  error // what the first Close returned, for the later ones

	mu       sync.Mutex // guards started, closed, conns and startups
	started  bool
	closed   bool
	conns    map[*Conn]struct{} // every accepted connection not yet ended
	startups int                // connections of conns not yet authenticated

	eventMu sync.Mutex // serializes the calls of EventCallback and Logf

	unixMu    sync.Mutex       // guards unixPaths; held while a path is checked, cleared and bound
	unixPaths map[string]*Conn // the socket path of every streamlocal forward, and whose it is

	wg sync.WaitGroup // every goroutine the Server started
}

// NewServer starts and returns a new Server. A nil cfg means the zero
// Config. The caller should call Close when finished, to shut it down.
// NewServer panics if it cannot listen or generate a key, or if cfg cannot
// work (a ServerVersion without "SSH-2.0-", a MaxStartups sshd would
// refuse), like httptest.NewServer.
func NewServer(cfg *Config) *Server {
	s := NewUnstartedServer(cfg)
	s.Start()
	return s
}

// NewUnstartedServer returns a new Server that listens but does not accept
// connections yet. Call Start to serve, or Close. A nil cfg means the zero
// Config; cfg itself is not modified.
func NewUnstartedServer(cfg *Config) *Server {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	c = c.withDefaults()
	l, err := net.Listen("tcp", c.Addr)
	if err != nil {
		panic(fmt.Sprintf("sshtest: failed to listen on %s: %v", c.Addr, err))
	}
	return &Server{
		Config:    &c,
		listener:  l,
		conns:     make(map[*Conn]struct{}),
		unixPaths: make(map[string]*Conn),
	}
}

func generateKey() ssh.Signer {
	_, priv, err := ed25519.GenerateKey(nil) // nil: the system's secure source
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
	s.spawn(s.serve)
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

// Conns returns the connections the server has open, authenticated or not.
func (s *Server) Conns() []*Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	conns := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	return conns
}

// CloseClientConnections closes every connection the server has open, as
// httptest's does, and goes on accepting new ones: a client sees its
// connection drop, as when a server restarts, and may reconnect. Everything
// a connection held (channels, forwards, processes) goes with it; the
// server's goroutines for it may still be ending when it returns.
func (s *Server) CloseClientConnections() {
	for _, c := range s.Conns() {
		c.Close()
	}
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
		s.mu.Unlock()
		if err := s.listener.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			s.closeErr = fmt.Errorf("sshtest: close listener: %w", err)
		}
		s.CloseClientConnections()
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

// acceptBackoff is how long the server waits after accepting failed for
// other reasons than Close, as when it ran out of descriptors.
const acceptBackoff = 100 * time.Millisecond

func (s *Server) serve() {
	for {
		tcp, err := s.listener.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// Out of descriptors, as sshd does, the server waits for some
			// to be freed rather than stop serving.
			s.logf("sshtest: accept: %v", err)
			time.Sleep(acceptBackoff)
			continue
		}
		c := newConn(s, tcp)
		err = s.admit(c)
		if errors.Is(err, net.ErrClosed) {
			c.Close()
			return
		}
		s.emit(Event{Kind: EventConnect, Conn: c, Err: err})
		if err != nil {
			// sshd says why before it closes, so that the client can tell
			// the user; a fresh socket takes so short a line at once.
			tcp.Write([]byte("Exceeded MaxStartups\r\n"))
			c.Close()
			continue
		}
		s.spawn(func() { s.serveConn(c) })
	}
}

// admit tracks a new connection for Close, unless MaxStartups drops it or
// Close has begun (net.ErrClosed).
func (s *Server) admit(c *Conn) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return net.ErrClosed
	}
	if m := s.Config.MaxStartups; m.drop(s.startups, rand.IntN(100)) {
		return fmt.Errorf("%w: MaxStartups %v with %d connections authenticating", ErrLimit, m, s.startups)
	}
	s.startups++
	s.conns[c] = struct{}{}
	return nil
}

// authenticated tells MaxStartups that an admitted connection is no longer
// authenticating, having succeeded or failed.
func (s *Server) authenticated() {
	s.mu.Lock()
	s.startups--
	s.mu.Unlock()
}

func (s *Server) untrack(c *Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// serveConn runs one SSH connection until it ends, then releases
// everything it holds.
func (s *Server) serveConn(c *Conn) {
	defer s.untrack(c)
	defer c.Close()
	sconn, chans, reqs, err := c.handshake()
	s.authenticated()
	if err != nil {
		s.emit(Event{Kind: EventDisconnect, Conn: c, Err: err})
		return
	}
	s.spawn(func() { c.serveRequests(reqs) })
	for nch := range chans {
		c.serveChannel(nch)
	}
	// The connection has ended: chans is closed only then.
	c.shutdown()
	sconn.Close()
	s.emit(Event{Kind: EventDisconnect, Conn: c, User: sconn.User()})
}
