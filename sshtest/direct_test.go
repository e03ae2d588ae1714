package sshtest

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/internal/wire"
)

func TestDirectTCPIP(t *testing.T) {
	srv := newServer(t, nil)
	client := dial(t, srv)
	echo := echoServer(t, "tcp", "127.0.0.1:0")

	big := make([]byte, 1<<20+5)
	_, err := rand.Read(big)
	require.NoError(t, err)
	for _, msg := range [][]byte{[]byte("hello"), {}, big} {
		c, err := client.Dial("tcp", echo.Addr().String())
		require.NoError(t, err)
		roundTrip(t, c, msg)
		c.Close()
	}
}

func TestDirectStreamLocal(t *testing.T) {
	srv := newServer(t, nil)
	client := dial(t, srv)
	path := socketPath(t, "echo.sock")
	echoServer(t, "unix", path)

	c, err := client.Dial("unix", path)
	require.NoError(t, err)
	defer c.Close()
	roundTrip(t, c, []byte("over a unix socket"))
}

// TestDirectRefusals checks the reason and message of every way a direct
// channel can be refused, and that the callbacks see what the client sent.
func TestDirectRefusals(t *testing.T) {
	closedPort := func(t *testing.T) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := l.Addr().String()
		require.NoError(t, l.Close())
		return addr
	}
	for _, tc := range []struct {
		name    string
		cfg     func(seen *[]string) *Config
		network string
		addr    func(t *testing.T) string
		reason  ssh.RejectionReason
		message string
		seen    []string
	}{
		{
			name: "tcp prohibited",
			cfg: func(seen *[]string) *Config {
				return &Config{PermitOpenCallback: func(_ ssh.ConnMetadata, req OpenRequest) bool {
					*seen = append(*seen, net.JoinHostPort(req.Host, strconv.Itoa(req.Port))+" at "+req.Addr.String())
					return false
				}}
			},
			network: "tcp",
			addr:    func(*testing.T) string { return "127.0.0.1:4242" },
			reason:  ssh.Prohibited,
			message: "not permitted",
			seen:    []string{"127.0.0.1:4242 at 127.0.0.1:4242"},
		},
		{
			name: "unix prohibited",
			cfg: func(seen *[]string) *Config {
				return &Config{PermitOpenUnixCallback: func(_ ssh.ConnMetadata, path string) bool {
					*seen = append(*seen, path)
					return false
				}}
			},
			network: "unix",
			addr:    func(*testing.T) string { return "/no/such.sock" },
			reason:  ssh.Prohibited,
			message: "not permitted",
			seen:    []string{"/no/such.sock"},
		},
		{
			name:    "tcp connection refused",
			cfg:     func(*[]string) *Config { return nil },
			network: "tcp",
			addr:    closedPort,
			reason:  ssh.ConnectionFailed,
			message: "connection refused",
		},
		{
			name:    "unix socket missing",
			cfg:     func(*[]string) *Config { return nil },
			network: "unix",
			addr:    func(t *testing.T) string { return socketPath(t, "missing.sock") },
			reason:  ssh.ConnectionFailed,
			message: "no such file",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen []string
			srv := newServer(t, tc.cfg(&seen))
			client := dial(t, srv)

			c, err := client.Dial(tc.network, tc.addr(t))
			if c != nil {
				c.Close()
			}
			var oce *ssh.OpenChannelError
			require.True(t, errors.As(err, &oce), "got %v, want an *ssh.OpenChannelError", err)
			assert.Equal(t, tc.reason, oce.Reason)
			assert.Contains(t, oce.Message, tc.message)
			assert.Equal(t, tc.seen, seen)
		})
	}
}

// TestMalformedChannelOpens sends channel opens no client library would
// send: they must be refused and leave the server working.
func TestMalformedChannelOpens(t *testing.T) {
	srv := newServer(t, nil)
	client := dial(t, srv)
	echo := echoServer(t, "tcp", "127.0.0.1:0")
	echoPort := echo.Addr().(*net.TCPAddr).Port

	good := ssh.Marshal(&wire.TCPIP{Host: "127.0.0.1", Port: uint32(echoPort), OriginHost: "127.0.0.1", OriginPort: 1})
	for _, tc := range []struct {
		name    string
		typ     string
		payload []byte
		reason  ssh.RejectionReason
		message string
	}{
		{"trailing garbage", wire.DirectTCPIP, append(bytes.Clone(good), "garbage"...), ssh.ConnectionFailed, "malformed"},
		{"truncated", wire.DirectTCPIP, good[:len(good)-3], ssh.ConnectionFailed, "malformed"},
		{"empty", wire.DirectTCPIP, nil, ssh.ConnectionFailed, "malformed"},
		{"port too large", wire.DirectTCPIP, ssh.Marshal(&wire.TCPIP{Host: "127.0.0.1", Port: 70000}), ssh.ConnectionFailed, "outside 0..65535"},
		{"empty host", wire.DirectTCPIP, ssh.Marshal(&wire.TCPIP{Port: uint32(echoPort)}), ssh.ConnectionFailed, "empty host"},
		{"empty socket path", wire.DirectStreamLocal, ssh.Marshal(&wire.DirectStreamLocalMsg{}), ssh.ConnectionFailed, "empty socket path"},
		{"streamlocal garbage", wire.DirectStreamLocal, append(ssh.Marshal(&wire.DirectStreamLocalMsg{SocketPath: "/x"}), 1, 2, 3), ssh.ConnectionFailed, "malformed"},
		{"unknown type", "no-such-channel@example.com", nil, ssh.UnknownChannelType, "unknown channel type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch, _, err := client.OpenChannel(tc.typ, tc.payload)
			if ch != nil {
				ch.Close()
			}
			var oce *ssh.OpenChannelError
			require.True(t, errors.As(err, &oce), "got %v, want an *ssh.OpenChannelError", err)
			assert.Equal(t, tc.reason, oce.Reason)
			assert.Contains(t, oce.Message, tc.message)
		})
	}

	ch, reqs, err := client.OpenChannel(wire.DirectTCPIP, good)
	require.NoError(t, err, "the server stopped working")
	go ssh.DiscardRequests(reqs)
	defer ch.Close()
	roundTrip(t, ch, []byte("still alive"))
}

