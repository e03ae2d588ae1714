package sshtest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/sshfwd/sshfwd/internal/peers"
	"github.com/sshfwd/sshfwd/internal/testnet"
)

// openSSHPeer is a Server set up for OpenSSH's clients, and libssh's: its
// client key in a file and its host key in a known_hosts file.
type openSSHPeer struct {
	srv        *Server
	keyFile    string
	knownHosts string
	host, port string
	dest       string // user@host
}

// newOpenSSHPeer starts a Server configured by cfg (nil for the zero
// Config) for clients that take their key and known hosts from files.
func newOpenSSHPeer(t testing.TB, cfg *Config) openSSHPeer {
	t.Helper()
	if cfg == nil {
		cfg = &Config{}
	}
	dir := t.TempDir()
	keyFile, signer := testnet.KeyFile(t, dir)
	cfg.ClientKey = signer
	srv := newServer(t, cfg)
	knownHosts := filepath.Join(dir, "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(srv.Addr())}, srv.HostKey())
	require.NoError(t, os.WriteFile(knownHosts, []byte(line+"\n"), 0o600))
	host, port, err := net.SplitHostPort(srv.Addr())
	require.NoError(t, err)
	return openSSHPeer{
		srv:        srv,
		keyFile:    keyFile,
		knownHosts: knownHosts,
		host:       host,
		port:       port,
		dest:       srv.Config.User + "@" + host,
	}
}

// opts returns the OpenSSH options that give the key and the known hosts.
func (p openSSHPeer) opts() []string {
	return []string{"-i", p.keyFile, "-o", "UserKnownHostsFile=" + p.knownHosts}
}

// ssh returns an ssh command with options opts and the command words
// after the destination.
func (p openSSHPeer) ssh(t testing.TB, ctx context.Context, opts []string, command ...string) *exec.Cmd {
	t.Helper()
	args := append(append(append(p.opts(), "-p", p.port), opts...), p.dest)
	return peers.SSHCommand(t, ctx, append(args, command...)...)
}

// sftp returns an sftp command that runs the commands of batch.
func (p openSSHPeer) sftp(t testing.TB, ctx context.Context, batch string) *exec.Cmd {
	t.Helper()
	file := filepath.Join(t.TempDir(), "batch")
	require.NoError(t, os.WriteFile(file, []byte(batch), 0o600))
	args := append(p.opts(), "-P", p.port, "-b", file, p.dest)
	return peers.SFTPCommand(t, ctx, args...)
}

// peerContext bounds a test's real clients.
func peerContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// stderrWatcher collects the OpenSSH client's stderr and picks out the port
// it reports for a remote forward to port 0.
type stderrWatcher struct {
	allocated chan int // receives the first allocated port

	mu  sync.Mutex // guards log
	log bytes.Buffer
}

var allocatedRE = regexp.MustCompile(`Allocated port (\d+) for remote forward`)

func (w *stderrWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	before := w.log.Len()
	w.log.Write(p)
	if m := allocatedRE.FindSubmatch(w.log.Bytes()); m != nil && !allocatedRE.Match(w.log.Bytes()[:before]) {
		port, _ := strconv.Atoi(string(m[1]))
		w.allocated <- port
	}
	return len(p), nil
}

func (w *stderrWatcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.log.String()
}

// TestOpenSSHClient runs the real OpenSSH client against the server with a
// local and a remote forward (ssh -L and -R 0) and carries data through both.
func TestOpenSSHClient(t *testing.T) {
	p := newOpenSSHPeer(t, nil)
	echo := echoServer(t, "tcp", "127.0.0.1:0")
	echoPort := echo.Addr().(*net.TCPAddr).Port

	localPort := peers.FreePort(t)
	cmd := p.ssh(t, t.Context(), []string{
		"-N",
		"-o", "ExitOnForwardFailure=yes",
		"-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d", localPort, echoPort),
		"-R", fmt.Sprintf("0:127.0.0.1:%d", echoPort),
	})
	stderr := &stderrWatcher{allocated: make(chan int, 1)}
	cmd.Stderr = stderr
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})

	var remotePort int
	select {
	case remotePort = <-stderr.allocated:
	case err := <-exited:
		t.Fatalf("ssh exited: %v\n%s", err, stderr)
	case <-time.After(15 * time.Second):
		t.Fatalf("ssh reported no allocated port\n%s", stderr)
	}

	// The local forward's listener may come up after the remote forward.
	var (
		local net.Conn
		err   error
	)
	deadline := time.Now().Add(10 * time.Second)
	for {
		local, err = dialTCP("127.0.0.1", localPort)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, err, "ssh -L is not listening\n%s", stderr)
	defer local.Close()
	roundTrip(t, local, []byte("through ssh -L and sshtest"))

	remote, err := dialTCP("127.0.0.1", remotePort)
	require.NoError(t, err, "sshtest is not listening for ssh -R\n%s", stderr)
	defer remote.Close()
	roundTrip(t, remote, []byte("through sshtest and ssh -R"))
}

