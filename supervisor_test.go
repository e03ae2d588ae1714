package sshfwd_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd"
	"github.com/sshfwd/sshfwd/internal/peers"
	"github.com/sshfwd/sshfwd/sshtest"
)

// logLines collects a Supervisor's log for the test to look at.
type logLines struct {
	t     testing.TB
	mu    sync.Mutex // guards lines
	lines []string
}

func (l *logLines) Logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	l.t.Log("supervisor: " + line)
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
}

// count returns how many lines contain s.
func (l *logLines) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// runSupervisor runs sv until the test ends and checks then that Run
// returns ctx's error; the returned channel reports an early return.
func runSupervisor(t *testing.T, sv *sshfwd.Supervisor) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.ErrorIs(t, err, context.Canceled)
		case <-time.After(testTimeout):
			t.Error("Run did not return when its context ended")
		}
	})
	return done
}

// fastRetries makes a Supervisor notice and redial quickly.
func fastRetries(sv *sshfwd.Supervisor) *sshfwd.Supervisor {
	sv.KeepAliveInterval = 200 * time.Millisecond
	sv.MinBackoff = 50 * time.Millisecond
	sv.MaxBackoff = 200 * time.Millisecond
	return sv
}

// eventuallyRoundTrip waits until a connection to addr makes a half-close
// round trip: connections made while a forward is down may fail.
func eventuallyRoundTrip(t *testing.T, addr string, data []byte) {
	t.Helper()
	var last error
	ok := assert.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			last = err
			return false
		}
		defer c.Close()
		last = roundTrip(c, data)
		return last == nil
	}, testTimeout, 50*time.Millisecond)
	if !ok {
		t.Fatalf("no round trip through %s: %v", addr, last)
	}
}

// socksRoundTrip makes a half-close round trip to target through the SOCKS5
// proxy at proxy, reporting rather than failing so that it can be polled.
func socksRoundTrip(proxy string, target *net.TCPAddr, data []byte) error {
	c, err := net.DialTimeout("tcp", proxy, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	req := append([]byte{5, 1, 0, 5, 1, 0}, ipv4Dest(target)...)
	if _, err := c.Write(req); err != nil {
		return err
	}
	reply := make([]byte, 2+10)
	if _, err := io.ReadFull(c, reply); err != nil {
		return err
	}
	if reply[3] != socks5Succeeded {
		return fmt.Errorf("SOCKS reply %d", reply[3])
	}
	return roundTrip(c, data)
}

func TestSupervisorReconnectsToOpenSSH(t *testing.T) {
	peers.Require(t, peers.SSHDBin)
	d := peers.StartSSHD(t, peers.SSHDOptions{})
	target := tcpServer(t, hashAfterEOF)
	local := localListener(t)
	socksLn := localListener(t)
	var ports sync.Map // RemoteForward.LocalAddr -> latest allocated port, an int
	var allocations atomic.Int32
	log := &logLines{t: t}
	sv := fastRetries(&sshfwd.Supervisor{
		Dial: func(ctx context.Context) (*sshfwd.Session, error) {
			return sshfwd.Dial(ctx, "tcp", d.Addr, d.ClientConfig())
		},
		LocalForwards:   []sshfwd.LocalForward{{Listener: local, RemoteAddr: target.String()}},
		RemoteForwards:  []sshfwd.RemoteForward{{RemoteAddr: "127.0.0.1:0", LocalAddr: target.String()}},
		DynamicForwards: []sshfwd.DynamicForward{{Listener: socksLn}},
		AllocatedPortCallback: func(f sshfwd.RemoteForward, port int) {
			ports.Store(f.LocalAddr, port)
			allocations.Add(1)
		},
		Logf: log.Logf,
	})
	runSupervisor(t, sv)

	check := func(round int) {
		t.Helper()
		data := []byte(fmt.Sprintf("round %d", round))
		eventuallyRoundTrip(t, local.Addr().String(), data)
		require.Eventually(t, func() bool { return allocations.Load() == int32(round) }, testTimeout, 10*time.Millisecond)
		port, _ := ports.Load(target.String())
		eventuallyRoundTrip(t, "127.0.0.1:"+strconv.Itoa(port.(int)), data)
		require.Eventually(t, func() bool {
			return socksRoundTrip(socksLn.Addr().String(), target, data) == nil
		}, testTimeout, 50*time.Millisecond)
	}
	check(1)
	for round := 2; round <= 3; round++ {
		d.Stop()
		// A connection made during the outage waits in the backlog of
		// the listener, which stays open, or fails; it must not hang.
		early, err := net.Dial("tcp", local.Addr().String())
		require.NoError(t, err, "the local listener stays open")
		early.Close()
		d.Restart(t)
		check(round)
		assert.Equal(t, round-1, log.count("connection lost; reconnecting in"))
	}
}

// stateLog records a Supervisor's state changes for the test to look at.
type stateLog struct {
	mu     sync.Mutex // guards states and errs
	states []sshfwd.State
	errs   []error
}

func (l *stateLog) callback(st sshfwd.State, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.states = append(l.states, st)
	l.errs = append(l.errs, err)
}

// last returns the latest state and its error.
func (l *stateLog) last() (sshfwd.State, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.states) == 0 {
		return 0, nil
	}
	return l.states[len(l.states)-1], l.errs[len(l.errs)-1]
}

