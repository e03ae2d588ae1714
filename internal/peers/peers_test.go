package peers

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// runSession runs cmd in a new session on c and returns its combined output.
func runSession(t *testing.T, c *ssh.Client, cmd string) string {
	t.Helper()
	sess, err := c.NewSession()
	require.NoError(t, err)
	defer sess.Close()
	out, err := sess.CombinedOutput(cmd)
	require.NoError(t, err, "output: %s", out)
	return string(out)
}

func TestSSHDEcho(t *testing.T) {
	s := StartSSHD(t, SSHDOptions{})
	assert.Equal(t, "127.0.0.1:"+strconv.Itoa(s.Port), s.Addr)
	assert.NotEmpty(t, s.User)

	c, err := ssh.Dial("tcp", s.Addr, s.ClientConfig())
	require.NoError(t, err, "sshd log:\n%s", s.ReadLog())
	defer c.Close()
	assert.Equal(t, "hi\n", runSession(t, c, "echo hi"))
	assert.Equal(t, s.Dir+"/home "+s.Dir+"/xauthority\n", runSession(t, c, `echo "$HOME $XAUTHORITY"`))
}

func TestSSHDExtraConfig(t *testing.T) {
	s := StartSSHD(t, SSHDOptions{Config: []string{"Ciphers aes128-gcm@openssh.com"}})

	cfg := s.ClientConfig()
	cfg.Ciphers = []string{"chacha20-poly1305@openssh.com"}
	_, err := ssh.Dial("tcp", s.Addr, cfg)
	require.Error(t, err, "server should only offer aes128-gcm")

	cfg = s.ClientConfig()
	cfg.Ciphers = []string{"aes128-gcm@openssh.com"}
	c, err := ssh.Dial("tcp", s.Addr, cfg)
	require.NoError(t, err)
	defer c.Close()
	assert.Equal(t, "ok\n", runSession(t, c, "echo ok"))
}

