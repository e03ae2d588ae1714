package bench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// ChunkSize is how much Blast and Flood write at a time: the buffer size of
// io.Copy, so what most programs hand a connection.
const ChunkSize = 32 << 10

// zeros is what Blast and Flood send. The ciphers under test do not care
// what they encrypt, and nothing compresses.
var zeros [ChunkSize]byte

// Server is a TCP server on 127.0.0.1 that runs a handler for each
// connection in a goroutine of its own.
type Server struct {
	ln     net.Listener
	handle func(net.Conn)
	wg     sync.WaitGroup // the accept loop and every handler

	mu     sync.Mutex // guards conns and closed
	conns  map[net.Conn]struct{}
	closed bool
}

// Serve starts a Server that serves each connection with handle and closes
// it once handle returns.
func Serve(handle func(net.Conn)) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: listen: %w", err)
	}
	s := &Server{ln: ln, handle: handle, conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		if !s.track(c) {
			c.Close()
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			s.handle(c)
		}()
	}
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Addr returns the address the Server listens on.
func (s *Server) Addr() *net.TCPAddr { return s.ln.Addr().(*net.TCPAddr) }

// Open returns how many connections the Server is serving.
func (s *Server) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Close stops accepting, closes every connection and returns once every
// handler has returned.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	err := s.ln.Close()
	for _, c := range conns {
		c.Close()
	}
	s.wg.Wait()
	return err
}

// Sink is a Server that reads whatever each connection sends and counts it.
// When a connection sends EOF, the Sink answers with the count, eight bytes
// big-endian, and closes it: Blast checks that answer.
type Sink struct {
	*Server

	mu     sync.Mutex      // guards counts
	counts []*atomic.Int64 // bytes read so far, per connection in order of arrival
}

// NewSink starts a Sink.
func NewSink() (*Sink, error) {
	k := &Sink{}
	s, err := Serve(k.count)
	if err != nil {
		return nil, err
	}
	k.Server = s
	return k, nil
}

func (k *Sink) count(c net.Conn) {
	n := new(atomic.Int64)
	k.mu.Lock()
	k.counts = append(k.counts, n)
	k.mu.Unlock()
	buf := make([]byte, 2*ChunkSize)
	for {
		m, err := c.Read(buf)
		n.Add(int64(m))
		if err == io.EOF {
			binary.Write(c, binary.BigEndian, n.Load())
			return
		}
		if err != nil {
			return
		}
	}
}

// Counts returns how many bytes each connection the Sink accepted has sent
// so far, in the order the connections arrived, closed ones included.
func (k *Sink) Counts() []int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]int64, len(k.counts))
	for i, n := range k.counts {
		out[i] = n.Load()
	}
	return out
}

// closeWriter is what Blast needs to send EOF: *net.TCPConn,
// *sshfwd.Channel and the conns of x/crypto's Client.Dial have it.
type closeWriter interface {
	CloseWrite() error
}

// Blast sends n bytes on c to a Sink in writes of ChunkSize, sends EOF, and
// waits for the Sink's count, which must be n: the time Blast takes is the
// time the bytes took to arrive.
func Blast(c net.Conn, n int64) error {
	if _, ok := c.(closeWriter); !ok {
		return fmt.Errorf("bench: %T cannot send EOF", c)
	}
	for left := n; left > 0; {
		chunk := zeros[:min(left, ChunkSize)]
		if _, err := c.Write(chunk); err != nil {
			return fmt.Errorf("bench: write: %w", err)
		}
		left -= int64(len(chunk))
	}
	return finish(c, n)
}

// Pour sends n bytes on c to a Sink the way a forwarder moves a stream: it
// writes them into a loopback TCP connection of its own, in writes of
// ChunkSize, and copies that connection's other end into c with io.Copy.
// Then it sends EOF and waits for the Sink's count, as Blast does.
func Pour(c net.Conn, n int64) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("bench: listen: %w", err)
	}
	defer ln.Close()
	in, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return fmt.Errorf("bench: dial: %w", err)
	}
	defer in.Close()
	out, err := ln.Accept()
	if err != nil {
		return fmt.Errorf("bench: accept: %w", err)
	}
	defer out.Close()
	written := make(chan error, 1)
	go func() {
		for left := n; left > 0; {
			chunk := zeros[:min(left, ChunkSize)]
			if _, err := in.Write(chunk); err != nil {
				written <- err
				return
			}
			left -= int64(len(chunk))
		}
		written <- in.(*net.TCPConn).CloseWrite()
	}()
	if _, err := io.Copy(c, out); err != nil {
		return fmt.Errorf("bench: copy: %w", err)
	}
	if err := <-written; err != nil {
		return fmt.Errorf("bench: write: %w", err)
	}
	return finish(c, n)
}

