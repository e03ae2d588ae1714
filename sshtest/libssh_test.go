package sshtest

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sshfwd/sshfwd/internal/peers"
)

// buildLibSSHClient compiles testdata/libssh_forward_unix.c with libssh and
// returns the program; it skips the test without gcc or libssh-dev.
func buildLibSSHClient(t testing.TB) string {
	t.Helper()
	peers.RequireLibrary(t, "libssh", "libssh-dev")
	flags, err := exec.Command("pkg-config", "--cflags", "--libs", "libssh").Output()
	require.NoError(t, err)
	prog := filepath.Join(t.TempDir(), "libssh_forward_unix")
	args := append([]string{"-o", prog, filepath.Join("testdata", "libssh_forward_unix.c")}, strings.Fields(string(flags))...)
	out, err := exec.CommandContext(peerContext(t), "gcc", args...).CombinedOutput()
	require.NoError(t, err, "gcc: %s", out)
	return prog
}

// TestLibSSHForwardUnix opens a direct-streamlocal channel with libssh's
// ssh_channel_open_forward_unix, which refuses to run unless the server's
// banner says OpenSSH: ServerVersion is what lets libssh programs be tested.
func TestLibSSHForwardUnix(t *testing.T) {
	prog := buildLibSSHClient(t)
	sock := socketPath(t, "echo.sock")
	echoServer(t, "unix", sock)
	run := func(version string) (string, error) {
		p := newOpenSSHPeer(t, &Config{ServerVersion: version})
		out, err := exec.CommandContext(peerContext(t), prog, p.host, p.port, p.srv.Config.User, p.keyFile, p.knownHosts, sock, "through libssh").CombinedOutput()
		return string(out), err
	}

	out, err := run("SSH-2.0-OpenSSH_9.9 sshtest")
	require.NoError(t, err, "%s", out)
	assert.Equal(t, "through libssh", out)

	out, err = run("")
	assert.Error(t, err, "libssh forwarded a Unix socket through a server that does not say OpenSSH: %s", out)
	assert.Contains(t, out, "not connected to an OpenSSH server")
}
