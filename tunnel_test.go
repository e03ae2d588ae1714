package sshfwd_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd"
)

func localListener(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	return ln
}

func TestForwardLocalThroughOpenSSH(t *testing.T) {
	_, s := startSSHD(t)
	target := tcpServer(t, hashAfterEOF)
	ln := localListener(t)
	runForward(t, func(ctx context.Context) error {
		return s.ForwardLocal(ctx, ln, target.String())
	})

	t.Run("16 MiB half-close round trip", func(t *testing.T) {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		defer c.Close()
		hashRoundTrip(t, c, randomBytes(t, 16<<20))
	})
	t.Run("50 concurrent connections", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 50)
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					errs <- err
					return
				}
				defer c.Close()
				data := make([]byte, 256<<10+i)
				rand.Read(data)
				if err := roundTrip(c, data); err != nil {
					errs <- fmt.Errorf("connection %d: %w", i, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			assert.NoError(t, err)
		}
	})
}

func TestForwardLocalUnixTarget(t *testing.T) {
	_, s := startSSHD(t)
	path := unixServer(t, hashAfterEOF)
	ln := localListener(t)
	runForward(t, func(ctx context.Context) error { return s.ForwardLocal(ctx, ln, path) })
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	hashRoundTrip(t, c, randomBytes(t, 1<<20))
}

func TestForwardLocalStopsAndListenerIsReusable(t *testing.T) {
	srv := newServer(t, nil)
	s := dial(t, srv.Addr(), srv.ClientConfig())
	hold := make(chan struct{})
	target := tcpServer(t, func(c net.Conn) { <-hold })
	defer close(hold)
	ln := localListener(t)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ForwardLocal(ctx, ln, target.String()) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	time.Sleep(100 * time.Millisecond)
	cancel()
	err = receive(t, done, "ForwardLocal did not return")
	assert.ErrorIs(t, err, context.Canceled)
	// The forwarded connection was closed...
	require.NoError(t, c.SetReadDeadline(time.Now().Add(testTimeout)))
	_, err = c.Read(make([]byte, 1))
	assert.Error(t, err)
	// ...and the listener still works for the next ForwardLocal.
	other := tcpServer(t, hashAfterEOF)
	runForward(t, func(ctx context.Context) error { return s.ForwardLocal(ctx, ln, other.String()) })
	c2, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c2.Close()
	hashRoundTrip(t, c2, []byte("again"))
}

func TestForwardLocalEndsWithSession(t *testing.T) {
	srv := newServer(t, nil)
	s, err := sshfwd.Dial(testContext(t), "tcp", srv.Addr(), srv.ClientConfig())
	require.NoError(t, err)
	ln := localListener(t)
	done := make(chan error, 1)
	go func() { done <- s.ForwardLocal(context.Background(), ln, "127.0.0.1:9") }()
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, s.Close())
	err = receive(t, done, "ForwardLocal did not return when the session closed")
	assert.ErrorIs(t, err, net.ErrClosed)
}

func TestForwardLocalBadInput(t *testing.T) {
	srv := newServer(t, nil)
	s := dial(t, srv.Addr(), srv.ClientConfig())
	ln := localListener(t)
	for _, addr := range []string{"", "nohost", "host:0", "host:x", ":80", "/a\x00b"} {
		err := s.ForwardLocal(context.Background(), ln, addr)
		assert.ErrorIs(t, err, sshfwd.ErrBadAddress, "%q", addr)
	}
	assert.Error(t, s.ForwardRemote(context.Background(), "127.0.0.1:0", "nohost"))
	assert.ErrorIs(t, s.ForwardRemote(context.Background(), "127.0.0.1:x", "127.0.0.1:1"), sshfwd.ErrBadAddress)
}

func TestForwardRemoteThroughOpenSSH(t *testing.T) {
	_, s := startSSHD(t)
	target := tcpServer(t, hashAfterEOF)
	port := freePortOnServer(t)
	runForward(t, func(ctx context.Context) error {
		return s.ForwardRemote(ctx, "127.0.0.1:"+strconv.Itoa(port), target.String())
	})
	addr := "127.0.0.1:" + strconv.Itoa(port)
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	hashRoundTrip(t, c, randomBytes(t, 4<<20))
}

