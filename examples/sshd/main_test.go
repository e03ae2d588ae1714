package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/sshfwd/sshfwd/internal/peers"
	"github.com/sshfwd/sshfwd/internal/testnet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// server runs the example on a free port with a fresh client key and
// returns its address, the key file and a known_hosts file for it.
func server(t *testing.T, extra ...string) (addr, keyFile, knownHosts string) {
	t.Helper()
	dir := t.TempDir()
	keyFile, signer := testnet.KeyFile(t, dir)
	authorized := filepath.Join(dir, "authorized_keys")
	require.NoError(t, os.WriteFile(authorized, append([]byte("# test key\n\n"), ssh.MarshalAuthorizedKey(signer.PublicKey())...), 0o600))
	hostKeyFile := filepath.Join(dir, "host_key")

	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var out bytes.Buffer
	args := append([]string{"-addr", "127.0.0.1:0", "-authorized-keys", authorized, "-host-key", hostKeyFile}, extra...)
	go func() { done <- run(ctx, args, &out, ready) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("sshd ended: %v", err)
	}
	assert.Contains(t, out.String(), "listening on "+addr)
	assert.Contains(t, out.String(), "host key ssh-ed25519 SHA256:")

	data, err := os.ReadFile(hostKeyFile)
	require.NoError(t, err, "the host key is written for the next run")
	hostKey, err := ssh.ParsePrivateKey(data)
	require.NoError(t, err)
	knownHosts = filepath.Join(dir, "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(addr)}, hostKey.PublicKey())
	require.NoError(t, os.WriteFile(knownHosts, []byte(line+"\n"), 0o600))
	return addr, keyFile, knownHosts
}

// roundTrip connects to port and checks the half-close round trip.
func roundTrip(t *testing.T, port int, data []byte) {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 10*time.Second)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, testnet.RoundTrip(c, data))
}

// TestOpenSSHClient points OpenSSH's ssh at the example with a local and a
// remote forward at once and sends data both ways through each.
func TestOpenSSHClient(t *testing.T) {
	peers.Require(t, peers.SSHBin)
	addr, key, known := server(t)
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	target := testnet.TCPServer(t, testnet.HashAfterEOF).String()
	lport := peers.FreePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := peers.SSHCommand(t, ctx, "-N", "-v", "-p", port, "-i", key, "-o", "UserKnownHostsFile="+known,
		"-o", "ExitOnForwardFailure=yes", "-L", fmt.Sprintf("127.0.0.1:%d:%s", lport, target), "-R", "0:"+target, "anyone@"+host)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	allocated := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var p int
			if _, err := fmt.Sscanf(sc.Text(), "Allocated port %d", &p); err == nil {
				allocated <- p
			}
		}
	}()
	select {
	case rport := <-allocated:
		roundTrip(t, rport, bytes.Repeat([]byte("remote forward "), 100000))
	case <-time.After(30 * time.Second):
		t.Fatal("ssh reported no allocated port")
	}
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(lport))
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 10*time.Second, 50*time.Millisecond)
	roundTrip(t, lport, bytes.Repeat([]byte("local forward "), 100000))
}

func TestRefusesUnknownKey(t *testing.T) {
	addr, _, _ := server(t)
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	other, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	_, err = ssh.Dial("tcp", addr, &ssh.ClientConfig{
		User:            "anyone",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(other)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), // this test is about client keys
		Timeout:         10 * time.Second,
	})
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "unable to authenticate"), err.Error())
}

func TestBadArguments(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	require.NoError(t, os.WriteFile(bad, []byte("not a key\n"), 0o600))
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, []byte("# nothing\n"), 0o600))
	_, signer := testnet.KeyFile(t, dir)
	good := filepath.Join(dir, "authorized_keys")
	require.NoError(t, os.WriteFile(good, ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o600))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "-authorized-keys is required"},
		{[]string{"-authorized-keys", filepath.Join(dir, "missing")}, "no such file"},
		{[]string{"-authorized-keys", bad}, bad + ":1"},
		{[]string{"-authorized-keys", empty}, "no keys"},
		{[]string{"-nosuchflag"}, "not defined"},
		{[]string{"-authorized-keys", good, "-max-startups", "10:30:5"}, "full 5 below start 10"},
		{[]string{"-authorized-keys", good, "-max-sessions", "many"}, "-max-sessions"},
		{[]string{"-authorized-keys", good, "-bandwidth", "-1"}, "-bandwidth -1 is negative"},
		{[]string{"-authorized-keys", good, "-server-version", "OpenSSH_9.9"}, "does not begin with SSH-2.0-"},
	} {
		assert.ErrorContains(t, run(context.Background(), tc.args, io.Discard, nil), tc.want, "%q", tc.args)
	}
}

