package sshtest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/internal/wire"
	"github.com/sshfwd/sshfwd/internal/x11"
)

const testCookie = "00112233445566778899aabbccddeeff"

// x11Req sends an x11-req on sess and returns the server's answer.
func x11Req(t testing.TB, sess *ssh.Session, msg wire.X11ReqMsg) bool {
	t.Helper()
	ok, err := sess.SendRequest(wire.X11Req, true, ssh.Marshal(&msg))
	require.NoError(t, err)
	return ok
}

// remoteX11 is what a session's command sees of the display x11-req set
// up.
type remoteX11 struct {
	display   string // $DISPLAY
	number    int
	authority string // $XAUTHORITY
}

// startShowingX11 runs a command in sess that prints DISPLAY and XAUTHORITY
// and then waits until the returned stdin is closed, which the test does
// when it ends.
func startShowingX11(t testing.TB, sess *ssh.Session) (remoteX11, io.Closer) {
	t.Helper()
	stdin, err := sess.StdinPipe()
	require.NoError(t, err)
	t.Cleanup(func() { stdin.Close() })
	stdout, err := sess.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, sess.Start(`echo "$DISPLAY"; echo "$XAUTHORITY"; exec cat`))
	r := bufio.NewReader(stdout)
	var x remoteX11
	for _, dst := range []*string{&x.display, &x.authority} {
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		*dst = line[:len(line)-1]
	}
	d, err := x11.ParseDisplay(x.display)
	require.NoError(t, err)
	x.number = d.Number
	return x, stdin
}

func (x remoteX11) tcpAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(x11.BaseTCPPort+x.number))
}

func (x remoteX11) socket() string {
	return filepath.Join(x11SocketDir, "X"+strconv.Itoa(x.number))
}

// nextX11 waits for the next x11 channel open the client receives.
func nextX11(t testing.TB, x11s <-chan ssh.NewChannel) ssh.NewChannel {
	t.Helper()
	select {
	case nch := <-x11s:
		return nch
	case <-time.After(20 * time.Second):
		t.Fatal("no x11 channel was opened")
		return nil
	}
}

// echoX11 accepts an x11 channel and echoes it, checking that it names
// origin as the X client.
func echoX11(t testing.TB, nch ssh.NewChannel, originAddr string, originPort int) {
	t.Helper()
	var msg wire.X11OpenMsg
	require.NoError(t, wire.Parse(wire.X11, nch.ExtraData(), &msg))
	assert.Equal(t, wire.X11OpenMsg{OriginAddr: originAddr, OriginPort: uint32(originPort)}, msg)
	ch, reqs, err := nch.Accept()
	require.NoError(t, err)
	go ssh.DiscardRequests(reqs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(ch, ch)
		ch.CloseWrite()
	}()
	t.Cleanup(func() {
		ch.Close()
		<-done
	})
}

// canConnect reports whether something listens at address.
func canConnect(network, address string) bool {
	c, err := net.Dial(network, address)
	if err == nil {
		c.Close()
	}
	return err == nil
}

func TestX11Forwarding(t *testing.T) {
	srv := newServer(t, nil)
	client := dial(t, srv)
	x11s := client.HandleChannelOpen(wire.X11)
	sess := newSession(t, client)
	require.True(t, x11Req(t, sess, wire.X11ReqMsg{AuthProtocol: "MIT-MAGIC-COOKIE-1", AuthCookie: testCookie, ScreenNumber: 1}))
	x, stdin := startShowingX11(t, sess)

	assert.Equal(t, fmt.Sprintf("localhost:%d.1", x.number), x.display)
	assert.GreaterOrEqual(t, x.number, firstX11Display)
	fi, err := os.Stat(x.authority)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	raw, err := os.ReadFile(x.authority)
	require.NoError(t, err)
	entries, err := x11.ReadAuthority(bytes.NewReader(raw))
	require.NoError(t, err)
	host, err := os.Hostname()
	require.NoError(t, err)
	cookie := []byte{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}
	number := strconv.Itoa(x.number)
	assert.Equal(t, []x11.AuthEntry{
		{Family: x11.FamilyLocal, Address: host, Number: number, Name: "MIT-MAGIC-COOKIE-1", Data: cookie},
		{Family: x11.FamilyInternet, Address: "\x7f\x00\x00\x01", Number: number, Name: "MIT-MAGIC-COOKIE-1", Data: cookie},
	}, entries)

	t.Run("tcp", func(t *testing.T) {
		c, err := net.Dial("tcp", x.tcpAddr())
		require.NoError(t, err)
		defer c.Close()
		origin := c.LocalAddr().(*net.TCPAddr)
		echoX11(t, nextX11(t, x11s), "127.0.0.1", origin.Port)
		roundTrip(t, c, bytes.Repeat([]byte("X11"), 50000))
	})
	t.Run("unix", func(t *testing.T) {
		c, err := net.Dial("unix", x.socket())
		if err != nil {
			t.Skipf("no socket at %s, as when %s is missing or not writable: %v", x.socket(), x11SocketDir, err)
		}
		defer c.Close()
		echoX11(t, nextX11(t, x11s), "127.0.0.1", 0)
		roundTrip(t, c, []byte("over the socket"))
	})

	// The display goes with the session.
	stdin.Close()
	require.NoError(t, sess.Wait())
	require.Eventually(t, func() bool {
		_, err := os.Stat(x.authority)
		return os.IsNotExist(err) && !canConnect("tcp", x.tcpAddr())
	}, 10*time.Second, 10*time.Millisecond)
	_, err = os.Lstat(x.socket())
	assert.True(t, os.IsNotExist(err), "the socket %s is left: %v", x.socket(), err)
}

