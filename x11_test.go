package sshfwd_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd"
	"github.com/sshfwd/sshfwd/internal/peers"
	"github.com/sshfwd/sshfwd/internal/x11"
	"github.com/sshfwd/sshfwd/sshtest"
)

// xvfbScreen is how xdpyinfo reports the screen peers.StartXvfb sets up.
const xvfbScreen = "dimensions:    1280x1024 pixels"

// useXvfb starts Xvfb and makes it this process's display, as DISPLAY and
// XAUTHORITY name it, for the rest of the test.
func useXvfb(t *testing.T) *peers.Xvfb {
	t.Helper()
	peers.Require(t, peers.XvfbBin, peers.XauthBin, peers.XdpyinfoBin)
	xv := peers.StartXvfb(t)
	t.Setenv("DISPLAY", xv.DisplayString)
	t.Setenv("XAUTHORITY", xv.AuthFile)
	return xv
}

// newSSHSession opens a session channel that the test closes when it ends.
func newSSHSession(t testing.TB, s *sshfwd.Session) *ssh.Session {
	t.Helper()
	sess, err := s.Client().NewSession()
	require.NoError(t, err)
	t.Cleanup(func() { sess.Close() })
	return sess
}

// runForwardingX11 runs cmd on the server with ForwardX11 to this process's
// display and returns what it printed.
func runForwardingX11(t *testing.T, s *sshfwd.Session, cmd string) (string, error) {
	t.Helper()
	sess := newSSHSession(t, s)
	require.NoError(t, s.ForwardX11(testContext(t), sess, ""))
	out, err := sess.CombinedOutput(cmd)
	return string(out), err
}

func TestForwardX11ThroughOpenSSHServer(t *testing.T) {
	useXvfb(t)
	_, s := startSSHD(t)
	out, err := runForwardingX11(t, s, "xdpyinfo")
	require.NoError(t, err, out)
	assert.Contains(t, out, xvfbScreen)
}

func TestForwardX11ThroughSSHTest(t *testing.T) {
	useXvfb(t)
	srv := newServer(t, nil)
	s := dial(t, srv.Addr(), srv.ClientConfig())
	out, err := runForwardingX11(t, s, "xdpyinfo")
	require.NoError(t, err, out)
	assert.Contains(t, out, xvfbScreen)
}

func TestOpenSSHClientX11AgainstSSHTest(t *testing.T) {
	xv := useXvfb(t)
	peers.Require(t, peers.SSHBin)
	srv, key, known := sshtestForOpenSSH(t, nil)
	host, port, err := net.SplitHostPort(srv.Addr())
	require.NoError(t, err)
	cmd := peers.SSHCommand(t, testContext(t), "-X", "-o", "ForwardX11Trusted=yes",
		"-p", port, "-i", key, "-o", "UserKnownHostsFile="+known, "sshtest@"+host, "xdpyinfo")
	cmd.Env = append(os.Environ(), xv.Env()...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), xvfbScreen)
}

func TestForwardX11WrongCookieFails(t *testing.T) {
	useXvfb(t)
	srv := newServer(t, nil)
	s := dial(t, srv.Addr(), srv.ClientConfig())
	out, err := runForwardingX11(t, s, `
		if XAUTHORITY=/dev/null xdpyinfo; then echo "without the cookie: admitted"; exit 1; fi
		xdpyinfo`)
	require.NoError(t, err, out)
	assert.Contains(t, out, "sshfwd: wrong X11 authorization")
	assert.Contains(t, out, xvfbScreen)
}

// fakeDisplay stands in for an X server on a Unix socket: it counts the
// connections that reach it, passes on the setup each one sent, and then
// answers with hashAfterEOF.
type fakeDisplay struct {
	cookie []byte
	conns  atomic.Int32
	setups chan x11.Setup
}

// nextSetup returns the setup of the next X client that reached the display.
func (fd *fakeDisplay) nextSetup(t testing.TB) x11.Setup {
	t.Helper()
	select {
	case s := <-fd.setups:
		return s
	case <-time.After(testTimeout):
		t.Fatal("no X client reached the display")
		return x11.Setup{}
	}
}