// clientConfig returns an x/crypto configuration for a server the test
// started: the key and known_hosts files server wrote.
func clientConfig(t *testing.T, keyFile, knownHosts string) *ssh.ClientConfig {
	t.Helper()
	data, err := os.ReadFile(keyFile)
	require.NoError(t, err)
	signer, err := ssh.ParsePrivateKey(data)
	require.NoError(t, err)
	hostKeys, err := knownhosts.New(knownHosts)
	require.NoError(t, err)
	return &ssh.ClientConfig{
		User:            "anyone",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: hostKeys,
		Timeout:         10 * time.Second,
	}
}

// TestLimitFlags checks that the flags reach the server.
func TestLimitFlags(t *testing.T) {
	const version = "SSH-2.0-OpenSSH_9.9 example"
	addr, key, known := server(t, "-server-version", version, "-max-sessions", "1", "-disable-exec",
		"-accept-env", "FOO BAR_*", "-max-startups", "3:50:6", "-latency", "20ms", "-bandwidth", "1000000")
	client, err := ssh.Dial("tcp", addr, clientConfig(t, key, known))
	require.NoError(t, err)
	defer client.Close()
	assert.Equal(t, version, string(client.ServerVersion()))

	start := time.Now()
	_, _, err = client.SendRequest("keepalive@openssh.com", true, nil)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(start), 40*time.Millisecond, "-latency added nothing to a round trip")

	sess, err := client.NewSession()
	require.NoError(t, err)
	defer sess.Close()
	assert.NoError(t, sess.Setenv("BAR_1", "x"))
	assert.Error(t, sess.Setenv("LANG", "C"), "-accept-env did not replace the default")
	_, err = client.NewSession()
	assert.Error(t, err, "a second session past -max-sessions 1")
	assert.Error(t, sess.Run("true"), "-disable-exec let a command run")
}

// TestOpenSSHSessions runs what failed against the example before it
// served shells and sftp: ssh -T, ssh -tt and sftp.
func TestOpenSSHSessions(t *testing.T) {
	peers.Require(t, peers.SSHBin, peers.SFTPBin)
	addr, key, known := server(t)
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	opts := []string{"-i", key, "-o", "UserKnownHostsFile=" + known}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	for _, flag := range []string{"-T", "-tt"} {
		cmd := peers.SSHCommand(t, ctx, append(opts, "-p", port, flag, "anyone@"+host)...)
		cmd.Stdin = strings.NewReader("echo $((6 * 7))\nexit\n")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "ssh %s: %s", flag, out)
		assert.Regexp(t, `42\r?\n`, string(out), "ssh %s", flag)
	}

	dir := t.TempDir()
	batch := filepath.Join(dir, "batch")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "up"), []byte("over sftp"), 0o600))
	require.NoError(t, os.WriteFile(batch, []byte(fmt.Sprintf("put %s/up %s/down\n", dir, dir)), 0o600))
	out, err := peers.SFTPCommand(t, ctx, append(opts, "-P", port, "-b", batch, "anyone@"+host)...).CombinedOutput()
	require.NoError(t, err, "sftp: %s", out)
	data, err := os.ReadFile(filepath.Join(dir, "down"))
	require.NoError(t, err)
	assert.Equal(t, "over sftp", string(data))
}

// TestOpenSSHTakenSocket runs two ssh -R to one socket path: the second is
// refused, and the first keeps the connections.
func TestOpenSSHTakenSocket(t *testing.T) {
	peers.Require(t, peers.SSHBin)
	addr, key, known := server(t)
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	dir, err := os.MkdirTemp("", "sshd")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "s.sock")
	target := testnet.TCPServer(t, testnet.HashAfterEOF).String()
	other := testnet.TCPServer(t, func(c net.Conn) { io.WriteString(c, "the thief") }).String()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	forward := func(to string) *exec.Cmd {
		return peers.SSHCommand(t, ctx, "-N", "-p", port, "-i", key, "-o", "UserKnownHostsFile="+known,
			"-o", "ExitOnForwardFailure=yes", "-R", path+":"+to, "anyone@"+host)
	}

	owner := forward(target)
	require.NoError(t, owner.Start())
	require.Eventually(t, func() bool {
		c, err := net.Dial("unix", path)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "ssh -R did not set the socket up")

	out, err := forward(other).CombinedOutput()
	require.Error(t, err, "a second ssh -R took the socket: %s", out)
	assert.Contains(t, string(out), "remote port forwarding failed for listen path "+path)
	for range 3 {
		c, err := net.Dial("unix", path)
		require.NoError(t, err)
		require.NoError(t, testnet.RoundTrip(c, []byte("to the owner")))
		c.Close()
	}
}

func TestFlagsOnly(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "authorized_keys")
	require.NoError(t, os.WriteFile(keys, []byte("# none\n"), 0o600))
	assert.ErrorContains(t, run(context.Background(), []string{"-authorized-keys", keys, "stray"}, io.Discard, nil), "takes flags only")
	assert.ErrorIs(t, run(context.Background(), []string{"-h"}, io.Discard, nil), flag.ErrHelp, "which exits 0")
}
