package sshfwd_test

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd"
	"github.com/sshfwd/sshfwd/internal/wire"
	"github.com/sshfwd/sshfwd/internal/x11"
)

// A hostile server is an SSH server written on x/crypto that misbehaves on
// purpose. It runs in a child process, the test binary itself started again
// with hostileEnv naming what it does, so that the goroutines and the heap
// of the client can be measured alone. It serves one connection, reports
// what happened as lines on its standard output, and exits when the
// connection ends or its standard input closes.
const hostileEnv = "SSHFWD_HOSTILE"

// hostile is the test's end of a hostile server.
type hostile struct {
	addr  string
	cfg   *ssh.ClientConfig
	lines chan string
}

// startHostile starts a hostile server doing scenario with args; the test
// stops it, by its PID, when it ends.
func startHostile(t testing.TB, scenario string, args ...string) *hostile {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), hostileEnv+"="+strings.Join(append([]string{scenario}, args...), " "))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	h := &hostile{lines: make(chan string, 64)}
	go func() {
		defer close(h.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
	}()
	f := h.expect(t, "listening")
	require.Len(t, f, 2)
	key, err := base64.StdEncoding.DecodeString(f[1])
	require.NoError(t, err)
	hostKey, err := ssh.ParsePublicKey(key)
	require.NoError(t, err)
	h.addr = f[0]
	h.cfg = &ssh.ClientConfig{User: "victim", HostKeyCallback: ssh.FixedHostKey(hostKey), Timeout: testTimeout}
	return h
}

// expect waits for the server's next report that begins with word and
// returns its other fields.
func (h *hostile) expect(t testing.TB, word string) []string {
	t.Helper()
	timeout := time.After(testTimeout)
	for {
		select {
		case line, ok := <-h.lines:
			if !ok {
				t.Fatalf("the hostile server ended without reporting %q", word)
			}
			if f := strings.Fields(line); len(f) > 0 && f[0] == word {
				return f[1:]
			}
		case <-timeout:
			t.Fatalf("the hostile server did not report %q", word)
		}
	}
}

// counts parses a report of name=number fields.
func counts(t testing.TB, fields []string) map[string]int {
	t.Helper()
	m := map[string]int{}
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		require.True(t, ok, "field %q", f)
		n, err := strconv.Atoi(v)
		require.NoError(t, err)
		m[k] = n
	}
	return m
}

// footprint is what this process holds: goroutines, and heap in use after a
// collection.
type footprint struct {
	goroutines int
	heap       uint64
}

// measure takes the footprint once the number of goroutines has stopped
// changing, so that ones just ending are not counted.
func measure() footprint {
	n := runtime.NumGoroutine()
	for stable := 0; stable < 5; {
		time.Sleep(20 * time.Millisecond)
		if m := runtime.NumGoroutine(); m == n {
			stable++
		} else {
			n, stable = m, 0
		}
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return footprint{goroutines: n, heap: ms.HeapAlloc}
}

// growth returns how much f grew from before, in goroutines and MiB.
func (f footprint) growth(before footprint) (int, float64) {
	return f.goroutines - before.goroutines, (float64(f.heap) - float64(before.heap)) / (1 << 20)
}

// runHostile is the child process: it serves one connection as scenario
// says, and returns the exit code.
func runHostile(spec string) int {
	fields := strings.Fields(spec)
	scenario, ok := scenarios[fields[0]]
	if !ok {
		fmt.Fprintln(os.Stderr, "no hostile scenario", fields[0])
		return 2
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return 1
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return 1
	}
	cfg := &ssh.ServerConfig{NoClientAuth: true}
	cfg.AddHostKey(signer)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 1
	}
	h := &hostileConn{}
	h.report("listening %s %s", ln.Addr(), base64.StdEncoding.EncodeToString(signer.PublicKey().Marshal()))
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	nc, err := ln.Accept()
	if err != nil {
		return 1
	}
	ln.Close()
	conn, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	if err != nil {
		return 1
	}
	h.conn = conn
	scenario(h, chans, reqs, fields[1:])
	conn.Wait()
	return 0
}

// hostileConn is the child's connection and what it reports.
type hostileConn struct {
	conn *ssh.ServerConn
	mu   sync.Mutex // serializes reports
}