// startFakeDisplay makes a fakeDisplay this process's display, with an
// Xauthority file holding its cookie, for the rest of the test.
func startFakeDisplay(t *testing.T) *fakeDisplay {
	t.Helper()
	dir, err := os.MkdirTemp("", "sshfwd")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	// A DISPLAY that is a socket path names the socket with its ":N".
	path := filepath.Join(dir, "x:0")
	host, err := os.Hostname()
	require.NoError(t, err)
	fd := &fakeDisplay{cookie: randomBytes(t, 16), setups: make(chan x11.Setup, 8)}
	auth := filepath.Join(dir, "Xauthority")
	f, err := os.Create(auth)
	require.NoError(t, err)
	require.NoError(t, x11.WriteAuthority(f, []x11.AuthEntry{
		{Family: x11.FamilyLocal, Address: host, Number: "0", Name: "MIT-MAGIC-COOKIE-1", Data: fd.cookie},
	}))
	require.NoError(t, f.Close())
	ln, err := net.Listen("unix", path)
	require.NoError(t, err)
	serve(t, ln, func(c net.Conn) {
		fd.conns.Add(1)
		setup, err := x11.ReadSetup(c)
		if err != nil {
			return
		}
		fd.setups <- setup
		hashAfterEOF(c)
	})
	t.Setenv("DISPLAY", path)
	t.Setenv("XAUTHORITY", auth)
	return fd
}

// remoteDisplay starts a command in sess that prints the display and
// Xauthority file sshtest set up for it and then waits for its input to
// end. It returns the display's TCP address and the 127.0.0.1 entry of the
// file, the cookie an X client on the server would send.
func remoteDisplay(t testing.TB, sess *ssh.Session) (string, x11.AuthEntry) {
	t.Helper()
	stdin, err := sess.StdinPipe()
	require.NoError(t, err)
	stdout, err := sess.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, sess.Start(`echo "$DISPLAY $XAUTHORITY"; exec cat`))
	t.Cleanup(func() { stdin.Close() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	fields := strings.Fields(line)
	require.Len(t, fields, 2, "DISPLAY and XAUTHORITY: %q", line)
	d, err := x11.ParseDisplay(fields[0])
	require.NoError(t, err)
	assert.Equal(t, "localhost", d.Host)
	raw, err := os.ReadFile(fields[1])
	require.NoError(t, err)
	entries, err := x11.ReadAuthority(bytes.NewReader(raw))
	require.NoError(t, err)
	for _, e := range entries {
		if e.Family == x11.FamilyInternet && e.Address == "\x7f\x00\x00\x01" && e.Number == strconv.Itoa(d.Number) {
			return net.JoinHostPort("127.0.0.1", strconv.Itoa(x11.BaseTCPPort+d.Number)), e
		}
	}
	t.Fatalf("no 127.0.0.1 entry for display %d in %s: %+v", d.Number, fields[1], entries)
	return "", x11.AuthEntry{}
}

// xClient connects to the X display at addr as an X client would, sending
// a setup with the given authorization, and returns the connection, which
// the test closes when it ends.
func xClient(t testing.TB, addr, authName string, authData []byte) net.Conn {
	t.Helper()
	return rawXClient(t, addr, x11.Setup{ByteOrder: x11.LSBFirst, Major: 11, AuthName: authName, AuthData: authData}.Marshal())
}

// rawXClient connects to addr and sends setup, which need not be valid.
func rawXClient(t testing.TB, addr string, setup []byte) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(testTimeout)))
	_, err = c.Write(setup)
	require.NoError(t, err)
	return c
}

// requireRefused reads the X server's answer on c to the end and checks it
// is a Failed reply giving reason.
func requireRefused(t testing.TB, c net.Conn, reason string) {
	t.Helper()
	reply, err := io.ReadAll(c)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(reply), 8, "reply %q", reply)
	assert.Equal(t, byte(0), reply[0], "the reply is not Failed")
	require.GreaterOrEqual(t, len(reply), 8+int(reply[1]))
	assert.Equal(t, reason, string(reply[8:8+int(reply[1])]))
}

func TestForwardX11ChecksCookie(t *testing.T) {
	display := startFakeDisplay(t)
	srv := newServer(t, nil)
	s := dial(t, srv.Addr(), srv.ClientConfig())
	sess := newSSHSession(t, s)
	require.NoError(t, s.ForwardX11(testContext(t), sess, ""))
	addr, fake := remoteDisplay(t, sess)
	assert.Equal(t, "MIT-MAGIC-COOKIE-1", fake.Name)
	assert.Len(t, fake.Data, len(display.cookie), "the fake cookie has the real one's length")
	assert.NotEqual(t, display.cookie, fake.Data, "the server got the real cookie")

	t.Run("wrong cookie", func(t *testing.T) {
		requireRefused(t, xClient(t, addr, fake.Name, randomBytes(t, len(fake.Data))), "sshfwd: wrong X11 authorization")
	})
	t.Run("the real cookie", func(t *testing.T) {
		requireRefused(t, xClient(t, addr, fake.Name, display.cookie), "sshfwd: wrong X11 authorization")
	})
	t.Run("other protocol", func(t *testing.T) {
		requireRefused(t, xClient(t, addr, "XDM-AUTHORIZATION-1", fake.Data), "sshfwd: wrong X11 authorization")
	})
	t.Run("no authorization", func(t *testing.T) {
		requireRefused(t, xClient(t, addr, "", nil), "sshfwd: wrong X11 authorization")
	})
	t.Run("malformed setup", func(t *testing.T) {
		c := rawXClient(t, addr, []byte("x\x00\x0b\x00\x00\x00\x00\x00\x00\x00\x00\x00"))
		reply, err := io.ReadAll(c)
		require.NoError(t, err)
		assert.Empty(t, reply)
	})
	t.Run("fake cookie", func(t *testing.T) {
		c := xClient(t, addr, fake.Name, fake.Data)
		data := randomBytes(t, 100<<10)
		require.NoError(t, roundTrip(c, data))
		setup := display.nextSetup(t)
		assert.Equal(t, x11.Setup{ByteOrder: x11.LSBFirst, Major: 11, AuthName: "MIT-MAGIC-COOKIE-1", AuthData: display.cookie}, setup)
	})
	assert.Equal(t, int32(1), display.conns.Load(), "connections that reached the display")
}

