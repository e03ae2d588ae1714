package sshfwd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sshfwd/sshfwd/internal/wire"
)

// ErrKeepAliveTimeout is wrapped by the error KeepAlive returns when the
// server stopped answering and KeepAlive closed the Session.
var ErrKeepAliveTimeout = errors.New("sshfwd: keepalive timeout: server not responding")

// defaultKeepAliveCountMax is OpenSSH's default ServerAliveCountMax.
const defaultKeepAliveCountMax = 3

// KeepAlive checks that the server is still there, as OpenSSH's
// ServerAliveInterval and ServerAliveCountMax do: every interval it sends
// the global request keepalive@openssh.com asking for an answer. Any answer,
// success or failure (OpenSSH answers failure), proves the server alive.
// When countMax intervals in a row pass without one, and then one more,
// KeepAlive closes the Session and returns an error wrapping
// ErrKeepAliveTimeout: a silent server is noticed within about
// interval×(countMax+1). countMax below 1 means 3, OpenSSH's default.
//
// KeepAlive blocks until then, until ctx ends (it returns ctx.Err()) or
// until the Session ends (it returns an error matching net.ErrClosed). One
// request at most is in flight; one still waiting for its answer when
// KeepAlive returns ends with the connection, and Session.Close waits for
// it. Do not call KeepAlive from a goroutine that Session.Close waits for.
func (s *Session) KeepAlive(ctx context.Context, interval time.Duration, countMax int) error {
	if interval <= 0 {
		return fmt.Errorf("sshfwd: KeepAlive: interval %v is not positive", interval)
	}
	if countMax < 1 {
		countMax = defaultKeepAliveCountMax
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	// answered has room for the only request in flight, so that its
	// goroutine never waits for a KeepAlive that has returned.
	answered := make(chan bool, 1)
	inFlight := false
	missed := 0
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return wrap("KeepAlive", ErrSessionClosed)
		case ok := <-answered:
			inFlight = false
			if ok {
				missed = 0
			}
		case <-ticker.C:
			if missed >= countMax {
				s.Close()
				return fmt.Errorf("%w: no answer to keepalive@openssh.com for %v", ErrKeepAliveTimeout, time.Duration(missed+1)*interval)
			}
			missed++
			if inFlight {
				continue
			}
			inFlight = s.spawn(func() {
				// A request that fails never got an answer: the
				// connection broke, which s.done reports.
				_, _, err := s.client.SendRequest(wire.KeepAlive, true, nil)
				answered <- err == nil
			})
			if !inFlight {
				return wrap("KeepAlive", ErrSessionClosed)
			}
		}
	}
}
