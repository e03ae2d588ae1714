package sshfwd_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd"
	"github.com/sshfwd/sshfwd/internal/peers"
)

// SOCKS5 reply codes (RFC 1928 section 6) and the SOCKS4 ones, as the raw
// clients below see them on the wire.
const (
	socks5Succeeded               = 0x00
	socks5GeneralFailure          = 0x01
	socks5NotAllowed              = 0x02
	socks5NetworkUnreachable      = 0x03
	socks5HostUnreachable         = 0x04
	socks5ConnectionRefused       = 0x05
	socks5CommandNotSupported     = 0x07
	socks5AddressTypeNotSupported = 0x08
	socks4Granted                 = 0x5A
	socks4Rejected                = 0x5B
)

// startSOCKS runs ServeSOCKS for s on a loopback port until the test ends,
// and checks then that it returns ctx's error.
func startSOCKS(t testing.TB, s *sshfwd.Session) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeSOCKS(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		assert.ErrorIs(t, <-done, context.Canceled)
	})
	return ln.Addr().String()
}

// ipv4Dest is DST.ADDR and DST.PORT of a SOCKS5 request for an IPv4 address.
func ipv4Dest(a *net.TCPAddr) []byte {
	b := append([]byte{0x01}, a.IP.To4()...)
	return binary.BigEndian.AppendUint16(b, uint16(a.Port))
}

// nameDest is DST.ADDR and DST.PORT of a SOCKS5 request for a host name.
func nameDest(host string, port int) []byte {
	b := append([]byte{0x03, byte(len(host))}, host...)
	return binary.BigEndian.AppendUint16(b, uint16(port))
}

// socks5 connects to the proxy, negotiates "no authentication required",
// sends a request for cmd to dest and returns the connection with the reply
// code, having read the whole reply.
func socks5(t testing.TB, proxy string, cmd byte, dest []byte) (*net.TCPConn, byte) {
	t.Helper()
	c := dialTCP(t, proxy)
	_, err := c.Write([]byte{5, 1, 0})
	require.NoError(t, err)
	choice := readN(t, c, 2)
	require.Equal(t, []byte{5, 0}, choice, "method selection")
	_, err = c.Write(append([]byte{5, cmd, 0}, dest...))
	require.NoError(t, err)
	head := readN(t, c, 4)
	require.Equal(t, byte(5), head[0], "reply version")
	require.Equal(t, byte(0), head[2], "reserved byte")
	switch head[3] {
	case 0x01:
		readN(t, c, 4+2)
	case 0x04:
		readN(t, c, 16+2)
	default:
		t.Fatalf("reply address type 0x%02x", head[3])
	}
	require.NoError(t, c.SetDeadline(time.Time{}))
	return c, head[1]
}

// socks4 sends a SOCKS4 request for cmd to host and port (a SOCKS4a request
// when host is a name) and returns the connection with the reply code.
func socks4(t testing.TB, proxy string, cmd byte, host string, port int) (*net.TCPConn, byte) {
	t.Helper()
	c := dialTCP(t, proxy)
	req := binary.BigEndian.AppendUint16([]byte{4, cmd}, uint16(port))
	if ip := net.ParseIP(host).To4(); ip != nil {
		req = append(append(req, ip...), "user\x00"...)
	} else {
		req = append(append(req, 0, 0, 0, 1), "user\x00"+host+"\x00"...)
	}
	_, err := c.Write(req)
	require.NoError(t, err)
	reply := readN(t, c, 8)
	require.Equal(t, byte(0), reply[0], "reply version")
	require.NoError(t, c.SetDeadline(time.Time{}))
	return c, reply[1]
}

// dialTCP connects to addr with a deadline of testTimeout; the test closes
// the connection when it ends.
func dialTCP(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, testTimeout)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(testTimeout)))
	return c.(*net.TCPConn)
}

func readN(t testing.TB, r io.Reader, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, err := io.ReadFull(r, b)
	require.NoError(t, err)
	return b
}

// webServer is an HTTP server on 127.0.0.1 that answers with the path.
func webServer(t testing.TB) *net.TCPAddr {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().(*net.TCPAddr)
}

// closedPort returns a loopback port that nothing listens on.
func closedPort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	return port
}

