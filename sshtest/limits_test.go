package sshtest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/internal/wire"
)

// usage is what the test process holds, client and server together.
type usage struct {
	goroutines int
	heap       int64 // bytes of heap in use after a collection
	fds        int   // open descriptors; -1 where /proc/self/fd is missing
}

func measure() usage {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fds := -1
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		fds = len(ents)
	}
	return usage{goroutines: runtime.NumGoroutine(), heap: int64(ms.HeapInuse), fds: fds}
}

// growth returns how much u grew since before, for the test's log.
func (u usage) since(before usage) usage {
	return usage{u.goroutines - before.goroutines, u.heap - before.heap, u.fds - before.fds}
}

func (u usage) String() string {
	return fmt.Sprintf("goroutines %+d, heap %+.1f MiB, descriptors %+d", u.goroutines, float64(u.heap)/(1<<20), u.fds)
}

// assertWithin checks growth against the most goroutines, heap bytes and
// descriptors allowed.
func assertWithin(t testing.TB, growth usage, goroutines int, heap int64, fds int) {
	t.Helper()
	t.Logf("growth: %v", growth)
	assert.LessOrEqual(t, growth.goroutines, goroutines, "goroutines")
	assert.LessOrEqual(t, growth.heap, heap, "heap")
	if growth.fds != 0 || fds == 0 {
		assert.LessOrEqual(t, growth.fds, fds, "descriptors")
	}
}

// settle waits until the goroutines are back to at most n, as they are
// once what a test closed has ended.
func settle(t testing.TB, n int) {
	t.Helper()
	assert.Eventually(t, func() bool { return runtime.NumGoroutine() <= n }, 10*time.Second, 20*time.Millisecond,
		"goroutines stay at %d, above %d", runtime.NumGoroutine(), n)
}

// stillServes checks that a new connection to srv works: it logs in and
// runs a command.
func stillServes(t testing.TB, srv *Server) {
	t.Helper()
	client, err := srv.Dial()
	require.NoError(t, err, "a new connection was refused")
	defer client.Close()
	sess, err := client.NewSession()
	require.NoError(t, err)
	defer sess.Close()
	out, err := sess.Output("echo still serving")
	require.NoError(t, err)
	assert.Equal(t, "still serving\n", string(out))
}

// silentConns opens n TCP connections to srv that never say anything.
func silentConns(t testing.TB, srv *Server, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", srv.Addr())
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		conns[i] = c
	}
	return conns
}

// firstLine reads the first line the server sends on c, "" if it sends
// none before closing or the deadline.
func firstLine(c net.Conn, wait time.Duration) string {
	c.SetReadDeadline(time.Now().Add(wait))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return line
}

// TestLoginGraceTime opens connections that never authenticate: each is
// closed once LoginGraceTime has passed, with what it held, while a client
// that logs in stays.
func TestLoginGraceTime(t *testing.T) {
	const (
		silent = 100
		grace  = 500 * time.Millisecond
	)
	cfg, ev := recordEvents(&Config{LoginGraceTime: grace, MaxStartups: NoStartupsLimit})
	srv := newServer(t, cfg)
	client := dial(t, srv)
	before := measure()

	start := time.Now()
	conns := silentConns(t, srv, silent)
	var wg sync.WaitGroup
	cut := make([]time.Duration, silent)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			_, err := c.Read(make([]byte, 64<<10)) // the banner
			for err == nil {
				_, err = c.Read(make([]byte, 64<<10))
			}
			cut[i] = time.Since(start)
		}()
	}
	wg.Wait()
	for i, d := range cut {
		assert.GreaterOrEqual(t, d, grace, "connection %d was cut before LoginGraceTime", i)
		assert.Less(t, d, grace+5*time.Second, "connection %d was not cut in time", i)
	}
	for _, c := range conns {
		c.Close()
	}
	disconnects := ev.of(EventDisconnect, "")
	require.Len(t, disconnects, silent)
	for _, e := range disconnects {
		assert.ErrorIs(t, e.Err, ErrLimit)
	}

	sess, err := client.NewSession()
	require.NoError(t, err, "a client that logged in was cut")
	require.NoError(t, sess.Run("true"))
	sess.Close()
	settle(t, before.goroutines+10)
	assertWithin(t, measure().since(before), 10, 4<<20, 10)
}