// waitFor waits until the latest state is st and returns its error.
func (l *stateLog) waitFor(t *testing.T, st sshfwd.State) error {
	t.Helper()
	require.Eventually(t, func() bool {
		got, _ := l.last()
		return got == st
	}, testTimeout, 5*time.Millisecond, "no %s", st)
	_, err := l.last()
	return err
}

// refusedPromptly checks that a connection to addr is accepted and closed
// at once, without data, rather than left waiting.
func refusedPromptly(t *testing.T, addr string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(2*time.Second)))
	start := time.Now()
	n, err := c.Read(make([]byte, 1))
	assert.Zero(t, n)
	assert.False(t, isTimeout(err), "the connection waited: %v", err)
	assert.Less(t, time.Since(start), 2*time.Second)
}

func TestSupervisorStatesAndOutage(t *testing.T) {
	peers.Require(t, peers.SSHDBin)
	d := peers.StartSSHD(t, peers.SSHDOptions{})
	target := tcpServer(t, hashAfterEOF)
	local := localListener(t)
	states := &stateLog{}
	sv := fastRetries(&sshfwd.Supervisor{
		Dial: func(ctx context.Context) (*sshfwd.Session, error) {
			return sshfwd.Dial(ctx, "tcp", d.Addr, d.ClientConfig())
		},
		LocalForwards: []sshfwd.LocalForward{{Listener: local, RemoteAddr: target.String()}},
		StateCallback: states.callback,
	})
	assert.Nil(t, sv.Session(), "not running yet")
	runSupervisor(t, sv)

	assert.NoError(t, states.waitFor(t, sshfwd.StateConnected))
	s := sv.Session()
	require.NotNil(t, s, "the live Session")
	ch, err := s.OpenForward(testContext(t), "127.0.0.1", target.Port, "127.0.0.1", 0)
	require.NoError(t, err)
	hashRoundTrip(t, ch, []byte("own channel"))
	ch.Close()
	eventuallyRoundTrip(t, local.Addr().String(), []byte("forwarded"))

	d.Stop()
	lost := states.waitFor(t, sshfwd.StateLost)
	require.Error(t, lost)
	assert.True(t, strings.HasPrefix(lost.Error(), "sshfwd: "), lost.Error())
	require.Eventually(t, func() bool { return sv.Session() == nil }, testTimeout, 5*time.Millisecond)
	require.Eventually(t, func() bool {
		st, err := states.last()
		return st == sshfwd.StateConnecting && err != nil
	}, testTimeout, 5*time.Millisecond, "redials report the failed attempt before")
	refusedPromptly(t, local.Addr().String())

	d.Restart(t)
	assert.NoError(t, states.waitFor(t, sshfwd.StateConnected))
	eventuallyRoundTrip(t, local.Addr().String(), []byte("after"))
	assert.NotNil(t, sv.Session())
	states.mu.Lock()
	assert.Equal(t, []sshfwd.State{sshfwd.StateConnecting, sshfwd.StateConnected, sshfwd.StateLost, sshfwd.StateConnecting},
		states.states[:4])
	states.mu.Unlock()
}