// curl fetches url through the SOCKS proxy with the given curl option
// (--socks4, --socks5-hostname, ...).
func curl(ctx context.Context, option, proxy, url string) (string, error) {
	out, err := exec.CommandContext(ctx, "curl", "-sS", "--max-time", "20", option, proxy, url).Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		err = fmt.Errorf("%w: %s", err, ee.Stderr)
	}
	return string(out), err
}

func TestServeSOCKSCurl(t *testing.T) {
	peers.Require(t, "curl")
	_, s := startSSHD(t)
	proxy := startSOCKS(t, s)
	web := webServer(t)
	tests := []struct {
		option string
		host   string // "localhost" makes sshd resolve the name
	}{
		{"--socks4", "127.0.0.1"},
		{"--socks4a", "localhost"},
		{"--socks5", "127.0.0.1"},
		{"--socks5-hostname", "localhost"},
	}
	for _, tt := range tests {
		t.Run(tt.option, func(t *testing.T) {
			url := fmt.Sprintf("http://%s/%s", net.JoinHostPort(tt.host, strconv.Itoa(web.Port)), tt.option[2:])
			body, err := curl(testContext(t), tt.option, proxy, url)
			require.NoError(t, err)
			assert.Equal(t, "hello /"+tt.option[2:], body)
		})
	}
}

func TestServeSOCKSRefused(t *testing.T) {
	_, s := startSSHD(t)
	proxy := startSOCKS(t, s)
	port := closedPort(t)

	_, code := socks5(t, proxy, 1, ipv4Dest(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}))
	assert.Equal(t, byte(socks5ConnectionRefused), code)
	_, code = socks4(t, proxy, 1, "127.0.0.1", port)
	assert.Equal(t, byte(socks4Rejected), code)
	// sshd cannot resolve the name: "Name or service not known", or
	// "Temporary failure in name resolution" without DNS.
	_, code = socks5(t, proxy, 1, nameDest("nonexistent.invalid", 80))
	assert.Equal(t, byte(socks5HostUnreachable), code)

	t.Run("curl", func(t *testing.T) {
		peers.Require(t, "curl")
		start := time.Now()
		_, err := curl(testContext(t), "--socks5", proxy, fmt.Sprintf("http://127.0.0.1:%d/", port))
		assert.Error(t, err)
		assert.Less(t, time.Since(start), 5*time.Second, "a refused connection must fail fast")
	})
}

func TestServeSOCKSProhibited(t *testing.T) {
	_, s := startSSHD(t, "PermitOpen 127.0.0.1:1")
	proxy := startSOCKS(t, s)
	web := webServer(t)

	_, code := socks5(t, proxy, 1, ipv4Dest(web))
	assert.Equal(t, byte(socks5NotAllowed), code)
	_, code = socks5(t, proxy, 1, nameDest("localhost", web.Port))
	assert.Equal(t, byte(socks5NotAllowed), code)
	_, code = socks4(t, proxy, 1, "127.0.0.1", web.Port)
	assert.Equal(t, byte(socks4Rejected), code)
}

func TestServeSOCKSHalfClose(t *testing.T) {
	_, s := startSSHD(t)
	proxy := startSOCKS(t, s)
	dst := tcpServer(t, hashAfterEOF)

	c, code := socks5(t, proxy, 1, ipv4Dest(dst))
	require.Equal(t, byte(socks5Succeeded), code)
	hashRoundTrip(t, c, randomBytes(t, 4<<20))
}

