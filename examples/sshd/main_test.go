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
	for _, args := range [][]string{
		{},
		{"-authorized-keys", filepath.Join(dir, "missing")},
		{"-authorized-keys", bad},
		{"-authorized-keys", empty},
		{"-nosuchflag"},
	} {
		assert.Error(t, run(context.Background(), args, io.Discard, nil), "%q", args)
	}
}

func TestFlagsOnly(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "authorized_keys")
	require.NoError(t, os.WriteFile(keys, []byte("# none\n"), 0o600))
	assert.ErrorContains(t, run(context.Background(), []string{"-authorized-keys", keys, "stray"}, io.Discard, nil), "takes flags only")
	assert.ErrorIs(t, run(context.Background(), []string{"-h"}, io.Discard, nil), flag.ErrHelp, "which exits 0")
}
