package sshtest

import (
	"errors"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/internal/wire"
)

// dialTCP connects to host:port from the test, as a third party reaching a
// forwarded port would.
func dialTCP(host string, port int) (net.Conn, error) {
	return net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), 5*time.Second)
}

func portOf(t testing.TB, a net.Addr) int {
	t.Helper()
	ta, ok := a.(*net.TCPAddr)
	require.True(t, ok, "address %v is a %T", a, a)
	return ta.Port
}

func TestReverseForward(t *testing.T) {
	srv := newServer(t, nil)
	client := dial(t, srv)

	l, err := client.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := portOf(t, l.Addr())
	require.NotZero(t, port, "the reply carried no allocated port")
	echoAccepted(t, l)

	c, err := dialTCP("127.0.0.1", port)
	require.NoError(t, err)
	defer c.Close()
	roundTrip(t, c, []byte("through a reverse forward"))
}

// TestForwardReply checks the tcpip-forward reply of RFC 4254 7.1: the bound
// port when the client asked for port 0, nothing otherwise.
func TestForwardReply(t *testing.T) {
	srv := newServer(t, nil)
	client := dial(t, srv)
	free := func() int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer l.Close()
		return portOf(t, l.Addr())
	}

	ok, reply, err := client.SendRequest(wire.TCPIPForward, true, ssh.Marshal(&wire.TCPIPForwardMsg{Addr: "127.0.0.1", Port: 0}))
	require.NoError(t, err)
	require.True(t, ok)
	var r wire.TCPIPForwardReply
	require.NoError(t, wire.Parse("reply", reply, &r))
	assert.NotZero(t, r.Port)
	c, err := dialTCP("127.0.0.1", int(r.Port))
	require.NoError(t, err, "nothing listens on the port in the reply")
	c.Close()

	port := free()
	ok, reply, err = client.SendRequest(wire.TCPIPForward, true, ssh.Marshal(&wire.TCPIPForwardMsg{Addr: "127.0.0.1", Port: uint32(port)}))
	require.NoError(t, err)
	require.True(t, ok)
	assert.Empty(t, reply)

	for _, payload := range [][]byte{
		ssh.Marshal(&wire.TCPIPForwardMsg{Addr: "127.0.0.1", Port: 70000}),
		append(ssh.Marshal(&wire.TCPIPForwardMsg{Addr: "127.0.0.1"}), 0),
		{1, 2},
	} {
		ok, _, err := client.SendRequest(wire.TCPIPForward, true, payload)
		require.NoError(t, err)
		assert.False(t, ok, "malformed tcpip-forward %x accepted", payload)
	}
}

func TestCancelForward(t *testing.T) {
	srv := newServer(t, nil)
	client := dial(t, srv)

	l, err := client.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := portOf(t, l.Addr())
	c, err := dialTCP("127.0.0.1", port)
	require.NoError(t, err)
	c.Close()

	require.NoError(t, l.Close())
	_, err = dialTCP("127.0.0.1", port)
	assert.Error(t, err, "the port still accepts connections after cancel")

	// The cancel must match the requested address and the port.
	for _, m := range []wire.TCPIPForwardMsg{
		{Addr: "127.0.0.1", Port: uint32(port)}, // already cancelled
		{Addr: "localhost", Port: uint32(port)},
	} {
		l2, err := client.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		ok, _, err := client.SendRequest(wire.CancelTCPIPForward, true, ssh.Marshal(&m))
		require.NoError(t, err)
		assert.False(t, ok, "cancel of %v succeeded", m)
		c, err := dialTCP("127.0.0.1", portOf(t, l2.Addr()))
		require.NoError(t, err, "a wrong cancel closed another forward")
		c.Close()
		require.NoError(t, l2.Close())
	}
}

// externalIP returns an address of this machine that is not loopback, or ""
// if there is none.
func externalIP(t testing.TB) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	require.NoError(t, err)
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
	}
	return ""
}