func (h *hostileConn) report(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fmt.Printf(format+"\n", args...)
}

// scenarios are what a hostile server can do: each gets the connection's
// incoming channels and global requests and the arguments after its name.
var scenarios = map[string]func(h *hostileConn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, args []string){
	// silent accepts channels of type session, then never answers a
	// request on them, never answers a global request and never answers
	// the opening of any other channel.
	"silent": func(h *hostileConn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, _ []string) {
		var held []any // every request and open stays unanswered, and referenced
		var mu sync.Mutex
		hold := func(x any) {
			mu.Lock()
			held = append(held, x)
			mu.Unlock()
		}
		go func() {
			for r := range reqs {
				hold(r)
			}
		}()
		for nc := range chans {
			if nc.ChannelType() != "session" {
				hold(nc)
				continue
			}
			ch, creqs, err := nc.Accept()
			if err != nil {
				continue
			}
			hold(ch)
			go func() {
				for r := range creqs {
					hold(r)
				}
			}()
		}
	},

	// x11-flood N MODE grants x11-req and then opens N x11 channels, each
	// starting an X connection setup and sending nothing more: with MODE
	// "big" the header declares 64 KiB of authorization, with "silent" a
	// cookie of the usual length. It keeps every channel open and reports
	// how the opens went (see flood). Channels of type direct-tcpip are
	// echoed.
	"x11-flood": func(h *hostileConn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, args []string) {
		n, _ := strconv.Atoi(args[0])
		header := x11.Setup{ByteOrder: x11.LSBFirst, Major: 11, AuthName: "MIT-MAGIC-COOKIE-1", AuthData: make([]byte, 16)}.Marshal()[:12]
		if args[1] == "big" {
			header[6], header[7], header[8], header[9] = 0xf0, 0x7f, 0xf0, 0x7f // 2 × 32,752 bytes
		}
		go ssh.DiscardRequests(reqs)
		h.serveChannels(chans, func(r *ssh.Request) bool {
			if r.Type == wire.X11Req {
				go h.flood(n, func(ch ssh.Channel) { ch.Write(header) })
			}
			return true
		})
	},

	// x11-refused N refuses x11-req and then opens N x11 channels anyway,
	// reporting how the opens went.
	"x11-refused": func(h *hostileConn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, args []string) {
		n, _ := strconv.Atoi(args[0])
		go ssh.DiscardRequests(reqs)
		h.serveChannels(chans, func(r *ssh.Request) bool {
			if r.Type != wire.X11Req {
				return true
			}
			go func() {
				time.Sleep(50 * time.Millisecond) // after the refusal reached the client
				h.flood(n, func(ssh.Channel) {})
			}()
			return false
		})
	},
}

