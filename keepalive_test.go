package sshfwd_test

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sshfwd/sshfwd"
)

// freezer is a TCP proxy to a server that can stop passing bytes, both ways,
// while keeping every connection open: a server that hangs, or a network
// that silently drops everything.
type freezer struct {
	ln     net.Listener
	frozen atomic.Bool
}

// newFreezer proxies connections to target until the test ends.
func newFreezer(t testing.TB, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &freezer{ln: ln}
	var mu sync.Mutex // guards conns
	var conns []net.Conn
	serve(t, ln, func(c net.Conn) {
		up, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		mu.Lock()
		conns = append(conns, c, up)
		mu.Unlock()
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); p.pass(up, c) }()
		go func() { defer wg.Done(); p.pass(c, up) }()
		wg.Wait()
	})
	// serve's cleanup waits for the handlers, which end once their
	// connections are closed; cleanups run last-registered first.
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return p
}

func (p *freezer) Addr() string { return p.ln.Addr().String() }

// Freeze makes the proxy drop everything from now on.
func (p *freezer) Freeze() { p.frozen.Store(true) }

// pass copies src to dst until src fails, dropping what it reads while
// frozen; then it closes both.
func (p *freezer) pass(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.frozen.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func TestKeepAliveClosesSilentConnection(t *testing.T) {
	srv := newServer(t, nil)
	proxy := newFreezer(t, srv.Addr())
	s := dial(t, proxy.Addr(), srv.ClientConfig())

	const interval, countMax = 200 * time.Millisecond, 3
	done := make(chan error, 1)
	go func() { done <- s.KeepAlive(context.Background(), interval, countMax) }()

	// The server answers: KeepAlive keeps going.
	select {
	case err := <-done:
		t.Fatalf("KeepAlive returned while the server answered: %v", err)
	case <-time.After(6 * interval):
	}

	proxy.Freeze()
	frozen := time.Now()
	err := receive(t, done, "KeepAlive did not notice the silent server")
	took := time.Since(frozen)
	require.ErrorIs(t, err, sshfwd.ErrKeepAliveTimeout)
	assert.Contains(t, err.Error(), "sshfwd:")
	// A keepalive sent just before the freeze loses its answer.
	assert.GreaterOrEqual(t, took, interval*(countMax-1), "gave up too early")
	assert.Less(t, took, interval*(countMax+6), "gave up too late")
	select {
	case <-s.Done():
	default:
		t.Fatal("KeepAlive did not close the Session")
	}
	_, err = s.OpenForward(testContext(t), "127.0.0.1", 9, "127.0.0.1", 1)
	assert.ErrorIs(t, err, net.ErrClosed)
}

func TestKeepAliveAgainstOpenSSH(t *testing.T) {
	_, s := startSSHD(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	// Two missed answers in a row would end it after 150 ms: OpenSSH's
	// failure answers must count as signs of life.
	err := s.KeepAlive(ctx, 50*time.Millisecond, 2)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	target := tcpServer(t, hashAfterEOF)
	ch, err := s.OpenForward(testContext(t), "127.0.0.1", target.Port, "127.0.0.1", 1)
	require.NoError(t, err, "the session is still usable")
	defer ch.Close()
	hashRoundTrip(t, ch, []byte("still here"))
}

func TestKeepAliveEnds(t *testing.T) {
	srv := newServer(t, nil)

	t.Run("session closed", func(t *testing.T) {
		// countMax is large so that a loaded machine, answering late,
		// cannot make KeepAlive give up before Close.
		s := dial(t, srv.Addr(), srv.ClientConfig())
		done := make(chan error, 1)
		go func() { done <- s.KeepAlive(context.Background(), 10*time.Millisecond, 1000) }()
		time.Sleep(50 * time.Millisecond)
		require.NoError(t, s.Close())
		err := receive(t, done, "KeepAlive did not return when the session closed")
		assert.ErrorIs(t, err, net.ErrClosed)
		assert.NotErrorIs(t, err, sshfwd.ErrKeepAliveTimeout)
		assert.ErrorIs(t, s.KeepAlive(context.Background(), time.Second, 1), net.ErrClosed)
	})
	t.Run("context", func(t *testing.T) {
		s := dial(t, srv.Addr(), srv.ClientConfig())
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		assert.ErrorIs(t, s.KeepAlive(ctx, time.Millisecond, 1), context.Canceled)
	})
	t.Run("bad interval", func(t *testing.T) {
		s := dial(t, srv.Addr(), srv.ClientConfig())
		for _, d := range []time.Duration{0, -time.Second} {
			err := s.KeepAlive(context.Background(), d, 3)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "sshfwd: KeepAlive")
		}
	})
}

func TestKeepAliveRequestInFlightEndsWithSession(t *testing.T) {
	srv := newServer(t, nil)
	proxy := newFreezer(t, srv.Addr())
	s, err := sshfwd.Dial(testContext(t), "tcp", proxy.Addr(), srv.ClientConfig())
	require.NoError(t, err)
	proxy.Freeze()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	// The first keepalive goes out after 20 ms and never gets an answer.
	err = s.KeepAlive(ctx, 20*time.Millisecond, 10)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	err = receive(t, closed, "Close did not end the keepalive request still waiting for its answer")
	assert.NoError(t, err)
}
