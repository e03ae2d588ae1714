package sshfwd_test

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/sshfwd/sshfwd"
	"github.com/sshfwd/sshfwd/internal/peers"
	"github.com/sshfwd/sshfwd/internal/testnet"
	"github.com/sshfwd/sshfwd/sshtest"
)

// answerHashes serves AcceptForward's channels with hashAfterEOF until the
// session ends.
func answerHashes(t testing.TB, s *sshfwd.Session, n int) <-chan int {
	t.Helper()
	ports := make(chan int, n)
	go func() {
		defer close(ports)
		for range n {
			ch, port, err := s.AcceptForward(context.Background())
			if err != nil {
				return
			}
			ports <- port
			go func() {
				defer ch.Close()
				hashAfterEOF(ch)
			}()
		}
	}()
	return ports
}

// dialHash connects to the forwarded port and checks the half-close round trip.
func dialHash(t testing.TB, port int, data []byte) {
	t.Helper()
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), testTimeout)
	require.NoError(t, err)
	defer c.Close()
	hashRoundTrip(t, c, data)
}

func TestListenForwardThroughOpenSSH(t *testing.T) {
	for _, tc := range []struct {
		name    string
		address string
		port    func(t testing.TB) int
	}{
		{"port 0 on localhost", "localhost", func(testing.TB) int { return 0 }},
		{"fixed port on 127.0.0.1", "127.0.0.1", peers.FreePort},
		{"port 0 on every address", "", func(testing.TB) int { return 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, s := startSSHD(t)
			want := tc.port(t)
			bound, err := s.ListenForward(testContext(t), tc.address, want)
			require.NoError(t, err)
			if want != 0 {
				assert.Equal(t, want, bound)
			}
			require.NotZero(t, bound)
			ports := answerHashes(t, s, 2)
			dialHash(t, bound, randomBytes(t, 4<<20))
			dialHash(t, bound, []byte("second"))
			assert.Equal(t, bound, <-ports)
			assert.Equal(t, bound, <-ports)

			require.NoError(t, s.CancelForward(testContext(t), tc.address, bound))
			require.Eventually(t, func() bool {
				c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(bound)))
				if err == nil {
					c.Close()
				}
				return err != nil
			}, 5*time.Second, 20*time.Millisecond, "the port still accepts after CancelForward")
		})
	}
}

func TestAcceptForwardAddresses(t *testing.T) {
	_, s := startSSHD(t)
	bound, err := s.ListenForward(testContext(t), "127.0.0.1", 0)
	require.NoError(t, err)
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(bound)))
	require.NoError(t, err)
	defer c.Close()
	ch, port, err := s.AcceptForward(testContext(t))
	require.NoError(t, err)
	defer ch.Close()
	assert.Equal(t, bound, port)
	assert.Equal(t, c.LocalAddr().String(), ch.RemoteAddr().String(), "RemoteAddr is the originator")
	assert.Equal(t, "127.0.0.1:"+strconv.Itoa(bound), ch.LocalAddr().String(), "LocalAddr is the forwarded address")

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, _, err = s.AcceptForward(ctx)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestListenThroughOpenSSH(t *testing.T) {
	_, s := startSSHD(t)
	sock := t.TempDir() + "/fwd.sock"
	for _, tc := range []struct{ network, address string }{
		{"tcp", "127.0.0.1:0"},
		{"tcp4", "localhost:0"},
		{"unix", sock},
	} {
		t.Run(tc.network, func(t *testing.T) {
			ln, err := s.Listen(tc.network, tc.address)
			require.NoError(t, err)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						defer c.Close()
						hashAfterEOF(c)
					}()
				}
			}()
			network, addr := "tcp", ln.Addr().String()
			if tc.network == "unix" {
				network = "unix"
				assert.Equal(t, sock, addr)
			} else {
				port := ln.Addr().(interface{ String() string }).String()
				_, ps, err := net.SplitHostPort(port)
				require.NoError(t, err)
				addr = net.JoinHostPort("127.0.0.1", ps)
			}
			c, err := net.DialTimeout(network, addr, testTimeout)
			require.NoError(t, err)
			hashRoundTrip(t, c, randomBytes(t, 2<<20))
			c.Close()

			require.NoError(t, ln.Close())
			<-done
			_, err = ln.Accept()
			assert.ErrorIs(t, err, net.ErrClosed)
			require.Eventually(t, func() bool {
				c, err := net.Dial(network, addr)
				if err == nil {
					c.Close()
				}
				return err != nil
			}, 5*time.Second, 20*time.Millisecond, "still accepting after Close")
		})
	}
}

