package sshfwd

import (
	"io"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/internal/bufpool"
)

// chunksPerDirection is how many buffers a Channel has in flight in each
// direction; two let the caller fill (or drain) one while the other is on
// the wire. Buffers come from bufpool and go back as soon as they are
// drained, so an idle Channel holds at most a small one.
const chunksPerDirection = 2

// Channel is one forwarded stream: an SSH channel of type direct-tcpip,
// forwarded-tcpip, direct-streamlocal@openssh.com,
// forwarded-streamlocal@openssh.com or x11 (ssh_channel in libssh).
//
// Channel is a complete net.Conn. Unlike the conns of x/crypto/ssh it honours
// read and write deadlines: a Read waiting for data or a Write waiting for the
// peer's window returns an error satisfying errors.Is(err,
// os.ErrDeadlineExceeded) once the deadline passes, and the Channel stays
// usable afterwards. CloseWrite sends EOF while reading goes on.
//
// Read, Write, CloseWrite, Close and the deadline setters may be called from
// different goroutines. Data is moved by two goroutines of the Channel's own,
// started by the first Read and the first Write, so that a deadline can end a
// wait that x/crypto/ssh itself cannot interrupt. They, and two that service
// channel requests and extended data, end when the peer confirms the close or
// the connection ends; Session.Close waits for them.
type Channel struct {
	ch    ssh.Channel
	laddr net.Addr
	raddr net.Addr
	owner owner       // runs the Channel's goroutines
	conn  *gatherConn // counts the sends of the Channel's connection; nil when none

	rdl, wdl  *deadline
	done      chan struct{} // closed by Close, or by shut
	gone      chan struct{} // closed once the peer closed the channel too, or the connection ended
	shutOnce  sync.Once
	closeOnce sync.Once

	readMu    sync.Mutex // serializes Read; guards everything down to readErr
	readStart sync.Once
	filled    chan []byte   // chunks read from ch, in order
	tokens    chan struct{} // one per chunk readLoop may fill before Read drains one
	unread    []byte        // the part of the current chunk that Read has not returned
	chunk     []byte        // the current chunk, to give back once unread is empty
	readErr   error         // why readLoop stopped; written before it closes filled

	writeMu    sync.Mutex // serializes Write and CloseWrite; guards eofSent
	eofSent    bool
	writeStart sync.Once
	hasData    chan struct{} // holds a token once pending has bytes for writeLoop
	hasSpace   chan struct{} // holds a token once writeLoop took or sent a batch, or stopped

	sendMu  sync.Mutex // guards everything down to linger
	pending []byte     // bytes Write accepted that writeLoop has not taken; nil when none
	sending bool       // writeLoop is writing the batch it took
	sendErr error      // why writeLoop stopped
	closing bool       // Close was called: writeLoop closes the channel once it drained
	linger  *time.Timer

	closeSSH sync.Once // the close message is sent once, by Close or by writeLoop
}

// WrapChannel makes a Channel of an SSH channel that the caller opened or
// accepted, for servers built on x/crypto/ssh that want a net.Conn with
// deadlines. It services reqs (rejecting every request) and discards extended
// data, so neither can stall the connection. The addresses are what LocalAddr
// and RemoteAddr report.
func WrapChannel(ch ssh.Channel, reqs <-chan *ssh.Request, local, remote net.Addr) *Channel {
	c, _ := newChannel(ch, reqs, local, remote, detached{})
	return c
}

// owner is what a Channel needs of whoever keeps track of it.
type owner interface {
	// spawn runs f in a goroutine, or reports false once the owner closed.
	spawn(f func()) bool
	// release forgets a closed Channel.
	release(c *Channel)
	// unconfirmed counts Channels closed on this side whose close the peer
	// has not answered yet: +1 when one starts waiting, -1 when it ends.
	unconfirmed(delta int64)
	// gathering returns the connection's gatherConn, or nil.
	gathering() *gatherConn
}

// detached owns the Channels of servers, whose goroutines nobody waits for:
// they end with the channel or its connection.
type detached struct{}

