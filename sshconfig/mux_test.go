package sshconfig

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/internal/mux"
)

// fakeMaster is a command-mode master that grants remote forwards as
// told and records what it was asked.
type fakeMaster struct {
	mu     sync.Mutex // guards asked
	asked  []mux.Message
	answer func(f mux.Forward) (uint32, error)
}

func (m *fakeMaster) OpenForward(f mux.Forward) (uint32, error) {
	m.mu.Lock()
	m.asked = append(m.asked, mux.Message{Type: mux.OpenFwd, Forward: f})
	m.mu.Unlock()
	return m.answer(f)
}

func (m *fakeMaster) CloseForward(f mux.Forward) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.asked = append(m.asked, mux.Message{Type: mux.CloseFwd, Forward: f})
	for _, a := range m.asked[:len(m.asked)-1] {
		if a.Type == mux.OpenFwd && a.Forward == f {
			return nil
		}
	}
	return errors.New("port not forwarded")
}

func (m *fakeMaster) Terminate() {}

func (m *fakeMaster) requests() []mux.Message {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]mux.Message(nil), m.asked...)
}

// serveMaster serves h on a socket in a short directory of its own until
// the test ends, and returns the socket's path.
func serveMaster(t testing.TB, h mux.Handler) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "fm")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", path)
	require.NoError(t, err)
	s := &mux.Server{Handler: h}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		<-done
	})
	return path
}

func TestMuxForwardsAgainstFakeMaster(t *testing.T) {
	fm := &fakeMaster{answer: func(f mux.Forward) (uint32, error) {
		switch f.ListenPort {
		case 0:
			return 4242, nil
		case 1:
			return 0, errors.New("remote port forwarding failed for listen port 1")
		}
		return 0, nil
	}}
	m := newMuxForwards(serveMaster(t, fm))
	real := make(chan ssh.NewChannel)
	merged := make(chan struct{})
	go func() {
		defer close(merged)
		m.merge(real)
	}()
	go func() {
		for range m.in {
		}
	}()

	bound, ok, err := m.open(false, "", 0)
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, uint32(4242), bound)
	first := fm.requests()
	require.Len(t, first, 1)
	assert.Equal(t, "*", first[0].Forward.ListenHost, "every address, in the master's spelling")
	assert.Equal(t, uint32(mux.StreamLocal), first[0].Forward.ConnectPort, "pointed at a socket of ours")

	_, ok, err = m.open(false, "127.0.0.1", 1)
	assert.NoError(t, err)
	assert.False(t, ok, "a refusal is a denied request")

	bound, ok, err = m.open(true, "/tmp/remote.sock", 0)
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Zero(t, bound)
	all := fm.requests()
	assert.Equal(t, mux.Forward{Kind: mux.FwdRemote, ListenHost: "/tmp/remote.sock", ListenPort: mux.StreamLocal,
		ConnectHost: all[len(all)-1].Forward.ConnectHost, ConnectPort: mux.StreamLocal}, all[len(all)-1].Forward)

	assert.True(t, m.close(false, "", 4242))
	assert.False(t, m.close(false, "", 4242), "cancelled already")
	all = fm.requests()
	last := all[len(all)-1]
	assert.Equal(t, mux.CloseFwd, last.Type)
	assert.Equal(t, first[0].Forward, last.Forward, "MUX_C_CLOSE_FWD repeats the request")

	close(real)
	<-merged
	assert.Equal(t, mux.CloseFwd, fm.requests()[len(fm.requests())-1].Type, "teardown cancels the socket forward")
	_, _, err = m.open(false, "", 0)
	assert.ErrorIs(t, err, errMuxClosed)
}
