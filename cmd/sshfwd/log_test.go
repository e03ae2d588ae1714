package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sshfwd/sshfwd/internal/peers"
)

func TestLoggerLevelsAndStamps(t *testing.T) {
	for _, tc := range []struct {
		level int
		want  []string
	}{
		{levelQuiet, nil},
		{levelInfo, []string{"info"}},
		{levelDebug, []string{"info", "debug1: debug"}},
		{levelDebug + 1, []string{"info", "debug1: debug", "debug2: debug2"}},
	} {
		var b syncBuffer
		l := newLogger(&b, tc.level)
		l.Infof("info")
		l.Debugf("debug")
		l.Debug2f("debug2")
		if tc.want == nil {
			assert.Empty(t, b.String())
			continue
		}
		assert.Equal(t, tc.want, lines(b.String()), "level %d", tc.level)
		for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
			assert.Regexp(t, stampRx, line, "a buffer is no terminal: lines are dated")
		}
	}
}

// ipv6Loopback reports whether ::1 can be listened on, which gives a
// default local forward a second listener, and so a second channel
// number.
func ipv6Loopback() bool {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

func TestVerbose(t *testing.T) {
	isolate(t)
	d := startSSHD(t)
	closed := peers.FreePort(t)
	port, socks := peers.FreePort(t), peers.FreePort(t)
	c := start(t, append(sshArgs(d), "-v", "-C", "-A", "-o", "Tunnel=yes",
		"-L", fmt.Sprintf("%d:127.0.0.1:%d", port, closed), "-D", strconv.Itoa(socks),
		"-R", "0:127.0.0.1:"+strconv.Itoa(closed), "127.0.0.1")...)
	allocated := c.waitLine(t, `Allocated port (\d+) for remote forward`)[1]

	conn, err := net.Dial("tcp", local(port))
	require.NoError(t, err)
	defer conn.Close()
	// ssh numbers the listeners first: one or two for the -L, as many
	// for the -D, and the connection takes the next number free.
	listeners := 1
	if ipv6Loopback() {
		listeners = 2
	}
	first := 2 * listeners
	c.waitLine(t, `channel `+strconv.Itoa(first)+`: open failed: connect failed: Connection refused\n`)

	want := []string{
		"debug1: command line: Compression yes: golang.org/x/crypto/ssh has no compression, so the connection is not compressed",
		"debug1: command line: Tunnel yes: not acted on by sshfwd",
		"debug1: ForwardAgent yes: sshfwd opens no session, as ssh -N, so no agent is forwarded",
		fmt.Sprintf("debug1: Local connections to LOCALHOST:%d forwarded to remote address 127.0.0.1:%d", port, closed),
		fmt.Sprintf("debug1: Local forwarding listening on 127.0.0.1 port %d.", port),
		fmt.Sprintf("debug1: Local connections to LOCALHOST:%d forwarded to remote address socks:0", socks),
		fmt.Sprintf("debug1: Remote connections from LOCALHOST:0 forwarded to local address 127.0.0.1:%d", closed),
		fmt.Sprintf("debug1: Connecting to 127.0.0.1 [127.0.0.1] port %d.", d.Port),
		fmt.Sprintf(`debug1: Authenticated to 127.0.0.1 ([127.0.0.1]:%d) using "publickey".`, d.Port),
		fmt.Sprintf("debug1: remote forward success for: listen localhost:0, connect 127.0.0.1:%d", closed),
		fmt.Sprintf("Allocated port %s for remote forward to 127.0.0.1:%d", allocated, closed),
		fmt.Sprintf("debug1: Connection to LOCALHOST:%d forwarding to 127.0.0.1:%d requested.", port, closed),
		fmt.Sprintf("debug1: channel %d: new [direct-tcpip]", first),
		fmt.Sprintf("channel %d: open failed: connect failed: Connection refused", first),
	}
	got := lines(c.stderr.String())
	for _, w := range want {
		assert.Contains(t, got, w)
	}

	conn, err = net.Dial("tcp", "127.0.0.1:"+allocated)
	require.NoError(t, err)
	conn.Close()
	c.waitLine(t, fmt.Sprintf(`connect_to 127\.0\.0\.1 port %d: failed\.\n`, closed))

	sc := socks5Request(t, local(socks), closed)
	assert.Equal(t, byte(5), sc[1], "the SOCKS client hears: connection refused")
	c.waitLine(t, `channel \d+: open failed: connect failed: Connection refused\n(.|\n)*channel \d+: open failed: connect failed: Connection refused\n`)
}

// socks5Request asks the SOCKS5 proxy at proxy for 127.0.0.1:port and
// returns its reply.
func socks5Request(t *testing.T, proxy string, port int) []byte {
	t.Helper()
	c, err := net.Dial("tcp", proxy)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte{5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, byte(port >> 8), byte(port)})
	require.NoError(t, err)
	reply := make([]byte, 12)
	_, err = c.Read(reply[:2])
	require.NoError(t, err)
	_, err = c.Read(reply[2:])
	require.NoError(t, err)
	return reply[2:]
}

func TestQuiet(t *testing.T) {
	isolate(t)
	d := startSSHD(t)
	closed := peers.FreePort(t)
	port := peers.FreePort(t)
	c := start(t, append(sshArgs(d), "-q", "-L", fmt.Sprintf("%d:127.0.0.1:%d", port, closed), "127.0.0.1")...)
	require.Eventually(t, func() bool {
		conn, err := net.Dial("tcp", local(port))
		if err != nil {
			return false
		}
		defer conn.Close()
		n, _ := conn.Read(make([]byte, 1))
		return n == 0
	}, testTimeout, 50*time.Millisecond)
	assert.Empty(t, c.stderr.String(), "-q: not even the failed open")

	_, errs, code := runToEnd(t, "-q", "-F", "none", "-p", strconv.Itoa(closed), "127.0.0.1")
	assert.Equal(t, exitFailure, code)
	assert.Empty(t, errs, "-q silences the final error too, as ssh -q does")
	_, errs, _ = runToEnd(t, "-q", "-L", "8080", "host")
	assert.Equal(t, "Bad local forwarding specification '8080'\n", errs, "not a mistake on the command line")
}

func TestLogFile(t *testing.T) {
	isolate(t)
	d := startSSHD(t)
	logFile := filepath.Join(t.TempDir(), "sshfwd.log")
	require.NoError(t, os.WriteFile(logFile, []byte("before\n"), 0o600))
	c := start(t, append(sshArgs(d), "-E", logFile, "-v", "127.0.0.1")...)
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(logFile)
		return strings.Contains(string(b), "Connected to")
	}, testTimeout, 20*time.Millisecond)
	b, err := os.ReadFile(logFile)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(b), "before\n"), "appended to")
	assert.Regexp(t, regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} debug1: Authenticated to `), string(b))
	assert.Empty(t, c.stderr.String())
	select {
	case <-c.done:
		t.Fatalf("exited with %d", c.code)
	default:
	}

	_, errs, code := runToEnd(t, "-E", "/nonexistent/dir/log", "host")
	assert.Equal(t, exitFailure, code)
	assert.Equal(t, "Couldn't open logfile /nonexistent/dir/log: No such file or directory\n", errs)
}