func (detached) spawn(f func()) bool    { go f(); return true }
func (detached) release(*Channel)       {}
func (detached) unconfirmed(int64)      {}
func (detached) gathering() *gatherConn { return nil }

// newChannel wraps ch; ok is false, and the Channel closed, if the owner
// already closed.
func newChannel(ch ssh.Channel, reqs <-chan *ssh.Request, local, remote net.Addr, o owner) (c *Channel, ok bool) {
	c = &Channel{
		ch:    ch,
		laddr: local,
		raddr: remote,
		owner: o,
		conn:  o.gathering(),
		rdl:   newDeadline(),
		wdl:   newDeadline(),
		done:  make(chan struct{}),
		gone:  make(chan struct{}),
	}
	// x/crypto closes reqs when the peer's close arrives or the connection
	// ends, and not before.
	serveRequests := func() {
		ssh.DiscardRequests(reqs)
		close(c.gone)
	}
	if !o.spawn(serveRequests) || !o.spawn(c.drainExtended) {
		c.Close()
		return c, false
	}
	return c, true
}

// drainExtended reads and drops extended data (stderr), which a forwarded
// stream has no use for but which would otherwise fill the window.
func (c *Channel) drainExtended() {
	buf := make([]byte, 512)
	for {
		if _, err := c.ch.Stderr().Read(buf); err != nil {
			return
		}
	}
}

// Read reads data the peer sent. It returns io.EOF once the peer sent EOF
// (ssh_channel_send_eof on its side) and every byte before it was read.
func (c *Channel) Read(p []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if err := c.checkOpen("read", c.rdl); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if len(c.unread) == 0 {
		if err := c.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.unread)
	c.unread = c.unread[n:]
	return n, nil
}

// next gives back the chunk Read or WriteTo drained and waits for the next
// one, until the read deadline; readMu is held.
func (c *Channel) next() error {
	if c.chunk != nil {
		bufpool.Put(c.chunk)
		c.chunk = nil
		c.tokens <- struct{}{}
	}
	c.readStart.Do(c.startReader)
	select {
	case b, ok := <-c.filled:
		if !ok {
			return c.readErr
		}
		c.chunk, c.unread = b, b
		return nil
	case <-c.rdl.wait():
		return c.opError("read", os.ErrDeadlineExceeded)
	case <-c.done:
		return c.opError("read", net.ErrClosed)
	}
}

// WriteTo implements io.WriterTo, which io.Copy prefers: it hands w each
// buffer the Channel received, as it arrives, until the peer's EOF, which
// saves the copy into the caller's buffer that Read makes. It returns the
// bytes w took, and nil at the peer's EOF. The read deadline bounds each
// wait for data, as it bounds a Read; an error from w ends it too.
func (c *Channel) WriteTo(w io.Writer) (int64, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if err := c.checkOpen("read", c.rdl); err != nil {
		return 0, err
	}
	var total int64
	for {
		if len(c.unread) == 0 {
			if err := c.next(); err != nil {
				if err == io.EOF {
					err = nil
				}
				return total, err
			}
		}
		n, err := w.Write(c.unread)
		total += int64(n)
		c.unread = c.unread[n:]
		if err == nil && len(c.unread) > 0 {
			err = io.ErrShortWrite
		}
		if err != nil {
			return total, err
		}
	}
}

func (c *Channel) startReader() {
	c.filled = make(chan []byte, chunksPerDirection)
	c.tokens = make(chan struct{}, chunksPerDirection)
	for range chunksPerDirection {
		c.tokens <- struct{}{}
	}
	if !c.owner.spawn(c.readLoop) {
		c.readErr = c.opError("read", net.ErrClosed)
		close(c.filled)
	}
}

func (c *Channel) readLoop() {
	defer close(c.filled)
	size := bufpool.Small // until reads fill their buffer: an idle wait holds little
	for {
		select {
		case <-c.tokens:
		case <-c.done:
			c.readErr = c.opError("read", net.ErrClosed)
			c.discard()
			return
		}
		buf := bufpool.Get(size)
		n, err := c.ch.Read(buf)
		size = bufpool.Next(len(buf), n)
		if n > 0 {
			select {
			case c.filled <- buf[:n]:
			case <-c.done:
				bufpool.Put(buf)
				c.readErr = c.opError("read", net.ErrClosed)
				c.discard()
				return
			}
		} else {
			bufpool.Put(buf)
			c.tokens <- struct{}{}
		}
		if err != nil {
			c.readErr = err
			if err != io.EOF {
				c.readErr = c.opError("read", err)
			}
			return
		}
	}
}

