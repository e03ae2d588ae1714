package sshfwd

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sshfwd/sshfwd/internal/testnet"
)

// recordSize is the size of what each writer of TestGatherKeepsOrder writes
// at a time: its number and the count of its records so far, padded.
const recordSize = 1024

// TestGatherKeepsOrder has many goroutines send at once, so that most
// writes are gathered and some go straight out: every record arrives, whole,
// and each writer's in the order it wrote them.
func TestGatherKeepsOrder(t *testing.T) {
	local, remote := testnet.TCPPair(t)
	g := gather(local)
	const writers, records = 8, 400
	got := make(chan [writers]uint32, 1)
	go func() {
		var next [writers]uint32
		rec := make([]byte, recordSize)
		for {
			if _, err := io.ReadFull(remote, rec); err != nil {
				got <- next
				return
			}
			w, n := binary.BigEndian.Uint32(rec), binary.BigEndian.Uint32(rec[4:])
			if w >= writers || n != next[w] {
				t.Errorf("writer %d: record %d arrived after %d", w, n, next[w])
			}
			next[w] = n + 1
		}
	}()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			rec := make([]byte, recordSize)
			for n := range records {
				binary.BigEndian.PutUint32(rec, uint32(w))
				binary.BigEndian.PutUint32(rec[4:], uint32(n))
				g.enter()
				_, err := g.Write(rec)
				g.leave()
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	require.NoError(t, g.Close())
	for w, n := range <-got {
		assert.EqualValues(t, records, n, "records of writer %d", w)
	}
}

// TestGatherCloseSendsWhatIsGathered checks that bytes gathered before Close
// still go out, as close(2) sends what was written before it, and that
// writes after Close fail.
func TestGatherCloseSendsWhatIsGathered(t *testing.T) {
	local, remote := testnet.TCPPair(t)
	g := gather(local)
	g.enter()
	g.enter() // as if another goroutine were sending: this write is gathered
	_, err := g.Write([]byte("gathered"))
	require.NoError(t, err)
	g.leave()
	g.leave()
	require.NoError(t, g.Close())
	b, err := io.ReadAll(remote)
	require.NoError(t, err)
	assert.Equal(t, "gathered", string(b))
	_, err = g.Write([]byte("late"))
	assert.ErrorIs(t, err, net.ErrClosed)
}

// TestGatherCloseDoesNotWaitForAStalledPeer fills a connection whose peer
// reads nothing, until a write waits for room: Close must still return, and
// end the waiting write.
func TestGatherCloseDoesNotWaitForAStalledPeer(t *testing.T) {
	local, _ := testnet.TCPPair(t)
	g := gather(local)
	g.enter()
	g.enter()
	defer g.leave()
	defer g.leave()
	waiting := make(chan error, 1)
	go func() {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := g.Write(chunk); err != nil {
				waiting <- err
				return
			}
		}
	}()
	time.Sleep(100 * time.Millisecond) // long enough for the socket to fill
	closed := make(chan error, 1)
	go func() { closed <- g.Close() }()
	select {
	case <-closed:
	case <-time.After(testnet.Timeout):
		t.Fatal("Close waited for a peer that reads nothing")
	}
	select {
	case err := <-waiting:
		assert.Error(t, err)
	case <-time.After(testnet.Timeout):
		t.Fatal("a write waiting for room did not end with Close")
	}
}

// TestGatherFailedWriteFailsLaterOnes checks that once the socket fails a
// write, gathered or not, every later write fails too.
func TestGatherFailedWriteFailsLaterOnes(t *testing.T) {
	local, remote := testnet.TCPPair(t)
	g := gather(local)
	defer g.Close()
	require.NoError(t, remote.SetLinger(0))
	require.NoError(t, remote.Close()) // a reset: the next writes fail
	var err error
	for i := 0; err == nil && i < 1000; i++ {
		_, err = g.Write(make([]byte, 1024))
		time.Sleep(time.Millisecond)
	}
	require.Error(t, err)
	_, again := g.Write([]byte("x"))
	assert.Equal(t, err, again)
}

// noDeadlines hides the deadlines of a connection, as a caller's own
// net.Conn given to NewClientConn may lack them.
type noDeadlines struct{ net.Conn }

func (noDeadlines) SetWriteDeadline(time.Time) error { return errors.New("no deadlines here") }

// TestGatherCloseWithoutDeadlines is TestGatherCloseDoesNotWaitForAStalledPeer
// on a connection without write deadlines: Close must close it to end the
// waiting write, rather than wait for a peer that reads nothing.
func TestGatherCloseWithoutDeadlines(t *testing.T) {
	local, _ := testnet.TCPPair(t)
	g := gather(noDeadlines{local})
	g.enter()
	g.enter()
	defer g.leave()
	defer g.leave()
	go func() {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := g.Write(chunk); err != nil {
				return
			}
		}
	}()
	time.Sleep(100 * time.Millisecond)
	closed := make(chan error, 1)
	go func() { closed <- g.Close() }()
	select {
	case <-closed:
	case <-time.After(testnet.Timeout):
		t.Fatal("Close waited for a peer that reads nothing")
	}
}
