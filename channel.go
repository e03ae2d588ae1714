package sshfwd

import (
	"fmt"
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
	owner owner // runs the Channel's goroutines

	rdl, wdl  *deadline
	done      chan struct{} // closed by Close, or by shut
	shutOnce  sync.Once
	closeOnce sync.Once

	readMu    sync.Mutex // serializes Read; guards everything down to readErr
	readStart sync.Once
	filled    chan []byte   // chunks read from ch, in order
	tokens    chan struct{} // one per chunk readLoop may fill before Read drains one
	unread    []byte        // the part of the current chunk that Read has not returned
	chunk     []byte        // the current chunk, to give back once unread is empty
	readErr   error         // why readLoop stopped; written before it closes filled

	writeMu    sync.Mutex // serializes Write and CloseWrite; guards everything down to eofSent
	writeStart sync.Once
	queued     chan []byte   // chunks for writeLoop, in order
	free       chan []byte   // chunks writeLoop is done with; nil means none taken from the pool yet
	writeFail  chan struct{} // closed by writeLoop once a write failed
	writeErr   error         // why writeLoop stopped; written before it closes writeFail
	eofSent    bool
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
}

// detached owns the Channels of servers, whose goroutines nobody waits for:
// they end with the channel or its connection.
type detached struct{}

func (detached) spawn(f func()) bool { go f(); return true }
func (detached) release(*Channel)    {}

// newChannel wraps ch; ok is false, and the Channel closed, if the owner
// already closed.
func newChannel(ch ssh.Channel, reqs <-chan *ssh.Request, local, remote net.Addr, o owner) (c *Channel, ok bool) {
	c = &Channel{
		ch:    ch,
		laddr: local,
		raddr: remote,
		owner: o,
		rdl:   newDeadline(),
		wdl:   newDeadline(),
		done:  make(chan struct{}),
	}
	if !o.spawn(func() { ssh.DiscardRequests(reqs) }) || !o.spawn(c.drainExtended) {
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
		if c.chunk != nil {
			bufpool.Put(c.chunk)
			c.chunk = nil
			c.tokens <- struct{}{}
		}
		c.readStart.Do(c.startReader)
		select {
		case b, ok := <-c.filled:
			if !ok {
				return 0, c.readErr
			}
			c.chunk, c.unread = b, b
		case <-c.rdl.wait():
			return 0, c.opError("read", os.ErrDeadlineExceeded)
		case <-c.done:
			return 0, c.opError("read", net.ErrClosed)
		}
	}
	n := copy(p, c.unread)
	c.unread = c.unread[n:]
	return n, nil
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
			return
		}
		buf := bufpool.Get(size)
		n, err := c.ch.Read(buf)
		size = bufpool.Small
		if n == len(buf) {
			size = bufpool.Packet
		}
		if n > 0 {
			select {
			case c.filled <- buf[:n]:
			case <-c.done:
				c.readErr = c.opError("read", net.ErrClosed)
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

// Write sends p on the channel, waiting for the peer's window as needed. A
// nil error means every byte was handed to the SSH connection. After a
// deadline passes, n counts the bytes accepted so far, the last chunk of which
// may still be on its way; they are sent unless the Channel is closed first.
func (c *Channel) Write(p []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if err := c.checkOpen("write", c.wdl); err != nil {
		return 0, err
	}
	if c.eofSent {
		return 0, c.opError("write", ErrWriteAfterEOF)
	}
	c.writeStart.Do(c.startWriter)
	n := 0
	for n < len(p) {
		buf, err := c.takeFree()
		if err != nil {
			return n, err
		}
		if buf == nil {
			buf = bufpool.Get(len(p) - n)
		}
		m := copy(buf[:cap(buf)], p[n:])
		c.queued <- buf[:m]
		n += m
	}
	return n, c.flush()
}

func (c *Channel) startWriter() {
	c.queued = make(chan []byte, chunksPerDirection)
	c.free = make(chan []byte, chunksPerDirection)
	c.writeFail = make(chan struct{})
	for range chunksPerDirection {
		c.free <- nil
	}
	if !c.owner.spawn(c.writeLoop) {
		c.writeErr = c.opError("write", net.ErrClosed)
		close(c.writeFail)
	}
}

func (c *Channel) writeLoop() {
	for {
		select {
		case b := <-c.queued:
			if _, err := c.ch.Write(b); err != nil {
				if err == io.EOF {
					err = errPeerClosed
				}
				c.writeErr = c.opError("write", err)
				close(c.writeFail)
				return
			}
			c.free <- b
		case <-c.done:
			return
		}
	}
}

// takeFree waits for a write buffer that writeLoop is done with.
func (c *Channel) takeFree() ([]byte, error) {
	select {
	case b := <-c.free:
		return b, nil
	case <-c.writeFail:
		return nil, c.writeErr
	case <-c.wdl.wait():
		return nil, c.opError("write", os.ErrDeadlineExceeded)
	case <-c.done:
		return nil, c.opError("write", net.ErrClosed)
	}
}

// flush waits until writeLoop has written every queued chunk, and gives
// the buffers back to the pool.
func (c *Channel) flush() error {
	n := 0
	defer func() {
		for range n {
			c.free <- nil
		}
	}()
	for n < chunksPerDirection {
		b, err := c.takeFree()
		if err != nil {
			return err
		}
		if b != nil {
			bufpool.Put(b)
		}
		n++
	}
	return nil
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
	if c.queued != nil {
		if err := c.flush(); err != nil {
			return err
		}
	}
	c.eofSent = true
	if err := c.ch.CloseWrite(); err != nil {
		if err == io.EOF {
			err = errPeerClosed
		}
		return c.opError("close", err)
	}
	return nil
}

// Close closes the channel (ssh_channel_free in libssh). Pending Reads and
// Writes return an error matching net.ErrClosed at once; data not yet read is
// dropped, and so is a chunk still waiting for window after a Write's
// deadline passed. Close does not wait for the peer to confirm: OpenSSH
// confirms only once it has delivered what it holds, which may be never if
// its end stops reading. Calling Close again does nothing.
func (c *Channel) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.shut()
		if cerr := c.ch.Close(); cerr != nil && cerr != io.EOF {
			err = c.opError("close", cerr)
		}
		c.owner.release(c)
	})
	return err
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

var errPeerClosed = fmt.Errorf("sshfwd: channel closed by peer: %w", io.EOF)

var _ net.Conn = (*Channel)(nil)
