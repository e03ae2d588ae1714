package sshfwd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults of the Supervisor fields left zero.
const (
	defaultKeepAliveInterval = 30 * time.Second
	defaultMinBackoff        = time.Second
	defaultMaxBackoff        = time.Minute
	defaultDialTimeout       = 30 * time.Second
)

// LocalForward is an ssh -L forward for a Supervisor: connections accepted on
// Listener are forwarded through the server to RemoteAddr, "host:port" or an
// absolute Unix socket path on the server.
type LocalForward struct {
	// Listener belongs to the caller, who closes it after Run returns; it
	// stays open across reconnects, and connections made while the
	// Supervisor redials are closed at once. It must support SetDeadline
	// (*net.TCPListener and *net.UnixListener do): Run uses a deadline to
	// interrupt Accept, and closes listeners without one.
	Listener   net.Listener
	RemoteAddr string
	// MaxConns bounds the connections forwarded at once; beyond it a new
	// one is closed at once. Zero means no bound, as ssh.
	MaxConns int
}

// RemoteForward is an ssh -R forward for a Supervisor: the server listens
// on RemoteAddr, "host:port" or an absolute Unix socket path on the server
// ("" as host means every address the server allows; port 0 lets it
// choose), and connections to it are connected here to LocalAddr,
// "host:port" or a Unix socket path. An empty LocalAddr makes this client a
// SOCKS proxy for them, as ServeRemoteSOCKS does.
type RemoteForward struct {
	RemoteAddr string
	LocalAddr  string
	// MaxConns bounds the connections forwarded at once; beyond it the
	// server's new ones are refused with ResourceShortage. Zero means no
	// bound, as ssh.
	MaxConns int
}

// String describes f for logs and errors: "remote -> local", or
// "remote (SOCKS)".
func (f RemoteForward) String() string {
	if f.LocalAddr == "" {
		return f.RemoteAddr + " (SOCKS)"
	}
	return f.RemoteAddr + " -> " + f.LocalAddr
}

// DynamicForward is an ssh -D forward for a Supervisor: a SOCKS proxy on
// Listener whose connections leave through the server, as ServeSOCKS does.
// Listener is owned by the caller as in LocalForward.
type DynamicForward struct {
	Listener net.Listener
	// MaxConns bounds the SOCKS clients served at once; beyond it a new
	// one is disconnected at once. Zero means no bound, as ssh.
	MaxConns int
}

// State is where a Supervisor's connection stands, as its StateCallback
// is told.
type State int

// The states of a Supervisor's connection.
const (
	// StateConnecting: a dial is about to be attempted, the first or
	// again after a loss or a failed attempt.
	StateConnecting State = iota + 1
	// StateConnected: a Session is up and its forwards are being set up.
	StateConnected
	// StateLost: the connection ended; a redial follows after a backoff.
	StateLost
)

// String returns the state's name: "connecting", "connected", "lost".
func (st State) String() string {
	switch st {
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateLost:
		return "lost"
	}
	return "State(" + strconv.Itoa(int(st)) + ")"
}

