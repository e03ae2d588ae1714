package sshtest

import (
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/internal/wire"
)

// onlyConn returns the server's one connection once it has authenticated.
func onlyConn(t testing.TB, srv *Server) *Conn {
	t.Helper()
	var c *Conn
	require.Eventually(t, func() bool {
		conns := srv.Conns()
		if len(conns) != 1 || conns[0].User() == "" {
			return false
		}
		c = conns[0]
		return true
	}, 5*time.Second, 5*time.Millisecond, "the server has %d connections", len(srv.Conns()))
	return c
}

// keepAlive sends keepalive@openssh.com on client in the background; the
// channel returned is closed when the answer is in.
func keepAlive(client *ssh.Client) <-chan struct{} {
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		client.SendRequest(wire.KeepAlive, true, nil)
	}()
	return answered
}

func TestCloseClientConnections(t *testing.T) {
	srv := newServer(t, nil)
	first, second := dial(t, srv), dial(t, srv)
	require.Eventually(t, func() bool { return len(srv.Conns()) == 2 }, 5*time.Second, 5*time.Millisecond)

	srv.CloseClientConnections()
	for _, client := range []*ssh.Client{first, second} {
		ended := make(chan error, 1)
		go func() { ended <- client.Wait() }()
		select {
		case <-ended:
		case <-time.After(5 * time.Second):
			t.Fatal("a client's connection outlived CloseClientConnections")
		}
	}
	assert.Eventually(t, func() bool { return len(srv.Conns()) == 0 }, 5*time.Second, 5*time.Millisecond)
	stillServes(t, srv)
}

// TestFreeze freezes a connection: the server answers nothing, the TCP
// connection stays open, and on Resume everything held back goes through.
func TestFreeze(t *testing.T) {
	srv := newServer(t, nil)
	client := dial(t, srv)
	sess := newSession(t, client)
	stdin, err := sess.StdinPipe()
	require.NoError(t, err)
	stdout, err := sess.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, sess.Start("cat"))
	conn := onlyConn(t, srv)
	assert.Equal(t, "sshtest", conn.User())
	assert.Equal(t, client.LocalAddr().String(), conn.RemoteAddr().String())

	conn.Freeze()
	conn.Freeze()
	answered := keepAlive(client)
	_, err = io.WriteString(stdin, "held back")
	require.NoError(t, err)
	echoed := make(chan string, 1)
	go func() {
		buf := make([]byte, len("held back"))
		io.ReadFull(stdout, buf)
		echoed <- string(buf)
	}()
	select {
	case <-answered:
		t.Fatal("a frozen connection answered a request")
	case <-echoed:
		t.Fatal("a frozen connection carried data")
	case <-time.After(500 * time.Millisecond):
	}
	connEnded := make(chan error, 1)
	go func() { connEnded <- client.Wait() }()
	select {
	case err := <-connEnded:
		t.Fatalf("the frozen connection was closed: %v", err)
	default:
	}

	conn.Resume()
	receive(t, answered)
	assert.Equal(t, "held back", receive(t, echoed))
	conn.Resume()
}

// TestCloseFrozen closes frozen connections, one by one and with the
// server: neither waits on the freeze.
func TestCloseFrozen(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	srv := NewServer(nil)
	client, err := srv.Dial()
	require.NoError(t, err)
	defer client.Close()
	other, err := srv.Dial()
	require.NoError(t, err)
	defer other.Close()
	require.Eventually(t, func() bool { return len(srv.Conns()) == 2 }, 5*time.Second, 5*time.Millisecond)
	conns := srv.Conns()
	for _, c := range conns {
		c.Freeze()
	}
	require.NoError(t, conns[0].Close())
	assert.Eventually(t, func() bool { return len(srv.Conns()) == 1 }, 5*time.Second, 5*time.Millisecond)

	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	select {
	case err := <-closed:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited on a frozen connection")
	}
	assert.Empty(t, serverGoroutines(), "goroutines of the server outlived Close")
}
