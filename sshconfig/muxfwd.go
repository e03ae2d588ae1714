package sshconfig

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/internal/mux"
	"github.com/sshfwd/sshfwd/internal/wire"
)

const (
	// muxHandshakeTimeout bounds the connection to the master and the
	// hellos.
	muxHandshakeTimeout = 10 * time.Second
	// muxCloseTimeout bounds the cancelling of one forward at the master
	// when the Session closes, so that a master gone silent cannot hold
	// Close up.
	muxCloseTimeout = 2 * time.Second
)

// muxForwards gives a Session that rides a ControlMaster its remote
// forwards by another road than the tcpip-forward request, whose answer the
// master does not relay: each forward is asked of the master itself
// (PROTOCOL.mux's MUX_C_OPEN_FWD), pointed at a Unix socket of ours, and
// each connection the master makes to that socket reaches the Session as
// the forwarded channel the server would have opened. The master does not
// tell who connected, so such a channel's RemoteAddr is 0.0.0.0:0.
type muxForwards struct {
	master string               // the master's socket
	in     chan ssh.NewChannel  // what the client reads: the master's channels and ours
	done   chan struct{}        // closed by teardown: no more channels go to in
	merged chan struct{}        // closed when merge has returned
	once   sync.Once            // runs teardown
	loops  sync.WaitGroup       // the accept loops
	mu     sync.Mutex           // guards the fields below
	closed bool                 // teardown has begun
	dir    string               // our sockets' private directory, made at the first forward
	next   int                  // the name of the next socket
	fwds   []*muxForward        // granted forwards
	conns  map[*mux.Client]bool // every command connection to the master, to close at teardown
}

// muxForward is one remote forward granted by the master.
type muxForward struct {
	conn     *mux.Client // the command connection that asked for it, which cancels it
	ln       net.Listener
	spec     mux.Forward // the request, which MUX_C_CLOSE_FWD repeats
	unix     bool
	addr     string // as the Session asked: host, or socket path
	port     uint32 // as asked, 0 for one the server chooses
	bound    uint32
	chanType string
	extra    []byte // the extra data of the channels the Session gets
}

func newMuxForwards(master string) *muxForwards {
	return &muxForwards{
		master: master,
		in:     make(chan ssh.NewChannel),
		done:   make(chan struct{}),
		merged: make(chan struct{}),
		conns:  map[*mux.Client]bool{},
	}
}

// merge passes the master's channels on to in, until the connection ends;
// then it tears the forwards down and closes in.
func (m *muxForwards) merge(real <-chan ssh.NewChannel) {
	defer close(m.merged)
	defer close(m.in)
	for nc := range real {
		select {
		case m.in <- nc:
		case <-m.done:
			nc.Reject(ssh.ConnectionFailed, "sshfwd: session closed")
		}
	}
	m.teardown()
}

// errMuxClosed is the error of a forward asked for after the Session
// closed.
var errMuxClosed = errors.New("session closed")

// track registers a command connection, or reports false after teardown.
func (m *muxForwards) track(c *mux.Client) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.conns[c] = true
	return true
}

func (m *muxForwards) untrack(c *mux.Client) {
	m.mu.Lock()
	delete(m.conns, c)
	m.mu.Unlock()
	c.Close()
}

// socket returns the path of a new socket of ours, in a directory only
// this user can enter, made on first use.
func (m *muxForwards) socket() (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return "", errMuxClosed
	}
	if m.dir == "" {
		// Short, under the system's temporary directory: Unix socket
		// paths are limited to about 100 bytes.
		dir, err := os.MkdirTemp("", "sshfwd-mux")
		if err != nil {
			return "", err
		}
		m.dir = dir
	}
	m.next++
	return filepath.Join(m.dir, strconv.Itoa(m.next)), nil
}