func TestListenerDoesNotBlockOthers(t *testing.T) {
	_, s := startSSHD(t)
	stuck, err := s.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer stuck.Close()
	live, err := s.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer live.Close()

	stuckAddr := "127.0.0.1:" + portOf(t, stuck.Addr())
	var conns []net.Conn
	for range 64 {
		c, err := net.DialTimeout("tcp", stuckAddr, testTimeout)
		require.NoError(t, err)
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()

	accepted := make(chan error, 1)
	go func() {
		c, err := live.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	c, err := net.Dial("tcp", "127.0.0.1:"+portOf(t, live.Addr()))
	require.NoError(t, err)
	defer c.Close()
	select {
	case err := <-accepted:
		require.NoError(t, err)
	case <-time.After(time.Second):
		t.Fatal("a listener nobody accepts on held up another one")
	}
}

func portOf(t testing.TB, a net.Addr) string {
	t.Helper()
	_, p, err := net.SplitHostPort(a.String())
	require.NoError(t, err)
	return p
}

func TestUnsolicitedForwardIsRefused(t *testing.T) {
	cfg, addr, conns := rawServer(t)
	dial(t, addr, cfg)
	var conn ssh.Conn
	select {
	case conn = <-conns:
	case <-time.After(testTimeout):
		t.Fatal("no connection")
	}
	_, err := sshfwd.OpenReverseForward(testContext(t), conn, "127.0.0.1", 4444, "127.0.0.1", 5555)
	var oce *ssh.OpenChannelError
	require.ErrorAs(t, err, &oce)
	assert.Equal(t, ssh.Prohibited, oce.Reason)
	_, err = sshfwd.OpenReverseForwardUnix(testContext(t), conn, "/tmp/nobody-asked")
	require.ErrorAs(t, err, &oce)
	assert.Equal(t, ssh.Prohibited, oce.Reason)
	_, err = sshfwd.OpenX11(testContext(t), conn, "127.0.0.1", 6010)
	require.ErrorAs(t, err, &oce)
	assert.Equal(t, ssh.Prohibited, oce.Reason)
	// A malformed payload is refused too, and nothing panics.
	_, _, err = conn.OpenChannel("forwarded-tcpip", []byte{1, 2, 3})
	require.ErrorAs(t, err, &oce)
	assert.Equal(t, ssh.ConnectionFailed, oce.Reason)
	_, _, err = conn.OpenChannel("session", nil)
	require.ErrorAs(t, err, &oce)
	assert.Equal(t, ssh.UnknownChannelType, oce.Reason)
}

// rawServer is a bare x/crypto/ssh server that hands each connection to the
// test, for opening channels towards a Session.
func rawServer(t testing.TB) (*ssh.ClientConfig, string, <-chan ssh.Conn) {
	t.Helper()
	return rawServerWith(t, func(nch ssh.NewChannel) { nch.Reject(ssh.Prohibited, "no") })
}

// rawServerWith is rawServer with handle serving the channels clients open.
func rawServerWith(t testing.TB, handle func(ssh.NewChannel)) (*ssh.ClientConfig, string, <-chan ssh.Conn) {
	t.Helper()
	host := newSigner(t)
	client := newSigner(t)
	sc := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
		if string(key.Marshal()) == string(client.PublicKey().Marshal()) {
			return nil, nil
		}
		return nil, fmt.Errorf("unknown key")
	}}
	sc.AddHostKey(host)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	conns := make(chan ssh.Conn, 1)
	serve(t, ln, func(nc net.Conn) {
		conn, chans, reqs, err := ssh.NewServerConn(nc, sc)
		if err != nil {
			return
		}
		defer conn.Close()
		go ssh.DiscardRequests(reqs)
		go func() {
			for nch := range chans {
				go handle(nch)
			}
		}()
		conns <- conn
		conn.Wait()
	})
	return &ssh.ClientConfig{
		User:            "raw",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(client)},
		HostKeyCallback: ssh.FixedHostKey(host.PublicKey()),
	}, ln.Addr().String(), conns
}

func newSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	signer, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	return signer
}

func TestListenForwardBadInput(t *testing.T) {
	srv := newServer(t, nil)
	s := dial(t, srv.Addr(), srv.ClientConfig())
	ctx := testContext(t)
	_, err := s.ListenForward(ctx, "a\x00", 0)
	assert.ErrorIs(t, err, sshfwd.ErrBadAddress)
	_, err = s.ListenForward(ctx, "", 65536)
	assert.ErrorIs(t, err, sshfwd.ErrBadAddress)
	_, err = s.ListenForward(ctx, "", -1)
	assert.ErrorIs(t, err, sshfwd.ErrBadAddress)
	assert.ErrorIs(t, s.CancelForward(ctx, "", 0), sshfwd.ErrBadAddress)
	for _, tc := range []struct{ network, address string }{
		{"tcp", "nope"}, {"tcp", "h:70000"}, {"udp", "h:1"}, {"unix", ""}, {"unix", "a\x00"},
	} {
		_, err := s.Listen(tc.network, tc.address)
		assert.ErrorIs(t, err, sshfwd.ErrBadAddress, "%s %q", tc.network, tc.address)
	}
}