func TestForwardX11EndsWithContext(t *testing.T) {
	display := startFakeDisplay(t)
	srv := newServer(t, nil)
	s := dial(t, srv.Addr(), srv.ClientConfig())
	sess := newSSHSession(t, s)
	ctx, cancel := context.WithCancel(testContext(t))
	require.NoError(t, s.ForwardX11(ctx, sess, ""))
	addr, fake := remoteDisplay(t, sess)
	c := xClient(t, addr, fake.Name, fake.Data)
	display.nextSetup(t)
	cancel()
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Empty(t, got, "the X connection outlived ForwardX11's context")
}

func TestForwardX11Single(t *testing.T) {
	useXvfb(t)
	srv := newServer(t, nil)
	s := dial(t, srv.Addr(), srv.ClientConfig())
	sess := newSSHSession(t, s)
	require.NoError(t, s.ForwardX11Single(testContext(t), sess, ""))
	out, err := sess.CombinedOutput(`
		xdpyinfo | grep dimensions || exit 1
		if xdpyinfo; then echo "second X client: admitted"; exit 1; fi`)
	require.NoError(t, err, string(out))
	assert.Contains(t, string(out), "1280x1024")
}

func TestForwardX11BadDisplay(t *testing.T) {
	srv := newServer(t, nil)
	s := dial(t, srv.Addr(), srv.ClientConfig())
	sess := newSSHSession(t, s)
	ctx := testContext(t)

	t.Setenv("DISPLAY", "")
	err := s.ForwardX11(ctx, sess, "")
	assert.ErrorContains(t, err, "sshfwd: ForwardX11: no display given and $DISPLAY is empty")
	assert.ErrorContains(t, s.ForwardX11(ctx, sess, "no-colon"), "sshfwd: ForwardX11: ")

	ended, cancel := context.WithCancel(ctx)
	cancel()
	assert.ErrorIs(t, s.ForwardX11(ended, sess, ":0"), context.Canceled)

	bad := filepath.Join(t.TempDir(), "Xauthority")
	require.NoError(t, os.WriteFile(bad, []byte{0, 1, 0}, 0o600))
	t.Setenv("XAUTHORITY", bad)
	assert.ErrorContains(t, s.ForwardX11(ctx, sess, ":0"), "truncated")

	// None of those reached the server, which refuses a second x11-req.
	t.Setenv("XAUTHORITY", filepath.Join(t.TempDir(), "missing"))
	assert.NoError(t, s.ForwardX11(ctx, sess, ":0"))
}

func TestRequestX11(t *testing.T) {
	srv := newServer(t, nil)
	s := dial(t, srv.Addr(), srv.ClientConfig())
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)

	var cookies []string
	for range 2 {
		req, err := s.RequestX11(newSSHSession(t, s), sshfwd.X11Request{})
		require.NoError(t, err)
		assert.Equal(t, "MIT-MAGIC-COOKIE-1", req.AuthProtocol)
		assert.Regexp(t, hex32, req.AuthCookie)
		cookies = append(cookies, req.AuthCookie)
	}
	assert.NotEqual(t, cookies[0], cookies[1])

	given := sshfwd.X11Request{SingleConnection: true, AuthProtocol: "MIT-MAGIC-COOKIE-1", AuthCookie: "00ff00FF", ScreenNumber: 2}
	got, err := s.RequestX11(newSSHSession(t, s), given)
	require.NoError(t, err)
	assert.Equal(t, given, got)
}