func TestServeSOCKSTestServer(t *testing.T) {
	srv := newServer(t, nil)
	s := dial(t, srv.Addr(), srv.ClientConfig())
	proxy := startSOCKS(t, s)
	dst := tcpServer(t, echo)

	t.Run("socks5 echo", func(t *testing.T) {
		c, code := socks5(t, proxy, 1, ipv4Dest(dst))
		require.Equal(t, byte(socks5Succeeded), code)
		_, err := c.Write([]byte("ping"))
		require.NoError(t, err)
		assert.Equal(t, "ping", string(readN(t, c, 4)))
	})
	t.Run("socks4 echo", func(t *testing.T) {
		c, code := socks4(t, proxy, 1, "127.0.0.1", dst.Port)
		require.Equal(t, byte(socks4Granted), code)
		_, err := c.Write([]byte("pong"))
		require.NoError(t, err)
		assert.Equal(t, "pong", string(readN(t, c, 4)))
	})
	t.Run("socks5 data before the replies", func(t *testing.T) {
		// The offer, the request and the first data in one write: what
		// the proxy reads ahead of the request goes through too.
		c := dialTCP(t, proxy)
		_, err := c.Write(append(append([]byte{5, 1, 0, 5, 1, 0}, ipv4Dest(dst)...), "early"...))
		require.NoError(t, err)
		assert.Equal(t, []byte{5, 0}, readN(t, c, 2), "method selection")
		reply := readN(t, c, 10)
		require.Equal(t, byte(socks5Succeeded), reply[1])
		assert.Equal(t, "early", string(readN(t, c, 5)))
	})
	t.Run("socks4 data before the reply", func(t *testing.T) {
		c := dialTCP(t, proxy)
		req := binary.BigEndian.AppendUint16([]byte{4, 1}, uint16(dst.Port))
		_, err := c.Write(append(append(req, 127, 0, 0, 1), "user\x00early"...))
		require.NoError(t, err)
		reply := readN(t, c, 8)
		require.Equal(t, byte(socks4Granted), reply[1])
		assert.Equal(t, "early", string(readN(t, c, 5)))
	})
	t.Run("socks5 bind", func(t *testing.T) {
		_, code := socks5(t, proxy, 2, ipv4Dest(dst))
		assert.Equal(t, byte(socks5CommandNotSupported), code)
	})
	t.Run("socks5 udp associate", func(t *testing.T) {
		_, code := socks5(t, proxy, 3, ipv4Dest(dst))
		assert.Equal(t, byte(socks5CommandNotSupported), code)
	})
	t.Run("socks4 bind", func(t *testing.T) {
		_, code := socks4(t, proxy, 2, "127.0.0.1", dst.Port)
		assert.Equal(t, byte(socks4Rejected), code)
	})
	t.Run("socks5 unknown address type", func(t *testing.T) {
		_, code := socks5(t, proxy, 1, []byte{0x02, 1, 2, 3, 4, 0, 80})
		assert.Equal(t, byte(socks5AddressTypeNotSupported), code)
	})
	t.Run("socks5 username/password only", func(t *testing.T) {
		c := dialTCP(t, proxy)
		_, err := c.Write([]byte{5, 1, 2})
		require.NoError(t, err)
		assert.Equal(t, []byte{5, 0xFF}, readN(t, c, 2))
		_, err = c.Read(make([]byte, 1))
		assert.ErrorIs(t, err, io.EOF, "the proxy hangs up after 0xFF")
	})
	t.Run("not socks", func(t *testing.T) {
		c := dialTCP(t, proxy)
		_, err := c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		require.NoError(t, err)
		// The proxy hangs up with the request unread, which the kernel
		// may report as a reset rather than EOF.
		_, err = c.Read(make([]byte, 1))
		assert.Error(t, err)
		assert.False(t, isTimeout(err), "the proxy hangs up on a client that does not speak SOCKS")
	})
}

// refusingSession returns a Session to an SSH server that refuses every
// channel with reason and message, the way servers word their failures.
func refusingSession(t testing.TB, reason ssh.RejectionReason, message string) *sshfwd.Session {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	hostKey, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	sshPub, err := ssh.NewPublicKey(pub)
	require.NoError(t, err)
	config := &ssh.ServerConfig{NoClientAuth: true}
	config.AddHostKey(hostKey)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	conns := make(chan net.Conn, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		conns <- c
		_, chans, reqs, err := ssh.NewServerConn(c, config)
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ssh.DiscardRequests(reqs)
		}()
		for nc := range chans {
			nc.Reject(reason, message)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		select {
		case c := <-conns:
			c.Close()
		default:
		}
		wg.Wait()
	})
	return dial(t, ln.Addr().String(), &ssh.ClientConfig{
		User:            "socks",
		HostKeyCallback: ssh.FixedHostKey(sshPub),
	})
}

