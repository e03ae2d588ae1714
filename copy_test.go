package sshfwd_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sshfwd/sshfwd"
)

// onlyReader hides every method of r but Read, so that io.Copy cannot use
// r's WriteTo and must use the Channel's ReadFrom.
type onlyReader struct{ io.Reader }

// TestChannelCopyThroughOpenSSH moves 8 MiB each way with io.Copy, which
// uses the Channel's ReadFrom on the way out and its WriteTo on the way in,
// through sshd to a server that answers with the sha256 of what it read.
func TestChannelCopyThroughOpenSSH(t *testing.T) {
	_, s := startSSHD(t)
	addr := tcpServer(t, hashAfterEOF)
	ch, err := s.OpenForward(testContext(t), "127.0.0.1", addr.Port, "localhost", 1)
	require.NoError(t, err)
	defer ch.Close()
	require.NoError(t, ch.SetDeadline(time.Now().Add(testTimeout)))

	data := randomBytes(t, 8<<20)
	n, err := io.Copy(ch, onlyReader{bytes.NewReader(data)})
	require.NoError(t, err)
	assert.Equal(t, int64(len(data)), n)
	require.NoError(t, ch.CloseWrite())

	var answer bytes.Buffer
	n, err = io.Copy(&answer, ch)
	require.NoError(t, err)
	sum := sha256.Sum256(data)
	assert.Equal(t, hex.EncodeToString(sum[:]), answer.String())
	assert.Equal(t, int64(answer.Len()), n)
}

// TestChannelCopyEcho copies a TCP connection into a Channel to an echo
// server and the Channel back into the connection, the way a forwarder
// does, and checks that every byte comes back in order.
func TestChannelCopyEcho(t *testing.T) {
	srv := newServer(t, nil)
	s := dial(t, srv.Addr(), srv.ClientConfig())
	ch, err := s.OpenForward(testContext(t), "127.0.0.1", tcpServer(t, echo).Port, "localhost", 1)
	require.NoError(t, err)
	defer ch.Close()

	// The forwarder's side of a local connection: io.Copy(ch, conn) goes
	// through TCPConn.WriteTo, which falls back to ch.ReadFrom.
	local, far := tcpPair(t)
	done := make(chan error, 2)
	go func() {
		_, err := io.Copy(ch, local)
		if err == nil {
			err = ch.CloseWrite()
		}
		done <- err
	}()
	go func() {
		_, err := io.Copy(local, ch)
		if err == nil {
			err = local.CloseWrite()
		}
		done <- err
	}()

	data := randomBytes(t, 4<<20)
	require.NoError(t, far.SetDeadline(time.Now().Add(testTimeout)))
	go func() {
		far.Write(data)
		far.CloseWrite()
	}()
	got, err := io.ReadAll(far)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(data, got), "the echo differs from what was sent")
	require.NoError(t, receive(t, done, "io.Copy into the Channel ends"))
	require.NoError(t, receive(t, done, "io.Copy out of the Channel ends"))
}

// zeros is an endless source that counts what it handed out.
type zeros struct{ n int64 }

func (z *zeros) Read(p []byte) (int, error) {
	clear(p)
	z.n += int64(len(p))
	return len(p), nil
}

// TestChannelReadFromDeadlineLosesNothing stops a ReadFrom with a write
// deadline while the peer is not reading, and checks that every byte it read
// from its source reaches the peer once the peer reads again.
func TestChannelReadFromDeadlineLosesNothing(t *testing.T) {
	start := make(chan struct{})
	addr := tcpServer(t, func(c net.Conn) {
		<-start
		n, err := io.Copy(io.Discard, c)
		if err == nil {
			binary.Write(c, binary.BigEndian, n)
		}
	})
	srv := newServer(t, nil)
	s := dial(t, srv.Addr(), srv.ClientConfig())
	ch, err := s.OpenForward(testContext(t), "127.0.0.1", addr.Port, "localhost", 1)
	require.NoError(t, err)
	defer ch.Close()

	src := &zeros{}
	require.NoError(t, ch.SetWriteDeadline(time.Now().Add(300*time.Millisecond)))
	n, err := ch.ReadFrom(src)
	assert.True(t, isTimeout(err), "ReadFrom ended with %v, not a timeout", err)
	assert.Equal(t, src.n, n, "ReadFrom read more than it accepted")
	assert.Greater(t, n, int64(0))

	close(start)
	require.NoError(t, ch.SetDeadline(time.Now().Add(testTimeout)))
	require.NoError(t, ch.CloseWrite())
	var got int64
	require.NoError(t, binary.Read(ch, binary.BigEndian, &got))
	assert.Equal(t, n, got, "the peer received another count than ReadFrom accepted")
}

func TestChannelWriteToDeadlineAndErrors(t *testing.T) {
	release := make(chan struct{})
	addr := tcpServer(t, func(c net.Conn) {
		c.Write([]byte("first"))
		<-release
		c.Write([]byte("second"))
	})
	srv := newServer(t, nil)
	s := dial(t, srv.Addr(), srv.ClientConfig())
	ch, err := s.OpenForward(testContext(t), "127.0.0.1", addr.Port, "localhost", 1)
	require.NoError(t, err)
	defer ch.Close()

	// The deadline ends a WriteTo waiting for data, after what did come.
	var got bytes.Buffer
	require.NoError(t, ch.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
	n, err := ch.WriteTo(&got)
	assert.True(t, isTimeout(err), "WriteTo ended with %v, not a timeout", err)
	assert.Equal(t, "first", got.String())
	assert.Equal(t, int64(5), n)

	// An error of the writer ends it too, and what the writer did not take
	// is still there for the next reader.
	close(release)
	require.NoError(t, ch.SetReadDeadline(time.Now().Add(testTimeout)))
	failing := &failAfter{n: 2}
	n, err = ch.WriteTo(failing)
	assert.ErrorIs(t, err, errWriterFailed)
	assert.Equal(t, int64(2), n)
	rest, err := io.ReadAll(ch)
	require.NoError(t, err)
	assert.Equal(t, "cond", string(rest))

	_, err = ch.WriteTo(io.Discard)
	assert.NoError(t, err, "at EOF WriteTo returns nil, as io.Copy expects")
}

var errWriterFailed = errors.New("writer failed")

// failAfter takes n bytes and then fails.
type failAfter struct{ n int }

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) <= f.n {
		f.n -= len(p)
		return len(p), nil
	}
	n := f.n
	f.n = 0
	return n, errWriterFailed
}

func TestChannelCopyAfterCloseAndEOF(t *testing.T) {
	srv := newServer(t, nil)
	s := dial(t, srv.Addr(), srv.ClientConfig())
	ch, err := s.OpenForward(testContext(t), "127.0.0.1", tcpServer(t, echo).Port, "localhost", 1)
	require.NoError(t, err)

	require.NoError(t, ch.CloseWrite())
	_, err = ch.ReadFrom(onlyReader{bytes.NewReader([]byte("late"))})
	assert.ErrorIs(t, err, sshfwd.ErrWriteAfterEOF)

	require.NoError(t, ch.Close())
	_, err = ch.ReadFrom(onlyReader{bytes.NewReader([]byte("late"))})
	assert.ErrorIs(t, err, net.ErrClosed)
	_, err = ch.WriteTo(io.Discard)
	assert.ErrorIs(t, err, net.ErrClosed)
}