func TestSupervisorConnectionAttempts(t *testing.T) {
	srv := newServer(t, nil)
	var dials atomic.Int32
	failFirst := func(n int32) func(context.Context) (*sshfwd.Session, error) {
		dials.Store(0)
		return func(ctx context.Context) (*sshfwd.Session, error) {
			if dials.Add(1) <= n {
				return nil, fmt.Errorf("attempt %d refused", dials.Load())
			}
			return sshfwd.Dial(ctx, "tcp", srv.Addr(), srv.ClientConfig())
		}
	}

	states := &stateLog{}
	sv := fastRetries(&sshfwd.Supervisor{Dial: failFirst(2), ConnectionAttempts: 3, StateCallback: states.callback})
	runSupervisor(t, sv)
	require.NoError(t, states.waitFor(t, sshfwd.StateConnected))
	states.mu.Lock()
	assert.Equal(t, []sshfwd.State{sshfwd.StateConnecting, sshfwd.StateConnecting, sshfwd.StateConnecting, sshfwd.StateConnected}, states.states)
	assert.Nil(t, states.errs[0])
	assert.EqualError(t, states.errs[1], "attempt 1 refused")
	assert.EqualError(t, states.errs[2], "attempt 2 refused")
	states.mu.Unlock()

	sv = fastRetries(&sshfwd.Supervisor{Dial: failFirst(2), ConnectionAttempts: 2})
	assert.EqualError(t, sv.Run(testContext(t)), "attempt 2 refused", "gives up after ConnectionAttempts")
	assert.Equal(t, int32(2), dials.Load())
}

func TestStateString(t *testing.T) {
	assert.Equal(t, "connecting", sshfwd.StateConnecting.String())
	assert.Equal(t, "connected", sshfwd.StateConnected.String())
	assert.Equal(t, "lost", sshfwd.StateLost.String())
	assert.Equal(t, "State(9)", sshfwd.State(9).String())
}

func TestSupervisorKeepAliveNoticesSilentServer(t *testing.T) {
	srv := newServer(t, nil)
	proxy := newFreezer(t, srv.Addr())
	target := tcpServer(t, hashAfterEOF)
	local := localListener(t)
	var dials atomic.Int32
	log := &logLines{t: t}
	sv := fastRetries(&sshfwd.Supervisor{
		// The first connection goes through the proxy, which freezes;
		// the next ones go straight to the server.
		Dial: func(ctx context.Context) (*sshfwd.Session, error) {
			addr := srv.Addr()
			if dials.Add(1) == 1 {
				addr = proxy.Addr()
			}
			return sshfwd.Dial(ctx, "tcp", addr, srv.ClientConfig())
		},
		LocalForwards: []sshfwd.LocalForward{{Listener: local, RemoteAddr: target.String()}},
		Logf:          log.Logf,
	})
	sv.KeepAliveInterval, sv.KeepAliveCountMax = 50*time.Millisecond, 2
	runSupervisor(t, sv)
	eventuallyRoundTrip(t, local.Addr().String(), []byte("before"))
	proxy.Freeze()
	require.Eventually(t, func() bool { return dials.Load() == 2 }, testTimeout, 10*time.Millisecond)
	eventuallyRoundTrip(t, local.Addr().String(), []byte("after"))
	assert.Equal(t, 1, log.count("keepalive timeout: server not responding: no answer to keepalive@openssh.com for 150ms"))
	assert.Equal(t, 1, log.count("connection lost; reconnecting in"))
	assert.Equal(t, 1, log.count("reconnected"))
}