// TestPermitOpenSpellings denies 127.0.0.1:P and tries the other ways of
// naming it: none gets through, and the callback sees the connection's
// user and the address it would reach.
func TestPermitOpenSpellings(t *testing.T) {
	echo := echoServer(t, "tcp", "127.0.0.1:0")
	port := echo.Addr().(*net.TCPAddr).Port
	denied := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	var (
		mu   sync.Mutex // guards seen
		seen []string
	)
	cfg, ev := recordEvents(&Config{PermitOpenCallback: func(meta ssh.ConnMetadata, req OpenRequest) bool {
		mu.Lock()
		seen = append(seen, fmt.Sprintf("%s %s %v", meta.User(), req.Host, req.Addr))
		mu.Unlock()
		return req.Addr != denied
	}})
	srv := newServer(t, cfg)
	client := dial(t, srv)

	for _, host := range []string{"127.0.0.1", "localhost", "::ffff:127.0.0.1", "0.0.0.0"} {
		t.Run(host, func(t *testing.T) {
			c, err := client.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
			if c != nil {
				c.Close()
			}
			var oce *ssh.OpenChannelError
			require.True(t, errors.As(err, &oce), "%s reached the denied address: %v", host, err)
			assert.Equal(t, ssh.Prohibited, oce.Reason)
			e := ev.last(t, EventChannelOpen, wire.DirectTCPIP)
			assert.ErrorIs(t, e.Err, ErrNotPermitted)
			assert.Equal(t, net.JoinHostPort(host, strconv.Itoa(port)), e.Target)
		})
	}
	// "::" reaches ::1, which a rule on 127.0.0.1 does not cover, and
	// where nothing listens.
	c, err := client.Dial("tcp", net.JoinHostPort("::", strconv.Itoa(port)))
	if c != nil {
		c.Close()
	}
	assert.Error(t, err, ":: reached the denied address")

	mu.Lock()
	got := seen
	mu.Unlock()
	p := strconv.Itoa(port)
	// Go's resolver gives "::" as an IPv4 address too, which the rule
	// refuses.
	require.GreaterOrEqual(t, len(got), 5)
	assert.Equal(t, []string{
		"sshtest 127.0.0.1 127.0.0.1:" + p,
		"sshtest localhost 127.0.0.1:" + p,
		"sshtest ::ffff:127.0.0.1 127.0.0.1:" + p,
		"sshtest 0.0.0.0 127.0.0.1:" + p,
		"sshtest :: [::1]:" + p,
	}, got[:5])

	// Another port of the same address is permitted.
	other := echoServer(t, "tcp", "127.0.0.1:0")
	c, err = client.Dial("tcp", other.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	roundTrip(t, c, []byte("permitted"))
}

// TestUnixPathsCleaned checks that the Unix callbacks see absolute, clean
// paths, so that a rule on a directory cannot be climbed out of, and that
// relative paths are refused before any callback.
func TestUnixPathsCleaned(t *testing.T) {
	dir := shortTempDir(t)
	allowed := filepath.Join(dir, "allowed")
	require.NoError(t, os.Mkdir(allowed, 0o700))
	secret := filepath.Join(dir, "secret.sock")
	echoServer(t, "unix", secret)
	inside := filepath.Join(allowed, "ok.sock")
	echoServer(t, "unix", inside)

	var (
		mu   sync.Mutex // guards seen
		seen []string
	)
	rule := func(_ ssh.ConnMetadata, path string) bool {
		mu.Lock()
		seen = append(seen, path)
		mu.Unlock()
		return strings.HasPrefix(path, allowed+"/")
	}
	srv := newServer(t, &Config{PermitOpenUnixCallback: rule, PermitListenUnixCallback: rule})
	client := dial(t, srv)

	for _, path := range []string{allowed + "/../secret.sock", allowed + "//..//secret.sock", "secret.sock", "./" + filepath.Base(dir) + "/allowed/ok.sock"} {
		c, err := client.Dial("unix", path)
		if c != nil {
			c.Close()
		}
		assert.Error(t, err, "%s got through", path)
		_, err = client.ListenUnix(path)
		assert.Error(t, err, "%s was listened on", path)
	}
	c, err := client.Dial("unix", allowed+"/./ok.sock")
	require.NoError(t, err)
	defer c.Close()
	roundTrip(t, c, []byte("inside the allowed directory"))

	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{secret, secret, secret, secret, inside}, seen,
		"the callbacks saw other paths than the cleaned absolute ones")
}