func TestSSHDManyConcurrentSessions(t *testing.T) {
	s := StartSSHD(t, SSHDOptions{})
	c, err := ssh.Dial("tcp", s.Addr, s.ClientConfig())
	require.NoError(t, err)
	defer c.Close()

	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sess, err := c.NewSession()
			if err != nil {
				errs <- err
				return
			}
			defer sess.Close()
			out, err := sess.Output(fmt.Sprintf("echo %d", i))
			if err == nil && string(out) != fmt.Sprintf("%d\n", i) {
				err = fmt.Errorf("session %d: got %q", i, out)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
}

func TestSSHDRestart(t *testing.T) {
	s := StartSSHD(t, SSHDOptions{})
	port, hostKey := s.Port, s.HostKey

	c, err := ssh.Dial("tcp", s.Addr, s.ClientConfig())
	require.NoError(t, err)
	defer c.Close()
	assert.Equal(t, "hi\n", runSession(t, c, "echo hi"))

	s.Stop()
	s.Stop() // idempotent
	assert.False(t, s.Running())

	// The established connection must drop with the server.
	waitErr := make(chan error, 1)
	go func() { waitErr <- c.Wait() }()
	select {
	case <-waitErr:
	case <-time.After(StartTimeout):
		t.Fatal("connection survived sshd Stop")
	}
	_, err = net.DialTimeout("tcp", s.Addr, time.Second)
	require.Error(t, err, "port should be closed after Stop")

	s.Restart(t)
	assert.True(t, s.Running())
	assert.Equal(t, port, s.Port)
	assert.Equal(t, hostKey.Marshal(), s.HostKey.Marshal())

	// FixedHostKey in ClientConfig proves the host key is unchanged.
	c2, err := ssh.Dial("tcp", s.Addr, s.ClientConfig())
	require.NoError(t, err, "sshd log:\n%s", s.ReadLog())
	defer c2.Close()
	assert.Equal(t, "again\n", runSession(t, c2, "echo again"))

	// Restart while running also works.
	s.Restart(t)
	c3, err := ssh.Dial("tcp", s.Addr, s.ClientConfig())
	require.NoError(t, err)
	require.NoError(t, c3.Close())
}

func TestSSHDReuseHostKey(t *testing.T) {
	a := StartSSHD(t, SSHDOptions{})
	b := StartSSHD(t, SSHDOptions{HostKeyFile: a.HostKeyFile})
	assert.NotEqual(t, a.Port, b.Port)
	assert.Equal(t, a.HostKey.Marshal(), b.HostKey.Marshal())
	c, err := ssh.Dial("tcp", b.Addr, b.ClientConfig())
	require.NoError(t, err)
	require.NoError(t, c.Close())
}

func TestSSHCommand(t *testing.T) {
	s := StartSSHD(t, SSHDOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	out, err := SSHCommand(t, ctx, append(s.SSHArgs(), "127.0.0.1", "echo", "ok")...).CombinedOutput()
	require.NoError(t, err, "ssh output: %s\nsshd log:\n%s", out, s.ReadLog())
	assert.Equal(t, "ok\n", string(out))

	require.NoError(t, SSHCommand(t, ctx, append(s.SSHArgs(), "127.0.0.1", "true")...).Run())

	// Without the known_hosts file the host key is rejected.
	other := []string{"-p", strconv.Itoa(s.Port), "-i", s.KeyFile, "-o", "UserKnownHostsFile=/dev/null",
		"-o", "GlobalKnownHostsFile=/dev/null", "-l", s.User, "127.0.0.1", "true"}
	out, err = SSHCommand(t, ctx, other...).CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "Host key verification failed")
}

func TestSSHCommandLocalForward(t *testing.T) {
	s := StartSSHD(t, SSHDOptions{})

	// A loopback echo server behind the forward.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer l.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = io.Copy(conn, conn)
			_ = conn.Close()
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	local := FreePort(t)
	fwd := fmt.Sprintf("127.0.0.1:%d:%s", local, l.Addr())
	cmd := SSHCommand(t, ctx, append(s.SSHArgs(), "-N", "-o", "ExitOnForwardFailure=yes", "-L", fwd, "127.0.0.1")...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()

	var conn net.Conn
	require.Eventually(t, func() bool {
		conn, err = net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", local))
		return err == nil
	}, StartTimeout, 20*time.Millisecond, "forward not listening; ssh: %s", &stderr)
	defer conn.Close()
	_, err = conn.Write([]byte("ping"))
	require.NoError(t, err)
	buf := make([]byte, 4)
	require.NoError(t, conn.SetDeadline(time.Now().Add(StartTimeout)))
	_, err = io.ReadFull(conn, buf)
	require.NoError(t, err)
	assert.Equal(t, "ping", string(buf))
}

func TestXvfb(t *testing.T) {
	Require(t, XdpyinfoBin)
	x := StartXvfb(t)
	assert.Regexp(t, regexp.MustCompile(`^[0-9a-f]{32}$`), x.Cookie)
	assert.Equal(t, ":"+strconv.Itoa(x.Display), x.DisplayString)
	assert.GreaterOrEqual(t, x.Display, 90)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	cmd := exec.CommandContext(ctx, XdpyinfoBin, "-display", x.DisplayString)
	cmd.Env = append(os.Environ(), "XAUTHORITY="+x.AuthFile)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "xdpyinfo: %s\nXvfb log:\n%s", out, x.ReadLog())
	assert.Contains(t, string(out), "name of display:")

	cmd = exec.CommandContext(ctx, XdpyinfoBin, "-display", x.DisplayString)
	cmd.Env = append(os.Environ(), "XAUTHORITY=/dev/null")
	out, err = cmd.CombinedOutput()
	require.Error(t, err, "xdpyinfo without cookie must fail: %s", out)

	x.Stop()
	x.Stop()
	_, err = os.Lstat(x.Socket)
	assert.True(t, os.IsNotExist(err), "socket should be gone after Stop: %v", err)
}

func TestXvfbTwo(t *testing.T) {
	a := StartXvfb(t)
	b := StartXvfb(t)
	assert.NotEqual(t, a.Display, b.Display)
	assert.NotEqual(t, a.Cookie, b.Cookie)
}

// fakeTB records Skipf/Fatalf instead of stopping the goroutine.
type fakeTB struct {
	testing.TB
	skipped, failed string
}

func (f *fakeTB) Helper()                       {}
func (f *fakeTB) Skipf(format string, a ...any) { f.skipped = fmt.Sprintf(format, a...) }
func (f *fakeTB) Fatalf(format string, a ...any) {
	f.failed = fmt.Sprintf(format, a...)
}

func TestRequire(t *testing.T) {
	t.Setenv(RequireEnv, "")
	f := &fakeTB{TB: t}
	Require(f, "/bin/sh", "sh")
	assert.Empty(t, f.skipped)
	assert.Empty(t, f.failed)

	Require(f, "/nonexistent/sshd")
	assert.Contains(t, f.skipped, "openssh-server")
	assert.Empty(t, f.failed)

	t.Setenv(RequireEnv, "1")
	f = &fakeTB{TB: t}
	Require(f, "/nonexistent/Xvfb")
	assert.Empty(t, f.skipped)
	assert.Contains(t, f.failed, "xvfb")
	assert.True(t, strings.Contains(f.failed, RequireEnv))
}

func TestFreePort(t *testing.T) {
	p := FreePort(t)
	assert.Greater(t, p, 0)
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	require.NoError(t, err)
	require.NoError(t, l.Close())
}

func TestDropbear(t *testing.T) {
	d := StartDropbear(t, "ed25519")
	require.NoError(t, probeSSH(d.Addr))
	assert.Contains(t, d.ReadLog(), "Not backgrounding")
	d.Stop()
	_, err := net.Dial("tcp", d.Addr)
	assert.Error(t, err, "stopped")
}

func TestControlMaster(t *testing.T) {
	s := StartSSHD(t, SSHDOptions{})
	m := StartControlMaster(t, s)
	require.NoError(t, m.Check())
	assert.True(t, m.Running())
	m.Stop()
	assert.False(t, m.Running())
	assert.Error(t, m.Check(), "the socket goes with the master")
	assert.NoFileExists(t, m.Socket)
}