func TestSupervisorExitOnForwardFailure(t *testing.T) {
	srv := newServer(t, &sshtest.Config{PermitListenCallback: func(ssh.ConnMetadata, sshtest.ListenRequest) bool { return false }})
	dialSrv := func(ctx context.Context) (*sshfwd.Session, error) {
		return sshfwd.Dial(ctx, "tcp", srv.Addr(), srv.ClientConfig())
	}
	forwards := []sshfwd.RemoteForward{{RemoteAddr: "127.0.0.1:0", LocalAddr: "127.0.0.1:9"}}

	t.Run("exit", func(t *testing.T) {
		log := &logLines{t: t}
		sv := fastRetries(&sshfwd.Supervisor{Dial: dialSrv, RemoteForwards: forwards, ExitOnForwardFailure: true, Logf: log.Logf})
		err := sv.Run(testContext(t))
		require.ErrorIs(t, err, sshfwd.ErrRequestDenied)
		assert.True(t, strings.HasPrefix(err.Error(), "sshfwd: remote forward 127.0.0.1:0 -> 127.0.0.1:9"), err.Error())
		assert.Zero(t, log.count("failed"), "the failure is Run's error, not also a line of the log")
	})
	t.Run("retry", func(t *testing.T) {
		log := &logLines{t: t}
		sv := fastRetries(&sshfwd.Supervisor{Dial: dialSrv, RemoteForwards: forwards, Logf: log.Logf})
		done := runSupervisor(t, sv)
		require.Eventually(t, func() bool { return log.count("remote forward 127.0.0.1:0 -> 127.0.0.1:9 failed") >= 3 }, testTimeout, 10*time.Millisecond)
		assert.Zero(t, log.count("sshfwd:"), "the lines do not repeat the errors' prefix")
		select {
		case err := <-done:
			t.Fatalf("Run returned: %v", err)
		default:
		}
	})
	t.Run("closed listener", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		require.NoError(t, ln.Close())
		sv := fastRetries(&sshfwd.Supervisor{
			Dial:                 dialSrv,
			LocalForwards:        []sshfwd.LocalForward{{Listener: ln, RemoteAddr: "127.0.0.1:9"}},
			ExitOnForwardFailure: true,
		})
		err = sv.Run(testContext(t))
		require.ErrorIs(t, err, net.ErrClosed)
		assert.Contains(t, err.Error(), "sshfwd: local forward")
	})
}

func TestSupervisorRemoteSOCKS(t *testing.T) {
	peers.Require(t, peers.SSHDBin)
	d := peers.StartSSHD(t, peers.SSHDOptions{})
	target := tcpServer(t, hashAfterEOF)
	allocated := make(chan int, 1)
	sv := &sshfwd.Supervisor{
		Dial: func(ctx context.Context) (*sshfwd.Session, error) {
			return sshfwd.Dial(ctx, "tcp", d.Addr, d.ClientConfig())
		},
		RemoteForwards:        []sshfwd.RemoteForward{{RemoteAddr: "127.0.0.1:0"}},
		AllocatedPortCallback: func(_ sshfwd.RemoteForward, port int) { allocated <- port },
	}
	runSupervisor(t, sv)
	var port int
	select {
	case port = <-allocated:
	case <-time.After(testTimeout):
		t.Fatal("no port allocated")
	}
	require.NoError(t, socksRoundTrip("127.0.0.1:"+strconv.Itoa(port), target, randomBytes(t, 1<<20)))
}

func TestSupervisorFirstDialFails(t *testing.T) {
	srv := newServer(t, nil)
	cfg := srv.ClientConfig()
	cfg.HostKeyCallback = func(string, net.Addr, ssh.PublicKey) error { return errors.New("host key verification failed") }
	sv := &sshfwd.Supervisor{Dial: func(ctx context.Context) (*sshfwd.Session, error) {
		return sshfwd.Dial(ctx, "tcp", srv.Addr(), cfg)
	}}
	err := sv.Run(testContext(t))
	assert.ErrorContains(t, err, "host key verification failed")
}

func TestSupervisorBadConfig(t *testing.T) {
	ln := localListener(t)
	dialNothing := func(context.Context) (*sshfwd.Session, error) { return nil, errors.New("not dialed") }
	for name, sv := range map[string]*sshfwd.Supervisor{
		"no Dial":            {},
		"nil listener":       {Dial: dialNothing, LocalForwards: []sshfwd.LocalForward{{RemoteAddr: "127.0.0.1:1"}}},
		"bad local target":   {Dial: dialNothing, LocalForwards: []sshfwd.LocalForward{{Listener: ln, RemoteAddr: "nohost"}}},
		"bad remote listen":  {Dial: dialNothing, RemoteForwards: []sshfwd.RemoteForward{{RemoteAddr: "127.0.0.1:99999", LocalAddr: "127.0.0.1:1"}}},
		"bad remote target":  {Dial: dialNothing, RemoteForwards: []sshfwd.RemoteForward{{RemoteAddr: "127.0.0.1:0", LocalAddr: "x"}}},
		"nil dynamic":        {Dial: dialNothing, DynamicForwards: []sshfwd.DynamicForward{{}}},
		"NUL in remote path": {Dial: dialNothing, RemoteForwards: []sshfwd.RemoteForward{{RemoteAddr: "/tmp/a\x00b"}}},
	} {
		err := sv.Run(context.Background())
		require.Error(t, err, name)
		assert.True(t, strings.HasPrefix(err.Error(), "sshfwd: Supervisor:"), "%s: %v", name, err)
	}
}

