package mux

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// helloTimeout bounds the wait for a client's hello, so that a client
// that connects and says nothing does not hold a connection.
const helloTimeout = 10 * time.Second

// Handler carries out what the clients of a Server ask. Its methods may be
// called from several connections at once.
type Handler interface {
	// OpenForward sets f up, which the Server has checked as OpenSSH's
	// master does. For a remote forward of port 0 it returns the port the
	// server chose, and 0 otherwise. An error is sent to the client as the
	// reason of a failure.
	OpenForward(f Forward) (port uint32, err error)
	// CloseForward cancels a forward set up before, named by the fields
	// that opened it.
	CloseForward(f Forward) error
	// Terminate is called once the answer to a termination request has
	// been sent: the master is to exit.
	Terminate()
}

// Server answers command-mode clients on a master's socket, as OpenSSH's
// master does: alive checks with this process's PID, termination,
// forwards opened and closed, and a failure for what it does not serve
// (sessions, stdio forwarding, proxy mode and the others).
type Server struct {
	Handler Handler

	mu     sync.Mutex // guards the fields below
	ln     net.Listener
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup // the connections' goroutines
}

// ErrServerClosed is returned by Serve once Close was called.
var ErrServerClosed = errors.New("mux: server closed")

// Serve accepts clients on ln and answers each in its own goroutine until
// ln fails or Close is called; it returns ErrServerClosed then.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.ln = ln
	s.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.closed {
				return ErrServerClosed
			}
			return err
		}
		if !s.track(c) {
			c.Close()
			return ErrServerClosed
		}
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			s.serve(c)
		}()
	}
}

// track registers c and its goroutine, or reports false once closed.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

// Close stops accepting, closes every client's connection and returns
// once their goroutines have; a Handler call in progress is waited for.
// The listener is closed too.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	var err error
	if s.ln != nil {
		err = s.ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// serve exchanges hellos with one client and answers its requests until
// it leaves, sends something malformed, or asks for what needs its file
// descriptors, which this server does not take.
func (s *Server) serve(c net.Conn) {
	c.SetDeadline(time.Now().Add(helloTimeout))
	if Write(c, &Message{Type: Hello, Version: Version}) != nil {
		return
	}
	if hello, err := Read(c); err != nil || hello.Type != Hello || hello.Version != Version {
		return
	}
	c.SetDeadline(time.Time{})
	for {
		req, err := Read(c)
		if err != nil {
			return
		}
		if n := passedFDs[req.Type]; n > 0 && !discardFDs(c, n) {
			return
		}
		reply, more := s.answer(req)
		if reply.Type != 0 {
			reply.ID = req.ID
			if Write(c, &reply) != nil {
				return
			}
		}
		if req.Type == Terminate && reply.Type == OK {
			s.Handler.Terminate()
		}
		if !more {
			return
		}
	}
}

// answer carries out one request and returns the answer to send, if any,
// and whether the connection may go on.
func (s *Server) answer(req Message) (reply Message, more bool) {
	failure := func(reason string) Message { return Message{Type: Failure, Reason: reason} }
	switch req.Type {
	case AliveCheck:
		return Message{Type: Alive, PID: uint32(os.Getpid())}, true
	case Terminate:
		return Message{Type: OK}, true
	case OpenFwd, CloseFwd:
		if !req.Forward.valid() {
			return failure("Invalid forwarding request"), true
		}
		if req.Type == CloseFwd {
			if err := s.Handler.CloseForward(req.Forward); err != nil {
				return failure(err.Error()), true
			}
			return Message{Type: OK}, true
		}
		port, err := s.Handler.OpenForward(req.Forward)
		switch {
		case err != nil:
			return failure(err.Error()), true
		case port != 0:
			return Message{Type: RemotePort, Port: port}, true
		}
		return Message{Type: OK}, true
	case NewSession, NewStdioFwd:
		return failure("sshfwd's master opens no sessions; run ssh or sshfwd on its own for them"), true
	case Proxy:
		return failure("sshfwd's master does not offer proxy mode"), false
	case Hello:
		return Message{}, false
	}
	return failure("unsupported request"), true
}

// passedFDs says how many file descriptors a client passes after a
// request, over the socket, before it reads the answer: stdin, stdout
// and, for a session, stderr.
var passedFDs = map[Type]int{NewSession: 3, NewStdioFwd: 2}

// discardFDs reads the n file descriptors a client passes: each comes
// with one byte of data, and reading the byte without asking for the
// descriptor closes it. It reports false for a client that sends nothing
// in time.
func discardFDs(c net.Conn, n int) bool {
	c.SetReadDeadline(time.Now().Add(helloTimeout))
	defer c.SetReadDeadline(time.Time{})
	_, err := io.ReadFull(c, make([]byte, n))
	return err == nil
}

// valid checks f as OpenSSH's master checks a forward request: a known
// kind, no socket path for a dynamic forward's listener, and a
// destination for the others (with a port, for a local one).
func (f Forward) valid() bool {
	switch f.Kind {
	case FwdLocal, FwdRemote:
		if f.ConnectHost == "" || (f.Kind == FwdLocal && f.ConnectPort == 0) {
			return false
		}
	case FwdDynamic:
		if f.ListenPort == StreamLocal {
			return false
		}
	default:
		return false
	}
	return true
}
