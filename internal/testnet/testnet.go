// Package testnet holds the small loopback servers and checks that the
// tests of every package use: a server that answers with the sha256 of what
// it read before EOF (which only works if half-close is exact), an echo
// server, and client key files for OpenSSH's ssh.
package testnet

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
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
	"golang.org/x/crypto/ssh"
)

// Timeout bounds every wait of the helpers here.
const Timeout = 30 * time.Second

// Serve accepts connections on ln until the test ends, handling each in its
// own goroutine and closing it afterwards; the test waits for all of them.
func Serve(t testing.TB, ln net.Listener, handle func(net.Conn)) {
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

// Background runs f in a goroutine until the test ends, then cancels its
// context and checks that f returns, because of that, within Timeout.
func Background(t testing.TB, f func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("stopped with %v, not because its context ended", err)
			}
		case <-time.After(Timeout):
			t.Error("did not stop when its context ended")
		}
	})
}

// TCPServer listens on 127.0.0.1 and serves each connection with handle.
func TCPServer(t testing.TB, handle func(net.Conn)) *net.TCPAddr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	Serve(t, ln, handle)
	return ln.Addr().(*net.TCPAddr)
}

// UnixServer listens on a socket in a temporary directory. The directory is
// made under os.TempDir rather than t.TempDir, whose long names can exceed
// the 108 bytes a socket path may have.
func UnixServer(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sshfwd")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", path)
	require.NoError(t, err)
	Serve(t, ln, handle)
	return path
}

// TCPPair returns the two ends of a loopback TCP connection, closed when
// the test ends. net.Pipe would not do where half-close matters: it has no
// CloseWrite.
func TCPPair(t testing.TB) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	dialed, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { dialed.Close() })
	accepted, err := ln.Accept() // the backlog holds the connection until now
	require.NoError(t, err)
	t.Cleanup(func() { accepted.Close() })
	return dialed.(*net.TCPConn), accepted.(*net.TCPConn)
}

// HashAfterEOF reads everything until EOF, then answers with its sha256 in
// hex.
func HashAfterEOF(c net.Conn) {
	h := sha256.New()
	if _, err := io.Copy(h, c); err != nil {
		return
	}
	io.WriteString(c, hex.EncodeToString(h.Sum(nil)))
}

// Echo copies everything back.
func Echo(c net.Conn) { io.Copy(c, c) }

// RoundTrip writes data to c, sends EOF, and checks that the answer is the
// sha256 of data, as HashAfterEOF gives it. It may be called from any
// goroutine.
func RoundTrip(c net.Conn, data []byte) error {
	if err := c.SetDeadline(time.Now().Add(Timeout)); err != nil {
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

// RandomBytes returns n random bytes.
func RandomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

// KeyFile writes a fresh ed25519 private key, in OpenSSH's format, to
// id_ed25519 in dir and returns the file and the key.
func KeyFile(t testing.TB, dir string) (string, ssh.Signer) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	block, err := ssh.MarshalPrivateKey(priv, "")
	require.NoError(t, err)
	file := filepath.Join(dir, "id_ed25519")
	require.NoError(t, os.WriteFile(file, pem.EncodeToMemory(block), 0o600))
	signer, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	return file, signer
}