// The scenarios of remote forwarding.
func init() {
	// forward-race opens a forwarded-tcpip channel for every tcpip-forward
	// request before refusing it, and reports "raced OUTCOME" for it.
	scenarios["forward-race"] = func(h *hostileConn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, _ []string) {
		go h.serveChannels(chans, func(*ssh.Request) bool { return false })
		h.answerForwards(reqs, func(m wire.TCPIPForwardMsg) (bool, uint32) {
			raced := make(chan error, 1)
			go func() {
				ch, creqs, err := h.conn.OpenChannel(wire.ForwardedTCPIP, forwardedTCPIP(m.Addr, 40001))
				if err == nil {
					go ssh.DiscardRequests(creqs)
					ch.Close()
				}
				raced <- err
			}()
			// The client holds the channel unanswered until someone
			// accepts it; give it time to arrive first.
			select {
			case err := <-raced:
				h.report("raced %s before the answer", outcome(err))
			case <-time.After(200 * time.Millisecond):
				go func() { h.report("raced %s", outcome(<-raced)) }()
			}
			return false, 0
		}, true)
	}

	// asyncssh-port0 grants a tcpip-forward for port 0 as port 43210, then
	// opens a forwarded-tcpip channel for it naming port 0, as asyncssh
	// before 2.13 did, sends "hello" and reports "sent OUTCOME".
	scenarios["asyncssh-port0"] = func(h *hostileConn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, _ []string) {
		go h.serveChannels(chans, func(*ssh.Request) bool { return false })
		h.answerForwards(reqs, func(m wire.TCPIPForwardMsg) (bool, uint32) {
			go func() {
				time.Sleep(50 * time.Millisecond) // after the grant
				ch, creqs, err := h.conn.OpenChannel(wire.ForwardedTCPIP, forwardedTCPIP(m.Addr, 0))
				if err == nil {
					go ssh.DiscardRequests(creqs)
					io.WriteString(ch, "hello")
					ch.CloseWrite()
					io.Copy(io.Discard, ch)
					ch.Close()
				}
				h.report("sent %s", outcome(err))
			}()
			return true, 43210
		}, true)
	}

	// remote-flood N grants every tcpip-forward, reporting "bound PORT",
	// then opens N forwarded-tcpip channels for it and keeps those the
	// client accepts open, reporting how the opens went.
	scenarios["remote-flood"] = func(h *hostileConn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, args []string) {
		n, _ := strconv.Atoi(args[0])
		go h.serveChannels(chans, func(*ssh.Request) bool { return false })
		h.answerForwards(reqs, func(m wire.TCPIPForwardMsg) (bool, uint32) {
			go func() {
				time.Sleep(50 * time.Millisecond)
				h.floodWith(n, wire.ForwardedTCPIP, func(int) []byte { return forwardedTCPIP(m.Addr, 43211) }, func(ssh.Channel) {})
			}()
			return true, 43211
		}, true)
	}

	// cancel-refused grants every tcpip-forward and refuses every cancel.
	scenarios["cancel-refused"] = func(h *hostileConn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, _ []string) {
		go h.serveChannels(chans, func(*ssh.Request) bool { return false })
		h.answerForwards(reqs, func(wire.TCPIPForwardMsg) (bool, uint32) { return true, 43212 }, false)
	}
}

// serveChannels accepts session channels, answering each of their
// requests with answer's verdict, and echoes direct-tcpip channels.
func (h *hostileConn) serveChannels(chans <-chan ssh.NewChannel, answer func(*ssh.Request) bool) {
	for nc := range chans {
		switch nc.ChannelType() {
		case "session":
			ch, creqs, err := nc.Accept()
			if err != nil {
				continue
			}
			go func() {
				defer ch.Close()
				for r := range creqs {
					r.Reply(answer(r), nil)
				}
			}()
		case wire.DirectTCPIP:
			ch, creqs, err := nc.Accept()
			if err != nil {
				continue
			}
			go ssh.DiscardRequests(creqs)
			go func() {
				defer ch.Close()
				io.Copy(ch, ch)
			}()
		default:
			nc.Reject(ssh.UnknownChannelType, "hostile")
		}
	}
}

// flood opens n x11 channels, eight at a time, does what to each one the
// client accepted and keeps it open. It reports how the opens went as
// "opens accepted=A resource-shortage=R administratively-prohibited=P
// connect-failed=C other=O".
func (h *hostileConn) flood(n int, what func(ssh.Channel)) {
	h.floodWith(n, wire.X11, func(i int) []byte {
		return ssh.Marshal(&wire.X11OpenMsg{OriginAddr: "127.0.0.1", OriginPort: uint32(40000 + i)})
	}, what)
}

// floodWith is flood for channels of type typ, the i-th opened with
// payload(i).
func (h *hostileConn) floodWith(n int, typ string, payload func(i int) []byte, what func(ssh.Channel)) {
	var mu sync.Mutex
	outcomes := map[string]int{}
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				ch, creqs, err := h.conn.OpenChannel(typ, payload(i))
				key := outcome(err)
				if err == nil {
					key = "accepted"
					go ssh.DiscardRequests(creqs)
					what(ch)
				}
				mu.Lock()
				outcomes[key]++
				mu.Unlock()
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	h.report("opens accepted=%d resource-shortage=%d administratively-prohibited=%d connect-failed=%d other=%d",
		outcomes["accepted"], outcomes["resource-shortage"], outcomes["administratively-prohibited"], outcomes["connect-failed"], outcomes["other"])
}

