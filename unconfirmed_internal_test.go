package sshfwd

import (
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/internal/wire"
)

// silentPeer is the channel of a peer that never answers this side's close,
// as a server not written on x/crypto can do (x/crypto answers by itself).
// Read returns what the peer sent, then waits until end for EOF.
type silentPeer struct {
	mu     sync.Mutex
	cond   *sync.Cond
	unread int  // bytes the peer sent that nobody read
	ended  bool // the peer finally closed, or the connection ended
	closed bool // this side sent its close
}

func newSilentPeer(sent int) *silentPeer {
	p := &silentPeer{unread: sent}
	p.cond = sync.NewCond(&p.mu)
	return p
}

func (p *silentPeer) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.unread == 0 && !p.ended {
		p.cond.Wait()
	}
	if p.unread == 0 {
		return 0, io.EOF
	}
	n := min(len(b), p.unread)
	p.unread -= n
	return n, nil
}

func (p *silentPeer) end() {
	p.mu.Lock()
	p.ended = true
	p.mu.Unlock()
	p.cond.Broadcast()
}

func (p *silentPeer) left() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.unread
}

func (p *silentPeer) Write(b []byte) (int, error) { return len(b), nil }
func (p *silentPeer) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	return nil
}
func (p *silentPeer) CloseWrite() error                              { return nil }
func (p *silentPeer) SendRequest(string, bool, []byte) (bool, error) { return false, nil }
func (p *silentPeer) Stderr() io.ReadWriter                          { return stderrOf{p} }

// stderrOf is a silent peer's extended data: none, until it ends.
type stderrOf struct{ p *silentPeer }

func (e stderrOf) Read([]byte) (int, error) {
	e.p.mu.Lock()
	defer e.p.mu.Unlock()
	for !e.p.ended {
		e.p.cond.Wait()
	}
	return 0, io.EOF
}

func (e stderrOf) Write(b []byte) (int, error) { return len(b), nil }

func TestUnconfirmedClosesAreBounded(t *testing.T) {
	f := &remoteForward{addr: "localhost", port: 8080, requested: 8080}
	s := routerOnly(f)
	const sent = 64 << 10
	peers := make([]*silentPeer, maxUnconfirmed)
	reqs := make([]chan *ssh.Request, maxUnconfirmed)
	for i := range peers {
		peers[i], reqs[i] = newSilentPeer(sent), make(chan *ssh.Request)
		c, ok := newChannel(peers[i], reqs[i], nil, nil, s)
		require.True(t, ok)
		require.NoError(t, c.Close())
	}
	route := func() ssh.RejectionReason {
		nc := &fakeNewChannel{typ: wire.ForwardedTCPIP, extra: tcpip("localhost", 8080)}
		in := make(chan ssh.NewChannel, 1)
		in <- nc
		close(in)
		s.route(in)
		return nc.rejected
	}

	// What the peers sent before this side's close is dropped, not held.
	require.Eventually(t, func() bool {
		for _, p := range peers {
			if p.left() > 0 {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, int64(maxUnconfirmed), s.waiting.Load())
	assert.Equal(t, ssh.ResourceShortage, route(), "a new channel while the server answers no close")

	for i, p := range peers {
		close(reqs[i])
		p.end()
	}
	require.Eventually(t, func() bool { return s.waiting.Load() == 0 }, 10*time.Second, 10*time.Millisecond)
	assert.Zero(t, route(), "a new channel once the closes are answered")
	s.acceptQ.close("test over")
	s.wg.Wait()
	for _, p := range peers {
		assert.True(t, p.closed)
	}
}