func ExampleSupervisor() {
	srv := sshtest.NewServer(nil)
	defer srv.Close()
	// A service the server reaches; here it runs on this machine too.
	svc, _ := net.Listen("tcp", "127.0.0.1:0")
	defer svc.Close()
	go func() {
		if c, err := svc.Accept(); err == nil {
			io.WriteString(c, "hello from the far side\n")
			c.Close()
		}
	}()

	// The local end of ssh -L, which stays open across reconnects.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	sv := &sshfwd.Supervisor{
		Dial: func(ctx context.Context) (*sshfwd.Session, error) {
			return sshfwd.Dial(ctx, "tcp", srv.Addr(), srv.ClientConfig())
		},
		LocalForwards: []sshfwd.LocalForward{{Listener: ln, RemoteAddr: svc.Addr().String()}},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sv.Run(ctx) }()

	c, _ := net.Dial("tcp", ln.Addr().String())
	b, _ := io.ReadAll(c)
	c.Close()
	fmt.Print(string(b))
	cancel()
	fmt.Println(<-done)
	// Output:
	// hello from the far side
	// context canceled
}

// switchableDial dials srv, or fails while down is set: an outage the
// test turns on and off.
func switchableDial(srv *sshtest.Server, down *atomic.Bool) func(context.Context) (*sshfwd.Session, error) {
	return func(ctx context.Context) (*sshfwd.Session, error) {
		if down.Load() {
			return nil, errors.New("outage")
		}
		return sshfwd.Dial(ctx, "tcp", srv.Addr(), srv.ClientConfig())
	}
}

// dropConnection closes sv's live Session, as a network failure would end
// it, once there is one.
func dropConnection(t *testing.T, sv *sshfwd.Supervisor) {
	t.Helper()
	require.Eventually(t, func() bool { return sv.Session() != nil }, testTimeout, 5*time.Millisecond)
	sv.Session().Close()
	require.Eventually(t, func() bool { return sv.Session() == nil }, testTimeout, 5*time.Millisecond)
}

func TestSupervisorAddAndRemoveForwards(t *testing.T) {
	srv := newServer(t, nil)
	target := tcpServer(t, hashAfterEOF)
	var down atomic.Bool
	states := &stateLog{}
	sv := fastRetries(&sshfwd.Supervisor{Dial: switchableDial(srv, &down), StateCallback: states.callback})

	before := localListener(t)
	removeBefore, err := sv.AddLocalForward(sshfwd.LocalForward{Listener: before, RemoteAddr: target.String()})
	require.NoError(t, err)
	port, removeQueued, err := sv.AddRemoteForward(testContext(t), sshfwd.RemoteForward{RemoteAddr: "127.0.0.1:0", LocalAddr: target.String()})
	require.NoError(t, err)
	assert.Zero(t, port, "not connected: asked for on the first connection")
	runSupervisor(t, sv)
	require.NoError(t, states.waitFor(t, sshfwd.StateConnected))
	eventuallyRoundTrip(t, before.Addr().String(), []byte("added before Run"))

	during := localListener(t)
	removeDuring, err := sv.AddLocalForward(sshfwd.LocalForward{Listener: during, RemoteAddr: target.String()})
	require.NoError(t, err)
	eventuallyRoundTrip(t, during.Addr().String(), []byte("added while connected"))
	socksLn := localListener(t)
	removeSOCKS, err := sv.AddDynamicForward(sshfwd.DynamicForward{Listener: socksLn})
	require.NoError(t, err)
	require.NoError(t, socksRoundTrip(socksLn.Addr().String(), target, []byte("SOCKS added")))
	port, removeRemote, err := sv.AddRemoteForward(testContext(t), sshfwd.RemoteForward{RemoteAddr: "127.0.0.1:0", LocalAddr: target.String()})
	require.NoError(t, err)
	require.NotZero(t, port, "asked of the live connection's server")
	remoteAddr := "127.0.0.1:" + strconv.Itoa(port)
	eventuallyRoundTrip(t, remoteAddr, []byte("remote added"))

	removeRemote()
	_, err = net.DialTimeout("tcp", remoteAddr, time.Second)
	assert.Error(t, err, "removing a remote forward cancels it on the server")
	removeRemote()
	removeSOCKS()
	removeQueued()

	down.Store(true)
	dropConnection(t, sv)
	refusedPromptly(t, during.Addr().String())
	outage := localListener(t)
	_, err = sv.AddLocalForward(sshfwd.LocalForward{Listener: outage, RemoteAddr: target.String()})
	require.NoError(t, err)
	refusedPromptly(t, outage.Addr().String())
	removeDuring()
	down.Store(false)

	require.NoError(t, states.waitFor(t, sshfwd.StateConnected))
	eventuallyRoundTrip(t, before.Addr().String(), []byte("after the outage"))
	eventuallyRoundTrip(t, outage.Addr().String(), []byte("added during the outage"))
	for _, ln := range []net.Listener{during, socksLn} {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err, "a removed forward's listener stays open")
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err = c.Read(make([]byte, 1))
		assert.True(t, isTimeout(err), "nobody serves a removed forward's listener: %v", err)
		c.Close()
	}
	removeBefore()
}

