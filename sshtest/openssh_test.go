package sshtest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/sshfwd/sshfwd/internal/peers"
)

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
	peers.Require(t, peers.SSHBin)

	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	signer, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	srv := newServer(t, &Config{ClientKey: signer})
	echo := echoServer(t, "tcp", "127.0.0.1:0")
	echoPort := echo.Addr().(*net.TCPAddr).Port

	dir := t.TempDir()
	keyFile := filepath.Join(dir, "id_ed25519")
	block, err := ssh.MarshalPrivateKey(priv, "")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600))
	knownHosts := filepath.Join(dir, "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(srv.Addr())}, srv.HostKey())
	require.NoError(t, os.WriteFile(knownHosts, []byte(line+"\n"), 0o600))

	host, port, err := net.SplitHostPort(srv.Addr())
	require.NoError(t, err)
	localPort := peers.FreePort(t)
	cmd := peers.SSHCommand(t, t.Context(),
		"-N",
		"-o", "UserKnownHostsFile="+knownHosts,
		"-o", "ExitOnForwardFailure=yes",
		"-i", keyFile,
		"-p", port,
		"-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d", localPort, echoPort),
		"-R", fmt.Sprintf("0:127.0.0.1:%d", echoPort),
		srv.Config.User+"@"+host,
	)
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
	var local net.Conn
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
