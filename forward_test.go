package sshfwd_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd"
	"github.com/sshfwd/sshfwd/sshtest"
)

func TestOpenForwardHTTPThroughOpenSSH(t *testing.T) {
	_, s := startSSHD(t)
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	}))
	t.Cleanup(web.Close)

	transport := &http.Transport{DialContext: s.DialContext}
	t.Cleanup(transport.CloseIdleConnections)
	client := &http.Client{Transport: transport, Timeout: testTimeout}
	for _, path := range []string{"/a", "/b"} {
		resp, err := client.Get(web.URL + path)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "hello "+path, string(body))
	}
}

func TestOpenForwardHalfCloseThroughOpenSSH(t *testing.T) {
	_, s := startSSHD(t)
	addr := tcpServer(t, hashAfterEOF)
	ch, err := s.OpenForward(testContext(t), "127.0.0.1", addr.Port, "localhost", 5555)
	require.NoError(t, err)
	defer ch.Close()
	assert.Equal(t, "127.0.0.1:"+strconv.Itoa(addr.Port), ch.RemoteAddr().String())
	assert.Equal(t, "localhost:5555", ch.LocalAddr().String())
	hashRoundTrip(t, ch, randomBytes(t, 8<<20))
}

func TestOpenForwardUnixThroughOpenSSH(t *testing.T) {
	_, s := startSSHD(t)
	path := unixServer(t, hashAfterEOF)
	ch, err := s.OpenForwardUnix(testContext(t), path, "", 0)
	require.NoError(t, err)
	defer ch.Close()
	assert.Equal(t, path, ch.RemoteAddr().String())
	assert.Equal(t, "unix", ch.RemoteAddr().Network())
	hashRoundTrip(t, ch, randomBytes(t, 1<<20))

	conn, err := s.DialContext(testContext(t), "unix", path)
	require.NoError(t, err)
	defer conn.Close()
	hashRoundTrip(t, conn, []byte("through DialContext"))
}

func TestOpenForwardRefused(t *testing.T) {
	closedPort := func() int {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		return ln.Addr().(*net.TCPAddr).Port
	}()

	t.Run("OpenSSHConnectFailed", func(t *testing.T) {
		_, s := startSSHD(t)
		_, err := s.OpenForward(testContext(t), "127.0.0.1", closedPort, "localhost", 5555)
		var oce *ssh.OpenChannelError
		require.ErrorAs(t, err, &oce)
		assert.Equal(t, ssh.ConnectionFailed, oce.Reason)
	})
	t.Run("OpenSSHPermitOpen", func(t *testing.T) {
		_, s := startSSHD(t, "PermitOpen 127.0.0.1:1")
		addr := tcpServer(t, echo)
		_, err := s.OpenForward(testContext(t), "127.0.0.1", addr.Port, "localhost", 5555)
		var oce *ssh.OpenChannelError
		require.ErrorAs(t, err, &oce)
		assert.Equal(t, ssh.Prohibited, oce.Reason)
	})
	t.Run("sshtest", func(t *testing.T) {
		srv := newServer(t, &sshtest.Config{PermitOpenCallback: func(ssh.ConnMetadata, sshtest.OpenRequest) bool { return false }})
		s := dial(t, srv.Addr(), srv.ClientConfig())
		_, err := s.OpenForward(testContext(t), "127.0.0.1", 80, "localhost", 5555)
		var oce *ssh.OpenChannelError
		require.ErrorAs(t, err, &oce)
		assert.Equal(t, ssh.Prohibited, oce.Reason)
	})
}

