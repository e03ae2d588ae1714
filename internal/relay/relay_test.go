package relay

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sshfwd/sshfwd/internal/testnet"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// tcpPair returns the two ends of a loopback TCP connection. net.Pipe would
// not do: it cannot half-close.
var tcpPair = testnet.TCPPair

// relayed starts Relay between the server ends of two TCP pairs and returns
// the client ends and a channel that receives Relay's result.
func relayed(t testing.TB, wrapA, wrapB func(io.ReadWriteCloser) io.ReadWriteCloser) (*net.TCPConn, *net.TCPConn, <-chan error) {
	t.Helper()
	left, a := tcpPair(t)
	b, right := tcpPair(t)
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		done <- Relay(wrapA(a), wrapB(b))
	}()
	t.Cleanup(func() {
		left.Close()
		right.Close()
		select {
		case <-finished:
		case <-time.After(5 * time.Second):
			t.Error("Relay did not return after both ends were closed")
		}
	})
	return left, right, done
}

// bound makes a test that loses a half-close fail instead of hanging.
func bound(t testing.TB, conns ...net.Conn) {
	t.Helper()
	for _, c := range conns {
		require.NoError(t, c.SetDeadline(time.Now().Add(20*time.Second)))
	}
}

func same(c io.ReadWriteCloser) io.ReadWriteCloser { return c }

func waitRelay(t testing.TB, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Relay did not return")
		return nil
	}
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

// TestRequestResponse plays a protocol where the client sends its whole
// request, half-closes, and only then reads the reply: it works only if the
// half-close crosses the relay and the reply still comes back.
func TestRequestResponse(t *testing.T) {
	for _, tc := range []struct {
		name          string
		request, resp int
	}{
		{"empty", 0, 0},
		{"small", 5, 7},
		{"large", 3<<20 + 17, 2<<20 + 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server, done := relayed(t, same, same)
			bound(t, client, server)
			request := randomBytes(t, tc.request)
			response := randomBytes(t, tc.resp)

			serverGot := make(chan []byte, 1)
			serverErr := make(chan error, 1)
			go func() {
				got, err := io.ReadAll(server)
				serverGot <- got
				if err == nil {
					_, err = server.Write(response)
				}
				if err == nil {
					err = server.CloseWrite()
				}
				serverErr <- err
			}()

			_, err := client.Write(request)
			require.NoError(t, err)
			require.NoError(t, client.CloseWrite())
			reply, err := io.ReadAll(client)
			require.NoError(t, err)

			assert.True(t, bytes.Equal(request, <-serverGot), "request corrupted")
			assert.True(t, bytes.Equal(response, reply), "response corrupted: got %d bytes, want %d", len(reply), len(response))
			require.NoError(t, <-serverErr)
			assert.NoError(t, waitRelay(t, done))
		})
	}
}

// TestBothDirectionsAtOnce sends a lot of data both ways concurrently, each
// side half-closing when done.
func TestBothDirectionsAtOnce(t *testing.T) {
	left, right, done := relayed(t, same, same)
	bound(t, left, right)
	fromLeft := randomBytes(t, 4<<20)
	fromRight := randomBytes(t, 4<<20+1)

	type result struct {
		got []byte
		err error
	}
	talk := func(c *net.TCPConn, send []byte, out chan<- result) {
		go func() {
			_, err := c.Write(send)
			if err == nil {
				err = c.CloseWrite()
			}
			if err != nil {
				out <- result{nil, err}
			}
		}()
		got, err := io.ReadAll(c)
		out <- result{got, err}
	}
	leftRes := make(chan result, 2)
	rightRes := make(chan result, 2)
	go talk(left, fromLeft, leftRes)
	go talk(right, fromRight, rightRes)

	l := <-leftRes
	r := <-rightRes
	require.NoError(t, l.err)
	require.NoError(t, r.err)
	assert.True(t, bytes.Equal(fromRight, l.got), "right to left corrupted")
	assert.True(t, bytes.Equal(fromLeft, r.got), "left to right corrupted")
	assert.NoError(t, waitRelay(t, done))
}

