package sshfwd_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd"
	"github.com/sshfwd/sshfwd/internal/peers"
	"github.com/sshfwd/sshfwd/sshtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testTimeout bounds every wait in these tests.
const testTimeout = 30 * time.Second

func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// newServer starts an sshtest server that the test closes when it ends.
func newServer(t testing.TB, cfg *sshtest.Config) *sshtest.Server {
	t.Helper()
	srv := sshtest.NewServer(cfg)
	t.Cleanup(func() { srv.Close() })
	return srv
}

// dial returns a Session to addr that the test closes when it ends.
func dial(t testing.TB, addr string, cfg *ssh.ClientConfig) *sshfwd.Session {
	t.Helper()
	s, err := sshfwd.Dial(testContext(t), "tcp", addr, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// startSSHD starts OpenSSH's sshd and returns a Session to it.
func startSSHD(t testing.TB, config ...string) (*peers.SSHD, *sshfwd.Session) {
	t.Helper()
	peers.Require(t, "/usr/sbin/sshd")
	d := peers.StartSSHD(t, peers.SSHDOptions{Config: config})
	return d, dial(t, d.Addr, d.ClientConfig())
}

// serve accepts connections on ln until it is closed, handling each in its
// own goroutine; the test waits for all of them when it ends.
func serve(t testing.TB, ln net.Listener, handle func(net.Conn)) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
}

// hashAfterEOF reads everything until EOF, then answers with its sha256 in
// hex: a protocol that only works if half-close is exact.
func hashAfterEOF(c net.Conn) {
	h := sha256.New()
	if _, err := io.Copy(h, c); err != nil {
		return
	}
	io.WriteString(c, hex.EncodeToString(h.Sum(nil)))
}

// echo copies everything back.
func echo(c net.Conn) { io.Copy(c, c) }

// tcpServer listens on loopback and serves each connection with handle.
func tcpServer(t testing.TB, handle func(net.Conn)) *net.TCPAddr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	serve(t, ln, handle)
	return ln.Addr().(*net.TCPAddr)
}

// unixServer listens on a socket in a temporary directory.
func unixServer(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sshfwd")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", path)
	require.NoError(t, err)
	serve(t, ln, handle)
	return path
}

// randomBytes returns n random bytes.
func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

// hashRoundTrip writes data to c, sends EOF, and checks that the answer is
// the sha256 of data: the half-close round trip.
func hashRoundTrip(t testing.TB, c net.Conn, data []byte) {
	t.Helper()
	require.NoError(t, roundTrip(c, data))
}

// roundTrip is hashRoundTrip for goroutines other than the test's.
func roundTrip(c net.Conn, data []byte) error {
	if err := c.SetDeadline(time.Now().Add(testTimeout)); err != nil {
		return err
	}
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.(interface{ CloseWrite() error }).CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(c)
	if err := errors.Join(err, <-werr); err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	if want := hex.EncodeToString(sum[:]); string(got) != want {
		return fmt.Errorf("got answer %q, want sha256 %s", got, want)
	}
	return nil
}

// isTimeout reports whether err is a deadline error in both of the ways
// callers check for one.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) && errors.As(err, &ne) && ne.Timeout()
}
