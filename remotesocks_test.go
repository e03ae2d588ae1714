package sshfwd_test

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd"
	"github.com/sshfwd/sshfwd/sshtest"
)

// startRemoteSOCKS runs ServeRemoteSOCKS on a free port of the server until
// the test ends and returns the proxy's address once it accepts.
func startRemoteSOCKS(t *testing.T, s *sshfwd.Session) string {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(freePortOnServer(t))
	runForward(t, func(ctx context.Context) error { return s.ServeRemoteSOCKS(ctx, addr) })
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, testTimeout, 20*time.Millisecond)
	return addr
}

func TestServeRemoteSOCKSThroughOpenSSH(t *testing.T) {
	_, s := startSSHD(t)
	proxy := startRemoteSOCKS(t, s)
	target := tcpServer(t, hashAfterEOF)

	t.Run("SOCKS5 IPv4", func(t *testing.T) {
		c, reply := socks5(t, proxy, 1, ipv4Dest(target))
		require.Equal(t, byte(socks5Succeeded), reply)
		hashRoundTrip(t, c, randomBytes(t, 4<<20))
	})
	t.Run("SOCKS5 name resolved here", func(t *testing.T) {
		c, reply := socks5(t, proxy, 1, nameDest("localhost", target.Port))
		require.Equal(t, byte(socks5Succeeded), reply)
		hashRoundTrip(t, c, []byte("by name"))
	})
	t.Run("SOCKS4", func(t *testing.T) {
		c, reply := socks4(t, proxy, 1, "127.0.0.1", target.Port)
		require.Equal(t, byte(socks4Granted), reply)
		hashRoundTrip(t, c, []byte("socks4"))
	})
	t.Run("SOCKS4a", func(t *testing.T) {
		c, reply := socks4(t, proxy, 1, "localhost", target.Port)
		require.Equal(t, byte(socks4Granted), reply)
		hashRoundTrip(t, c, []byte("socks4a"))
	})
	t.Run("refused", func(t *testing.T) {
		_, reply := socks5(t, proxy, 1, ipv4Dest(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: closedPort(t)}))
		assert.Equal(t, byte(socks5ConnectionRefused), reply)
		_, reply = socks4(t, proxy, 1, "127.0.0.1", closedPort(t))
		assert.Equal(t, byte(socks4Rejected), reply)
	})
	t.Run("BIND", func(t *testing.T) {
		_, reply := socks5(t, proxy, 2, ipv4Dest(target))
		assert.Equal(t, byte(socks5CommandNotSupported), reply)
	})
	t.Run("bad address type", func(t *testing.T) {
		_, reply := socks5(t, proxy, 1, []byte{0x09, 1, 2})
		assert.Equal(t, byte(socks5AddressTypeNotSupported), reply)
	})
}

func TestServeRemoteSOCKSEnds(t *testing.T) {
	refusing := newServer(t, &sshtest.Config{PermitListenCallback: func(ssh.ConnMetadata, sshtest.ListenRequest) bool { return false }})
	s := dial(t, refusing.Addr(), refusing.ClientConfig())
	err := s.ServeRemoteSOCKS(testContext(t), "127.0.0.1:0")
	require.ErrorIs(t, err, sshfwd.ErrRequestDenied)
	assert.Contains(t, err.Error(), "sshfwd: ServeRemoteSOCKS")
	assert.ErrorIs(t, s.ServeRemoteSOCKS(testContext(t), "127.0.0.1:x"), sshfwd.ErrBadAddress)

	srv := newServer(t, nil)
	s = dial(t, srv.Addr(), srv.ClientConfig())
	done := make(chan error, 1)
	go func() { done <- s.ServeRemoteSOCKS(context.Background(), "127.0.0.1:0") }()
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, s.Close())
	err = receive(t, done, "ServeRemoteSOCKS did not return when the session closed")
	assert.ErrorIs(t, err, net.ErrClosed)
}
