package sshtest

import (
	"bytes"
	"crypto/ed25519"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newServer starts a Server that the test closes when it ends.
func newServer(t testing.TB, cfg *Config) *Server {
	t.Helper()
	srv := NewServer(cfg)
	t.Cleanup(func() { assert.NoError(t, srv.Close()) })
	return srv
}

// dial connects an x/crypto client to srv; the test closes it when it ends.
func dial(t testing.TB, srv *Server) *ssh.Client {
	t.Helper()
	client, err := srv.Dial()
	require.NoError(t, err)
	t.Cleanup(func() { client.Close() })
	return client
}

// shortTempDir returns a directory whose paths fit in a Unix socket
// address, which t.TempDir's long names may not.
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sshtest")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// echoServer serves on network and address, sending back what it reads
// until EOF and then closing. The test stops it when it ends.
func echoServer(t testing.TB, network, address string) net.Listener {
	t.Helper()
	l, err := net.Listen(network, address)
	require.NoError(t, err)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex // guards conns
		conns = map[net.Conn]struct{}{}
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(c, c)
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l
}

// closeWriter is a stream that can be half-closed.
type closeWriter interface {
	CloseWrite() error
}

// roundTrip sends msg on c, half-closes it, and checks that exactly msg
// comes back before EOF: that only works if the half-close crossed every hop.
// A stuck exchange is ended by closing c, since x/crypto's conns have no
// deadlines.
func roundTrip(t testing.TB, c io.ReadWriteCloser, msg []byte) {
	t.Helper()
	timer := time.AfterFunc(20*time.Second, func() { c.Close() })
	defer timer.Stop()
	writeErr := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		if err == nil {
			err = c.(closeWriter).CloseWrite()
		}
		writeErr <- err
	}()
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	require.NoError(t, <-writeErr)
	assert.True(t, bytes.Equal(msg, got), "got %d bytes back, want %d", len(got), len(msg))
}

// echoAccepted accepts one connection on l and echoes it, for forwards
// whose far end is the test's own client.
func echoAccepted(t testing.TB, l net.Listener) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
		c.(closeWriter).CloseWrite()
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
}

func socketPath(t testing.TB, name string) string {
	t.Helper()
	return filepath.Join(shortTempDir(t), name)
}

// events records what a server reports, for tests to check.
type events struct {
	mu  sync.Mutex // guards all
	all []Event
}

// recordEvents makes cfg report its events to the returned recorder, and
// returns cfg for NewServer.
func recordEvents(cfg *Config) (*Config, *events) {
	r := &events{}
	cfg.EventCallback = func(e Event) {
		r.mu.Lock()
		r.all = append(r.all, e)
		r.mu.Unlock()
	}
	return cfg, r
}

// of returns the events of kind and, unless typ is "", of type typ.
func (r *events) of(kind EventKind, typ string) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var found []Event
	for _, e := range r.all {
		if e.Kind == kind && (typ == "" || e.Type == typ) {
			found = append(found, e)
		}
	}
	return found
}

// last returns the last event of kind and type typ, failing the test if
// there is none.
func (r *events) last(t testing.TB, kind EventKind, typ string) Event {
	t.Helper()
	found := r.of(kind, typ)
	require.NotEmpty(t, found, "no %v event of type %q", kind, typ)
	return found[len(found)-1]
}

// newKey returns a fresh ed25519 key, as a signer and as the private key.
func newKey(t testing.TB) (ssh.Signer, ed25519.PrivateKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	signer, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	return signer, priv
}
