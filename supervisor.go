package sshfwd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"slices"
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
	// OpenFailedCallback, if not nil, is told of each accepted connection
	// whose channel through the server could not be opened, with why (a
	// refusal wraps *ssh.OpenChannelError), before the connection is
	// closed: ssh reports these as "channel N: open failed". It may be
	// called from several goroutines at once, and not once the forward
	// is stopping.
	OpenFailedCallback func(c net.Conn, err error)
}

// openFailed tells cb, if not nil, that c's channel could not be opened,
// unless ctx, the forward's, has ended.
func openFailed(ctx context.Context, cb func(net.Conn, error), c net.Conn, err error) {
	if cb != nil && ctx.Err() == nil {
		cb(c, err)
	}
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
	// ConnectFailedCallback, if not nil, is told why LocalAddr could not
	// be connected to for a connection the server forwarded, which is
	// then closed: ssh reports these as "connect_to host port n: failed".
	// It may be called from several goroutines at once, and not once the
	// forward is stopping; a SOCKS forward does not call it.
	ConnectFailedCallback func(err error)
}

// connector returns how f's channels are connected here, telling
// ConnectFailedCallback of each failure.
func (f RemoteForward) connector() (connectFunc, error) {
	connect, err := localConnector(f.LocalAddr)
	if err != nil || f.LocalAddr == "" || f.ConnectFailedCallback == nil {
		return connect, err
	}
	return func(ctx context.Context, ch *Channel) (net.Conn, error) {
		c, err := connect(ctx, ch)
		if err != nil && ctx.Err() == nil {
			f.ConnectFailedCallback(err)
		}
		return c, err
	}, nil
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
	// OpenFailedCallback, if not nil, is told of each SOCKS client whose
	// destination's channel could not be opened, with why, once the
	// client has had its answer; otherwise as in LocalForward.
	OpenFailedCallback func(c net.Conn, err error)
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
// change while Run runs; forwards are added, and removed again, at any time
// with AddLocalForward, AddRemoteForward and AddDynamicForward.
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

	// RemoteForwardCallback, if not nil, is told how each remote forward
	// fared on each connection: the port the server listens on (0 for a
	// socket path) and a nil error once it is granted, or the server's
	// refusal. It is called from the goroutine that set the forward up,
	// before its connections are served, so it must return promptly.
	RemoteForwardCallback func(f RemoteForward, port int, err error)

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

	mu    sync.Mutex    // guards the fields below, and the stop and done of every supervised
	live  *Session      // the Session being served; nil while not connected
	added []*supervised // the forwards added by the Add methods
	phase *phase        // how the forwards run now; nil before the first connection, while dialing and after Run
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
	static, err := sv.fieldForwards()
	if err != nil {
		return err
	}
	s, err := sv.dialFirst(ctx)
	if err != nil {
		return err
	}
	for {
		lost, err := sv.serve(ctx, s, static)
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		sv.state(StateLost, lost)
		// Connections made before the first Session wait for it in the
		// backlog, as they would for ssh; after a loss nobody knows how
		// long the wait would be, so they are refused until the next
		// Session.
		rctx, stop := context.WithCancel(ctx)
		refusing := &phase{ctx: rctx, cancel: stop}
		sv.begin(refusing, static)
		s, err = sv.redial(ctx)
		sv.end(refusing, nil)
		if err != nil {
			return err
		}
	}
}