func TestRequestX11BadInput(t *testing.T) {
	srv := newServer(t, nil)
	s := dial(t, srv.Addr(), srv.ClientConfig())
	sess := newSSHSession(t, s)
	for _, tc := range []struct {
		name string
		sess *ssh.Session
		req  sshfwd.X11Request
	}{
		{"nil session", nil, sshfwd.X11Request{}},
		{"odd cookie", sess, sshfwd.X11Request{AuthCookie: "abc"}},
		{"non-hex cookie", sess, sshfwd.X11Request{AuthCookie: "zz"}},
		{"space in protocol", sess, sshfwd.X11Request{AuthProtocol: "MIT MAGIC"}},
		{"NUL in protocol", sess, sshfwd.X11Request{AuthProtocol: "MIT\x00"}},
		{"negative screen", sess, sshfwd.X11Request{ScreenNumber: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.RequestX11(tc.sess, tc.req)
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), "sshfwd: RequestX11: "), err.Error())
		})
	}
	// Nothing was sent: the server refuses a second x11-req on a session.
	_, err := s.RequestX11(sess, sshfwd.X11Request{})
	assert.NoError(t, err)
}

func TestRequestX11Denied(t *testing.T) {
	srv := newServer(t, &sshtest.Config{DisableX11: true})
	s := dial(t, srv.Addr(), srv.ClientConfig())
	_, err := s.RequestX11(newSSHSession(t, s), sshfwd.X11Request{})
	assert.ErrorIs(t, err, sshfwd.ErrRequestDenied)
	assert.ErrorIs(t, s.ForwardX11(testContext(t), newSSHSession(t, s), ":0"), sshfwd.ErrRequestDenied)
}

func TestAcceptX11Originator(t *testing.T) {
	srv := newServer(t, nil)
	s := dial(t, srv.Addr(), srv.ClientConfig())
	sess := newSSHSession(t, s)
	req, err := s.RequestX11(sess, sshfwd.X11Request{})
	require.NoError(t, err)
	addr, auth := remoteDisplay(t, sess)
	assert.Equal(t, req.AuthCookie, hex.EncodeToString(auth.Data))

	c := xClient(t, addr, auth.Name, auth.Data)
	ch, err := s.AcceptX11(testContext(t))
	require.NoError(t, err)
	defer ch.Close()
	assert.Equal(t, c.LocalAddr().String(), ch.RemoteAddr().String())
	require.NoError(t, ch.SetDeadline(time.Now().Add(testTimeout)))
	setup, err := x11.ReadSetup(ch)
	require.NoError(t, err)
	assert.Equal(t, hex.EncodeToString(setup.AuthData), req.AuthCookie)

	reason := "sshfwd test: no X here"
	_, err = ch.Write(x11.RefuseReply(setup.ByteOrder, setup.Major, setup.Minor, reason))
	require.NoError(t, err)
	require.NoError(t, ch.CloseWrite())
	requireRefused(t, c, reason)
}

func TestAcceptX11Xdpyinfo(t *testing.T) {
	peers.Require(t, peers.XdpyinfoBin)
	srv := newServer(t, nil)
	s := dial(t, srv.Addr(), srv.ClientConfig())
	sess := newSSHSession(t, s)
	req, err := s.RequestX11(sess, sshfwd.X11Request{})
	require.NoError(t, err)
	type result struct {
		out []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := sess.CombinedOutput("xdpyinfo")
		done <- result{out, err}
	}()

	ch, err := s.AcceptX11(testContext(t))
	require.NoError(t, err)
	defer ch.Close()
	origin, ok := ch.RemoteAddr().(*net.TCPAddr)
	require.True(t, ok, "RemoteAddr %v", ch.RemoteAddr())
	assert.True(t, origin.IP.IsLoopback() && origin.Port > 0, "originator %v", origin)
	require.NoError(t, ch.SetDeadline(time.Now().Add(testTimeout)))
	setup, err := x11.ReadSetup(ch)
	require.NoError(t, err)
	assert.Equal(t, req.AuthProtocol, setup.AuthName)
	assert.Equal(t, req.AuthCookie, hex.EncodeToString(setup.AuthData))
	reason := "sshfwd test: no X here"
	_, err = ch.Write(x11.RefuseReply(setup.ByteOrder, setup.Major, setup.Minor, reason))
	require.NoError(t, err)
	require.NoError(t, ch.Close())

	r := <-done
	require.Error(t, r.err, "%s", r.out)
	assert.Contains(t, string(r.out), reason)
}

func TestForwardX11AfterClose(t *testing.T) {
	srv := newServer(t, nil)
	s := dial(t, srv.Addr(), srv.ClientConfig())
	sess := newSSHSession(t, s)
	require.NoError(t, s.Close())
	err := s.ForwardX11(testContext(t), sess, ":0")
	require.Error(t, err)
	_, err = s.AcceptX11(testContext(t))
	assert.True(t, errors.Is(err, net.ErrClosed), "%v", err)
}