func TestX11SingleConnection(t *testing.T) {
	srv := newServer(t, nil)
	client := dial(t, srv)
	x11s := client.HandleChannelOpen(wire.X11)
	sess := newSession(t, client)
	require.True(t, x11Req(t, sess, wire.X11ReqMsg{SingleConnection: true, AuthProtocol: "MIT-MAGIC-COOKIE-1", AuthCookie: testCookie}))
	x, _ := startShowingX11(t, sess)

	c, err := net.Dial("tcp", x.tcpAddr())
	require.NoError(t, err)
	defer c.Close()
	echoX11(t, nextX11(t, x11s), "127.0.0.1", c.LocalAddr().(*net.TCPAddr).Port)
	roundTrip(t, c, []byte("the only one"))
	assert.False(t, canConnect("tcp", x.tcpAddr()), "the display still listens")
	assert.False(t, canConnect("unix", x.socket()), "the display's socket still listens")
}

func TestX11DisplaysAreDistinct(t *testing.T) {
	srv := newServer(t, nil)
	client := dial(t, srv)
	client.HandleChannelOpen(wire.X11)
	seen := map[int]bool{}
	for range 3 {
		sess := newSession(t, client)
		require.True(t, x11Req(t, sess, wire.X11ReqMsg{AuthProtocol: "MIT-MAGIC-COOKIE-1", AuthCookie: testCookie}))
		x, _ := startShowingX11(t, sess)
		assert.False(t, seen[x.number], "display :%d handed out twice", x.number)
		seen[x.number] = true
	}
}

func TestX11Refused(t *testing.T) {
	good := wire.X11ReqMsg{AuthProtocol: "MIT-MAGIC-COOKIE-1", AuthCookie: testCookie}
	t.Run("disabled", func(t *testing.T) {
		srv := newServer(t, &Config{DisableX11: true})
		assert.False(t, x11Req(t, newSession(t, dial(t, srv)), good))
	})

	srv := newServer(t, nil)
	client := dial(t, srv)
	for _, tc := range []struct {
		name string
		msg  wire.X11ReqMsg
	}{
		{"empty cookie", wire.X11ReqMsg{AuthProtocol: "MIT-MAGIC-COOKIE-1"}},
		{"odd cookie", wire.X11ReqMsg{AuthProtocol: "MIT-MAGIC-COOKIE-1", AuthCookie: "abc"}},
		{"non-hex cookie", wire.X11ReqMsg{AuthProtocol: "MIT-MAGIC-COOKIE-1", AuthCookie: "zz"}},
		{"empty protocol", wire.X11ReqMsg{AuthCookie: testCookie}},
		{"space in protocol", wire.X11ReqMsg{AuthProtocol: "MIT MAGIC", AuthCookie: testCookie}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.False(t, x11Req(t, newSession(t, client), tc.msg))
		})
	}
	t.Run("malformed", func(t *testing.T) {
		ok, err := newSession(t, client).SendRequest(wire.X11Req, true, []byte{1})
		require.NoError(t, err)
		assert.False(t, ok)
	})
	t.Run("second", func(t *testing.T) {
		sess := newSession(t, client)
		require.True(t, x11Req(t, sess, good))
		assert.False(t, x11Req(t, sess, good))
	})
	t.Run("after exec", func(t *testing.T) {
		sess := newSession(t, client)
		stdin, err := sess.StdinPipe()
		require.NoError(t, err)
		defer stdin.Close()
		require.NoError(t, sess.Start("exec cat"))
		assert.False(t, x11Req(t, sess, good))
	})
}

func TestX11CloseWithClientsConnected(t *testing.T) {
	srv := NewServer(nil)
	defer srv.Close()
	client, err := srv.Dial()
	require.NoError(t, err)
	defer client.Close()
	x11s := client.HandleChannelOpen(wire.X11)
	sess, err := client.NewSession()
	require.NoError(t, err)
	require.True(t, x11Req(t, sess, wire.X11ReqMsg{AuthProtocol: "MIT-MAGIC-COOKIE-1", AuthCookie: testCookie}))
	x, _ := startShowingX11(t, sess)
	c, err := net.Dial("tcp", x.tcpAddr())
	require.NoError(t, err)
	defer c.Close()
	echoX11(t, nextX11(t, x11s), "127.0.0.1", c.LocalAddr().(*net.TCPAddr).Port)

	require.NoError(t, srv.Close())
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = io.ReadAll(c)
	assert.NoError(t, err, "the X client's connection was not closed")
	_, err = os.Stat(x.authority)
	assert.True(t, os.IsNotExist(err), "the Xauthority file is left: %v", err)
	assert.False(t, canConnect("tcp", x.tcpAddr()), "the display still listens")
}