func TestForwardRemoteUnixToUnix(t *testing.T) {
	_, s := startSSHD(t)
	target := unixServer(t, hashAfterEOF)
	remote := t.TempDir() + "/remote.sock"
	runForward(t, func(ctx context.Context) error { return s.ForwardRemote(ctx, remote, target) })
	var c net.Conn
	require.Eventually(t, func() bool {
		var err error
		c, err = net.Dial("unix", remote)
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
	defer c.Close()
	hashRoundTrip(t, c, randomBytes(t, 1<<20))
}

// freePortOnServer returns a free loopback port; the servers in these tests
// run on this machine.
func freePortOnServer(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestDialSSHJumpsThroughOpenSSH(t *testing.T) {
	_, outer := startSSHD(t)
	inner := newServer(t, nil)
	s, err := outer.DialSSH(testContext(t), inner.Addr(), inner.ClientConfig())
	require.NoError(t, err)
	defer s.Close()
	target := tcpServer(t, hashAfterEOF)
	ch, err := s.OpenForward(testContext(t), "127.0.0.1", target.Port, "localhost", 1)
	require.NoError(t, err)
	defer ch.Close()
	hashRoundTrip(t, ch, randomBytes(t, 2<<20))

	cfg := inner.ClientConfig()
	cfg.HostKeyCallback = func(string, net.Addr, ssh.PublicKey) error { return errors.New("wrong host") }
	_, err = outer.DialSSH(testContext(t), inner.Addr(), cfg)
	assert.ErrorContains(t, err, "wrong host")
	_, err = outer.DialSSH(testContext(t), "127.0.0.1:1", inner.ClientConfig())
	assert.Error(t, err)
}

// requireDropped checks that the forwarder closed c without serving it.
func requireDropped(t testing.TB, c net.Conn) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(testTimeout)))
	n, err := c.Read(make([]byte, 1))
	require.Zero(t, n)
	require.Error(t, err)
	require.False(t, isTimeout(err), "the connection was left open: %v", err)
}

func TestServeLocalMaxConns(t *testing.T) {
	srv := newServer(t, nil)
	s := dial(t, srv.Addr(), srv.ClientConfig())
	target := tcpServer(t, echo)
	ln := localListener(t)
	runForward(t, func(ctx context.Context) error {
		return s.ServeLocal(ctx, sshfwd.LocalForward{Listener: ln, RemoteAddr: target.String(), MaxConns: 2})
	})
	roundTrip := func(c net.Conn) {
		t.Helper()
		_, err := c.Write([]byte("ping"))
		require.NoError(t, err)
		require.Equal(t, []byte("ping"), readN(t, c, 4))
	}
	first, second := dialTCP(t, ln.Addr().String()), dialTCP(t, ln.Addr().String())
	roundTrip(first)
	roundTrip(second)
	requireDropped(t, dialTCP(t, ln.Addr().String()))

	// Once a forwarded connection ends, its place is free again.
	require.NoError(t, first.Close())
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			return false
		}
		_, err = io.ReadFull(c, make([]byte, 4))
		return err == nil
	}, testTimeout, 20*time.Millisecond)
	roundTrip(second)
}

func TestServeDynamicMaxConns(t *testing.T) {
	srv := newServer(t, nil)
	s := dial(t, srv.Addr(), srv.ClientConfig())
	target := tcpServer(t, echo)
	ln := localListener(t)
	runForward(t, func(ctx context.Context) error {
		return s.ServeDynamic(ctx, sshfwd.DynamicForward{Listener: ln, MaxConns: 1})
	})
	c, reply := socks5(t, ln.Addr().String(), 1, ipv4Dest(target))
	require.Equal(t, byte(0), reply)
	requireDropped(t, dialTCP(t, ln.Addr().String()))
	_, err := c.Write([]byte("ping"))
	require.NoError(t, err)
	require.Equal(t, []byte("ping"), readN(t, c, 4))
}

// TestServeRemoteMaxConnsThroughOpenSSH makes 64 connections at once
// through sshd, which all reach the local address, and holds them open: the
// 65th is refused by the client, and sshd drops it.
func TestServeRemoteMaxConnsThroughOpenSSH(t *testing.T) {
	_, s := startSSHD(t)
	local := localListener(t)
	held := make(chan struct{}, 100)
	serve(t, local, func(c net.Conn) {
		if _, err := io.ReadFull(c, make([]byte, 1)); err == nil {
			held <- struct{}{}
		}
		io.Copy(io.Discard, c)
	})
	remoteAddr := "127.0.0.1:" + strconv.Itoa(freePortOnServer(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.ServeRemote(ctx, sshfwd.RemoteForward{
			RemoteAddr: remoteAddr,
			LocalAddr:  local.Addr().String(),
			MaxConns:   64, // beyond, the server's new connections are refused
		})
	}()
	defer func() {
		cancel()
		assert.ErrorIs(t, receive(t, done, "ServeRemote did not return"), context.Canceled)
	}()

	// The first connection is made once sshd listens: before, it is
	// refused by the kernel and takes no place.
	var first net.Conn
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", remoteAddr)
		first = c
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
	t.Cleanup(func() { first.Close() })
	conns := []net.Conn{first}
	for len(conns) < 64 {
		conns = append(conns, dialTCP(t, remoteAddr))
	}
	for i, c := range conns {
		_, err := c.Write([]byte("x"))
		require.NoError(t, err)
		select {
		case <-held:
		case <-time.After(testTimeout):
			t.Fatalf("connection %d did not reach the local address", i+1)
		}
	}
	extra := dialTCP(t, remoteAddr)
	_, err := extra.Write([]byte("x"))
	require.NoError(t, err)
	requireDropped(t, extra)
	assert.Empty(t, held, "a connection beyond the bound reached the local address")
}