func TestServeSOCKSReplyCodes(t *testing.T) {
	tests := []struct {
		reason  ssh.RejectionReason
		message string
		want    byte
	}{
		{ssh.Prohibited, "administratively prohibited: open failed", socks5NotAllowed},
		{ssh.ConnectionFailed, "Connection refused", socks5ConnectionRefused},
		{ssh.ConnectionFailed, "connect failed", socks5ConnectionRefused},
		{ssh.ConnectionFailed, "open failed", socks5ConnectionRefused},
		{ssh.ConnectionFailed, "Network is unreachable", socks5NetworkUnreachable},
		{ssh.ConnectionFailed, "No route to host", socks5HostUnreachable},
		{ssh.ConnectionFailed, "Host is unreachable", socks5HostUnreachable},
		{ssh.ConnectionFailed, "Connection timed out", socks5HostUnreachable},
		{ssh.ConnectionFailed, "Name or service not known", socks5HostUnreachable},
		{ssh.ConnectionFailed, "Temporary failure in name resolution", socks5HostUnreachable},
		{ssh.ConnectionFailed, "nodename nor servname provided, or not known", socks5HostUnreachable},
		{ssh.ResourceShortage, "too many channels", socks5GeneralFailure},
		{ssh.UnknownChannelType, "unknown channel type", socks5GeneralFailure},
	}
	for _, tt := range tests {
		t.Run(tt.message, func(t *testing.T) {
			proxy := startSOCKS(t, refusingSession(t, tt.reason, tt.message))
			_, code := socks5(t, proxy, 1, nameDest("example.com", 80))
			assert.Equal(t, tt.want, code)
			_, code = socks4(t, proxy, 1, "example.com", 80)
			assert.Equal(t, byte(socks4Rejected), code)
		})
	}
}

func TestServeSOCKSCancel(t *testing.T) {
	srv := newServer(t, nil)
	s := dial(t, srv.Addr(), srv.ClientConfig())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(testContext(t))
	done := make(chan error, 1)
	go func() { done <- s.ServeSOCKS(ctx, ln) }()

	relaying, code := socks5(t, ln.Addr().String(), 1, ipv4Dest(tcpServer(t, echo)))
	require.Equal(t, byte(socks5Succeeded), code)
	silent := dialTCP(t, ln.Addr().String())
	// A byte through the relay proves that both connections were accepted.
	_, err = relaying.Write([]byte("x"))
	require.NoError(t, err)
	readN(t, relaying, 1)

	cancel()
	err = receive(t, done, "ServeSOCKS did not return after cancel")
	assert.ErrorIs(t, err, context.Canceled)
	for _, c := range []*net.TCPConn{relaying, silent} {
		require.NoError(t, c.SetDeadline(time.Now().Add(testTimeout)))
		_, err := io.ReadAll(c)
		assert.NoError(t, err, "connection closed by ServeSOCKS")
	}
	// The listener is left open for the next ServeSOCKS.
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	c.Close()
}

func TestServeSOCKSSessionClosed(t *testing.T) {
	srv := newServer(t, nil)
	s := dial(t, srv.Addr(), srv.ClientConfig())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- s.ServeSOCKS(testContext(t), ln) }()

	require.NoError(t, s.Close())
	err = receive(t, done, "ServeSOCKS did not return after Session.Close")
	assert.ErrorIs(t, err, sshfwd.ErrSessionClosed)
}

func TestServeSOCKSListenerClosed(t *testing.T) {
	srv := newServer(t, nil)
	s := dial(t, srv.Addr(), srv.ClientConfig())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- s.ServeSOCKS(testContext(t), ln) }()

	c, code := socks5(t, ln.Addr().String(), 1, ipv4Dest(tcpServer(t, echo)))
	require.Equal(t, byte(socks5Succeeded), code)
	require.NoError(t, ln.Close())
	err = receive(t, done, "ServeSOCKS did not return after its listener closed")
	assert.ErrorIs(t, err, net.ErrClosed)
	assert.ErrorContains(t, err, "sshfwd: ServeSOCKS")
	require.NoError(t, c.SetDeadline(time.Now().Add(testTimeout)))
	_, err = io.ReadAll(c)
	assert.NoError(t, err, "connection closed by ServeSOCKS")
}
