package sshtest

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/nettest"

	"github.com/sshfwd/sshfwd/internal/testnet"
)

// pipeOf returns nettest's MakePipe for a loopback TCP connection whose
// first end is wrapped.
func pipeOf(wrap func(net.Conn) net.Conn) nettest.MakePipe {
	return func() (c1, c2 net.Conn, stop func(), err error) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, nil, err
		}
		defer l.Close()
		dialed, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			return nil, nil, nil, err
		}
		accepted, err := l.Accept()
		if err != nil {
			dialed.Close()
			return nil, nil, nil, err
		}
		c1 = wrap(dialed)
		return c1, accepted, func() {
			c1.Close()
			accepted.Close()
		}, nil
	}
}

// TestNetemConformance runs x/net's net.Conn conformance tests on the
// network conditions.
func TestNetemConformance(t *testing.T) {
	t.Run("Delay", func(t *testing.T) {
		nettest.TestConn(t, pipeOf(func(c net.Conn) net.Conn { return Delay(c, time.Millisecond) }))
	})
	t.Run("Throttle", func(t *testing.T) {
		nettest.TestConn(t, pipeOf(func(c net.Conn) net.Conn { return Throttle(c, 64<<20) }))
	})
	t.Run("both", func(t *testing.T) {
		nettest.TestConn(t, pipeOf(func(c net.Conn) net.Conn { return Throttle(Delay(c, time.Millisecond), 64<<20) }))
	})
}

// echoTime returns how long msg takes to go through c to an echo and back.
func echoTime(t testing.TB, c net.Conn, msg []byte) time.Duration {
	t.Helper()
	start := time.Now()
	errs := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		errs <- err
	}()
	got := make([]byte, len(msg))
	_, err := io.ReadFull(c, got)
	require.NoError(t, err)
	require.NoError(t, <-errs)
	assert.Equal(t, msg, got)
	return time.Since(start)
}

func TestDelay(t *testing.T) {
	const d = 50 * time.Millisecond
	a, b := testnet.TCPPair(t)
	go io.Copy(b, b)
	c := Delay(a, d)
	defer c.Close()
	for range 3 {
		took := echoTime(t, c, []byte("ping"))
		assert.GreaterOrEqual(t, took, 2*d, "a round trip took %v", took)
		assert.Less(t, took, 2*d+time.Second, "a round trip took %v", took)
	}
	// Back to back, the writes overlap: latency, not a queue.
	start := time.Now()
	for range 10 {
		_, err := c.Write([]byte("x"))
		require.NoError(t, err)
	}
	_, err := io.ReadFull(c, make([]byte, 10))
	require.NoError(t, err)
	assert.Less(t, time.Since(start), 2*d+time.Second)
}

func TestThrottle(t *testing.T) {
	const rate = 256 << 10
	a, b := testnet.TCPPair(t)
	go io.Copy(b, b)
	c := Throttle(a, rate)
	defer c.Close()
	msg := testnet.RandomBytes(t, 128<<10)
	took := echoTime(t, c, msg)
	// Half a second's worth out, and back in: both directions are capped,
	// and the two overlap.
	assert.GreaterOrEqual(t, took, 450*time.Millisecond, "128 KiB at 256 KiB/s took %v", took)
	assert.Less(t, took, 3*time.Second, "128 KiB at 256 KiB/s took %v", took)
	assert.Panics(t, func() { Throttle(a, 0) })
}

// TestSlowLinkServer gives a server's connections latency and checks what
// a client sees of it.
func TestSlowLinkServer(t *testing.T) {
	const d = 50 * time.Millisecond
	srv := newServer(t, &Config{WrapConn: func(c net.Conn) net.Conn { return Delay(c, d) }})
	client := dial(t, srv)
	start := time.Now()
	receive(t, keepAlive(client))
	assert.GreaterOrEqual(t, time.Since(start), 2*d)
	stillServes(t, srv)
}