// outcome names how an open went: "accepted", the reason of a refusal in
// lower case with dashes, or "other" for a broken connection.
func outcome(err error) string {
	if err == nil {
		return "accepted"
	}
	if oce, ok := err.(*ssh.OpenChannelError); ok {
		return strings.ReplaceAll(strings.ToLower(oce.Reason.String()), " ", "-")
	}
	return "other"
}

// forwardedTCPIP is the payload of a forwarded-tcpip channel for
// host:port, from a made-up originator.
func forwardedTCPIP(host string, port uint32) []byte {
	return ssh.Marshal(&wire.TCPIP{Host: host, Port: port, OriginHost: "192.0.2.7", OriginPort: 40000})
}

// answerForwards answers tcpip-forward requests as answer says (granted,
// and the port to report), and cancel-tcpip-forward with cancel; other
// global requests get failure. Each answer is given in a goroutine of its
// own, after answer returned.
func (h *hostileConn) answerForwards(reqs <-chan *ssh.Request, answer func(m wire.TCPIPForwardMsg) (bool, uint32), cancel bool) {
	for r := range reqs {
		switch r.Type {
		case wire.TCPIPForward:
			var m wire.TCPIPForwardMsg
			if ssh.Unmarshal(r.Payload, &m) != nil {
				r.Reply(false, nil)
				continue
			}
			go func() {
				ok, port := answer(m)
				var reply []byte
				if ok && m.Port == 0 {
					reply = ssh.Marshal(&wire.TCPIPForwardReply{Port: port})
				}
				r.Reply(ok, reply)
			}()
		case wire.CancelTCPIPForward:
			r.Reply(cancel, nil)
		default:
			r.Reply(false, nil)
		}
	}
}

// echoes checks that s still forwards: a round trip through an echoing
// direct-tcpip channel of the hostile server.
func echoes(t testing.TB, s *sshfwd.Session) {
	t.Helper()
	ch, err := s.OpenForward(testContext(t), "echo.invalid", 7, "127.0.0.1", 0)
	require.NoError(t, err)
	defer ch.Close()
	_, err = io.WriteString(ch, "still here")
	require.NoError(t, err)
	buf := make([]byte, len("still here"))
	_, err = io.ReadFull(ch, buf)
	require.NoError(t, err)
	require.Equal(t, "still here", string(buf))
}

func TestX11FloodIsBounded(t *testing.T) {
	const opens = 500
	for _, mode := range []string{"big", "silent"} {
		t.Run(mode, func(t *testing.T) {
			startFakeDisplay(t)
			h := startHostile(t, "x11-flood", strconv.Itoa(opens), mode)
			s := dial(t, h.addr, h.cfg)
			sess := newSSHSession(t, s)
			before := measure()
			require.NoError(t, s.ForwardX11(testContext(t), sess, ""))
			got := counts(t, h.expect(t, "opens"))
			goroutines, heap := measure().growth(before)
			t.Logf("%d x11 opens (%s setups): %v; goroutines %+d, heap %+.2f MiB", opens, mode, got, goroutines, heap)
			require.Equal(t, opens, got["accepted"]+got["resource-shortage"], "every open was accepted or refused for want of room")
			if mode == "silent" {
				// The setups that never come hold their slots for the
				// setup timeout; everything beyond the bound is refused.
				require.LessOrEqual(t, got["accepted"], 32)
			}
			require.Less(t, goroutines, 16*6+20, "goroutines")
			require.Less(t, heap, 4.0, "heap growth in MiB")
			echoes(t, s)
		})
	}
}

func TestX11ChannelsRefusedAfterX11Refused(t *testing.T) {
	h := startHostile(t, "x11-refused", "40")
	s := dial(t, h.addr, h.cfg)
	sess := newSSHSession(t, s)
	_, err := s.RequestX11(sess, sshfwd.X11Request{})
	require.ErrorIs(t, err, sshfwd.ErrRequestDenied)
	got := counts(t, h.expect(t, "opens"))
	require.Equal(t, 40, got["administratively-prohibited"], "%v", got)
	ctx, cancel := context.WithTimeout(testContext(t), 100*time.Millisecond)
	defer cancel()
	_, err = s.AcceptX11(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded, "nothing was queued")
}