// TestOpenSSHRemoteForwardToTakenSocket points ssh -R at a socket path
// another connection forwards: ssh must be refused, and the forward's owner
// keep every connection.
func TestOpenSSHRemoteForwardToTakenSocket(t *testing.T) {
	p := newOpenSSHPeer(t, &Config{StreamLocalBindUnlink: true})
	victim := dial(t, p.srv)
	path := socketPath(t, "taken.sock")
	l, err := victim.ListenUnix(path)
	require.NoError(t, err)
	got := countAccepted(t, l)

	echo := echoServer(t, "tcp", "127.0.0.1:0")
	var stderr bytes.Buffer
	cmd := p.ssh(t, peerContext(t), []string{"-N", "-o", "ExitOnForwardFailure=yes", "-R", path + ":" + echo.Addr().String()})
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "ssh -R to a taken socket did not fail: %v\n%s", err, &stderr)
	assert.Contains(t, stderr.String(), "remote port forwarding failed for listen path "+path)

	for range 3 {
		c, err := net.Dial("unix", path)
		require.NoError(t, err)
		c.Close()
	}
	assert.Eventually(t, func() bool { return got() == 3 }, 5*time.Second, 10*time.Millisecond,
		"the forward's owner got %d of 3 connections", got())
}

// TestOpenSSHTerminal runs ssh -tt: the command runs on a terminal whose
// type is the client's TERM.
func TestOpenSSHTerminal(t *testing.T) {
	p := newOpenSSHPeer(t, nil)
	cmd := p.ssh(t, peerContext(t), []string{"-tt"}, `tty; echo "TERM=$TERM"; test -t 0 && echo stdin is a terminal`)
	cmd.Env = append(os.Environ(), "TERM=vt100")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Regexp(t, `^/dev/pts/\d+\r\n`, string(out))
	assert.Contains(t, string(out), "TERM=vt100\r\n")
	assert.Contains(t, string(out), "stdin is a terminal\r\n")
}

// TestOpenSSHShell runs ssh with no command, as people log in: on a
// terminal (-tt) and without one (-T), reading the shell's input from
// stdin.
func TestOpenSSHShell(t *testing.T) {
	for _, flag := range []string{"-T", "-tt"} {
		t.Run(flag, func(t *testing.T) {
			p := newOpenSSHPeer(t, nil)
			cmd := p.ssh(t, peerContext(t), []string{flag})
			cmd.Stdin = strings.NewReader("echo $((6 * 7))\nexit 3\n")
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			require.True(t, errors.As(err, &ee), "got %v\n%s", err, out)
			assert.Equal(t, 3, ee.ExitCode(), "%s", out)
			assert.Regexp(t, `42\r?\n`, string(out), "the shell printed no answer")
		})
	}
}

// TestOpenSSHSFTP copies a file up and back down with OpenSSH's sftp.
func TestOpenSSHSFTP(t *testing.T) {
	p := newOpenSSHPeer(t, nil)
	dir := t.TempDir()
	local := filepath.Join(dir, "up")
	data := testnet.RandomBytes(t, 100000)
	require.NoError(t, os.WriteFile(local, data, 0o600))
	remote := filepath.Join(dir, "remote")
	back := filepath.Join(dir, "down")

	cmd := p.sftp(t, peerContext(t), fmt.Sprintf("put %s %s\nget %s %s\nls %s\n", local, remote, remote, back, dir))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	got, err := os.ReadFile(back)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(data, got), "the file came back different")
	assert.Contains(t, string(out), remote)
}

// TestOpenSSHAgentForwarding runs ssh -A with an agent holding a key: the
// command on the server lists it through SSH_AUTH_SOCK.
func TestOpenSSHAgentForwarding(t *testing.T) {
	peers.Require(t, peers.SSHAddBin)
	p := newOpenSSHPeer(t, nil)
	key, priv := newKey(t)
	sock := serveAgent(t, priv)

	cmd := p.ssh(t, peerContext(t), []string{"-A"}, "ssh-add -L")
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key.PublicKey()))))
}

// serveAgent serves an agent holding priv on a Unix socket until the test
// ends, and returns the socket's path.
func serveAgent(t testing.TB, priv ed25519.PrivateKey) string {
	t.Helper()
	keyring := agent.NewKeyring()
	require.NoError(t, keyring.Add(agent.AddedKey{PrivateKey: priv}))
	path := socketPath(t, "agent.sock")
	l, err := net.Listen("unix", path)
	require.NoError(t, err)
	testnet.Serve(t, l, func(c net.Conn) { agent.ServeAgent(keyring, c) })
	return path
}