func TestOpenForwardBadInput(t *testing.T) {
	var asked atomic.Int32
	srv := newServer(t, &sshtest.Config{
		PermitOpenCallback:     func(ssh.ConnMetadata, sshtest.OpenRequest) bool { asked.Add(1); return true },
		PermitOpenUnixCallback: func(ssh.ConnMetadata, string) bool { asked.Add(1); return true },
	})
	s := dial(t, srv.Addr(), srv.ClientConfig())
	ctx := testContext(t)
	for _, tc := range []struct {
		name string
		open func() (*sshfwd.Channel, error)
	}{
		{"empty host", func() (*sshfwd.Channel, error) { return s.OpenForward(ctx, "", 80, "localhost", 1) }},
		{"NUL in host", func() (*sshfwd.Channel, error) { return s.OpenForward(ctx, "a\x00b", 80, "localhost", 1) }},
		{"port 0", func() (*sshfwd.Channel, error) { return s.OpenForward(ctx, "h", 0, "localhost", 1) }},
		{"port 65536", func() (*sshfwd.Channel, error) { return s.OpenForward(ctx, "h", 65536, "localhost", 1) }},
		{"negative port", func() (*sshfwd.Channel, error) { return s.OpenForward(ctx, "h", -80, "localhost", 1) }},
		{"empty source", func() (*sshfwd.Channel, error) { return s.OpenForward(ctx, "h", 80, "", 1) }},
		{"source port -1", func() (*sshfwd.Channel, error) { return s.OpenForward(ctx, "h", 80, "localhost", -1) }},
		{"source port 65536", func() (*sshfwd.Channel, error) { return s.OpenForward(ctx, "h", 80, "localhost", 65536) }},
		{"empty path", func() (*sshfwd.Channel, error) { return s.OpenForwardUnix(ctx, "", "", 0) }},
		{"NUL in path", func() (*sshfwd.Channel, error) { return s.OpenForwardUnix(ctx, "/tmp/\x00", "", 0) }},
		{"unix source port", func() (*sshfwd.Channel, error) { return s.OpenForwardUnix(ctx, "/tmp/x", "", 70000) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch, err := tc.open()
			assert.Nil(t, ch)
			assert.ErrorIs(t, err, sshfwd.ErrBadAddress)
		})
	}
	for _, tc := range []struct{ network, addr string }{
		{"tcp", "no-port"},
		{"tcp", "host:http"},
		{"tcp", "host:99999"},
		{"tcp4", "[::1]:80"},
		{"tcp6", "127.0.0.1:80"},
		{"udp", "127.0.0.1:53"},
		{"unix", ""},
	} {
		_, err := s.DialContext(ctx, tc.network, tc.addr)
		assert.ErrorIs(t, err, sshfwd.ErrBadAddress, "%s %s", tc.network, tc.addr)
	}
	assert.Zero(t, asked.Load(), "bad input must be refused before anything is sent")
}

func TestOpenForwardContext(t *testing.T) {
	release := make(chan struct{})
	srv := newServer(t, &sshtest.Config{PermitOpenCallback: func(ssh.ConnMetadata, sshtest.OpenRequest) bool {
		<-release
		return true
	}})
	addr := tcpServer(t, echo)
	s := dial(t, srv.Addr(), srv.ClientConfig())

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.OpenForward(ctx, "127.0.0.1", addr.Port, "localhost", 1)
	assert.ErrorIs(t, err, context.Canceled)

	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = s.OpenForward(ctx, "127.0.0.1", addr.Port, "localhost", 1)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	close(release)

	// The session still works, and the late channel was closed, not leaked:
	// goleak checks that when the package's tests end.
	ch, err := s.OpenForward(testContext(t), "127.0.0.1", addr.Port, "localhost", 1)
	require.NoError(t, err)
	hashEcho(t, ch, []byte("still works"))
	require.NoError(t, ch.Close())
}