// redial dials until a Session is up or ctx ends, after a lost connection.
func (sv *Supervisor) redial(ctx context.Context) (*Session, error) {
	var err error
	for attempt := 0; ; attempt++ {
		wait := sv.backoff(attempt)
		if attempt == 0 {
			sv.logf("connection lost; reconnecting in %s", seconds(wait))
		}
		if !sleep(ctx, wait) {
			return nil, ctx.Err()
		}
		sv.state(StateConnecting, err)
		var s *Session
		if s, err = sv.dial(ctx); err == nil {
			sv.logf("reconnected")
			return s, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		sv.logf("reconnect failed: %s; retrying in %s", unprefixed(err), seconds(sv.backoff(attempt+1)))
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
		sv.logf("connection attempt %d of %d failed: %s; retrying in %s", attempt+1, attempts, unprefixed(err), seconds(wait))
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

// supervised is one forward Run keeps up, from the fields or added while
// it runs: exactly one of local, dynamic and remote is set.
type supervised struct {
	local   *LocalForward
	dynamic *DynamicForward
	remote  *RemoteForward

	// stop ends the goroutine that serves the forward in the current
	// phase, and done is closed when it has returned; both are nil when
	// no goroutine was started. They are set and read under the
	// Supervisor's mu.
	stop context.CancelFunc
	done chan struct{}
}

// listener returns the local listener of a local or dynamic forward, nil
// for a remote one.
func (f *supervised) listener() net.Listener {
	switch {
	case f.local != nil:
		return f.local.Listener
	case f.dynamic != nil:
		return f.dynamic.Listener
	}
	return nil
}

// phase is a stretch of Run in which every forward runs the same way: on a
// Session, or refusing local connections while there is none.
type phase struct {
	ctx    context.Context
	cancel context.CancelFunc // ends ctx, and the phase
	s      *Session           // nil while refusing
	// fail reports a forward that failed on s.
	fail func(what string, err error)
	wg   sync.WaitGroup // the goroutines of the phase's forwards
}

// fieldForwards checks the configuration and returns the forwards of the
// fields.
func (sv *Supervisor) fieldForwards() ([]*supervised, error) {
	var errs []error
	if sv.Dial == nil {
		errs = append(errs, errors.New("no Dial function"))
	}
	var fs []*supervised
	for _, f := range sv.LocalForwards {
		errs = append(errs, checkLocal(f))
		fs = append(fs, &supervised{local: &f})
	}
	for _, f := range sv.RemoteForwards {
		errs = append(errs, checkRemote(f))
		fs = append(fs, &supervised{remote: &f})
	}
	for _, f := range sv.DynamicForwards {
		errs = append(errs, checkDynamic(f))
		fs = append(fs, &supervised{dynamic: &f})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, wrap("Supervisor", err)
	}
	return fs, nil
}

// checkLocal, checkRemote and checkDynamic report configuration errors
// that no reconnect can fix.
func checkLocal(f LocalForward) error {
	var errs []error
	if f.Listener == nil {
		errs = append(errs, fmt.Errorf("local forward to %s: nil Listener", f.RemoteAddr))
	}
	if _, err := parseDestination(f.RemoteAddr); err != nil {
		errs = append(errs, wrapf(err, "local forward to %s", f.RemoteAddr))
	}
	return errors.Join(errs...)
}

func checkRemote(f RemoteForward) error {
	var errs []error
	if err := checkListenAddr(f.RemoteAddr); err != nil {
		errs = append(errs, wrapf(err, "remote forward %s", f))
	}
	if _, err := localConnector(f.LocalAddr); err != nil {
		errs = append(errs, wrapf(err, "remote forward %s", f))
	}
	return errors.Join(errs...)
}

func checkDynamic(f DynamicForward) error {
	if f.Listener == nil {
		return errors.New("dynamic forward: nil Listener")
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

// AddLocalForward adds f to the forwards Run keeps up, as if it were in
// LocalForwards: at once on the live connection, on every later one, and
// refusing connections during an outage. It may be called before Run and
// while Run runs, from any goroutine. remove takes f out again and returns
// once the connections it forwards are closed; f.Listener stays open, for
// the caller to close.
func (sv *Supervisor) AddLocalForward(f LocalForward) (remove func(), err error) {
	if err := checkLocal(f); err != nil {
		return nil, wrap("AddLocalForward", err)
	}
	return sv.add(&supervised{local: &f}), nil
}

// AddDynamicForward adds f to the forwards Run keeps up, as if it were in
// DynamicForwards; it is otherwise AddLocalForward.
func (sv *Supervisor) AddDynamicForward(f DynamicForward) (remove func(), err error) {
	if err := checkDynamic(f); err != nil {
		return nil, wrap("AddDynamicForward", err)
	}
	return sv.add(&supervised{dynamic: &f}), nil
}

// AddRemoteForward adds f to the forwards Run keeps up, as if it were in
// RemoteForwards. While Run is connected, the server is asked at once and
// AddRemoteForward waits for its answer until ctx ends: it returns the
// port the server listens on (0 for a socket path), or its refusal, and
// then f is not added. While Run is not connected, f is added to be asked
// for on the next connection, and port is 0. Either way the callbacks hear
// of f only from the next connection on. remove takes f out again,
// cancelling it on the server, and returns once the connections it
// forwards are closed.
func (sv *Supervisor) AddRemoteForward(ctx context.Context, f RemoteForward) (port int, remove func(), err error) {
	if err := checkRemote(f); err != nil {
		return 0, nil, wrap("AddRemoteForward", err)
	}
	sv.mu.Lock()
	ph := sv.phase
	sv.mu.Unlock()
	e := &supervised{remote: &f}
	if ph == nil || ph.s == nil {
		return 0, sv.add(e), nil
	}
	ln, err := ph.s.listenRemote(ctx, f.RemoteAddr)
	if err != nil {
		return 0, nil, wrapf(err, "remote forward %s", f)
	}
	sv.mu.Lock()
	defer sv.mu.Unlock()
	sv.added = append(sv.added, e)
	if sv.phase == ph {
		ph.start(sv, e, ln)
	} else {
		// The connection the server granted it on is gone: the next
		// one asks again.
		ln.Close()
	}
	return ln.f.boundPort(), func() { sv.remove(e) }, nil
}

// add registers f and starts it in the current phase, if there is one.
func (sv *Supervisor) add(f *supervised) (remove func()) {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	sv.added = append(sv.added, f)
	if sv.phase != nil {
		sv.phase.start(sv, f, nil)
	}
	return func() { sv.remove(f) }
}

// remove takes f out of the added forwards and waits for its goroutine to
// return. Calling it again does nothing.
func (sv *Supervisor) remove(f *supervised) {
	sv.mu.Lock()
	sv.added = slices.DeleteFunc(sv.added, func(g *supervised) bool { return g == f })
	stop, done := f.stop, f.done
	f.stop, f.done = nil, nil
	sv.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// begin makes ph the current phase and starts every forward in it: those
// of the fields (static) and those added. While refusing, remote forwards
// have nothing to do.
func (sv *Supervisor) begin(ph *phase, static []*supervised) {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	sv.phase = ph
	for _, f := range slices.Concat(static, sv.added) {
		ph.start(sv, f, nil)
	}
}

// end ends ph and waits for its forwards; none starts in it once end has
// begun. then, if not nil, runs once they have been told to stop.
func (sv *Supervisor) end(ph *phase, then func()) {
	sv.mu.Lock()
	if sv.phase == ph {
		sv.phase = nil
	}
	sv.mu.Unlock()
	ph.cancel()
	if then != nil {
		then()
	}
	ph.wg.Wait()
}

// start runs f in ph, in a goroutine of ph's that ends when ph's ctx does,
// or f is removed. granted, if not nil, is f's forward already granted on
// ph's Session. It is called with sv.mu held.
func (ph *phase) start(sv *Supervisor, f *supervised, granted *Listener) {
	if ph.s == nil && f.remote != nil {
		return
	}
	ctx, stop := context.WithCancel(ph.ctx)
	done := make(chan struct{})
	f.stop, f.done = stop, done
	ph.wg.Add(1)
	go func() {
		defer ph.wg.Done()
		defer close(done)
		defer stop()
		if ph.s == nil {
			refuseUntil(ctx, f.listener())
			return
		}
		sv.run(ctx, ph, f, granted)
	}()
}

// refuseUntil accepts connections on ln and closes them at once until ctx
// ends, then leaves ln ready to accept again.
func refuseUntil(ctx context.Context, ln net.Listener) {
	stop := context.AfterFunc(ctx, func() { interruptAccept(ln) })
	defer func() {
		if !stop() {
			if d, ok := ln.(interface{ SetDeadline(time.Time) error }); ok {
				d.SetDeadline(time.Time{})
			}
		}
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// run serves f on ph's Session until ctx ends, and reports its failure
// unless f was stopped.
func (sv *Supervisor) run(ctx context.Context, ph *phase, f *supervised, granted *Listener) {
	s := ph.s
	var what string
	var err error
	switch {
	case f.local != nil:
		what, err = "local forward "+f.local.Listener.Addr().String()+" -> "+f.local.RemoteAddr, s.serveLocal(ctx, *f.local)
	case f.dynamic != nil:
		what, err = "dynamic forward "+f.dynamic.Listener.Addr().String(), s.serveDynamic(ctx, *f.dynamic)
	case granted != nil:
		connect, _ := f.remote.connector()
		what, err = "remote forward "+f.remote.String(), s.serveListener(ctx, granted, newLimit(f.remote.MaxConns), connect)
	default:
		what, err = "remote forward "+f.remote.String(), sv.remoteForward(ctx, s, *f.remote)
	}
	if err != nil && ctx.Err() == nil {
		ph.fail(what, err)
	}
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
func (sv *Supervisor) serve(ctx context.Context, s *Session, static []*supervised) (lost, err error) {
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
	// failed keeps the first failure for serve; the others are logged.
	failed := make(chan error, 1)
	ph := &phase{ctx: ctx, cancel: cancel, s: s, fail: func(what string, err error) {
		if ctx.Err() != nil || s.over() {
			return
		}
		if !sv.ExitOnForwardFailure {
			sv.logf("%s failed: %s", what, unprefixed(err))
			return
		}
		// The failure is Run's error, which the caller reports.
		select {
		case failed <- wrap(what, err):
		default:
		}
	}}
	sv.begin(ph, static)

	// timedOut has room for the keepalive's only error, read once the
	// phase's goroutines are done.
	timedOut := make(chan error, 1)
	if sv.KeepAliveInterval >= 0 {
		ph.wg.Add(1)
		go func() {
			defer ph.wg.Done()
			interval := sv.KeepAliveInterval
			if interval == 0 {
				interval = defaultKeepAliveInterval
			}
			if err := s.KeepAlive(ctx, interval, sv.KeepAliveCountMax); errors.Is(err, ErrKeepAliveTimeout) {
				sv.logf("%v", err)
				timedOut <- err
			}
		}()
	}

	select {
	case <-s.done:
	case <-ctx.Done():
	case err = <-failed:
	}
	sv.end(ph, func() { s.Close() })
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
// ExitOnForwardFailure makes the refusal the error returned. The callbacks
// hear of each grant and refusal.
func (sv *Supervisor) remoteForward(ctx context.Context, s *Session, f RemoteForward) error {
	connect, err := f.connector()
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		ln, err := s.listenRemote(ctx, f.RemoteAddr)
		if err == nil {
			port := ln.f.boundPort()
			if ln.f.unix {
				port = 0
			}
			if !ln.f.unix && ln.f.requested == 0 && sv.AllocatedPortCallback != nil {
				sv.AllocatedPortCallback(f, port)
			}
			if sv.RemoteForwardCallback != nil {
				sv.RemoteForwardCallback(f, port, nil)
			}
			return s.serveListener(ctx, ln, newLimit(f.MaxConns), connect)
		}
		if ctx.Err() != nil || s.over() {
			return err
		}
		if sv.RemoteForwardCallback != nil {
			sv.RemoteForwardCallback(f, 0, err)
		}
		if sv.ExitOnForwardFailure {
			return err
		}
		wait := sv.backoff(attempt)
		sv.logf("remote forward %s failed: %s; retrying in %s", f, unprefixed(err), seconds(wait))
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
	// Rounded as a float, not as a Duration: Seconds of 1.89 s is
	// 1.8900000000000001.
	return strconv.FormatFloat(math.Round(d.Seconds()*100)/100, 'f', -1, 64) + "s"
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