// finish sends EOF on c and checks that the Sink counted n bytes.
func finish(c net.Conn, n int64) error {
	cw, ok := c.(closeWriter)
	if !ok {
		return fmt.Errorf("bench: %T cannot send EOF", c)
	}
	if err := cw.CloseWrite(); err != nil {
		return fmt.Errorf("bench: send EOF: %w", err)
	}
	var got int64
	if err := binary.Read(c, binary.BigEndian, &got); err != nil {
		return fmt.Errorf("bench: read the sink's count: %w", err)
	}
	if got != n {
		return fmt.Errorf("bench: the sink counted %d bytes of %d", got, n)
	}
	return nil
}

// Flood writes to w in writes of ChunkSize until a write fails, and returns
// that error.
func Flood(w io.Writer) error {
	for {
		if _, err := w.Write(zeros[:]); err != nil {
			return err
		}
	}
}

// Greeter is a Server that sends each connection a byte, waits for one
// back, acknowledges it with another and then reads until EOF. Visit is its
// client: a connection that has carried data both ways, twice, and now
// waits, as most connections do most of the time.
type Greeter struct{ *Server }

// NewGreeter starts a Greeter.
func NewGreeter() (*Greeter, error) {
	s, err := Serve(greet)
	if err != nil {
		return nil, err
	}
	return &Greeter{s}, nil
}

func greet(c net.Conn) {
	var b [1]byte
	if _, err := c.Write(b[:]); err != nil {
		return
	}
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return
	}
	if _, err := c.Write(b[:]); err != nil {
		return
	}
	for {
		if _, err := c.Read(b[:]); err != nil {
			return
		}
	}
}

// Visit does what a client of a Greeter does: it reads the greeting,
// answers and reads the acknowledgement, leaving c open.
func Visit(c net.Conn) error {
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return fmt.Errorf("bench: read the greeting: %w", err)
	}
	if _, err := c.Write(b[:]); err != nil {
		return fmt.Errorf("bench: answer the greeting: %w", err)
	}
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return fmt.Errorf("bench: read the acknowledgement: %w", err)
	}
	return nil
}

// PingSize is the size of the requests of the request/response and
// connection-rate benchmarks: a small RPC, a health check, a cache lookup.
const PingSize = 64

// Ping sends c, a connection to an echo server, a request of PingSize bytes
// and reads the echo back.
func Ping(c net.Conn) error {
	if _, err := c.Write(zeros[:PingSize]); err != nil {
		return fmt.Errorf("bench: send the request: %w", err)
	}
	var answer [PingSize]byte
	if _, err := io.ReadFull(c, answer[:]); err != nil {
		return fmt.Errorf("bench: read the echo: %w", err)
	}
	return nil
}

// Delay is a Server that relays each connection to a target, holding what
// it carries for a fixed time in each direction: a long link on loopback,
// with the loopback's bandwidth and a round trip of twice the delay. EOF is
// passed on, delayed like the data.
type Delay struct{ *Server }

// NewDelay starts a Delay to target that holds bytes for d each way.
func NewDelay(target string, d time.Duration) (*Delay, error) {
	s, err := Serve(func(c net.Conn) {
		t, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		defer t.Close()
		var wg sync.WaitGroup
		wg.Go(func() { late(t, c, d) })
		late(c, t, d)
		wg.Wait()
	})
	if err != nil {
		return nil, err
	}
	return &Delay{s}, nil
}

// piece is what one read of late's source returned, and when it is due.
type piece struct {
	data []byte
	err  error
	due  time.Time
}

// late copies src to dst, each read passed on d after it returned; src's
// EOF becomes dst's CloseWrite, and any other end closes both, which ends
// the other direction too. A goroutine reads while late writes, so that the
// delay adds to the time a byte takes and not to the time between reads: as
// much is in flight as the peers allow.
func late(dst, src net.Conn, d time.Duration) {
	pieces := make(chan piece, 4096) // more reads than a round trip of any link here holds
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)
	wg.Go(func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := src.Read(buf)
			select {
			case pieces <- piece{bytes.Clone(buf[:n]), err, time.Now().Add(d)}:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	})
	for p := range pieces {
		time.Sleep(time.Until(p.due))
		var err error
		if len(p.data) > 0 {
			_, err = dst.Write(p.data)
		}
		if err == nil && p.err != nil {
			err = p.err
			if errors.Is(err, io.EOF) {
				err = dst.(closeWriter).CloseWrite()
				if err == nil {
					return
				}
			}
		}
		if err != nil {
			src.Close()
			dst.Close()
			return
		}
	}
}

// Mem is the part of the runtime's memory statistics that the idle-heap
// benchmark compares.
type Mem struct {
	Heap       int64 // runtime.MemStats.HeapInuse
	Stack      int64 // runtime.MemStats.StackInuse
	Goroutines int
}

// ReadMem collects garbage and reads the statistics. It collects twice so
// that what sync.Pool keeps for one cycle is gone too: pooled buffers belong
// to no connection.
func ReadMem() Mem {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return Mem{Heap: int64(m.HeapInuse), Stack: int64(m.StackInuse), Goroutines: runtime.NumGoroutine()}
}

// Sub returns m minus o.
func (m Mem) Sub(o Mem) Mem {
	return Mem{Heap: m.Heap - o.Heap, Stack: m.Stack - o.Stack, Goroutines: m.Goroutines - o.Goroutines}
}