// discard reads and drops what the peer sends until its EOF or close. Once
// the Channel is closed, nothing will read the data, but x/crypto holds it
// until then. Only the one reader of the channel may call it: x/crypto
// wakes a single reader at EOF, so a second one would wait forever.
func (c *Channel) discard() {
	buf := bufpool.Get(bufpool.Small)
	defer bufpool.Put(buf)
	for {
		if _, err := c.ch.Read(buf); err != nil {
			return
		}
	}
}

// sendBufSize bounds what a Channel accepts beyond what is on the wire: a
// Write returns once its bytes are in the send buffer, as with TCP, and
// waits only while it is full.
const sendBufSize = bufpool.Large

// lingerTimeout bounds how long a closed Channel keeps trying to send what
// was written before Close, when the peer does not take it.
const lingerTimeout = 10 * time.Second

// Write sends p on the channel. Like a write to a TCP socket it returns once
// p is in the Channel's send buffer, from which a goroutine of the Channel
// writes it to the SSH connection, waiting for the peer's window; Write
// waits only while that buffer is full. An error in sending is reported by
// a later Write, by CloseWrite, or by nothing if Close came first. After the
// write deadline passes, n counts the bytes accepted, which are still sent.
func (c *Channel) Write(p []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if err := c.writable(); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	c.writeStart.Do(c.startWriter)
	n := 0
	for {
		c.sendMu.Lock()
		if err := c.acceptErr(); err != nil {
			c.sendMu.Unlock()
			return n, err
		}
		if c.pending == nil {
			c.pending = bufpool.Get(sendBufSize)[:0]
		}
		m := copy(c.pending[len(c.pending):cap(c.pending)], p[n:])
		c.pending = c.pending[:len(c.pending)+m]
		c.sendMu.Unlock()
		n += m
		if m > 0 {
			notify(c.hasData)
		}
		if n == len(p) {
			return n, nil
		}
		if err := c.waitSend("write"); err != nil {
			return n, err
		}
	}
}

// ReadFrom implements io.ReaderFrom, which io.Copy uses when the source has
// no WriteTo: it reads r straight into the Channel's send buffer until r's
// EOF, which saves the copy out of the caller's buffer that Write makes.
// It waits for room before each read from r, never with bytes in hand, so
// a write deadline or Close that ends it loses nothing it read. It returns
// the bytes read from r, all of which are sent, and nil at r's EOF.
func (c *Channel) ReadFrom(r io.Reader) (int64, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if err := c.writable(); err != nil {
		return 0, err
	}
	c.writeStart.Do(c.startWriter)
	var total int64
	size := bufpool.Small // as readLoop: a wait on an idle r holds little
	for {
		// Before each read, never with bytes in hand: room, and time left.
		if err := c.checkOpen("write", c.wdl); err != nil {
			return total, err
		}
		if err := c.waitSent("write", false); err != nil {
			return total, err
		}
		buf := bufpool.Get(size)
		n, rerr := r.Read(buf)
		size = bufpool.Next(len(buf), n)
		if n == 0 {
			bufpool.Put(buf)
		} else {
			c.sendMu.Lock()
			err := c.acceptErr()
			if err == nil {
				c.pending = buf[:n] // waitSent left it empty, and only this call fills it
			}
			c.sendMu.Unlock()
			if err != nil {
				bufpool.Put(buf)
				return total, err
			}
			total += int64(n)
			notify(c.hasData)
		}
		switch {
		case rerr == io.EOF:
			return total, nil
		case rerr != nil:
			return total, rerr
		}
	}
}

