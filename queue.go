package sshfwd

import (
	"context"
	"net"
	"sync"

	"golang.org/x/crypto/ssh"
)

// maxQueued bounds every queue of channels waiting for an Accept. A full
// queue refuses new channels with ResourceShortage instead of blocking the
// router, so one listener nobody accepts on cannot stall the connection.
// Like a listen backlog (OpenSSH's is 128 too), it must hold a burst of
// connections arriving faster than a busy program accepts them: 16 did not
// hold 64 connections made at once through sshd. A channel waiting here is
// not yet accepted, so the server can send nothing on it; each costs about
// a kilobyte.
const maxQueued = 128

// incoming is a channel the peer opened, not yet confirmed, with what its
// open request said.
type incoming struct {
	nc     ssh.NewChannel
	fwd    *remoteForward // nil for x11
	port   int            // the destination port AcceptForward reports
	local  net.Addr
	remote net.Addr
}

// queue holds incoming channels for one taker, in arrival order.
type queue struct {
	mu     sync.Mutex // guards items and closed
	items  []incoming
	closed bool
	ready  chan struct{} // holds a token while items is not empty
	done   chan struct{} // closed by close
}

func newQueue() *queue {
	return &queue{ready: make(chan struct{}, 1), done: make(chan struct{})}
}

// push adds in and reports whether there was room.
func (q *queue) push(in incoming) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || len(q.items) >= maxQueued {
		return false
	}
	q.items = append(q.items, in)
	q.signal()
	return true
}

// signal leaves a token in ready while items remain; q.mu must be held.
func (q *queue) signal() {
	if len(q.items) > 0 {
		select {
		case q.ready <- struct{}{}:
		default:
		}
	}
}

// pop waits for the next item until ctx ends or stop is closed; ok is false
// then, or once the queue is closed and empty.
func (q *queue) pop(ctx context.Context, stop <-chan struct{}) (in incoming, ok bool, err error) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			in = q.items[0]
			q.items[0] = incoming{}
			q.items = q.items[1:]
			q.signal()
			q.mu.Unlock()
			return in, true, nil
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return in, false, nil
		}
		select {
		case <-q.ready:
		case <-ctx.Done():
			return in, false, ctx.Err()
		case <-stop:
			return in, false, nil
		case <-q.done:
		}
	}
}

// remove takes out the items for which drop is true and refuses them.
func (q *queue) remove(drop func(incoming) bool, why string) {
	q.mu.Lock()
	var kept, dropped []incoming
	for _, in := range q.items {
		if drop(in) {
			dropped = append(dropped, in)
		} else {
			kept = append(kept, in)
		}
	}
	q.items = kept
	q.mu.Unlock()
	refuse(dropped, ssh.Prohibited, why)
}

// close refuses what is queued and every later push; pending pops return.
func (q *queue) close(why string) {
	q.mu.Lock()
	items := q.items
	wasClosed := q.closed
	q.items, q.closed = nil, true
	q.mu.Unlock()
	if !wasClosed {
		close(q.done)
	}
	refuse(items, ssh.ConnectionFailed, why)
}

func refuse(items []incoming, reason ssh.RejectionReason, why string) {
	for _, in := range items {
		in.nc.Reject(reason, why)
	}
}
