package sshtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
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

// ipv6Loopback reports whether ::1 can be listened on here.
func ipv6Loopback() bool {
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// TestGatewayPorts checks where forwards bind: on loopback, in both
// families as sshd does, whatever the client asks for, unless GatewayPorts
// is set.
func TestGatewayPorts(t *testing.T) {
	ext := externalIP(t)
	v6 := ipv6Loopback()
	for _, tc := range []struct {
		gatewayPorts bool
		addr         string
		external     bool // reachable from a non-loopback address
		ipv6         bool // reachable on ::1
	}{
		{false, "", false, true},
		{false, "0.0.0.0", false, true},
		{false, "*", false, true},
		{false, "::", false, true},
		{false, "localhost", false, true},
		{false, "127.0.0.1", false, true},
		{true, "0.0.0.0", true, false},
		{true, "", true, true},
		{true, "127.0.0.1", false, false},
		{true, "localhost", false, true},
	} {
		t.Run(strconv.Quote(tc.addr)+" GatewayPorts="+strconv.FormatBool(tc.gatewayPorts), func(t *testing.T) {
			srv := newServer(t, &Config{GatewayPorts: tc.gatewayPorts})
			client := dial(t, srv)

			l, err := client.Listen("tcp", net.JoinHostPort(tc.addr, "0"))
			require.NoError(t, err)
			port := portOf(t, l.Addr())
			accepted := make(chan net.Conn, 2)
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					accepted <- c
				}
			}()
			t.Cleanup(func() { l.Close() })
			reachable := func(host string) bool {
				c, err := dialTCP(host, port)
				if err != nil {
					return false
				}
				defer c.Close()
				select {
				case fwd := <-accepted:
					fwd.Close()
					return true
				case <-time.After(5 * time.Second):
					t.Errorf("a connection to %s reached no channel", host)
					return false
				}
			}

			assert.True(t, reachable("127.0.0.1"), "not reachable on 127.0.0.1")
			if v6 {
				assert.Equal(t, tc.ipv6, reachable("::1"), "reachable on ::1")
			}
			if ext == "" {
				t.Log("no non-loopback address to check from")
				return
			}
			assert.Equal(t, tc.external, reachable(ext), "reachable on %s", ext)
		})
	}
}

