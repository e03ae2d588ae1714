package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sshfwd/sshfwd/internal/peers"
)

// refused checks that nothing listens on addr any more.
func refused(t *testing.T, addr string) {
	t.Helper()
	assert.Eventually(t, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	}, testTimeout, 20*time.Millisecond, "%s still listens", addr)
}

// TestMaster runs sshfwd -M and has sshfwd -O and OpenSSH's ssh -O check
// it, add forwards of every kind, cancel them, and end it.
func TestMaster(t *testing.T) {
	isolate(t)
	d := startSSHD(t)
	target := hashServer(t)
	to := local(target)
	sock := filepath.Join(socketDir(t), "ctl")
	atStart := peers.FreePort(t)
	c := startStreams(t, streams{in: strings.NewReader(""), out: io.Discard},
		append(sshArgs(d), "-M", "-S", sock, "-L", fmt.Sprintf("%d:%s", atStart, to), "127.0.0.1")...)
	c.waitLine(t, `Connected to`)
	fi, err := os.Lstat(sock)
	require.NoError(t, err)
	assert.Equal(t, os.ModeSocket|0o600, fi.Mode(), "only this user may ask the master, as ssh's")

	// sshfwd -O and ssh -O, as a user types them: -F none and -S.
	sshfwdO := func(args ...string) (string, string, int) {
		return runToEnd(t, append([]string{"-F", "none", "-S", sock}, append(args, "127.0.0.1")...)...)
	}
	sshO := func(args ...string) string {
		out, err := sshOutput(t, append([]string{"-F", "none", "-S", sock}, append(args, "127.0.0.1")...)...)
		require.NoError(t, err, "ssh %q: %s", args, out)
		return out
	}
	pid := strconv.Itoa(os.Getpid())

	_, errs, code := sshfwdO("-O", "check")
	assert.Equal(t, 0, code)
	assert.Equal(t, "Master running (pid="+pid+")\n", errs)
	assert.Contains(t, sshO("-O", "check"), "Master running (pid="+pid+")")

	byUs, byOpenSSH := peers.FreePort(t), peers.FreePort(t)
	out, errs, code := sshfwdO("-O", "forward", "-L", fmt.Sprintf("%d:%s", byUs, to))
	assert.Equal(t, 0, code, errs)
	assert.Empty(t, out+errs)
	eventuallyRoundTrip(t, "tcp", local(byUs), []byte("-L added by sshfwd -O forward"))
	sshO("-O", "forward", "-L", fmt.Sprintf("%d:%s", byOpenSSH, to))
	eventuallyRoundTrip(t, "tcp", local(byOpenSSH), []byte("-L added by ssh -O forward"))

	out, errs, code = sshfwdO("-O", "forward", "-R", "0:"+to)
	assert.Equal(t, 0, code, errs)
	remote, err := strconv.Atoi(strings.TrimSpace(out))
	require.NoError(t, err, "-O forward prints the port of -R 0 on stdout, as ssh does: %q", out)
	eventuallyRoundTrip(t, "tcp", local(remote), []byte("-R added by sshfwd -O forward"))
	again, _, _ := sshfwdO("-O", "forward", "-R", "0:"+to)
	assert.Equal(t, out, again, "asked again, the forward there is the answer")

	out = sshO("-O", "forward", "-R", "127.0.0.1:0:"+to)
	remoteBySSH, err := strconv.Atoi(firstLine(out))
	require.NoError(t, err, "ssh -O forward prints the port too: %q", out)
	eventuallyRoundTrip(t, "tcp", local(remoteBySSH), []byte("-R added by ssh -O forward"))

	socks := peers.FreePort(t)
	sshO("-O", "forward", "-D", strconv.Itoa(socks))
	conn := socks5Connect(t, local(socks), target)
	require.NoError(t, roundTrip(conn, []byte("-D added by ssh -O forward")))

	sshO("-O", "cancel", "-L", fmt.Sprintf("%d:%s", byOpenSSH, to))
	refused(t, local(byOpenSSH))
	_, errs, code = sshfwdO("-O", "cancel", "-R", "0:"+to)
	assert.Equal(t, 0, code, errs)
	refused(t, local(remote))
	sshO("-O", "cancel", "-L", fmt.Sprintf("%d:%s", atStart, to))
	refused(t, local(atStart))
	eventuallyRoundTrip(t, "tcp", local(byUs), []byte("the others stay"))

	_, errs, code = sshfwdO("-O", "cancel", "-L", fmt.Sprintf("%d:%s", byOpenSSH, to))
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, errs, "request failed: port not forwarded")
	_, errs, code = sshfwdO("-O", "forward", "-L", fmt.Sprintf("%d:%s", byUs+0, "other:1"))
	assert.Equal(t, exitFailure, code, "the port is taken")
	assert.Contains(t, errs, "request failed: Port forwarding failed")

	// A session is not served, and ssh is told so.
	closed := strconv.Itoa(peers.FreePort(t))
	out, err = sshOutput(t, "-F", "none", "-S", sock, "-o", "BatchMode=yes", "-p", closed, "127.0.0.1", "true")
	assert.Error(t, err)
	assert.Contains(t, out, "sshfwd's master opens no sessions")

	assert.Contains(t, sshO("-O", "exit"), "Exit request sent.")
	assert.Equal(t, 0, c.exitCode(t), "exit is a clean exit")
	assert.NotContains(t, c.stderr.String(), "Warning", "a master connects by itself, not through its own socket")
	assert.NoFileExists(t, sock, "the socket goes with the master")
	refused(t, local(byUs))
}

