// Package relay copies data both ways between two streams, passing
// half-closes on exactly: when one side stops sending, the other side is told
// so with CloseWrite, and the opposite direction goes on until it ends too.
// This is what the forwarding helpers and sshtest need so that
// request/response protocols that shut down their sending side lose no byte.
package relay

import (
	"errors"
	"io"
	"net"
	"sync"

	"github.com/sshfwd/sshfwd/internal/bufpool"
)

// closeWriter is implemented by ssh.Channel, *net.TCPConn, *net.UnixConn and
// *sshfwd.Channel.
type closeWriter interface {
	CloseWrite() error
}

// Relay copies from a to b and from b to a concurrently and returns once both
// directions have ended, having closed a and b.
//
// When reading one side reaches EOF, Relay calls CloseWrite on the other side
// if it has that method and keeps copying the opposite direction. A side
// without CloseWrite cannot be half-closed, so in that case both sides are
// closed at once. When a read (other than EOF) or a write fails, both sides
// are closed too, which ends the other direction.
//
// Relay returns the first error that is neither io.EOF nor net.ErrClosed, or
// nil; errors from the final Close calls are not reported, since by then both
// directions have ended. It copies one direction itself and the other in a
// goroutine it waits for.
func Relay(a, b io.ReadWriteCloser) error {
	var closeOnce sync.Once
	closeBoth := func() {
		closeOnce.Do(func() {
			a.Close()
			b.Close()
		})
	}

	var (
		mu       sync.Mutex // guards firstErr
		firstErr error
	)
	fail := func(err error) {
		if err != nil && !benign(err) {
			mu.Lock()
			if firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		}
		closeBoth()
	}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		oneWay(b, a, fail)
	}()
	oneWay(a, b, fail)
	wg.Wait()
	closeBoth()
	return firstErr
}

// oneWay copies src to dst until src ends. A clean EOF is passed on with
// CloseWrite; anything else goes to fail, which closes both sides.
//
// Most of a relay's life is spent waiting, so it waits on a small buffer and
// takes larger ones only while data keeps coming: thousands of idle relays
// then hold almost no copy buffers.
func oneWay(dst io.Writer, src io.Reader, fail func(error)) {
	buf := bufpool.Get(bufpool.Small)
	defer func() { bufpool.Put(buf) }()
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				fail(werr)
				return
			}
		}
		if next := bufpool.Next(len(buf), n); next != len(buf) {
			bufpool.Put(buf)
			buf = bufpool.Get(next)
		}
		if rerr == nil {
			continue
		}
		if rerr != io.EOF {
			fail(rerr)
			return
		}
		cw, ok := dst.(closeWriter)
		if !ok {
			fail(nil)
			return
		}
		if err := cw.CloseWrite(); err != nil {
			fail(err)
		}
		return
	}
}

// benign reports whether err only says that a stream ended or was closed,
// which is how every relay finishes, not a failure.
func benign(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}