// acceptErr says why the send buffer may take no more bytes, or nil; sendMu
// is held. Once Close has begun, bytes added could be left behind unsent by
// a writeLoop that already stopped, so they are refused instead.
func (c *Channel) acceptErr() error {
	if c.closing {
		return c.opError("write", net.ErrClosed)
	}
	return c.sendErr
}

// writable says why Write or ReadFrom may not start, or nil; writeMu is
// held.
func (c *Channel) writable() error {
	if err := c.checkOpen("write", c.wdl); err != nil {
		return err
	}
	if c.eofSent {
		return c.opError("write", ErrWriteAfterEOF)
	}
	return nil
}

// waitSent waits, until the write deadline, for writeLoop to have taken
// everything in the send buffer and, with onWire, to have written it too.
func (c *Channel) waitSent(op string, onWire bool) error {
	for {
		c.sendMu.Lock()
		done := c.pending == nil && !(onWire && c.sending)
		err := c.sendErr
		c.sendMu.Unlock()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		if err := c.waitSend(op); err != nil {
			return err
		}
	}
}

// waitSend waits for writeLoop to make progress, until the write deadline.
func (c *Channel) waitSend(op string) error {
	select {
	case <-c.hasSpace:
		return nil
	case <-c.wdl.wait():
		return c.opError(op, os.ErrDeadlineExceeded)
	case <-c.done:
		return c.opError(op, net.ErrClosed)
	}
}

func (c *Channel) startWriter() {
	c.hasData = make(chan struct{}, 1)
	c.hasSpace = make(chan struct{}, 1)
	if !c.owner.spawn(c.writeLoop) {
		c.sendErr = c.opError("write", net.ErrClosed)
	}
}

// writeLoop writes what Write accepted, a batch at a time, in order.
func (c *Channel) writeLoop() {
	for {
		c.sendMu.Lock()
		batch := c.pending
		c.pending = nil
		c.sending = batch != nil
		closing := c.closing
		c.sendMu.Unlock()
		if batch == nil {
			if closing {
				c.closeChannel()
				return
			}
			notify(c.hasSpace)
			select {
			case <-c.hasData:
				continue
			case <-c.done:
				c.sendMu.Lock()
				closing, idle := c.closing, c.pending == nil
				c.sendMu.Unlock()
				if closing && idle {
					c.closeChannel()
				}
				if idle {
					return
				}
				continue
			}
		}
		notify(c.hasSpace)
		c.conn.enter()
		_, err := c.ch.Write(batch)
		c.conn.leave()
		bufpool.Put(batch)
		c.sendMu.Lock()
		c.sending = false
		if err != nil {
			if err == io.EOF {
				err = errPeerClosed
			}
			c.sendErr = c.opError("write", err)
			if c.pending != nil {
				bufpool.Put(c.pending)
				c.pending = nil
			}
		}
		c.sendMu.Unlock()
		if err != nil {
			notify(c.hasSpace)
			return
		}
	}
}

// notify leaves a token in ch unless one is there already.
func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// CloseWrite sends EOF once everything written before it is on the wire
// (ssh_channel_send_eof in libssh). Reading goes on until the peer's EOF.
// It honours the write deadline while it waits, and calling it again does
// nothing.
func (c *Channel) CloseWrite() error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if err := c.checkOpen("close", nil); err != nil {
		return err
	}
	if c.eofSent {
		return nil
	}
	if c.hasData != nil {
		if err := c.waitSent("close", true); err != nil {
			return err
		}
	}
	c.eofSent = true
	c.conn.enter()
	err := c.ch.CloseWrite()
	c.conn.leave()
	if err != nil {
		if err == io.EOF {
			err = errPeerClosed
		}
		return c.opError("close", err)
	}
	return nil
}

// Close closes the channel (ssh_channel_free in libssh). Pending Reads and
// Writes return an error matching net.ErrClosed at once, and data not yet
// read is dropped. Data already written is still sent, as TCP does, before
// the close message; if the peer does not take it within ten seconds, the
// channel is closed anyway. Close does not wait for either, nor for the
// peer to confirm: OpenSSH confirms only once it has delivered what it
// holds, which may be never if its end stops reading. Calling Close again
// does nothing.
func (c *Channel) Close() error {
	c.closeOnce.Do(func() {
		c.shut()
		c.sendMu.Lock()
		c.closing = true
		busy := c.pending != nil || c.sending
		if busy {
			c.linger = time.AfterFunc(lingerTimeout, c.closeChannel)
		}
		c.sendMu.Unlock()
		if !busy {
			c.closeChannel()
		}
		c.owner.release(c)
	})
	return nil
}