// TestHalfCloseKeepsOtherDirection checks that after one side's EOF the
// other direction still carries data for as long as it likes.
func TestHalfCloseKeepsOtherDirection(t *testing.T) {
	left, right, done := relayed(t, same, same)
	bound(t, left, right)
	require.NoError(t, left.CloseWrite())

	buf := make([]byte, 1)
	n, err := right.Read(buf)
	assert.Equal(t, 0, n)
	require.ErrorIs(t, err, io.EOF, "EOF was not passed on")

	for i := range 3 {
		msg := []byte{byte('a' + i)}
		_, err := right.Write(msg)
		require.NoError(t, err)
		_, err = io.ReadFull(left, buf)
		require.NoError(t, err)
		assert.Equal(t, msg, buf)
	}
	select {
	case err := <-done:
		t.Fatalf("Relay returned %v with one direction still open", err)
	default:
	}
	require.NoError(t, right.CloseWrite())
	n, err = left.Read(buf)
	assert.Equal(t, 0, n)
	assert.ErrorIs(t, err, io.EOF)
	assert.NoError(t, waitRelay(t, done))
}

// failing is a stream whose Read or Write, when the error is set, always
// fails with it.
type failing struct {
	io.ReadWriteCloser
	readErr, writeErr error
}

func (f *failing) Read(p []byte) (int, error) {
	if f.readErr != nil {
		return 0, f.readErr
	}
	return f.ReadWriteCloser.Read(p)
}

func (f *failing) Write(p []byte) (int, error) {
	if f.writeErr != nil {
		return 0, f.writeErr
	}
	return f.ReadWriteCloser.Write(p)
}

var errBoom = errors.New("boom")

// TestErrors checks that a failure in either direction is returned and
// ends the other direction too, which no one would end otherwise.
func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		wrap func(io.ReadWriteCloser) io.ReadWriteCloser
	}{
		{"read", func(c io.ReadWriteCloser) io.ReadWriteCloser { return &failing{ReadWriteCloser: c, readErr: errBoom} }},
		{"write", func(c io.ReadWriteCloser) io.ReadWriteCloser { return &failing{ReadWriteCloser: c, writeErr: errBoom} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			left, right, done := relayed(t, tc.wrap, same)
			if tc.name == "write" {
				// Data for the failing side makes the write fail.
				_, err := right.Write([]byte("x"))
				require.NoError(t, err)
			}
			assert.ErrorIs(t, waitRelay(t, done), errBoom)

			// Both far ends see their streams end.
			for _, c := range []*net.TCPConn{left, right} {
				require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
				_, err := io.ReadAll(c)
				var ne net.Error
				if errors.As(err, &ne) {
					assert.False(t, ne.Timeout(), "stream was not closed")
				}
			}
		})
	}
}

// noCloseWrite hides CloseWrite.
type noCloseWrite struct{ io.ReadWriteCloser }

// TestNoCloseWrite checks that EOF towards a side that cannot half-close
// closes everything rather than hanging.
func TestNoCloseWrite(t *testing.T) {
	left, right, done := relayed(t, same, func(c io.ReadWriteCloser) io.ReadWriteCloser { return noCloseWrite{c} })
	_, err := left.Write([]byte("last words"))
	require.NoError(t, err)
	require.NoError(t, left.CloseWrite())

	require.NoError(t, right.SetReadDeadline(time.Now().Add(5*time.Second)))
	got, err := io.ReadAll(right)
	require.NoError(t, err)
	assert.Equal(t, "last words", string(got))
	assert.NoError(t, waitRelay(t, done))
}

// TestCloseFromOutside checks that closing the relayed streams from
// elsewhere ends Relay without an error: that is how owners shut relays down.
func TestCloseFromOutside(t *testing.T) {
	a, _ := tcpPair(t)
	b, _ := tcpPair(t)
	done := make(chan error, 1)
	go func() { done <- Relay(a, b) }()
	a.Close()
	b.Close()
	assert.NoError(t, waitRelay(t, done))
}