func TestStartupsDrop(t *testing.T) {
	s := DefaultMaxStartups
	for _, tc := range []struct {
		pending, r int
		want       bool
	}{
		{9, 0, false},   // below start: never
		{10, 29, true},  // at start: rate 30%
		{10, 30, false}, //
		{55, 64, true},  // half way: 30 + 70*45/90 = 65%
		{55, 65, false}, //
		{99, 98, true},  // 30 + 70*89/90 = 99%
		{100, 99, true}, // full: always
		{1000, 99, true},
	} {
		assert.Equal(t, tc.want, s.drop(tc.pending, tc.r), "%d pending, r %d", tc.pending, tc.r)
	}
	assert.True(t, Startups{Start: 5, Rate: 100, Full: 50}.drop(5, 99), "rate 100 drops from start")
	assert.False(t, NoStartupsLimit.drop(1<<20, 0))
}

func TestStartupsFlag(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Startups
		ok   bool
	}{
		{"10:30:100", DefaultMaxStartups, true},
		{"5", Startups{5, 100, 5}, true},
		{"none", NoStartupsLimit, true},
		{"1:1:1", Startups{1, 1, 1}, true},
		{"", Startups{}, false},
		{"0", Startups{}, false},
		{"10:0:100", Startups{}, false},
		{"10:101:100", Startups{}, false},
		{"10:30:5", Startups{}, false},
		{"10:30", Startups{}, false},
		{"-1", Startups{}, false},
		{"1:2:3:4", Startups{}, false},
		{"a:b:c", Startups{}, false},
	} {
		var s Startups
		err := s.Set(tc.in)
		if !tc.ok {
			assert.Error(t, err, "%q", tc.in)
			continue
		}
		require.NoError(t, err, "%q", tc.in)
		assert.Equal(t, tc.want, s)
		if tc.in != "5" {
			assert.Equal(t, tc.in, s.String())
		}
	}
	assert.Panics(t, func() { NewServer(&Config{MaxStartups: Startups{Start: 10, Rate: 30, Full: 5}}) })
}

