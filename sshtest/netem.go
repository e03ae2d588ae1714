package sshtest

import (
	"bytes"
	"net"
	"os"
	"sync"
	"time"
)

// delayQueue bounds the chunks waiting in each direction of a Delay.
const delayQueue = 64

// delayReadSize is how much the reading side of a Delay takes at a time.
const delayReadSize = 32 << 10

// Delay returns c with d of latency added in each direction: what is
// written to it reaches the peer d later, and what the peer sends is read
// d later, so every round trip takes 2d longer. Up to 64 writes or reads
// wait in each direction; a writer finding that many waiting blocks, as on
// a full link. Deadlines work as on c. Close sends what is still on its
// way, as a TCP connection does, giving up after d and a second more if
// the peer does not take it, then closes c and waits for the two
// goroutines Delay started.
func Delay(c net.Conn, d time.Duration) net.Conn {
	dc := &delayConn{
		Conn:     c,
		link:     newLink(),
		d:        d,
		in:       make(chan chunk, delayQueue),
		out:      make(chan chunk, delayQueue),
		outBroke: make(chan struct{}),
		flushed:  make(chan struct{}),
	}
	dc.wg.Add(2)
	go dc.pumpIn()
	go dc.pumpOut()
	return dc
}

// lingerTime is how long, beyond its latency, a Delay's Close tries to
// send what is on its way.
const lingerTime = time.Second

// chunk is what one read or write moved, and when it is due at the other
// end.
type chunk struct {
	data []byte
	err  error // what ended the reading side, with the last chunk
	due  time.Time
}

type delayConn struct {
	net.Conn
	*link
	d        time.Duration
	in       chan chunk    // read from Conn, to hand to Read when due
	out      chan chunk    // given to Write, to write to Conn when due
	outBroke chan struct{} // closed when writing to Conn failed, with outErr set
	outErr   error
	flushed  chan struct{}  // closed when pumpOut is done, with what Close left it
	wg       sync.WaitGroup // the two pumps

	readMu sync.Mutex // serializes Read; guards head
	head   *chunk     // taken from in and not all read yet
}

// pumpIn reads from Conn and queues what it read, until Conn fails or
// Close.
func (c *delayConn) pumpIn() {
	defer c.wg.Done()
	buf := make([]byte, delayReadSize)
	for {
		n, err := c.Conn.Read(buf)
		ch := chunk{data: bytes.Clone(buf[:n]), err: err, due: time.Now().Add(c.d)}
		select {
		case c.in <- ch:
		case <-c.closed:
			return
		}
		if err != nil {
			return
		}
	}
}

// pumpOut writes each queued chunk to Conn when it is due, until a write
// fails or Close, and then what Close left queued.
func (c *delayConn) pumpOut() {
	defer c.wg.Done()
	defer close(c.flushed)
	for {
		select {
		case ch := <-c.out:
			if !c.deliver(ch) {
				return
			}
		case <-c.closed:
			for {
				select {
				case ch := <-c.out:
					if !c.deliver(ch) {
						return
					}
				default:
					return
				}
			}
		}
	}
}

// deliver writes ch to Conn once it is due, and reports whether it could.
func (c *delayConn) deliver(ch chunk) bool {
	time.Sleep(time.Until(ch.due))
	if _, err := c.Conn.Write(ch.data); err != nil {
		c.outErr = err
		close(c.outBroke)
		return false
	}
	return true
}

func (c *delayConn) Read(p []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if err := c.check(&c.rd); err != nil {
		return 0, err
	}
	for {
		if c.head == nil {
			select {
			case ch := <-c.in:
				c.head = &ch
			case <-c.rd.expired():
				return 0, os.ErrDeadlineExceeded
			case <-c.closed:
				return 0, net.ErrClosed
			}
		}
		if err := c.sleepUntil(c.head.due, &c.rd); err != nil {
			return 0, err
		}
		if len(c.head.data) > 0 {
			n := copy(p, c.head.data)
			c.head.data = c.head.data[n:]
			return n, nil
		}
		if c.head.err != nil {
			return 0, c.head.err
		}
		c.head = nil
	}
}

// Write queues a copy of p and returns, as a write to a socket with room
// in its buffer does. An error from writing to Conn is returned by the
// writes after it.
func (c *delayConn) Write(p []byte) (int, error) {
	if err := c.check(&c.wd); err != nil {
		return 0, err
	}
	ch := chunk{data: bytes.Clone(p), due: time.Now().Add(c.d)}
	select {
	case c.out <- ch:
		return len(p), nil
	case <-c.outBroke:
		return 0, c.outErr
	case <-c.wd.expired():
		return 0, os.ErrDeadlineExceeded
	case <-c.closed:
		return 0, net.ErrClosed
	}
}

func (c *delayConn) Close() error {
	err := c.close(c.Conn, func() {
		// The deadline bounds the write in progress as well as those
		// still queued.
		c.Conn.SetWriteDeadline(time.Now().Add(c.d + lingerTime))
		<-c.flushed
	})
	c.wg.Wait()
	return err
}

func (c *delayConn) SetDeadline(t time.Time) error {
	c.rd.set(t)
	c.wd.set(t)
	return nil
}

func (c *delayConn) SetReadDeadline(t time.Time) error {
	c.rd.set(t)
	return nil
}