// TestGatewayPorts checks where forwards bind: on loopback whatever the
// client asks for, unless GatewayPorts is set.
func TestGatewayPorts(t *testing.T) {
	ext := externalIP(t)
	for _, tc := range []struct {
		gatewayPorts bool
		addr         string
		external     bool // reachable from a non-loopback address
	}{
		{false, "", false},
		{false, "0.0.0.0", false},
		{false, "*", false},
		{false, "::", false},
		{false, "localhost", false},
		{false, "127.0.0.1", false},
		{true, "0.0.0.0", true},
		{true, "", true},
		{true, "127.0.0.1", false},
	} {
		t.Run(strconv.Quote(tc.addr)+" GatewayPorts="+strconv.FormatBool(tc.gatewayPorts), func(t *testing.T) {
			srv := newServer(t, &Config{GatewayPorts: tc.gatewayPorts})
			client := dial(t, srv)

			l, err := client.Listen("tcp", net.JoinHostPort(tc.addr, "0"))
			require.NoError(t, err)
			port := portOf(t, l.Addr())
			echoAccepted(t, l)

			c, err := dialTCP("127.0.0.1", port)
			require.NoError(t, err)
			roundTrip(t, c, []byte("hi"))
			c.Close()

			if ext == "" {
				t.Log("no non-loopback address to check from")
				return
			}
			c, err = dialTCP(ext, port)
			if c != nil {
				c.Close()
			}
			if tc.external {
				assert.NoError(t, err, "not reachable on %s", ext)
			} else {
				assert.Error(t, err, "reachable on %s", ext)
			}
		})
	}
}

func TestPermitListen(t *testing.T) {
	type call struct {
		host string
		port int
	}
	var calls []call
	srv := newServer(t, &Config{
		PermitListenCallback: func(host string, port int) bool {
			calls = append(calls, call{host, port})
			return port == 0
		},
		PermitListenUnixCallback: func(path string) bool { return false },
	})
	client := dial(t, srv)

	_, err := client.Listen("tcp", "localhost:1")
	assert.Error(t, err, "a forbidden forward was granted")
	l, err := client.Listen("tcp", "localhost:0")
	require.NoError(t, err)
	defer l.Close()
	assert.Equal(t, []call{{"localhost", 1}, {"localhost", 0}}, calls)

	_, err = client.ListenUnix(socketPath(t, "forbidden.sock"))
	assert.Error(t, err, "a forbidden unix forward was granted")
}

func TestReverseForwardUnix(t *testing.T) {
	srv := newServer(t, nil)
	client := dial(t, srv)
	path := socketPath(t, "fwd.sock")

	// A stale socket from an earlier run must not get in the way.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	require.NoError(t, err)
	stale.SetUnlinkOnClose(false)
	require.NoError(t, stale.Close())
	_, err = os.Stat(path)
	require.NoError(t, err)

	l, err := client.ListenUnix(path)
	require.NoError(t, err)
	echoAccepted(t, l)

	// A second forward of the same path would unlink the live socket.
	ok, _, err := client.SendRequest(wire.StreamLocalForward, true, ssh.Marshal(&wire.StreamLocalForwardMsg{SocketPath: path}))
	require.NoError(t, err)
	assert.False(t, ok, "a path was forwarded twice")

	c, err := net.Dial("unix", path)
	require.NoError(t, err)
	roundTrip(t, c, []byte("through a unix reverse forward"))
	c.Close()

	require.NoError(t, l.Close())
	_, err = os.Stat(path)
	assert.True(t, errors.Is(err, os.ErrNotExist), "socket file left after cancel: %v", err)
	ok, _, err = client.SendRequest(wire.CancelStreamLocalForward, true, ssh.Marshal(&wire.StreamLocalForwardMsg{SocketPath: path}))
	require.NoError(t, err)
	assert.False(t, ok, "a cancelled forward was cancelled again")
}

// TestForwardsEndWithConnection checks that a forward's listener and socket
// go away with the connection that asked for them.
func TestForwardsEndWithConnection(t *testing.T) {
	srv := newServer(t, nil)
	client, err := srv.Dial()
	require.NoError(t, err)
	path := socketPath(t, "gone.sock")
	_, err = client.ListenUnix(path)
	require.NoError(t, err)
	l, err := client.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := portOf(t, l.Addr())

	require.NoError(t, client.Close())
	assert.Eventually(t, func() bool {
		c, err := dialTCP("127.0.0.1", port)
		if err == nil {
			c.Close()
			return false
		}
		_, err = os.Stat(path)
		return errors.Is(err, os.ErrNotExist)
	}, 5*time.Second, 10*time.Millisecond, "forwards outlived their connection")
}
