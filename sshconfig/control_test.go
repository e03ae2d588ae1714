package sshconfig

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"golang.org/x/net/proxy"

	"github.com/sshfwd/sshfwd"
	"github.com/sshfwd/sshfwd/internal/peers"
	"github.com/sshfwd/sshfwd/internal/testnet"
	"github.com/sshfwd/sshfwd/sshtest"
)

func TestOpenSSHControlMaster(t *testing.T) {
	d := peers.StartSSHD(t, peers.SSHDOptions{})
	m := peers.StartControlMaster(t, d)
	opts := testOptions(t)
	opts.ConfigFile = "none"
	opts.ControlPath = m.Socket
	// No key, no known_hosts, and port 22, where no server listens: only
	// the master can carry this connection.
	debug := new(debugLines).watch(opts)
	s := dial(t, "127.0.0.1", opts)
	assert.Equal(t, []string{"Connected through the ControlMaster at " + m.Socket + "."}, debug.all())
	ctx := testContext(t)
	target := testnet.TCPServer(t, testnet.HashAfterEOF)

	t.Run("session and OpenForward", func(t *testing.T) { checkSession(t, s) })
	t.Run("DialContext", func(t *testing.T) {
		c, err := s.DialContext(ctx, "tcp", target.String())
		require.NoError(t, err)
		defer c.Close()
		assert.NoError(t, testnet.RoundTrip(c, []byte("DialContext")))
	})
	t.Run("ForwardLocal", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		t.Cleanup(func() { ln.Close() })
		testnet.Background(t, func(ctx context.Context) error { return s.ForwardLocal(ctx, ln, target.String()) })
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		defer c.Close()
		assert.NoError(t, testnet.RoundTrip(c, []byte("ForwardLocal")))
	})
	t.Run("ServeSOCKS", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		t.Cleanup(func() { ln.Close() })
		testnet.Background(t, func(ctx context.Context) error { return s.ServeSOCKS(ctx, ln) })
		socks, err := proxy.SOCKS5("tcp", ln.Addr().String(), nil, proxy.Direct)
		require.NoError(t, err)
		c, err := socks.Dial("tcp", target.String())
		require.NoError(t, err)
		defer c.Close()
		assert.NoError(t, testnet.RoundTrip(c, []byte("ServeSOCKS")))
	})
	t.Run("DialSSH", func(t *testing.T) {
		inner := sshtest.NewServer(nil)
		defer inner.Close()
		is, err := s.DialSSH(ctx, inner.Addr(), inner.ClientConfig())
		require.NoError(t, err)
		defer is.Close()
		ch, err := is.OpenForward(ctx, "127.0.0.1", target.Port, "127.0.0.1", 0)
		require.NoError(t, err)
		defer ch.Close()
		assert.NoError(t, testnet.RoundTrip(ch, []byte("DialSSH")))
	})
	var remotePort string
	t.Run("remote forward", func(t *testing.T) {
		ln, err := s.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err, "asked of the master itself")
		_, remotePort, err = net.SplitHostPort(ln.Addr().String())
		require.NoError(t, err)
		serveChannels(t, ln)
		c, err := net.Dial("tcp", "127.0.0.1:"+remotePort)
		require.NoError(t, err)
		defer c.Close()
		assert.NoError(t, testnet.RoundTrip(c, []byte("remote forward")))
		require.NoError(t, ln.Close())
		assert.Eventually(t, func() bool {
			c, err := net.Dial("tcp", "127.0.0.1:"+remotePort)
			if err == nil {
				c.Close()
			}
			return err != nil
		}, testTimeout, 20*time.Millisecond, "Close cancels the forward at the master")
	})
	t.Run("remote forward of a socket", func(t *testing.T) {
		dir, err := os.MkdirTemp("", "rf")
		require.NoError(t, err)
		defer os.RemoveAll(dir)
		path := filepath.Join(dir, "s")
		ln, err := s.Listen("unix", path)
		require.NoError(t, err)
		defer ln.Close()
		serveChannels(t, ln)
		c, err := net.Dial("unix", path)
		require.NoError(t, err)
		defer c.Close()
		assert.NoError(t, testnet.RoundTrip(c, []byte("remote socket")))
	})
	t.Run("remote forward kept until the Session closes", func(t *testing.T) {
		port, err := s.ListenForward(ctx, "127.0.0.1", 0)
		require.NoError(t, err)
		remotePort = strconv.Itoa(port)
		c, err := net.Dial("tcp", "127.0.0.1:"+remotePort)
		require.NoError(t, err)
		c.Close()
	})
	t.Run("keepalive", func(t *testing.T) {
		kctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		err := s.KeepAlive(kctx, 100*time.Millisecond, 2)
		assert.ErrorIs(t, err, context.DeadlineExceeded, "the master answers every probe")
		checkSession(t, s)
	})

	require.NoError(t, s.Close())
	assert.NoError(t, m.Check(), "the master outlives the client; its log:\n%s", readFileString(m.Log))
	_, err := net.Dial("tcp", "127.0.0.1:"+remotePort)
	assert.Error(t, err, "closing the Session cancels its forwards at the master")

	// With the master gone, the same ControlPath means connecting
	// directly, as ssh does.
	m.Stop()
	opts.ConfigFile = ""
	userConfig(t, opts, hostBlock(d, "lab", "")+"  UserKnownHostsFile "+d.KnownHosts+"\n")
	checkSession(t, dial(t, "lab", opts))
}