func TestReverseForwardUnix(t *testing.T) {
	srv := newServer(t, &Config{StreamLocalBindUnlink: true})
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

// countAccepted accepts and closes connections on l until the test ends,
// and returns how to read how many it had.
func countAccepted(t testing.TB, l net.Listener) func() int32 {
	t.Helper()
	var n atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	return n.Load
}

// staleSocket leaves a socket file at path with nothing listening on it,
// as a server that died leaves it.
func staleSocket(t testing.TB, path string) {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	require.NoError(t, err)
	l.SetUnlinkOnClose(false)
	require.NoError(t, l.Close())
}

// TestStreamLocalTakenPath checks that a streamlocal-forward never takes a
// path over: not another connection's forward, not the connection's own,
// not a socket a program serves; a stale socket only with
// StreamLocalBindUnlink; and never a file that is not a socket.
func TestStreamLocalTakenPath(t *testing.T) {
	forward := func(t *testing.T, client *ssh.Client, path string) error {
		t.Helper()
		l, err := client.ListenUnix(path)
		if err == nil {
			t.Cleanup(func() { l.Close() })
			countAccepted(t, l)
		}
		return err
	}
	t.Run("another connection's forward", func(t *testing.T) {
		cfg, ev := recordEvents(&Config{StreamLocalBindUnlink: true})
		srv := newServer(t, cfg)
		victim, thief := dial(t, srv), dial(t, srv)
		path := socketPath(t, "taken.sock")
		l, err := victim.ListenUnix(path)
		require.NoError(t, err)
		got := countAccepted(t, l)

		require.Error(t, forward(t, thief, path), "another connection took the forward over")
		assert.ErrorIs(t, ev.last(t, EventGlobalRequest, wire.StreamLocalForward).Err, syscall.EADDRINUSE)
		for range 3 {
			c, err := net.Dial("unix", path)
			require.NoError(t, err)
			c.Close()
		}
		assert.Eventually(t, func() bool { return got() == 3 }, 5*time.Second, 10*time.Millisecond,
			"the forward's owner got %d of 3 connections", got())

		// Once its owner cancels it, the path is anyone's.
		require.NoError(t, l.Close())
		require.NoError(t, forward(t, thief, path))
	})
	t.Run("the connection's own forward", func(t *testing.T) {
		srv := newServer(t, &Config{StreamLocalBindUnlink: true})
		client := dial(t, srv)
		path := socketPath(t, "twice.sock")
		require.NoError(t, forward(t, client, path))
		assert.Error(t, forward(t, client, path), "a path was forwarded twice")
	})
	t.Run("a live socket", func(t *testing.T) {
		cfg, ev := recordEvents(&Config{StreamLocalBindUnlink: true})
		srv := newServer(t, cfg)
		path := socketPath(t, "live.sock")
		echoServer(t, "unix", path)

		require.Error(t, forward(t, dial(t, srv), path), "a live socket was taken over")
		assert.ErrorIs(t, ev.last(t, EventGlobalRequest, wire.StreamLocalForward).Err, syscall.EADDRINUSE)
		c, err := net.Dial("unix", path)
		require.NoError(t, err, "the program's socket is gone")
		defer c.Close()
		roundTrip(t, c, []byte("still the program's"))
	})
	t.Run("a stale socket, StreamLocalBindUnlink no", func(t *testing.T) {
		srv := newServer(t, nil)
		path := socketPath(t, "stale.sock")
		staleSocket(t, path)
		require.Error(t, forward(t, dial(t, srv), path), "a stale socket was removed")
		fi, err := os.Lstat(path)
		require.NoError(t, err)
		assert.Equal(t, os.ModeSocket, fi.Mode().Type())
	})
	t.Run("a stale socket, StreamLocalBindUnlink yes", func(t *testing.T) {
		srv := newServer(t, &Config{StreamLocalBindUnlink: true})
		client := dial(t, srv)
		path := socketPath(t, "stale.sock")
		staleSocket(t, path)
		l, err := client.ListenUnix(path)
		require.NoError(t, err)
		echoAccepted(t, l)
		c, err := net.Dial("unix", path)
		require.NoError(t, err)
		defer c.Close()
		roundTrip(t, c, []byte("through a socket that replaced a stale one"))
	})
	t.Run("a file that is not a socket", func(t *testing.T) {
		srv := newServer(t, &Config{StreamLocalBindUnlink: true})
		path := socketPath(t, "file")
		require.NoError(t, os.WriteFile(path, []byte("keep me"), 0o600))
		require.Error(t, forward(t, dial(t, srv), path), "a file was replaced")
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		assert.Equal(t, "keep me", string(data))
	})
}

// TestPermitListen checks that the callback decides on each address the
// server would bind, with the user and the request as the client sent it.
func TestPermitListen(t *testing.T) {
	var (
		mu    sync.Mutex // guards calls
		calls []string
	)
	cfg, ev := recordEvents(&Config{
		PermitListenCallback: func(meta ssh.ConnMetadata, req ListenRequest) bool {
			mu.Lock()
			calls = append(calls, fmt.Sprintf("%s %s:%d %v", meta.User(), req.Host, req.Port, req.Addr))
			mu.Unlock()
			return req.Addr.Addr().Is4()
		},
	})
	srv := newServer(t, cfg)
	client := dial(t, srv)

	l, err := client.Listen("tcp", "localhost:0")
	require.NoError(t, err, "a forward refused on ::1 alone was refused")
	defer l.Close()
	port := portOf(t, l.Addr())
	c, err := dialTCP("127.0.0.1", port)
	require.NoError(t, err)
	c.Close()
	mu.Lock()
	got := calls
	mu.Unlock()
	want := []string{"sshtest localhost:0 127.0.0.1:0"}
	if ipv6Loopback() {
		want = append(want, fmt.Sprintf("sshtest localhost:%d [::1]:%d", port, port))
		c, err := dialTCP("::1", port)
		if c != nil {
			c.Close()
		}
		assert.Error(t, err, "the server listens on ::1, which the callback refused")
	}
	assert.Equal(t, want, got)

	refusing := newServer(t, &Config{
		PermitListenCallback:     func(ssh.ConnMetadata, ListenRequest) bool { return false },
		PermitListenUnixCallback: func(ssh.ConnMetadata, string) bool { return false },
	})
	other := dial(t, refusing)
	_, err = other.Listen("tcp", "127.0.0.1:0")
	assert.Error(t, err, "a forbidden forward was granted")
	_, err = other.ListenUnix(socketPath(t, "forbidden.sock"))
	assert.Error(t, err, "a forbidden unix forward was granted")
	assert.Empty(t, ev.of(EventChannelOpen, ""), "events of one server went to another")
}

// TestPrivilegedPorts checks that ports below 1024 are refused, before any
// callback is asked, unless PermitPrivilegedPorts is set.
func TestPrivilegedPorts(t *testing.T) {
	asked := 0
	cfg, ev := recordEvents(&Config{PermitListenCallback: func(ssh.ConnMetadata, ListenRequest) bool {
		asked++
		return true
	}})
	srv := newServer(t, cfg)
	client := dial(t, srv)
	for _, port := range []uint32{1, 80, 1023} {
		ok, _, err := client.SendRequest(wire.TCPIPForward, true, ssh.Marshal(&wire.TCPIPForwardMsg{Addr: "127.0.0.1", Port: port}))
		require.NoError(t, err)
		assert.False(t, ok, "privileged port %d granted", port)
		assert.ErrorIs(t, ev.last(t, EventGlobalRequest, wire.TCPIPForward).Err, ErrNotPermitted)
	}
	assert.Zero(t, asked)

	// Port 1023 is privileged, and likely free to bind, even as root.
	permitted := newServer(t, &Config{PermitPrivilegedPorts: true})
	l, err := dial(t, permitted).Listen("tcp", "127.0.0.1:1023")
	if os.Geteuid() != 0 {
		require.Error(t, err, "an unprivileged process bound a privileged port")
		return
	}
	require.NoError(t, err)
	l.Close()
}