// open asks the master for a remote forward of addr and port (of the
// socket path addr when unix). It reports false when the master or the
// server refused it.
func (m *muxForwards) open(unix bool, addr string, port uint32) (bound uint32, ok bool, err error) {
	sock, err := m.socket()
	if err != nil {
		return 0, false, err
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return 0, false, err
	}
	conn, err := mux.Dial(m.master, muxHandshakeTimeout)
	if err != nil {
		err = fmt.Errorf("ControlMaster %s: %w", m.master, err)
	} else if !m.track(conn) {
		conn.Close()
		err = errMuxClosed
	}
	if err != nil {
		ln.Close()
		return 0, false, err
	}
	f := &muxForward{conn: conn, ln: ln, unix: unix, addr: addr, port: port}
	f.spec = mux.Forward{Kind: mux.FwdRemote, ListenHost: addr, ListenPort: port, ConnectHost: sock, ConnectPort: mux.StreamLocal}
	switch {
	case unix:
		f.spec.ListenPort = mux.StreamLocal
	case addr == "":
		// The master reads an empty host as its default, localhost;
		// "*" is every address, as "" is in tcpip-forward.
		f.spec.ListenHost = "*"
	}
	r, err := conn.Do(mux.Message{Type: mux.OpenFwd, Forward: f.spec})
	if err == nil && r.Type != mux.OK && r.Type != mux.RemotePort && r.Type != mux.Failure && r.Type != mux.PermissionDenied {
		err = fmt.Errorf("ControlMaster %s: unexpected answer of type %#08x", m.master, uint32(r.Type))
	}
	if err != nil || r.Type == mux.Failure || r.Type == mux.PermissionDenied {
		m.untrack(conn)
		ln.Close()
		return 0, false, err
	}
	f.bound = port
	if r.Type == mux.RemotePort {
		f.bound = r.Port
	}
	if unix {
		f.chanType = wire.ForwardedStreamLocal
		f.extra = ssh.Marshal(&wire.ForwardedStreamLocalMsg{SocketPath: addr})
	} else {
		f.chanType = wire.ForwardedTCPIP
		f.extra = ssh.Marshal(&wire.TCPIP{Host: addr, Port: f.bound, OriginHost: "0.0.0.0"})
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		m.cancel(f)
		return 0, false, errMuxClosed
	}
	m.fwds = append(m.fwds, f)
	m.loops.Add(1)
	m.mu.Unlock()
	go m.serve(f)
	return f.bound, true, nil
}

// serve hands each connection the master makes to f's socket to the
// Session, until f's socket closes.
func (m *muxForwards) serve(f *muxForward) {
	defer m.loops.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		select {
		case m.in <- &socketNewChannel{typ: f.chanType, extra: f.extra, conn: c}:
		case <-m.done:
			c.Close()
			return
		}
	}
}

// close cancels the forward asked for with unix, addr and port (the bound
// port or the one asked for), and reports whether the master had it.
func (m *muxForwards) close(unix bool, addr string, port uint32) bool {
	m.mu.Lock()
	var f *muxForward
	for i, g := range m.fwds {
		if g.unix == unix && g.addr == addr && (unix || g.bound == port || g.port == port) {
			f = g
			m.fwds = append(m.fwds[:i], m.fwds[i+1:]...)
			break
		}
	}
	m.mu.Unlock()
	return f != nil && m.cancel(f)
}

// cancel asks the master to drop f, then closes f's socket.
func (m *muxForwards) cancel(f *muxForward) bool {
	f.conn.SetDeadline(time.Now().Add(muxCloseTimeout))
	r, err := f.conn.Do(mux.Message{Type: mux.CloseFwd, Forward: f.spec})
	m.untrack(f.conn)
	f.ln.Close()
	return err == nil && r.Type == mux.OK
}

// teardown cancels every forward at the master, ends the accept loops and
// removes our sockets. Calling it again waits for the first call.
func (m *muxForwards) teardown() {
	m.once.Do(func() {
		m.mu.Lock()
		m.closed = true
		fwds := m.fwds
		m.fwds = nil
		m.mu.Unlock()
		close(m.done)
		for _, f := range fwds {
			m.cancel(f)
		}
		// Requests still waiting for the master end here.
		m.mu.Lock()
		for c := range m.conns {
			c.Close()
		}
		m.mu.Unlock()
		m.loops.Wait()
		if m.dir != "" {
			os.RemoveAll(m.dir)
		}
	})
}

// socketNewChannel is a connection the master made to one of our sockets,
// offered to the Session as the channel the server would have opened.
type socketNewChannel struct {
	typ   string
	extra []byte
	conn  net.Conn
}

func (n *socketNewChannel) ChannelType() string { return n.typ }
func (n *socketNewChannel) ExtraData() []byte   { return n.extra }

// Reject closes the connection: the master then closes the server's
// channel, which is what a refusal comes to for the far side.
func (n *socketNewChannel) Reject(ssh.RejectionReason, string) error { return n.conn.Close() }

// Accept returns the connection as an ssh.Channel; no request ever comes
// on it.
func (n *socketNewChannel) Accept() (ssh.Channel, <-chan *ssh.Request, error) {
	reqs := make(chan *ssh.Request)
	close(reqs)
	return socketChannel{n.conn}, reqs, nil
}

// socketChannel is a Unix connection as an ssh.Channel.
type socketChannel struct {
	net.Conn
}

func (c socketChannel) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("sshfwd: %T cannot half-close", c.Conn)
}

func (c socketChannel) SendRequest(name string, _ bool, _ []byte) (bool, error) {
	return false, fmt.Errorf("channel request %q cannot go through a ControlMaster's forward", name)
}

// Stderr has nothing to read: the master sends no extended data here.
func (c socketChannel) Stderr() io.ReadWriter { return noStderr{} }

type noStderr struct{}

func (noStderr) Read([]byte) (int, error)    { return 0, io.EOF }
func (noStderr) Write(b []byte) (int, error) { return len(b), nil }
