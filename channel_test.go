package sshfwd_test

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/net/nettest"

	"github.com/sshfwd/sshfwd"
)

// channelPipe makes two Channels joined through an sshtest server: c1 is
// opened with OpenForward to a port the server listens on for the same
// Session, c2 is what that Listener accepts.
func channelPipe(t *testing.T) nettest.MakePipe {
	return func() (c1, c2 net.Conn, stop func(), err error) {
		srv := newServer(t, nil)
		s, err := sshfwd.Dial(testContext(t), "tcp", srv.Addr(), srv.ClientConfig())
		if err != nil {
			return nil, nil, nil, err
		}
		ln, err := s.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			s.Close()
			return nil, nil, nil, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		c1, err = s.OpenForward(testContext(t), "127.0.0.1", port, "localhost", 1)
		if err == nil {
			c2, err = ln.Accept()
		}
		if err != nil {
			s.Close()
			return nil, nil, nil, err
		}
		stop = func() {
			c1.Close()
			c2.Close()
			ln.Close()
			s.Close()
		}
		return c1, c2, stop, nil
	}
}

func TestChannelIsNetConn(t *testing.T) {
	nettest.TestConn(t, channelPipe(t))
}

func TestChannelIsNetConnReversed(t *testing.T) {
	mp := channelPipe(t)
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		c1, c2, stop, err = mp()
		return c2, c1, stop, err
	})
}

func TestChannelDeadlines(t *testing.T) {
	_, s := startSSHD(t)
	// A server that accepts and never reads: the window runs out.
	hold := make(chan struct{})
	defer close(hold)
	addr := tcpServer(t, func(c net.Conn) {
		select {
		case <-hold:
		case <-time.After(testTimeout):
		}
	})
	ch, err := s.OpenForward(testContext(t), "127.0.0.1", addr.Port, "localhost", 1)
	require.NoError(t, err)
	defer ch.Close()

	t.Run("read waiting for data", func(t *testing.T) {
		require.NoError(t, ch.SetReadDeadline(time.Now().Add(100*time.Millisecond)))
		start := time.Now()
		n, err := ch.Read(make([]byte, 10))
		assert.Zero(t, n)
		assert.True(t, isTimeout(err), "got %v", err)
		assert.Less(t, time.Since(start), 5*time.Second)
		// Still timed out until the deadline moves.
		_, err = ch.Read(make([]byte, 10))
		assert.True(t, isTimeout(err), "got %v", err)
	})
	t.Run("write waiting for window", func(t *testing.T) {
		require.NoError(t, ch.SetWriteDeadline(time.Now().Add(2*time.Second)))
		buf := make([]byte, 1<<20)
		var total int
		var err error
		for err == nil {
			var n int
			n, err = ch.Write(buf)
			total += n
		}
		assert.True(t, isTimeout(err), "got %v", err)
		assert.Greater(t, total, 0)
	})
	t.Run("deadline in the past", func(t *testing.T) {
		require.NoError(t, ch.SetDeadline(time.Unix(1, 0)))
		_, err := ch.Write([]byte("x"))
		assert.True(t, isTimeout(err), "got %v", err)
		_, err = ch.Read(make([]byte, 1))
		assert.True(t, isTimeout(err), "got %v", err)
		assert.True(t, isTimeout(ch.CloseWrite()))
	})
}

func TestChannelHalfCloseKeepsReading(t *testing.T) {
	srv := newServer(t, nil)
	s := dial(t, srv.Addr(), srv.ClientConfig())
	addr := tcpServer(t, hashAfterEOF)
	ch, err := s.OpenForward(testContext(t), "127.0.0.1", addr.Port, "localhost", 1)
	require.NoError(t, err)
	defer ch.Close()
	hashRoundTrip(t, ch, []byte("request"))
	_, err = ch.Write([]byte("more"))
	assert.ErrorIs(t, err, sshfwd.ErrWriteAfterEOF)
	assert.NoError(t, ch.CloseWrite(), "a second CloseWrite does nothing")
	n, err := ch.Read(make([]byte, 1))
	assert.Zero(t, n)
	assert.Equal(t, io.EOF, err)
}

func TestChannelCloseUnblocks(t *testing.T) {
	srv := newServer(t, nil)
	s := dial(t, srv.Addr(), srv.ClientConfig())
	hold := make(chan struct{})
	defer close(hold)
	addr := tcpServer(t, func(net.Conn) { <-hold })
	ch, err := s.OpenForward(testContext(t), "127.0.0.1", addr.Port, "localhost", 1)
	require.NoError(t, err)
	errs := make(chan error, 2)
	go func() {
		_, err := ch.Read(make([]byte, 1))
		errs <- err
	}()
	go func() {
		var err error
		for err == nil {
			_, err = ch.Write(make([]byte, 64<<10))
		}
		errs <- err
	}()
	time.Sleep(100 * time.Millisecond)
	require.NoError(t, ch.Close())
	for range 2 {
		select {
		case err := <-errs:
			assert.ErrorIs(t, err, net.ErrClosed)
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not unblock a pending call")
		}
	}
	assert.NoError(t, ch.Close())
	assert.ErrorIs(t, ch.SetDeadline(time.Now()), net.ErrClosed)
	_, err = ch.Write([]byte("x"))
	assert.ErrorIs(t, err, net.ErrClosed)
}

func TestChannelDrainsExtendedData(t *testing.T) {
	// The server sends far more stderr than one window holds before its
	// data: without draining, its writes would wait for window forever.
	cfg, addr, _ := rawServerWith(t, func(nch ssh.NewChannel) {
		ch, reqs, err := nch.Accept()
		if err != nil {
			return
		}
		go ssh.DiscardRequests(reqs)
		defer ch.Close()
		if _, err := ch.Stderr().Write(make([]byte, 8<<20)); err != nil {
			return
		}
		io.WriteString(ch, "data after stderr")
		ch.CloseWrite()
	})
	s := dial(t, addr, cfg)
	ch, err := s.OpenForward(testContext(t), "127.0.0.1", 80, "localhost", 1)
	require.NoError(t, err)
	defer ch.Close()
	require.NoError(t, ch.SetReadDeadline(time.Now().Add(testTimeout)))
	got, err := io.ReadAll(ch)
	require.NoError(t, err)
	assert.Equal(t, "data after stderr", string(got))
}
