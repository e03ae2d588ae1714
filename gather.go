package sshfwd

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sshfwd/sshfwd/internal/bufpool"
)

// gatheredMax bounds the bytes a gatherConn holds that the socket has not
// taken yet; a write that would pass it waits, as it waited for the socket
// before.
const gatheredMax = bufpool.Large

// gatherLinger bounds how long Close lets the socket take what was gathered
// before it: close(2) would have sent bytes written already, but not waited
// for a peer that reads nothing.
const gatherLinger = 50 * time.Millisecond

// gatherConn is the connection that NewClientConn, and so Dial and DialSSH,
// give x/crypto/ssh. x/crypto writes
// each packet to the socket as soon as it is sealed, with a system call of
// its own, holding the connection's lock until the socket took it: when many
// streams send at once, say a burst of short connections, their packets go
// out one system call each while the others queue for the lock. A
// gatherConn writes a packet at once only while its goroutine is the one
// sending; when others are sending too, it adds the packet to a buffer and
// returns, and a goroutine of its own writes everything gathered with one
// system call. A lone request or reply thus goes straight out, with no
// hand-over, and a burst leaves in a few large writes. Bytes go out in the
// order they were written; after a failed write every later one fails.
//
// The goroutines sending are those between enter and leave: those of the
// Session's tunnels, Channels and channel opens.
type gatherConn struct {
	net.Conn

	senders atomic.Int32 // goroutines between enter and leave

	mu      sync.Mutex // guards the fields below
	ready   sync.Cond  // signalled when the writer may have something to do
	room    sync.Cond  // broadcast when the writer took pending, or stopped
	pending []byte     // gathered bytes not taken yet; nil when none
	writing bool       // a write to the socket is in progress
	err     error      // why the last write failed; every later one fails too
	closing bool       // Close began: the writer sends what is pending and stops
	done    chan struct{}
}

// gather starts the writer of a gatherConn on c.
func gather(c net.Conn) *gatherConn {
	g := &gatherConn{Conn: c, done: make(chan struct{})}
	g.ready.L = &g.mu
	g.room.L = &g.mu
	go g.writeLoop()
	return g
}

// enter counts a goroutine that is about to send through x/crypto, until
// leave. A nil gatherConn counts nothing: the Session of a client the caller
// connected has none.
func (g *gatherConn) enter() {
	if g != nil {
		g.senders.Add(1)
	}
}

// leave ends what enter began.
func (g *gatherConn) leave() {
	if g != nil {
		g.senders.Add(-1)
	}
}

// Write writes p to the socket when nothing else is being sent; else it adds
// p to what the writer sends next and returns, unless as much as
// gatheredMax is waiting already: then it waits for the writer to take it.
func (g *gatherConn) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.err == nil && !g.closing && g.pending != nil && len(g.pending)+len(p) > gatheredMax {
		g.room.Wait()
	}
	switch {
	case g.err != nil:
		return 0, g.err
	case g.closing:
		return 0, net.ErrClosed
	}
	if g.pending == nil && !g.writing && g.senders.Load() <= 1 {
		g.writing = true
		g.mu.Unlock()
		n, err := g.Conn.Write(p)
		g.mu.Lock()
		g.wrote(err)
		return n, err
	}
	if g.pending == nil {
		g.pending = bufpool.Get(len(p))[:0]
		g.ready.Signal()
	} else if len(g.pending)+len(p) > cap(g.pending) {
		grown := append(bufpool.Get(len(g.pending) + len(p))[:0], g.pending...)
		bufpool.Put(g.pending)
		g.pending = grown
	}
	g.pending = append(g.pending, p...)
	return len(p), nil
}

// wrote ends a write to the socket that returned err; mu is held.
func (g *gatherConn) wrote(err error) {
	g.writing = false
	if err != nil && g.err == nil {
		g.err = err
	}
	if g.err != nil && g.pending != nil {
		bufpool.Put(g.pending)
		g.pending = nil
	}
	if g.pending != nil || g.err != nil || g.closing {
		g.ready.Signal()
	}
	g.room.Broadcast()
}

// writeLoop writes what was gathered, all of it at a time, until a write
// fails or Close has begun and nothing is left.
func (g *gatherConn) writeLoop() {
	defer close(g.done)
	g.mu.Lock()
	defer g.mu.Unlock()
	for {
		for g.writing || (g.pending == nil && g.err == nil && !g.closing) {
			g.ready.Wait()
		}
		if g.pending == nil {
			return
		}
		batch := g.pending
		g.pending = nil
		g.writing = true
		g.room.Broadcast()
		g.mu.Unlock()
		_, err := g.Conn.Write(batch)
		bufpool.Put(batch)
		g.mu.Lock()
		g.wrote(err)
	}
}

// Close fails later writes, lets the writer send what was gathered for as
// long as the socket takes it at once, and closes the socket. On a
// connection without write deadlines, which NewClientConn may be given,
// nothing can bound that wait, so the socket is closed first.
func (g *gatherConn) Close() error {
	g.mu.Lock()
	g.closing = true
	g.ready.Signal()
	g.room.Broadcast()
	g.mu.Unlock()
	if err := g.Conn.SetWriteDeadline(time.Now().Add(gatherLinger)); err != nil {
		err = g.Conn.Close()
		<-g.done
		return err
	}
	<-g.done
	return g.Conn.Close()
}