// sshdPermitting starts OpenSSH's sshd letting remote forwards listen on
// 127.0.0.1:port only, and returns a Dial to it.
func sshdPermitting(t *testing.T, port int) func(context.Context) (*sshfwd.Session, error) {
	t.Helper()
	peers.Require(t, peers.SSHDBin)
	d := peers.StartSSHD(t, peers.SSHDOptions{Config: []string{"PermitListen 127.0.0.1:" + strconv.Itoa(port)}})
	return func(ctx context.Context) (*sshfwd.Session, error) {
		return sshfwd.Dial(ctx, "tcp", d.Addr, d.ClientConfig())
	}
}

func TestSupervisorAddRemoteForwardRefused(t *testing.T) {
	permitted := peers.FreePort(t)
	dial := sshdPermitting(t, permitted)
	target := tcpServer(t, hashAfterEOF)
	states := &stateLog{}
	sv := fastRetries(&sshfwd.Supervisor{Dial: dial, ExitOnForwardFailure: true, StateCallback: states.callback})
	done := runSupervisor(t, sv)
	require.NoError(t, states.waitFor(t, sshfwd.StateConnected))
	_, remove, err := sv.AddRemoteForward(testContext(t), sshfwd.RemoteForward{RemoteAddr: "127.0.0.1:0", LocalAddr: target.String()})
	require.ErrorIs(t, err, sshfwd.ErrRequestDenied)
	assert.Nil(t, remove)
	assert.True(t, strings.HasPrefix(err.Error(), "sshfwd: remote forward 127.0.0.1:0 -> "), err.Error())
	_, _, err = sv.AddRemoteForward(testContext(t), sshfwd.RemoteForward{RemoteAddr: "127.0.0.1:99999"})
	assert.ErrorIs(t, err, sshfwd.ErrBadAddress)
	_, err = sv.AddLocalForward(sshfwd.LocalForward{RemoteAddr: "127.0.0.1:1"})
	assert.ErrorContains(t, err, "sshfwd: AddLocalForward: local forward to 127.0.0.1:1: nil Listener")
	_, err = sv.AddDynamicForward(sshfwd.DynamicForward{})
	assert.ErrorContains(t, err, "nil Listener")

	port, remove, err := sv.AddRemoteForward(testContext(t), sshfwd.RemoteForward{RemoteAddr: "127.0.0.1:" + strconv.Itoa(permitted), LocalAddr: target.String()})
	require.NoError(t, err)
	defer remove()
	assert.Equal(t, permitted, port)
	eventuallyRoundTrip(t, "127.0.0.1:"+strconv.Itoa(port), []byte("granted"))
	select {
	case err := <-done:
		t.Fatalf("a refused runtime forward stopped Run despite ExitOnForwardFailure: %v", err)
	default:
	}
}

// remoteOutcomes records what RemoteForwardCallback is told.
type remoteOutcomes struct {
	mu    sync.Mutex // guards ports and errs
	ports map[string]int
	errs  map[string]error
}

func (r *remoteOutcomes) callback(f sshfwd.RemoteForward, port int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ports[f.RemoteAddr], r.errs[f.RemoteAddr] = port, err
}

func (r *remoteOutcomes) get(remoteAddr string) (int, error, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	port, ok := r.ports[remoteAddr]
	return port, r.errs[remoteAddr], ok
}