// closeChannel sends the close message, once.
func (c *Channel) closeChannel() {
	c.closeSSH.Do(func() {
		c.sendMu.Lock()
		if c.linger != nil {
			c.linger.Stop()
		}
		c.sendMu.Unlock()
		c.conn.enter()
		c.ch.Close()
		c.conn.leave()
		if isClosed(c.gone) {
			return
		}
		// Until the peer answers, x/crypto keeps the channel and every
		// byte that arrives on it, though it grants no more window: what
		// the peer had the right to send is drained, by readLoop if it
		// ran, and the wait is counted.
		unread := false
		c.readStart.Do(func() { unread = true })
		c.owner.unconfirmed(+1)
		if !c.owner.spawn(func() { c.awaitPeerClose(unread) }) {
			c.owner.unconfirmed(-1)
		}
	})
}

// awaitPeerClose waits for the peer to answer this side's close, or for the
// connection to end, draining the channel first when nothing else reads it.
func (c *Channel) awaitPeerClose(drain bool) {
	defer c.owner.unconfirmed(-1)
	if drain {
		c.discard()
	}
	<-c.gone
}

// shut makes pending and later calls fail with net.ErrClosed, without
// telling the peer yet: Session.Close does this to every Channel before the
// connection goes, so that readers see the close and not an early EOF.
func (c *Channel) shut() {
	c.shutOnce.Do(func() {
		close(c.done)
		c.rdl.stop()
		c.wdl.stop()
	})
}

// LocalAddr returns the local end as the channel was opened: the originator
// for a channel this side opened, the forwarded (bound) address for one the
// peer opened.
func (c *Channel) LocalAddr() net.Addr { return c.laddr }

// RemoteAddr returns the remote end: the destination for a channel this side
// opened, the originator for one the peer opened.
func (c *Channel) RemoteAddr() net.Addr { return c.raddr }

// SetDeadline sets the read and write deadlines; see net.Conn.
func (c *Channel) SetDeadline(t time.Time) error {
	if err := c.checkOpen("set deadline", nil); err != nil {
		return err
	}
	c.rdl.set(t)
	c.wdl.set(t)
	return nil
}

// SetReadDeadline sets the deadline for Read, including one already waiting.
func (c *Channel) SetReadDeadline(t time.Time) error {
	if err := c.checkOpen("set deadline", nil); err != nil {
		return err
	}
	c.rdl.set(t)
	return nil
}

// SetWriteDeadline sets the deadline for Write and CloseWrite, including one
// already waiting.
func (c *Channel) SetWriteDeadline(t time.Time) error {
	if err := c.checkOpen("set deadline", nil); err != nil {
		return err
	}
	c.wdl.set(t)
	return nil
}

// SSHChannel returns the underlying x/crypto/ssh channel, for channel
// requests. Reading or writing it directly bypasses the Channel's buffers.
func (c *Channel) SSHChannel() ssh.Channel { return c.ch }

func (c *Channel) checkOpen(op string, d *deadline) error {
	if isClosed(c.done) {
		return c.opError(op, net.ErrClosed)
	}
	if d != nil && isClosed(d.wait()) {
		return c.opError(op, os.ErrDeadlineExceeded)
	}
	return nil
}

func (c *Channel) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: networkOf(c.raddr), Source: c.laddr, Addr: c.raddr, Err: err}
}

func networkOf(a net.Addr) string {
	if a == nil {
		return "ssh"
	}
	return a.Network()
}

var errPeerClosed = wrap("channel closed by peer", io.EOF)

var (
	_ net.Conn      = (*Channel)(nil)
	_ io.ReaderFrom = (*Channel)(nil)
	_ io.WriterTo   = (*Channel)(nil)
)