func (c *delayConn) SetWriteDeadline(t time.Time) error {
	c.wd.set(t)
	return nil
}

// Throttle returns c with its bandwidth capped at bytesPerSecond in each
// direction: writes are paced out at that rate, and reads hand on what
// arrives no faster, so the peer's sending backs up as on a slow link.
// Deadlines work as on c. It panics if bytesPerSecond is not positive.
//
// Throttle and Delay are network conditions for Config.WrapConn, on
// loopback with no root and no netem, and they compose:
// Throttle(Delay(c, d), rate) is a link of that rate whose round trip is
// 2d longer.
func Throttle(c net.Conn, bytesPerSecond int) net.Conn {
	if bytesPerSecond <= 0 {
		panic("sshtest: Throttle needs a positive rate")
	}
	return &throttleConn{
		Conn:  c,
		link:  newLink(),
		read:  pacer{rate: float64(bytesPerSecond)},
		write: pacer{rate: float64(bytesPerSecond)},
		slice: max(bytesPerSecond/throttleSlices, 1),
	}
}

// throttleSlices is how many pieces a second's worth of bytes is moved in:
// pacing in 20 ms steps keeps the rate even at the scale of a round trip.
const throttleSlices = 50

type throttleConn struct {
	net.Conn
	*link
	read, write pacer
	slice       int // the most bytes moved at once
}

func (c *throttleConn) Read(p []byte) (int, error) {
	if len(p) > c.slice {
		p = p[:c.slice]
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		// The bytes are read already: only Close may stop their
		// delivery, or they would be lost.
		if serr := c.sleepUntil(c.read.book(n), nil); serr != nil {
			return 0, serr
		}
	}
	return n, err
}

func (c *throttleConn) Write(p []byte) (int, error) {
	written := 0
	for written < len(p) {
		n := min(len(p)-written, c.slice)
		if err := c.sleepUntil(c.write.book(n), &c.wd); err != nil {
			return written, err
		}
		m, err := c.Conn.Write(p[written : written+n])
		written += m
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

func (c *throttleConn) Close() error { return c.close(c.Conn, nil) }

func (c *throttleConn) SetDeadline(t time.Time) error {
	c.wd.set(t)
	return c.Conn.SetDeadline(t)
}

func (c *throttleConn) SetWriteDeadline(t time.Time) error {
	c.wd.set(t)
	return c.Conn.SetWriteDeadline(t)
}

// pacer books bytes on a link of a fixed rate.
type pacer struct {
	rate float64 // bytes per second

	mu   sync.Mutex // guards free
	free time.Time  // when what is booked so far has gone through
}

// book books n bytes and returns when they will have gone through.
func (p *pacer) book(n int) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now := time.Now(); p.free.Before(now) {
		p.free = now
	}
	p.free = p.free.Add(time.Duration(float64(n) / p.rate * float64(time.Second)))
	return p.free
}

// link is what the network conditions share: their Close and their
// deadlines.
type link struct {
	closed    chan struct{}
	closeOnce sync.Once
	rd, wd    deadline
}

func newLink() *link {
	return &link{closed: make(chan struct{}), rd: newDeadline(), wd: newDeadline()}
}

// close closes c the first time, after drain (if not nil) has returned;
// later calls return net.ErrClosed.
func (l *link) close(c net.Conn, drain func()) error {
	err := net.ErrClosed
	l.closeOnce.Do(func() {
		close(l.closed)
		if drain != nil {
			drain()
		}
		err = c.Close()
	})
	return err
}

// check returns the error of an operation begun after Close or past the
// deadline dl, which fails at once, as on a socket.
func (l *link) check(dl *deadline) error {
	select {
	case <-l.closed:
		return net.ErrClosed
	case <-dl.expired():
		return os.ErrDeadlineExceeded
	default:
		return nil
	}
}

// sleepUntil waits until t, or until dl (if not nil) expires or Close.
func (l *link) sleepUntil(t time.Time, dl *deadline) error {
	wait := time.Until(t)
	if wait <= 0 {
		return nil
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	var expired <-chan struct{}
	if dl != nil {
		expired = dl.expired()
	}
	select {
	case <-timer.C:
		return nil
	case <-expired:
		return os.ErrDeadlineExceeded
	case <-l.closed:
		return net.ErrClosed
	}
}

// deadline is a time that can be moved, with a channel closed while it is
// past.
type deadline struct {
	mu    sync.Mutex    // guards timer and ch
	timer *time.Timer   // closes ch when the deadline comes
	ch    chan struct{} // closed while the deadline is past
}

func newDeadline() deadline { return deadline{ch: make(chan struct{})} }

// set moves the deadline to t; the zero time means none.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		// The timer fired: its function closes ch, if it has not yet.
		<-d.ch
	}
	d.timer = nil
	past := isClosed(d.ch)
	wait := time.Until(t)
	if !t.IsZero() && wait <= 0 {
		if !past {
			close(d.ch)
		}
		return
	}
	if past {
		d.ch = make(chan struct{})
	}
	if !t.IsZero() {
		ch := d.ch
		d.timer = time.AfterFunc(wait, func() { close(ch) })
	}
}

// expired returns the channel that is closed while the deadline is past.
func (d *deadline) expired() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ch
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