func TestMasterExitBySSHFWD(t *testing.T) {
	isolate(t)
	d := startSSHD(t)
	sock := filepath.Join(socketDir(t), "ctl")
	c := startStreams(t, streams{in: strings.NewReader(""), out: io.Discard}, append(sshArgs(d), "-M", "-S", sock, "127.0.0.1")...)
	c.waitLine(t, `Connected to`)

	// A second master finds the socket taken, says so as ssh does, and
	// forwards all the same.
	port := peers.FreePort(t)
	target := hashServer(t)
	second := start(t, append(sshArgs(d), "-M", "-S", sock, "-L", fmt.Sprintf("%d:127.0.0.1:%d", port, target), "127.0.0.1")...)
	second.waitLine(t, `ControlSocket `+sock+` already exists, disabling multiplexing`)
	eventuallyRoundTrip(t, "tcp", local(port), []byte("without a master socket"))

	_, errs, code := runToEnd(t, "-F", "none", "-S", sock, "-O", "exit", "127.0.0.1")
	assert.Equal(t, 0, code)
	assert.Equal(t, []string{"Exit request sent."}, lines(errs))
	assert.Equal(t, 0, c.exitCode(t))

	// The socket of a master that is gone is taken over.
	ln, err := net.Listen("unix", sock)
	require.NoError(t, err)
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	c = startStreams(t, streams{in: strings.NewReader(""), out: io.Discard}, append(sshArgs(d), "-M", "-S", sock, "127.0.0.1")...)
	c.waitLine(t, `Connected to`)
	_, errs, code = runToEnd(t, "-F", "none", "-S", sock, "-O", "check", "127.0.0.1")
	assert.Equal(t, 0, code, errs)
}

func TestControlCommandErrors(t *testing.T) {
	isolate(t)
	_, errs, code := runToEnd(t, "-F", "none", "-O", "check", "host")
	assert.Equal(t, exitFailure, code)
	assert.Equal(t, []string{`No ControlPath specified for "-O" command`}, lines(errs))

	missing := filepath.Join(t.TempDir(), "none")
	_, errs, code = runToEnd(t, "-F", "none", "-S", missing, "-O", "forward", "-L", "8080:h:80", "host")
	assert.Equal(t, exitFailure, code)
	assert.Equal(t, []string{"Control socket connect(" + missing + "): No such file or directory"}, lines(errs))

	_, errs, code = runToEnd(t, "-F", "none", "-M", "host")
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, errs, "-M needs a control socket")
}

// TestControlOfOpenSSHMaster asks an OpenSSH master what sshfwd -O asks
// sshfwd's: the protocol is the same.
func TestControlOfOpenSSHMaster(t *testing.T) {
	isolate(t)
	d := startSSHD(t)
	m := peers.StartControlMaster(t, d)
	target := hashServer(t)
	_, errs, code := runToEnd(t, "-F", "none", "-S", m.Socket, "-O", "check", "127.0.0.1")
	assert.Equal(t, 0, code)
	assert.Regexp(t, `^Master running \(pid=\d+\)\n$`, errs)
	port := peers.FreePort(t)
	_, errs, code = runToEnd(t, "-F", "none", "-S", m.Socket, "-O", "forward", "-L", fmt.Sprintf("%d:127.0.0.1:%d", port, target), "127.0.0.1")
	assert.Equal(t, 0, code, errs)
	eventuallyRoundTrip(t, "tcp", local(port), []byte("added to OpenSSH's master"))
	out, errs, code := runToEnd(t, "-F", "none", "-S", m.Socket, "-O", "forward", "-R", "1080", "127.0.0.1")
	assert.Equal(t, 0, code, errs)
	remote, err := strconv.Atoi(strings.TrimSpace(out))
	if err == nil {
		t.Logf("OpenSSH gave port %d", remote)
	}
	_, errs, code = runToEnd(t, "-F", "none", "-S", m.Socket, "-O", "cancel", "-L", fmt.Sprintf("%d:127.0.0.1:%d", port, target), "127.0.0.1")
	assert.Equal(t, 0, code, errs)
	refused(t, local(port))
	_, errs, code = runToEnd(t, "-F", "none", "-S", m.Socket, "-O", "exit", "127.0.0.1")
	assert.Equal(t, 0, code, errs)
	assert.Eventually(t, func() bool { return !m.Running() }, testTimeout, 20*time.Millisecond, "OpenSSH's master exits")
}