func TestListenForwardDenied(t *testing.T) {
	srv := newServer(t, &sshtest.Config{PermitListenCallback: func(ssh.ConnMetadata, sshtest.ListenRequest) bool { return false }})
	s := dial(t, srv.Addr(), srv.ClientConfig())
	_, err := s.ListenForward(testContext(t), "127.0.0.1", 0)
	assert.ErrorIs(t, err, sshfwd.ErrRequestDenied)
	_, err = s.Listen("tcp", "127.0.0.1:0")
	assert.ErrorIs(t, err, sshfwd.ErrRequestDenied)
}

func TestCancelForwardRefusesQueued(t *testing.T) {
	srv := newServer(t, nil)
	s := dial(t, srv.Addr(), srv.ClientConfig())
	bound, err := s.ListenForward(testContext(t), "127.0.0.1", 0)
	require.NoError(t, err)
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(bound))
	require.NoError(t, err)
	defer c.Close()
	// Give the connection time to reach the queue, then cancel.
	time.Sleep(200 * time.Millisecond)
	require.NoError(t, s.CancelForward(testContext(t), "127.0.0.1", bound))
	require.NoError(t, c.SetReadDeadline(time.Now().Add(testTimeout)))
	_, err = bufio.NewReader(c).ReadByte()
	assert.Error(t, err, "the queued connection is refused and closed")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, _, err = s.AcceptForward(ctx)
	assert.ErrorIs(t, err, context.DeadlineExceeded, "nothing is left to accept")
}

// sshtestForOpenSSH starts an sshtest server whose client key and host key
// are also on disk, for OpenSSH's ssh client.
func sshtestForOpenSSH(t testing.TB, cfg *sshtest.Config) (srv *sshtest.Server, keyFile, knownHosts string) {
	t.Helper()
	dir := t.TempDir()
	keyFile, signer := testnet.KeyFile(t, dir)
	if cfg == nil {
		cfg = &sshtest.Config{}
	}
	cfg.ClientKey = signer
	srv = newServer(t, cfg)
	knownHosts = filepath.Join(dir, "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(srv.Addr())}, srv.HostKey())
	require.NoError(t, os.WriteFile(knownHosts, []byte(line+"\n"), 0o600))
	return srv, keyFile, knownHosts
}

func TestOpenSSHClientAgainstSSHTest(t *testing.T) {
	peers.Require(t, peers.SSHBin)
	srv, key, known := sshtestForOpenSSH(t, nil)
	echoAddr := tcpServer(t, hashAfterEOF)
	lport := peers.FreePort(t)
	host, port, err := net.SplitHostPort(srv.Addr())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	target := "127.0.0.1:" + strconv.Itoa(echoAddr.Port)
	cmd := peers.SSHCommand(t, ctx, "-N", "-v", "-p", port, "-i", key, "-o", "UserKnownHostsFile="+known,
		"-o", "ExitOnForwardFailure=yes",
		"-L", fmt.Sprintf("127.0.0.1:%d:%s", lport, target), "-R", "0:"+target, "sshtest@"+host)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	allocated := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var p int
			if line := sc.Text(); strings.HasPrefix(line, "Allocated port ") {
				fmt.Sscanf(line, "Allocated port %d", &p)
				allocated <- p
			}
		}
	}()
	var rport int
	select {
	case rport = <-allocated:
	case <-time.After(testTimeout):
		t.Fatal("ssh did not report the allocated port")
	}
	dialHash(t, rport, randomBytes(t, 1<<20))
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(lport))
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 10*time.Second, 50*time.Millisecond)
	dialHash(t, lport, randomBytes(t, 1<<20))
}

func TestAcceptEndsWhenServerGoes(t *testing.T) {
	d, s := startSSHD(t)
	_, err := s.ListenForward(testContext(t), "127.0.0.1", 0)
	require.NoError(t, err)
	ln, err := s.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	errs := make(chan error, 2)
	go func() {
		_, _, err := s.AcceptForward(context.Background())
		errs <- err
	}()
	go func() {
		_, err := ln.Accept()
		errs <- err
	}()
	time.Sleep(50 * time.Millisecond)
	d.Stop()
	for range 2 {
		select {
		case err := <-errs:
			assert.ErrorIs(t, err, net.ErrClosed)
		case <-time.After(10 * time.Second):
			t.Fatal("Accept did not return after the server went away")
		}
	}
}
