package sshtest

import (
	"bufio"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

func TestDefaults(t *testing.T) {
	srv := newServer(t, nil)
	host, _, err := net.SplitHostPort(srv.Addr())
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1", host)

	cc := srv.ClientConfig()
	assert.Equal(t, "sshtest", cc.User)
	addr, err := net.ResolveTCPAddr("tcp", srv.Addr())
	require.NoError(t, err)
	assert.NoError(t, cc.HostKeyCallback(srv.Addr(), addr, srv.HostKey()))
	assert.Error(t, cc.HostKeyCallback(srv.Addr(), addr, generateKey().PublicKey()),
		"the host key is not pinned")
	assert.Equal(t, srv.Config.ClientKey, srv.ClientSigner())

	client := dial(t, srv)
	assert.Equal(t, "sshtest", client.User())
}

func TestUnstartedServer(t *testing.T) {
	srv := NewUnstartedServer(nil)
	srv.Config.User = "changed"
	srv.Start()
	defer srv.Close()
	assert.Panics(t, srv.Start)

	client := dial(t, srv)
	assert.Equal(t, "changed", client.User())

	idle := NewUnstartedServer(&Config{})
	require.NoError(t, idle.Close())
	assert.Panics(t, idle.Start)
}

func TestLogf(t *testing.T) {
	var (
		mu    sync.Mutex // guards lines
		lines []string
	)
	srv := newServer(t, &Config{
		PermitOpenCallback: func(ssh.ConnMetadata, OpenRequest) bool { return false },
		Logf: func(format string, args ...any) {
			mu.Lock()
			lines = append(lines, format)
			mu.Unlock()
		},
	})
	client := dial(t, srv)
	_, err := client.Dial("tcp", "127.0.0.1:1")
	require.Error(t, err)
	mu.Lock()
	defer mu.Unlock()
	assert.NotEmpty(t, lines)
}

// TestCloseEverything closes a server with a connection carrying every kind
// of traffic: Close must return promptly and leave nothing behind.
func TestCloseEverything(t *testing.T) {
	// Registered first, so that it runs after every other cleanup.
	t.Cleanup(func() { goleak.VerifyNone(t) })
	srv := NewServer(&Config{WrapConn: func(c net.Conn) net.Conn { return Throttle(Delay(c, time.Millisecond), 64<<20) }})
	client, err := srv.Dial()
	require.NoError(t, err)
	defer client.Close()
	echo := echoServer(t, "tcp", "127.0.0.1:0")

	// A direct forward in the middle of an exchange.
	direct, err := client.Dial("tcp", echo.Addr().String())
	require.NoError(t, err)
	_, err = direct.Write([]byte("ping"))
	require.NoError(t, err)
	// A reverse forward with a connection in progress.
	l, err := client.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	remote, err := dialTCP("127.0.0.1", portOf(t, l.Addr()))
	require.NoError(t, err)
	defer remote.Close()
	fwd, err := l.Accept()
	require.NoError(t, err)
	defer fwd.Close()
	_, err = client.ListenUnix(socketPath(t, "close.sock"))
	require.NoError(t, err)
	// A running command, and a connection still in its handshake.
	sess, err := client.NewSession()
	require.NoError(t, err)
	stdout, err := sess.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, sess.Start("echo started; exec sleep 1000"))
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "started\n", line)
	half, err := net.Dial("tcp", srv.Addr())
	require.NoError(t, err)
	defer half.Close()
	// A shell on a terminal, an sftp session, a forwarded agent, and a
	// frozen connection.
	term, err := client.NewSession()
	require.NoError(t, err)
	require.NoError(t, term.RequestPty("xterm", 24, 80, nil))
	termOut, err := term.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, term.Start("echo started; exec sleep 1000"))
	line, err = bufio.NewReader(termOut).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "started\r\n", line)
	files, err := sftp.NewClient(client)
	require.NoError(t, err)
	defer files.Close()
	agentSess, err := client.NewSession()
	require.NoError(t, err)
	require.NoError(t, agent.RequestAgentForwarding(agentSess))
	frozen, err := srv.Dial()
	require.NoError(t, err)
	defer frozen.Close()
	for _, c := range srv.Conns() {
		if c.RemoteAddr().String() == frozen.LocalAddr().String() {
			c.Freeze()
		}
	}

	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	select {
	case err := <-closed:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	assert.Empty(t, serverGoroutines(), "goroutines of the server outlived Close")
	assert.NoError(t, srv.Close(), "second Close")

	err = sess.Wait()
	assert.Error(t, err, "the command survived Close")
	_, err = remote.Read(make([]byte, 1))
	assert.Error(t, err, "a forwarded connection survived Close")
	_, err = net.Dial("tcp", srv.Addr())
	assert.Error(t, err, "the server still listens")
	assert.True(t, strings.HasPrefix(srv.Addr(), "127.0.0.1:"))
	assert.Error(t, term.Wait(), "the command on a terminal survived Close")
	client.Close()
	direct.Close()
	sess.Close()
	agentSess.Close()
}

// serverGoroutines returns the stacks of the goroutines running the
// server's code, from the server package or the packages it runs.
func serverGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var found []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		// A goroutine whose top frame is spawn's own has returned from
		// its work and from wg.Done, and is only exiting.
		if lines := strings.SplitN(g, "\n", 3); len(lines) > 1 && strings.Contains(lines[1], "sshtest.(*Server).spawn.func1(") {
			continue
		}
		for _, marker := range []string{"sshtest.(*Server)", "sshtest.(*conn)", "sshtest.(*session)", "internal/relay.", "sshfwd.(*Channel)"} {
			if strings.Contains(g, marker) {
				found = append(found, g)
				break
			}
		}
	}
	return found
}

func TestConcurrentClose(t *testing.T) {
	srv := NewServer(nil)
	client, err := srv.Dial()
	require.NoError(t, err)
	defer client.Close()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, srv.Close())
		}()
	}
	wg.Wait()
}

// TestServerVersion sets the banner, as libssh programs' tests need: their
// ssh_channel_open_forward_unix wants "OpenSSH" in it.
func TestServerVersion(t *testing.T) {
	const version = "SSH-2.0-OpenSSH_9.9 sshtest"
	srv := newServer(t, &Config{ServerVersion: version})
	client := dial(t, srv)
	assert.Equal(t, version, string(client.ServerVersion()))

	for _, bad := range []string{"OpenSSH_9.9", "SSH-2.0-a\r\nb", "SSH-2.0-" + strings.Repeat("x", 250), "SSH-2.0-é"} {
		cfg := &Config{ServerVersion: bad}
		assert.ErrorContains(t, cfg.Check(), "ServerVersion", "%q", bad)
		assert.Panics(t, func() { NewServer(cfg) }, "%q", bad)
	}
	assert.NoError(t, (&Config{}).Check())
}