// withWaitingClient runs serve on a loopback listener with a client
// connected that has sent hello, and returns serve's error once the client
// was let go, or an error saying it was not.
func withWaitingClient(t testing.TB, hello []byte, serve func(net.Listener) error) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	c := dialTCP(t, ln.Addr().String())
	_, err = c.Write(hello)
	require.NoError(t, err)
	err = serve(ln)
	if _, rerr := io.ReadAll(c); rerr != nil {
		return fmt.Errorf("the waiting client was not let go: %w", rerr)
	}
	return err
}

// TestCallsHonourContextAgainstSilentServer makes every call that waits on
// the server wait on one that never answers: each must return once its ctx
// ends, and Close must end everything they left waiting.
func TestCallsHonourContextAgainstSilentServer(t *testing.T) {
	startFakeDisplay(t)
	h := startHostile(t, "silent")
	s := dial(t, h.addr, h.cfg)
	sess := newSSHSession(t, s)
	silentTCP, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer silentTCP.Close()

	calls := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"Dial", func(ctx context.Context) error {
			s, err := sshfwd.Dial(ctx, "tcp", silentTCP.Addr().String(), h.cfg)
			if err == nil {
				s.Close()
			}
			return err
		}},
		{"ListenForward", func(ctx context.Context) error {
			_, err := s.ListenForward(ctx, "127.0.0.1", 0)
			return err
		}},
		{"ListenContext tcp", func(ctx context.Context) error {
			_, err := s.ListenContext(ctx, "tcp", "127.0.0.1:0")
			return err
		}},
		{"ListenContext unix", func(ctx context.Context) error {
			_, err := s.ListenContext(ctx, "unix", "/tmp/silent.sock")
			return err
		}},
		{"CancelForward", func(ctx context.Context) error { return s.CancelForward(ctx, "127.0.0.1", 8080) }},
		// A client waiting for its channel, which the server never opens,
		// must not hold up the forward's end, and is let go then.
		{"ForwardLocal", func(ctx context.Context) error {
			return withWaitingClient(t, nil, func(ln net.Listener) error { return s.ForwardLocal(ctx, ln, "127.0.0.1:80") })
		}},
		{"ServeSOCKS", func(ctx context.Context) error {
			connect := append([]byte{5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1}, 0, 80)
			return withWaitingClient(t, connect, func(ln net.Listener) error { return s.ServeSOCKS(ctx, ln) })
		}},
		{"ForwardRemote", func(ctx context.Context) error { return s.ForwardRemote(ctx, "127.0.0.1:0", "127.0.0.1:1") }},
		{"ServeRemote", func(ctx context.Context) error {
			return s.ServeRemote(ctx, sshfwd.RemoteForward{RemoteAddr: "127.0.0.1:0", LocalAddr: "127.0.0.1:1", MaxConns: 1})
		}},
		{"ServeRemoteSOCKS", func(ctx context.Context) error { return s.ServeRemoteSOCKS(ctx, "127.0.0.1:0") }},
		{"OpenForward", func(ctx context.Context) error {
			_, err := s.OpenForward(ctx, "127.0.0.1", 80, "127.0.0.1", 0)
			return err
		}},
		{"OpenForwardUnix", func(ctx context.Context) error {
			_, err := s.OpenForwardUnix(ctx, "/tmp/x.sock", "", 0)
			return err
		}},
		{"DialContext", func(ctx context.Context) error {
			_, err := s.DialContext(ctx, "tcp", "127.0.0.1:80")
			return err
		}},
		{"DialSSH", func(ctx context.Context) error {
			_, err := s.DialSSH(ctx, "127.0.0.1:22", h.cfg)
			return err
		}},
		{"RequestX11Context", func(ctx context.Context) error {
			_, err := s.RequestX11Context(ctx, sess, sshfwd.X11Request{})
			return err
		}},
		{"ForwardX11", func(ctx context.Context) error { return s.ForwardX11(ctx, sess, "") }},
		{"KeepAlive", func(ctx context.Context) error { return s.KeepAlive(ctx, 10*time.Millisecond, 1000) }},
		{"AcceptForward", func(ctx context.Context) error {
			_, _, err := s.AcceptForward(ctx)
			return err
		}},
		{"AcceptX11", func(ctx context.Context) error {
			_, err := s.AcceptX11(ctx)
			return err
		}},
	}
	const wait = 200 * time.Millisecond
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(testContext(t), wait)
			defer cancel()
			start := time.Now()
			done := make(chan error, 1)
			go func() { done <- c.call(ctx) }()
			err := receive(t, done, c.name+" did not return")
			late := time.Since(start) - wait
			require.ErrorIs(t, err, context.DeadlineExceeded)
			require.Less(t, late, time.Second, "returned %v after its ctx ended", late)
		})
	}
	start := time.Now()
	require.NoError(t, s.Close())
	require.Less(t, time.Since(start), 5*time.Second, "Close")
}