// Supervisor keeps a set of forwards up over an SSH connection that it
// redials whenever it is lost, as autossh does for ssh -N: it dials, starts
// every forward and a keepalive, waits until the connection dies, then
// redials after a backoff and sets every forward up again. While it redials
// after a loss, connections to the local forwards' listeners are accepted
// and closed at once, so that clients fail promptly instead of waiting in
// the backlog. The zero value of every field but Dial is usable. Fields must not
// change while Run runs.
type Supervisor struct {
	// Dial connects a new Session, for the first connection and every
	// reconnect; ctx bounds one attempt (DialTimeout). It may reach the
	// server through another Session (ssh -J) with DialSSH; Run closes the
	// Session Dial returns, so Dial must arrange for such an outer Session
	// to be closed with it.
	Dial func(ctx context.Context) (*Session, error)

	LocalForwards   []LocalForward
	RemoteForwards  []RemoteForward
	DynamicForwards []DynamicForward

	// KeepAliveInterval and KeepAliveCountMax are passed to KeepAlive on
	// every connection (OpenSSH's ServerAliveInterval and
	// ServerAliveCountMax). Zero means 30 s and 3; a negative interval
	// turns keepalives off, leaving a silent server to TCP to notice.
	KeepAliveInterval time.Duration
	KeepAliveCountMax int

	// MinBackoff is the wait before the first redial after a connection is
	// lost, doubling after every failed attempt up to MaxBackoff. Each wait
	// is shortened by a random 0-20%, so that many clients cut off
	// together do not redial in step. Zero means 1 s and 1 min.
	MinBackoff time.Duration
	MaxBackoff time.Duration

	// DialTimeout bounds each call of Dial; zero means 30 s.
	DialTimeout time.Duration

	// ConnectionAttempts is how many times Run tries the first connection
	// before it gives up, with backoff in between, as OpenSSH's option of
	// that name; 0 means 1. Reconnects are tried until ctx ends.
	ConnectionAttempts int

	// ExitOnForwardFailure makes Run return an error when a forward cannot
	// be set up, on any connection, as OpenSSH's option of that name does:
	// a remote forward the server refuses, or a listener that fails.
	// Otherwise the failure is logged and a refused remote forward is asked
	// for again, with backoff, while the connection lasts.
	ExitOnForwardFailure bool

	// AllocatedPortCallback, if not nil, is called each time the server
	// binds a RemoteForward whose port is 0, with the port it chose; the
	// port may differ on every connection.
	AllocatedPortCallback func(f RemoteForward, port int)

	// StateCallback, if not nil, is told of every change of the
	// connection: StateConnecting before each dial, with the error of the
	// attempt before (nil for the first); StateConnected once a Session is
	// up; StateLost when it ended, with why (a keepalive timeout, the
	// server's end of the connection). It is called from Run's goroutine,
	// so it must return promptly; Session may be called from it.
	StateCallback func(state State, err error)

	// Logf, if not nil, receives a line for each connection lost, redial
	// and forward failure. nil keeps Run silent.
	Logf func(format string, args ...any)

	mu   sync.Mutex // guards live
	live *Session   // the Session being served; nil while not connected
}

// Session returns the Session Run is serving, or nil while Run is not
// connected: for a status display, or to open channels of one's own (a
// DialContext that follows reconnects calls Session each time). The Session
// may end at any moment; Run closes it, so the caller must not.
func (sv *Supervisor) Session() *Session {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	return sv.live
}

