package sshtest

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/internal/wire"
)

func newSession(t testing.TB, client *ssh.Client) *ssh.Session {
	t.Helper()
	sess, err := client.NewSession()
	require.NoError(t, err)
	t.Cleanup(func() { sess.Close() })
	return sess
}

func TestExec(t *testing.T) {
	srv := newServer(t, nil)
	client := dial(t, srv)

	for _, tc := range []struct {
		name           string
		cmd            string
		stdout, stderr string
		status         int
		signal         string
	}{
		{"output and status", "echo hi; echo err >&2; exit 3", "hi\n", "err\n", 3, ""},
		{"success", "printf ok", "ok", "", 0, ""},
		{"signal", "kill -TERM $$", "", "", -1, "TERM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sess := newSession(t, client)
			var stdout, stderr bytes.Buffer
			sess.Stdout, sess.Stderr = &stdout, &stderr
			err := sess.Run(tc.cmd)
			if tc.status == 0 {
				require.NoError(t, err)
			} else {
				var ee *ssh.ExitError
				require.True(t, errors.As(err, &ee), "got %v, want an *ssh.ExitError", err)
				if tc.signal != "" {
					assert.Equal(t, tc.signal, ee.Signal())
				} else {
					assert.Equal(t, tc.status, ee.ExitStatus())
				}
			}
			assert.Equal(t, tc.stdout, stdout.String())
			assert.Equal(t, tc.stderr, stderr.String())
		})
	}
}

// TestExecStdin checks that the client's EOF reaches the command: wc
// prints its count only then.
func TestExecStdin(t *testing.T) {
	srv := newServer(t, nil)
	client := dial(t, srv)
	sess := newSession(t, client)

	stdin, err := sess.StdinPipe()
	require.NoError(t, err)
	stdout, err := sess.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, sess.Start("wc -c"))
	_, err = io.WriteString(stdin, strings.Repeat("x", 100000))
	require.NoError(t, err)
	require.NoError(t, stdin.Close())
	out, err := io.ReadAll(stdout)
	require.NoError(t, err)
	assert.Equal(t, "100000", strings.TrimSpace(string(out)))
	require.NoError(t, sess.Wait())
}

func TestExecEnv(t *testing.T) {
	srv := newServer(t, nil)
	client := dial(t, srv)
	sess := newSession(t, client)

	require.NoError(t, sess.Setenv("SSHTEST_GREETING", "hello there"))
	assert.Error(t, sess.Setenv("BAD=NAME", "x"), "a name with = was accepted")
	out, err := sess.Output(`printf %s "$SSHTEST_GREETING"`)
	require.NoError(t, err)
	assert.Equal(t, "hello there", string(out))
}

// TestSessionRefusals checks the session requests a test server does not
// serve, and malformed or repeated ones.
func TestSessionRefusals(t *testing.T) {
	srv := newServer(t, nil)
	client := dial(t, srv)

	assert.Error(t, newSession(t, client).Shell(), "shell")
	assert.Error(t, newSession(t, client).RequestPty("xterm", 24, 80, nil), "pty-req")
	assert.Error(t, newSession(t, client).RequestSubsystem("sftp"), "subsystem")

	ch, reqs, err := client.OpenChannel(wire.Session, nil)
	require.NoError(t, err)
	defer ch.Close()
	go ssh.DiscardRequests(reqs)
	for _, tc := range []struct {
		name    string
		typ     string
		payload []byte
		want    bool
	}{
		{"malformed exec", wire.Exec, []byte{0, 0, 0, 9, 'x'}, false},
		{"malformed env", wire.Env, []byte{1}, false},
		{"exec", wire.Exec, ssh.Marshal(&wire.ExecMsg{Command: "cat"}), true},
		{"second exec", wire.Exec, ssh.Marshal(&wire.ExecMsg{Command: "true"}), false},
		{"x11-req after exec", wire.X11Req, ssh.Marshal(&wire.X11ReqMsg{AuthProtocol: "MIT-MAGIC-COOKIE-1", AuthCookie: "00"}), false},
		{"env after exec", wire.Env, ssh.Marshal(&wire.EnvMsg{Name: "A", Value: "b"}), false},
		{"unknown", "no-such-request@example.com", nil, false},
	} {
		ok, err := ch.SendRequest(tc.typ, true, tc.payload)
		require.NoError(t, err, tc.name)
		assert.Equal(t, tc.want, ok, tc.name)
	}
	require.NoError(t, ch.CloseWrite())
	_, err = io.ReadAll(ch)
	require.NoError(t, err)
}

func TestGlobalRequestsRefused(t *testing.T) {
	srv := newServer(t, nil)
	client := dial(t, srv)
	for _, name := range []string{wire.KeepAlive, "no-such-request@example.com"} {
		ok, _, err := client.SendRequest(name, true, nil)
		require.NoError(t, err)
		assert.False(t, ok, name)
	}
}
