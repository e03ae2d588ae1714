package sshtest

import (
	"bytes"
	"crypto/rand"
	"errors"
	"net"
	"strconv"
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
				return &Config{PermitOpenCallback: func(host string, port int) bool {
					*seen = append(*seen, net.JoinHostPort(host, strconv.Itoa(port)))
					return false
				}}
			},
			network: "tcp",
			addr:    func(*testing.T) string { return "127.0.0.1:4242" },
			reason:  ssh.Prohibited,
			message: "not permitted",
			seen:    []string{"127.0.0.1:4242"},
		},
		{
			name: "unix prohibited",
			cfg: func(seen *[]string) *Config {
				return &Config{PermitOpenUnixCallback: func(path string) bool {
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