// Run dials, keeps every forward up and redials when the connection is lost,
// until ctx ends; then it closes the Session, stops every forward and
// returns ctx.Err() once every goroutine it started has returned. The
// listeners of LocalForwards and DynamicForwards stay open.
//
// Run returns early with an error when the configuration is unusable (no
// Dial, or an address that does not parse), when the first Dial fails (as
// ssh itself, or autossh's first attempt, gives up on an unreachable or
// wrong server), and with ExitOnForwardFailure when a forward fails. Later
// dial failures are logged and retried.
func (sv *Supervisor) Run(ctx context.Context) error {
	if err := sv.check(); err != nil {
		return err
	}
	s, err := sv.dialFirst(ctx)
	if err != nil {
		return err
	}
	// Connections made before the first Session wait for it in the
	// backlog, as they would for ssh; after a loss nobody knows how long
	// the wait would be, so they are refused until the next Session.
	refusing := &refusal{}
	defer func() { refusing.stop() }()
	for {
		refusing.stop()
		lost, err := sv.serve(ctx, s)
		refusing = sv.refuseLocal()
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		sv.state(StateLost, lost)
		for attempt := 0; ; attempt++ {
			wait := sv.backoff(attempt)
			if attempt == 0 {
				sv.logf("connection lost; reconnecting in %s", seconds(wait))
			}
			if !sleep(ctx, wait) {
				return ctx.Err()
			}
			sv.state(StateConnecting, err)
			if s, err = sv.dial(ctx); err == nil {
				sv.logf("reconnected")
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			sv.logf("reconnect failed: %v; retrying in %s", err, seconds(sv.backoff(attempt+1)))
		}
	}
}

// dialFirst makes the first connection, trying ConnectionAttempts times.
func (sv *Supervisor) dialFirst(ctx context.Context) (*Session, error) {
	attempts := max(sv.ConnectionAttempts, 1)
	var err error
	for attempt := 0; ; attempt++ {
		sv.state(StateConnecting, err)
		var s *Session
		if s, err = sv.dial(ctx); err == nil || attempt+1 == attempts || ctx.Err() != nil {
			return s, err
		}
		wait := sv.backoff(attempt)
		sv.logf("connection attempt %d of %d failed: %v; retrying in %s", attempt+1, attempts, err, seconds(wait))
		if !sleep(ctx, wait) {
			return nil, ctx.Err()
		}
	}
}

func (sv *Supervisor) state(st State, err error) {
	if sv.StateCallback != nil {
		sv.StateCallback(st, err)
	}
}

// refusal is the accepting and closing of connections to the local
// listeners while there is no Session to forward them through.
type refusal struct {
	lns []net.Listener
	wg  sync.WaitGroup
}

// refuseLocal starts accepting on every local listener and closing what
// it accepts, until stop.
func (sv *Supervisor) refuseLocal() *refusal {
	r := &refusal{}
	for _, f := range sv.LocalForwards {
		r.lns = append(r.lns, f.Listener)
	}
	for _, f := range sv.DynamicForwards {
		r.lns = append(r.lns, f.Listener)
	}
	for _, ln := range r.lns {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	return r
}

// stop ends the refusing and leaves the listeners ready to accept again.
// Calling it again does nothing.
func (r *refusal) stop() {
	for _, ln := range r.lns {
		interruptAccept(ln)
	}
	r.wg.Wait()
	for _, ln := range r.lns {
		if d, ok := ln.(interface{ SetDeadline(time.Time) error }); ok {
			d.SetDeadline(time.Time{})
		}
	}
	r.lns = nil
}

// check reports configuration errors that no reconnect can fix.
func (sv *Supervisor) check() error {
	var errs []error
	if sv.Dial == nil {
		errs = append(errs, errors.New("no Dial function"))
	}
	for _, f := range sv.LocalForwards {
		if f.Listener == nil {
			errs = append(errs, fmt.Errorf("local forward to %s: nil Listener", f.RemoteAddr))
		}
		if _, err := parseDestination(f.RemoteAddr); err != nil {
			errs = append(errs, wrapf(err, "local forward to %s", f.RemoteAddr))
		}
	}
	for _, f := range sv.RemoteForwards {
		if err := checkListenAddr(f.RemoteAddr); err != nil {
			errs = append(errs, wrapf(err, "remote forward %s", f))
		}
		if _, err := localConnector(f.LocalAddr); err != nil {
			errs = append(errs, wrapf(err, "remote forward %s", f))
		}
	}
	for _, f := range sv.DynamicForwards {
		if f.Listener == nil {
			errs = append(errs, errors.New("dynamic forward: nil Listener"))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return wrap("Supervisor", err)
	}
	return nil
}

// checkListenAddr checks a remote listen address as Session.Listen will.
func checkListenAddr(addr string) error {
	if strings.HasPrefix(addr, "/") {
		return badAddress(checkHost("socket path", addr))
	}
	host, port, err := splitHostPort(addr)
	if err != nil {
		return err
	}
	return badAddress(checkString("address", host), checkPort("port", port, 0))
}

// dial calls Dial once, bounded by DialTimeout.
func (sv *Supervisor) dial(ctx context.Context) (*Session, error) {
	timeout := sv.DialTimeout
	if timeout <= 0 {
		timeout = defaultDialTimeout
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s, err := sv.Dial(dctx)
	if err == nil && s == nil {
		err = errors.New("sshfwd: Supervisor: Dial returned no Session")
	}
	return s, err
}

// serve runs the keepalive and every forward on s until s ends or ctx does,
// then closes s and waits for all of them. It returns why the connection
// was lost, and an error only when Run must stop: ExitOnForwardFailure and a
// forward failed.
func (sv *Supervisor) serve(ctx context.Context, s *Session) (lost, err error) {
	sv.mu.Lock()
	sv.live = s
	sv.mu.Unlock()
	defer func() {
		sv.mu.Lock()
		sv.live = nil
		sv.mu.Unlock()
	}()
	sv.state(StateConnected, nil)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// failed has room for one error per goroutine that can send one, so
	// that none of them waits for serve.
	failed := make(chan error, len(sv.LocalForwards)+len(sv.RemoteForwards)+len(sv.DynamicForwards))
	var wg sync.WaitGroup
	run := func(f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f()
		}()
	}
	fail := func(what string, err error) {
		if ctx.Err() != nil || s.over() {
			return
		}
		sv.logf("%s failed: %v", what, err)
		if sv.ExitOnForwardFailure {
			failed <- wrap(what, err)
		}
	}

	// timedOut has room for the keepalive's only error, read once serve's
	// goroutines are done.
	timedOut := make(chan error, 1)
	if sv.KeepAliveInterval >= 0 {
		run(func() {
			interval := sv.KeepAliveInterval
			if interval == 0 {
				interval = defaultKeepAliveInterval
			}
			if err := s.KeepAlive(ctx, interval, sv.KeepAliveCountMax); errors.Is(err, ErrKeepAliveTimeout) {
				sv.logf("%v", err)
				timedOut <- err
			}
		})
	}
	for _, f := range sv.LocalForwards {
		run(func() {
			fail("local forward "+f.Listener.Addr().String()+" -> "+f.RemoteAddr, s.serveLocal(ctx, f))
		})
	}
	for _, f := range sv.DynamicForwards {
		run(func() {
			fail("dynamic forward "+f.Listener.Addr().String(), s.serveDynamic(ctx, f))
		})
	}
	for _, f := range sv.RemoteForwards {
		run(func() {
			if err := sv.remoteForward(ctx, s, f); err != nil {
				fail("remote forward "+f.String(), err)
			}
		})
	}

	select {
	case <-s.done:
	case <-ctx.Done():
	case err = <-failed:
	}
	cancel()
	s.Close()
	wg.Wait()
	select {
	case lost = <-timedOut:
	default:
		lost = fmt.Errorf("sshfwd: connection ended: %w", connEnd(s.Wait()))
	}
	return lost, err
}

// connEnd names why a connection ended, for StateLost: x/crypto's Wait
// gives io.EOF when the server closed it.
func connEnd(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return errors.New("closed by the server")
	}
	return err
}

// remoteForward sets up f on s and serves it until ctx or s ends. A forward
// the server refuses is asked for again with backoff, unless
// ExitOnForwardFailure makes the refusal the error returned.
func (sv *Supervisor) remoteForward(ctx context.Context, s *Session, f RemoteForward) error {
	connect, err := localConnector(f.LocalAddr)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		ln, err := s.listenRemote(ctx, f.RemoteAddr)
		if err == nil {
			if !ln.f.unix && ln.f.requested == 0 && sv.AllocatedPortCallback != nil {
				sv.AllocatedPortCallback(f, ln.f.boundPort())
			}
			return s.serveListener(ctx, ln, newLimit(f.MaxConns), connect)
		}
		if sv.ExitOnForwardFailure || ctx.Err() != nil || s.over() {
			return err
		}
		wait := sv.backoff(attempt)
		sv.logf("remote forward %s failed: %v; retrying in %s", f, err, seconds(wait))
		if !sleep(ctx, wait) {
			return nil
		}
	}
}

// backoff returns the wait before redial attempt n, counted from 0.
func (sv *Supervisor) backoff(n int) time.Duration {
	lo, hi := sv.MinBackoff, sv.MaxBackoff
	if lo <= 0 {
		lo = defaultMinBackoff
	}
	if hi <= 0 {
		hi = defaultMaxBackoff
	}
	d := min(lo, hi)
	for range n {
		if d >= hi/2 {
			d = hi
			break
		}
		d *= 2
	}
	return d - rand.N(d/5+1)
}

func (sv *Supervisor) logf(format string, args ...any) {
	if sv.Logf != nil {
		sv.Logf(format, args...)
	}
}

// seconds formats d for the log, in seconds to the hundredth: "1.5s".
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Round(10*time.Millisecond).Seconds(), 'f', -1, 64) + "s"
}

// sleep waits for d, or less if ctx ends first, and reports whether ctx is
// still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