// An open with a context that never ends is made without a goroutine of
// its own; Session.Close must still end it while the server holds it.
func TestOpenForwardBackgroundEndsWithSession(t *testing.T) {
	release := make(chan struct{})
	asked := make(chan error, 1)
	srv := newServer(t, &sshtest.Config{PermitOpenCallback: func(ssh.ConnMetadata, sshtest.OpenRequest) bool {
		asked <- nil
		<-release
		return true
	}})
	defer close(release)
	s := dial(t, srv.Addr(), srv.ClientConfig())

	done := make(chan error, 1)
	go func() {
		_, err := s.OpenForward(context.Background(), "127.0.0.1", 9, "localhost", 1)
		done <- err
	}()
	receive(t, asked, "the server was asked to open")
	require.NoError(t, s.Close())
	err := receive(t, done, "OpenForward returns after Session.Close")
	assert.ErrorIs(t, err, sshfwd.ErrSessionClosed)
}

// hashEcho writes data to an echoing channel and reads it back.
func hashEcho(t testing.TB, c net.Conn, data []byte) {
	t.Helper()
	require.NoError(t, c.SetDeadline(time.Now().Add(testTimeout)))
	go c.Write(data)
	got := make([]byte, len(data))
	_, err := io.ReadFull(c, got)
	require.NoError(t, err)
	assert.Equal(t, data, got)
}

func TestConcurrentChannelsThroughOpenSSH(t *testing.T) {
	_, s := startSSHD(t)
	addr := tcpServer(t, hashAfterEOF)
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch, err := s.OpenForward(testContext(t), "127.0.0.1", addr.Port, "localhost", 10000+i)
			if err != nil {
				errs <- err
				return
			}
			defer ch.Close()
			data := make([]byte, 64<<10+i)
			rand.Read(data)
			if err := roundTrip(ch, data); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
}

func TestSessionCloseEndsEverything(t *testing.T) {
	srv := newServer(t, nil)
	s, err := sshfwd.Dial(testContext(t), "tcp", srv.Addr(), srv.ClientConfig())
	require.NoError(t, err)
	addr := tcpServer(t, echo)
	ch, err := s.OpenForward(testContext(t), "127.0.0.1", addr.Port, "localhost", 1)
	require.NoError(t, err)
	_, err = s.ListenForward(testContext(t), "127.0.0.1", 0)
	require.NoError(t, err)

	readErr := make(chan error, 1)
	go func() {
		_, err := ch.Read(make([]byte, 1))
		readErr <- err
	}()
	acceptErr := make(chan error, 1)
	go func() {
		_, _, err := s.AcceptForward(context.Background())
		acceptErr <- err
	}()
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, s.Close())
	for _, c := range []chan error{readErr, acceptErr} {
		select {
		case err := <-c:
			assert.ErrorIs(t, err, net.ErrClosed)
		case <-time.After(5 * time.Second):
			t.Fatal("a pending call did not return after Session.Close")
		}
	}
	_, err = s.OpenForward(testContext(t), "127.0.0.1", addr.Port, "localhost", 1)
	assert.ErrorIs(t, err, net.ErrClosed)
	assert.NoError(t, s.Close(), "a second Close does nothing")
}

func TestNewRefusesClaimedClient(t *testing.T) {
	srv := newServer(t, nil)
	client, err := ssh.Dial("tcp", srv.Addr(), srv.ClientConfig())
	require.NoError(t, err)
	defer client.Close()
	ln, err := client.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	_, err = sshfwd.New(client)
	assert.ErrorIs(t, err, sshfwd.ErrClaimed)
	_, err = sshfwd.New(nil)
	assert.Error(t, err)
}

func TestDialFailures(t *testing.T) {
	srv := newServer(t, nil)
	cfg := srv.ClientConfig()
	cfg.HostKeyCallback = func(string, net.Addr, ssh.PublicKey) error { return errors.New("unknown host key") }
	_, err := sshfwd.Dial(testContext(t), "tcp", srv.Addr(), cfg)
	assert.ErrorContains(t, err, "unknown host key")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = sshfwd.Dial(ctx, "tcp", srv.Addr(), srv.ClientConfig())
	assert.ErrorIs(t, err, context.Canceled)

	_, err = sshfwd.Dial(testContext(t), "tcp", srv.Addr(), nil)
	assert.Error(t, err)
}