// TestMaxStartups opens many connections that never authenticate: past
// MaxStartups each is told so and closed at once, costing the server
// nothing, and a client that logs in gets through once the silent ones
// are gone.
func TestMaxStartups(t *testing.T) {
	const (
		start  = 5
		silent = 200
	)
	cfg, ev := recordEvents(&Config{MaxStartups: Startups{Start: start, Rate: 100, Full: start}})
	srv := newServer(t, cfg)
	client := dial(t, srv)
	before := measure()
	conns := silentConns(t, srv, silent)
	admitted, dropped := 0, 0
	for _, c := range conns {
		switch line := firstLine(c, 10*time.Second); {
		case strings.HasPrefix(line, "SSH-2.0-"):
			admitted++
		case line == "Exceeded MaxStartups\r\n":
			dropped++
			_, err := c.Read(make([]byte, 1))
			assert.Error(t, err, "a dropped connection stayed open")
		default:
			t.Errorf("the server said %q", line)
		}
	}
	assert.Equal(t, start, admitted)
	assert.Equal(t, silent-start, dropped)
	// The test holds the client ends of all of them; the server, start.
	assertWithin(t, measure().since(before), 3*start+5, 2<<20, silent+start+5)
	refusals := 0
	for _, e := range ev.of(EventConnect, "") {
		if errors.Is(e.Err, ErrLimit) {
			refusals++
		}
	}
	assert.Equal(t, silent-start, refusals)
	sess := newSession(t, client)
	require.NoError(t, sess.Run("true"), "a connection that had logged in stopped working")

	for _, c := range conns {
		c.Close()
	}
	assert.Eventually(t, func() bool {
		client, err := srv.Dial()
		if err == nil {
			client.Close()
		}
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "the slots of closed connections were not freed")
}

// openChannels opens n channels of type typ with payload on client and
// returns those the server accepted and the refusals' reasons.
func openChannels(t testing.TB, client *ssh.Client, n int, typ string, payload []byte) ([]ssh.Channel, map[ssh.RejectionReason]int) {
	t.Helper()
	var opened []ssh.Channel
	refused := map[ssh.RejectionReason]int{}
	for range n {
		ch, reqs, err := client.OpenChannel(typ, payload)
		if err != nil {
			var oce *ssh.OpenChannelError
			require.True(t, errors.As(err, &oce), "got %v", err)
			refused[oce.Reason]++
			continue
		}
		go ssh.DiscardRequests(reqs)
		t.Cleanup(func() { ch.Close() })
		opened = append(opened, ch)
	}
	return opened, refused
}

// TestMaxSessions floods one connection with session channels: past
// MaxSessions they are refused for lack of resources, cost nothing, and
// the connection and others go on working.
func TestMaxSessions(t *testing.T) {
	const flood = 2000
	srv := newServer(t, nil)
	client := dial(t, srv)
	before := measure()
	start := time.Now()
	opened, refused := openChannels(t, client, flood, wire.Session, nil)
	took := time.Since(start)
	t.Logf("%d session channels in %v: %d opened, refused %v", flood, took, len(opened), refused)
	assert.Len(t, opened, DefaultMaxSessions)
	assert.Equal(t, map[ssh.RejectionReason]int{ssh.ResourceShortage: flood - DefaultMaxSessions}, refused)
	// A session costs the server a goroutine, and the test one more.
	assertWithin(t, measure().since(before), 2*DefaultMaxSessions+5, 4<<20, 5)
	assert.Less(t, took, 30*time.Second)

	stillServes(t, srv)
	require.NoError(t, opened[0].Close())
	assert.Eventually(t, func() bool {
		ch, reqs, err := client.OpenChannel(wire.Session, nil)
		if err != nil {
			return false
		}
		go ssh.DiscardRequests(reqs)
		ch.Close()
		return true
	}, 5*time.Second, 10*time.Millisecond, "a closed session's place was not freed")
}

// stuckTarget listens for connections and never reads them, holding them
// until the test ends.
func stuckTarget(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var (
		mu   sync.Mutex // guards held
		held []net.Conn
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	return l
}

// TestMaxChannels floods one connection with direct channels, each
// sending megabytes to a target that never reads: past MaxChannels they
// are refused, so what the server buffers for them is bounded.
func TestMaxChannels(t *testing.T) {
	const (
		limit = 8
		flood = 40
		size  = 8 << 20
	)
	srv := newServer(t, &Config{MaxChannels: limit})
	client := dial(t, srv)
	target := stuckTarget(t)
	payload := ssh.Marshal(&wire.TCPIP{Host: "127.0.0.1", Port: uint32(target.Addr().(*net.TCPAddr).Port), OriginHost: "127.0.0.1", OriginPort: 1})
	data := make([]byte, size)
	before := measure()
	opened, refused := openChannels(t, client, flood, wire.DirectTCPIP, payload)
	assert.Len(t, opened, limit)
	assert.Equal(t, map[ssh.RejectionReason]int{ssh.ResourceShortage: flood - limit}, refused)
	for _, ch := range opened {
		go ch.Write(data)
	}
	// Give the server time to take in what its windows let through.
	time.Sleep(2 * time.Second)
	// Each channel holds x/crypto's 2 MiB window and a relay buffer, and
	// costs five goroutines here and in the test; the target holds one
	// descriptor each, the server one.
	assertWithin(t, measure().since(before), 5*limit+5, limit*3<<20+(4<<20), 2*limit+5)
	stillServes(t, srv)
}

// TestEnvFlood sends env requests by the hundred, large and many: what
// AcceptEnv, MaxEnvSize and MaxEnv do not allow is refused and not kept.
func TestEnvFlood(t *testing.T) {
	const (
		flood = 500
		large = 200 << 10
	)
	srv := newServer(t, nil)
	client := dial(t, srv)
	ch, reqs, err := client.OpenChannel(wire.Session, nil)
	require.NoError(t, err)
	defer ch.Close()
	go ssh.DiscardRequests(reqs)
	setenv := func(name string, size int) bool {
		ok, err := ch.SendRequest(wire.Env, true, ssh.Marshal(&wire.EnvMsg{Name: name, Value: strings.Repeat("x", size)}))
		require.NoError(t, err)
		return ok
	}

	before := measure()
	start := time.Now()
	accepted := 0
	for i := range flood {
		if setenv(fmt.Sprintf("LC_%d", i), large) {
			accepted++
		}
	}
	took := time.Since(start)
	t.Logf("%d env requests of %d KiB in %v: %d accepted", flood, large>>10, took, accepted)
	assert.Zero(t, accepted, "variables over MaxEnvSize were accepted")
	assertWithin(t, measure().since(before), 5, 4<<20, 5)
	assert.Less(t, took, 30*time.Second)
	stillServes(t, srv)

	assert.False(t, setenv("NOT_ACCEPTED", 1), "a variable outside AcceptEnv")
	assert.True(t, setenv("LANG", DefaultMaxEnvSize-len("LANG=")), "a variable of MaxEnvSize bytes")
	assert.False(t, setenv("LANG", DefaultMaxEnvSize-len("LANG=")+1), "a variable one byte over MaxEnvSize")
	for i := 1; i < DefaultMaxEnv; i++ {
		require.True(t, setenv(fmt.Sprintf("LC_%d", i), 1), "variable %d of MaxEnv", i+1)
	}
	assert.False(t, setenv("LC_ONE_MORE", 1), "a variable past MaxEnv")
	assert.True(t, setenv("LC_1", 2), "setting a variable again")
}

// TestForwardFlood asks one connection for a thousand forwards: past
// MaxForwards they are refused, with no listener, and the connection
// keeps its forwards working.
func TestForwardFlood(t *testing.T) {
	const flood = 1000
	srv := newServer(t, nil)
	client := dial(t, srv)
	before := measure()
	start := time.Now()
	var ports []uint32
	for range flood {
		ok, reply, err := client.SendRequest(wire.TCPIPForward, true, ssh.Marshal(&wire.TCPIPForwardMsg{Addr: "127.0.0.1"}))
		require.NoError(t, err)
		if ok {
			var r wire.TCPIPForwardReply
			require.NoError(t, wire.Parse("reply", reply, &r))
			ports = append(ports, r.Port)
		}
	}
	took := time.Since(start)
	t.Logf("%d tcpip-forward requests in %v: %d granted", flood, took, len(ports))
	assert.Len(t, ports, DefaultMaxForwards)
	assert.Less(t, took, 30*time.Second)
	// Each forward listens on 127.0.0.1 and ::1, with a goroutine each.
	assertWithin(t, measure().since(before), 2*DefaultMaxForwards+5, 2<<20, 2*DefaultMaxForwards+5)

	ok, _, err := client.SendRequest(wire.CancelTCPIPForward, true, ssh.Marshal(&wire.TCPIPForwardMsg{Addr: "127.0.0.1", Port: ports[0]}))
	require.NoError(t, err)
	require.True(t, ok)
	ok, _, err = client.SendRequest(wire.TCPIPForward, true, ssh.Marshal(&wire.TCPIPForwardMsg{Addr: "127.0.0.1"}))
	require.NoError(t, err)
	assert.True(t, ok, "a cancelled forward's place was not freed")
	stillServes(t, srv)
}