func TestRefusedForwardDropsItsChannels(t *testing.T) {
	for _, how := range []string{"ListenForward", "Listen"} {
		t.Run(how, func(t *testing.T) {
			h := startHostile(t, "forward-race")
			s := dial(t, h.addr, h.cfg)
			var err error
			if how == "Listen" {
				_, err = s.Listen("tcp", "127.0.0.1:0")
			} else {
				_, err = s.ListenForward(testContext(t), "127.0.0.1", 0)
			}
			require.ErrorIs(t, err, sshfwd.ErrRequestDenied)
			raced := h.expect(t, "raced")
			require.Equal(t, []string{"administratively-prohibited"}, raced, "the channel that raced the refusal")
			ctx, cancel := context.WithTimeout(testContext(t), 100*time.Millisecond)
			defer cancel()
			_, _, err = s.AcceptForward(ctx)
			require.ErrorIs(t, err, context.DeadlineExceeded)
		})
	}
}

func TestForwardedPortZeroFromAsyncssh(t *testing.T) {
	h := startHostile(t, "asyncssh-port0")
	s := dial(t, h.addr, h.cfg)
	port, err := s.ListenForward(testContext(t), "127.0.0.1", 0)
	require.NoError(t, err)
	require.Equal(t, 43210, port)
	ch, dport, err := s.AcceptForward(testContext(t))
	require.NoError(t, err)
	defer ch.Close()
	require.Equal(t, 43210, dport, "the bound port, not the 0 the server sent")
	require.Equal(t, "127.0.0.1:43210", ch.LocalAddr().String())
	got, err := io.ReadAll(ch)
	require.NoError(t, err)
	require.Equal(t, "hello", string(got))
	require.NoError(t, ch.Close())
	require.Equal(t, []string{"accepted"}, h.expect(t, "sent"))
}

func TestServeRemoteMaxConnsUnderFlood(t *testing.T) {
	const opens, maxConns = 200, 4
	hold := tcpServer(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	h := startHostile(t, "remote-flood", strconv.Itoa(opens))
	s := dial(t, h.addr, h.cfg)
	before := measure()
	ctx, cancel := context.WithCancel(testContext(t))
	done := make(chan error, 1)
	go func() {
		done <- s.ServeRemote(ctx, sshfwd.RemoteForward{RemoteAddr: "127.0.0.1:0", LocalAddr: hold.String(), MaxConns: maxConns})
	}()
	got := counts(t, h.expect(t, "opens"))
	goroutines, heap := measure().growth(before)
	t.Logf("%d forwarded-tcpip opens with MaxConns %d: %v; goroutines %+d, heap %+.2f MiB", opens, maxConns, got, goroutines, heap)
	require.Equal(t, maxConns, got["accepted"])
	require.Equal(t, opens-maxConns, got["resource-shortage"])
	require.Less(t, goroutines, maxConns*12+20)
	cancel()
	require.ErrorIs(t, receive(t, done, "ServeRemote did not return"), context.Canceled)
}

func TestListenerCloseNamesFailedCancel(t *testing.T) {
	h := startHostile(t, "cancel-refused")
	s := dial(t, h.addr, h.cfg)
	ln, err := s.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	err = ln.Close()
	var oe *net.OpError
	require.ErrorAs(t, err, &oe)
	require.Equal(t, "close", oe.Op)
	require.ErrorIs(t, err, sshfwd.ErrRequestDenied)
	require.Contains(t, err.Error(), "cancel-tcpip-forward")
	require.Equal(t, 1, strings.Count(err.Error(), "sshfwd:"), err.Error())
}