func TestSupervisorRemoteForwardCallback(t *testing.T) {
	permitted := peers.FreePort(t)
	granted, refused := "127.0.0.1:"+strconv.Itoa(permitted), "127.0.0.1:0"
	outcomes := &remoteOutcomes{ports: map[string]int{}, errs: map[string]error{}}
	sv := fastRetries(&sshfwd.Supervisor{
		Dial: sshdPermitting(t, permitted),
		RemoteForwards: []sshfwd.RemoteForward{
			{RemoteAddr: granted, LocalAddr: "127.0.0.1:9"},
			{RemoteAddr: refused, LocalAddr: "127.0.0.1:9"},
		},
		RemoteForwardCallback: outcomes.callback,
	})
	runSupervisor(t, sv)
	require.Eventually(t, func() bool {
		_, _, ok := outcomes.get(granted)
		_, _, denied := outcomes.get(refused)
		return ok && denied
	}, testTimeout, 5*time.Millisecond)
	port, err, _ := outcomes.get(granted)
	assert.NoError(t, err)
	assert.Equal(t, permitted, port, "the port the server listens on")
	_, err, _ = outcomes.get(refused)
	assert.ErrorIs(t, err, sshfwd.ErrRequestDenied)
}

func TestOpenFailedCallback(t *testing.T) {
	srv := newServer(t, nil)
	refused := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: closedPort(t)}
	type failure struct {
		conn net.Conn
		err  error
	}
	failures := make(chan failure, 2)
	record := func(c net.Conn, err error) { failures <- failure{c, err} }
	local, socksLn := localListener(t), localListener(t)
	sv := &sshfwd.Supervisor{
		Dial: func(ctx context.Context) (*sshfwd.Session, error) {
			return sshfwd.Dial(ctx, "tcp", srv.Addr(), srv.ClientConfig())
		},
		LocalForwards:   []sshfwd.LocalForward{{Listener: local, RemoteAddr: refused.String(), OpenFailedCallback: record}},
		DynamicForwards: []sshfwd.DynamicForward{{Listener: socksLn, OpenFailedCallback: record}},
	}
	runSupervisor(t, sv)

	c, err := net.Dial("tcp", local.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	assert.Error(t, socksRoundTrip(socksLn.Addr().String(), refused, []byte("x")))
	for _, from := range []string{"local", "SOCKS"} {
		var f failure
		select {
		case f = <-failures:
		case <-time.After(testTimeout):
			t.Fatalf("no failure reported for the %s forward", from)
		}
		var oce *ssh.OpenChannelError
		if assert.ErrorAs(t, f.err, &oce, from) {
			assert.Equal(t, ssh.ConnectionFailed, oce.Reason, from)
		}
		assert.Equal(t, "127.0.0.1", f.conn.RemoteAddr().(*net.TCPAddr).IP.String(), "the accepted connection is named")
	}
}

func TestConnectFailedCallback(t *testing.T) {
	srv := newServer(t, nil)
	failures := make(chan error, 2)
	closed := "127.0.0.1:" + strconv.Itoa(closedPort(t))
	allocated := make(chan int, 1)
	sv := &sshfwd.Supervisor{
		Dial: func(ctx context.Context) (*sshfwd.Session, error) {
			return sshfwd.Dial(ctx, "tcp", srv.Addr(), srv.ClientConfig())
		},
		RemoteForwards: []sshfwd.RemoteForward{{RemoteAddr: "127.0.0.1:0", LocalAddr: closed,
			ConnectFailedCallback: func(err error) { failures <- err }}},
		AllocatedPortCallback: func(_ sshfwd.RemoteForward, port int) { allocated <- port },
	}
	runSupervisor(t, sv)
	port := receiveInt(t, allocated)
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	require.NoError(t, err)
	defer c.Close()
	select {
	case err := <-failures:
		assert.ErrorIs(t, err, syscall.ECONNREFUSED)
	case <-time.After(testTimeout):
		t.Fatal("the failed connection was not reported")
	}
	n, _ := c.Read(make([]byte, 1))
	assert.Zero(t, n, "the forwarded connection is closed")
}

// receiveInt waits for a value on ch.
func receiveInt(t *testing.T, ch <-chan int) int {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		t.Fatal("nothing received")
		return 0
	}
}