// serveChannels answers every connection ln accepts with the sha256 of
// what it read, until ln closes.
func serveChannels(t testing.TB, ln net.Listener) {
	t.Helper()
	testnet.Serve(t, ln, testnet.HashAfterEOF)
}

func TestOpenSSHControlMasterRemoteForwardRefused(t *testing.T) {
	d := peers.StartSSHD(t, peers.SSHDOptions{Config: []string{"PermitListen none"}})
	m := peers.StartControlMaster(t, d)
	opts := testOptions(t)
	opts.ConfigFile, opts.ControlPath = "none", m.Socket
	s := dial(t, "127.0.0.1", opts)
	start := time.Now()
	_, err := s.ListenForward(testContext(t), "127.0.0.1", 0)
	assert.ErrorIs(t, err, sshfwd.ErrRequestDenied)
	assert.Less(t, time.Since(start), 5*time.Second)
	checkSession(t, s)
}

func TestDropbearHostKeyOrder(t *testing.T) {
	db := peers.StartDropbear(t, "ed25519")

	// x/crypto's default order picks RSA, which dropbear 2022.83
	// advertises without holding an RSA host key.
	_, err := ssh.Dial("tcp", db.Addr, &ssh.ClientConfig{
		User:            "nobody",
		Auth:            []ssh.AuthMethod{ssh.Password("x")},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         testTimeout,
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "handshake failed")
	t.Logf("x/crypto's default order: %v; dropbear: %s", err, strings.TrimSpace(db.ReadLog()))

	opts := testOptions(t)
	known := filepath.Join(t.TempDir(), "known_hosts")
	opts.Overrides = []string{"UserKnownHostsFile=" + known, "StrictHostKeyChecking=accept-new"}
	opts.PasswordCallback = func(string, string) (string, error) { return "x", nil }
	err = dialFails(t, "ssh://nobody@"+db.Addr, opts)
	require.Error(t, err, "dropbear refuses every login")
	assert.Contains(t, err.Error(), "unable to authenticate", "the key exchange went through")
	require.FileExists(t, known)
	check := &HostKeys{Files: []string{known}, Strict: StrictYes}
	assert.Equal(t, ssh.KeyAlgoED25519, check.Algorithms(db.Addr)[0], "dropbear's ed25519 key was accepted and written")
}

// kbdServer is a minimal x/crypto SSH server offering keyboard-interactive
// login only, which neither sshtest nor the OpenSSH server of these tests
// (no PAM) offers. It asks two questions and wants answers.
type kbdServer struct {
	addr    string
	hostKey ssh.PublicKey
}

func startKbdServer(t testing.TB, answers ...string) *kbdServer {
	t.Helper()
	host := newSigner(t)
	cfg := &ssh.ServerConfig{
		KeyboardInteractiveCallback: func(_ ssh.ConnMetadata, ask ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
			got, err := ask("sshfwd-test", "Two questions.", []string{"Password: ", "Code: "}, []bool{false, true})
			if err != nil {
				return nil, err
			}
			if strings.Join(got, "\n") != strings.Join(answers, "\n") {
				return nil, errors.New("wrong answers")
			}
			return nil, nil
		},
	}
	cfg.AddHostKey(host)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	testnet.Serve(t, ln, func(c net.Conn) {
		sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
		if err != nil {
			return
		}
		go ssh.DiscardRequests(reqs)
		for nc := range chans {
			nc.Reject(ssh.Prohibited, "nothing here")
		}
		sc.Close()
	})
	return &kbdServer{addr: ln.Addr().String(), hostKey: host.PublicKey()}
}

func TestKeyboardInteractive(t *testing.T) {
	srv := startKbdServer(t, "secret", "123456")
	opts := testOptions(t)
	known := writeFile(t, filepath.Join(t.TempDir(), "known_hosts"), knownhosts.Line([]string{knownhosts.Normalize(srv.addr)}, srv.hostKey)+"\n")
	opts.Overrides = []string{"UserKnownHostsFile=" + known, "IdentityAgent=none"}
	var questions []string
	var mu sync.Mutex
	opts.KeyboardInteractiveCallback = func(name, instruction string, qs []string, echos []bool) ([]string, error) {
		mu.Lock()
		defer mu.Unlock()
		questions = append(questions, fmt.Sprint(name, instruction, qs, echos))
		if len(questions) == 1 {
			return []string{"wrong", "000000"}, nil
		}
		return []string{"secret", "123456"}, nil
	}
	debug := new(debugLines).watch(opts)
	s := dial(t, "ssh://alice@"+srv.addr, opts)
	assert.Equal(t, "alice", s.Client().User())
	assert.Contains(t, debug.all(), `Authenticated to 127.0.0.1 ([127.0.0.1]:`+strings.Split(srv.addr, ":")[1]+`) using "keyboard-interactive".`)
	mu.Lock()
	assert.Equal(t, []string{"sshfwd-testTwo questions.[Password:  Code: ] [false true]", "sshfwd-testTwo questions.[Password:  Code: ] [false true]"}, questions,
		"asked again after a wrong answer")
	mu.Unlock()

	opts.Overrides = append(opts.Overrides, "BatchMode=yes")
	err := dialFails(t, "ssh://alice@"+srv.addr, opts)
	assert.Error(t, err, "BatchMode never asks")
}

func TestPassword(t *testing.T) {
	srv := sshtest.NewServer(&sshtest.Config{Passwords: map[string]string{"alice": "correct horse"}})
	defer srv.Close()
	opts := testOptions(t)
	known := writeFile(t, filepath.Join(t.TempDir(), "known_hosts"), knownhosts.Line([]string{knownhosts.Normalize(srv.Addr())}, srv.HostKey())+"\n")
	host, port, err := net.SplitHostPort(srv.Addr())
	require.NoError(t, err)
	userConfig(t, opts, "Host box\n  HostName "+host+"\n  Port "+port+"\n  User alice\n  UserKnownHostsFile "+known+"\n  IdentityAgent none\n")
	var asked []string
	opts.PasswordCallback = func(user, host string) (string, error) {
		asked = append(asked, user+"@"+host)
		if len(asked) == 1 {
			return "wrong", nil
		}
		return "correct horse", nil
	}
	debug := new(debugLines).watch(opts)
	s := dial(t, "box", opts)
	assert.Contains(t, debug.all(), `Authenticated to `+host+` ([`+host+`]:`+port+`) using "password".`)
	target := testnet.TCPServer(t, testnet.HashAfterEOF)
	ch, err := s.OpenForward(testContext(t), "127.0.0.1", target.Port, "127.0.0.1", 0)
	require.NoError(t, err)
	defer ch.Close()
	assert.NoError(t, testnet.RoundTrip(ch, []byte("password")))
	assert.Equal(t, []string{"alice@" + host, "alice@" + host}, asked)

	opts.Overrides = []string{"NumberOfPasswordPrompts=1"}
	asked = nil
	err = dialFails(t, "box", opts)
	assert.Error(t, err)
	assert.Len(t, asked, 1, "NumberOfPasswordPrompts bounds the tries")
}

func readFileString(name string) string {
	b, err := os.ReadFile(name)
	if err != nil {
		return err.Error()
	}
	return string(b)
}
