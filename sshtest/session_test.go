package sshtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

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
	srv := newServer(t, &Config{AcceptEnv: []string{"SSHTEST_*", "LC_?"}})
	client := dial(t, srv)
	sess := newSession(t, client)

	require.NoError(t, sess.Setenv("SSHTEST_GREETING", "hello there"))
	require.NoError(t, sess.Setenv("SSHTEST_GREETING", "hello again"), "setting a variable again replaces it")
	require.NoError(t, sess.Setenv("LC_X", "x"))
	assert.Error(t, sess.Setenv("LANG", "C"), "a variable AcceptEnv does not list was accepted")
	assert.Error(t, sess.Setenv("LC_XY", "C"), "? matched two characters")
	assert.Error(t, sess.Setenv("BAD=NAME", "x"), "a name with = was accepted")
	out, err := sess.Output(`printf '%s %s' "$SSHTEST_GREETING" "$LC_X"`)
	require.NoError(t, err)
	assert.Equal(t, "hello again x", string(out))
}

// TestSessionRefusals checks the session requests a test server does not
// serve, and malformed or repeated ones.
func TestSessionRefusals(t *testing.T) {
	srv := newServer(t, nil)
	client := dial(t, srv)

	assert.Error(t, newSession(t, client).RequestSubsystem("no-such-subsystem"), "subsystem")

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

// exitCode returns the exit status err reports, 0 for nil.
func exitCode(t testing.TB, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var ee *ssh.ExitError
	require.True(t, errors.As(err, &ee), "got %v, want an *ssh.ExitError", err)
	return ee.ExitStatus()
}

func TestShell(t *testing.T) {
	srv := newServer(t, nil)
	sess := newSession(t, dial(t, srv))
	sess.Stdin = strings.NewReader("echo $((6 * 7)); exit 4\n")
	var out bytes.Buffer
	sess.Stdout = &out
	require.NoError(t, sess.Shell())
	assert.Equal(t, 4, exitCode(t, sess.Wait()))
	assert.Equal(t, "42\n", out.String())
}

// syncRequests waits until the server has answered every request sent on
// sess before it: requests are served in order, and this one wants a
// reply.
func syncRequests(t testing.TB, sess *ssh.Session) {
	t.Helper()
	_, err := sess.SendRequest("sync@sshtest", true, nil)
	require.NoError(t, err)
}

// TestTerminal runs a command on a terminal of the size pty-req asked for,
// resizes it, and checks what the command sees.
func TestTerminal(t *testing.T) {
	srv := newServer(t, nil)
	sess := newSession(t, dial(t, srv))
	require.NoError(t, sess.RequestPty("xterm-sshtest", 40, 100, ssh.TerminalModes{ssh.ECHO: 0}))
	stdin, err := sess.StdinPipe()
	require.NoError(t, err)
	stdout, err := sess.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, sess.Start(`stty -echo; echo "$TERM"; stty size; read line; stty size`))
	r := bufio.NewReader(stdout)
	for _, want := range []string{"xterm-sshtest\r\n", "40 100\r\n"} {
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		assert.Equal(t, want, line)
	}

	require.NoError(t, sess.WindowChange(50, 132))
	syncRequests(t, sess)
	_, err = io.WriteString(stdin, "go on\n")
	require.NoError(t, err)
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "50 132\r\n", line)
	require.NoError(t, sess.Wait())
}

// TestTerminalRefusals sends the terminal requests a session cannot take.
func TestTerminalRefusals(t *testing.T) {
	srv := newServer(t, nil)
	client := dial(t, srv)
	ch, reqs, err := client.OpenChannel(wire.Session, nil)
	require.NoError(t, err)
	defer ch.Close()
	go ssh.DiscardRequests(reqs)
	pty := func(cols, rows uint32) []byte {
		return ssh.Marshal(&wire.PtyReqMsg{Term: "xterm", Columns: cols, Rows: rows})
	}
	for _, tc := range []struct {
		name    string
		typ     string
		payload []byte
		want    bool
	}{
		{"window-change without a terminal", wire.WindowChange, ssh.Marshal(&wire.WindowChangeMsg{Columns: 80, Rows: 24}), false},
		{"terminal too large", wire.PtyReq, pty(1<<16, 24), false},
		{"malformed pty-req", wire.PtyReq, []byte{0, 0, 0, 1}, false},
		{"pty-req", wire.PtyReq, pty(80, 24), true},
		{"second pty-req", wire.PtyReq, pty(80, 24), false},
		{"window too large", wire.WindowChange, ssh.Marshal(&wire.WindowChangeMsg{Columns: 80, Rows: 1 << 20}), false},
		{"window-change", wire.WindowChange, ssh.Marshal(&wire.WindowChangeMsg{Columns: 100, Rows: 30}), true},
	} {
		ok, err := ch.SendRequest(tc.typ, true, tc.payload)
		require.NoError(t, err, tc.name)
		assert.Equal(t, tc.want, ok, tc.name)
	}
}

// startSubsystem opens a session channel and starts subsystem name on it;
// the channel returned receives the exit status. x/crypto's Session cannot
// wait for a subsystem, so this speaks the channel requests itself.
func startSubsystem(t testing.TB, client *ssh.Client, name string) (ssh.Channel, <-chan int) {
	t.Helper()
	ch, reqs, err := client.OpenChannel(wire.Session, nil)
	require.NoError(t, err)
	t.Cleanup(func() { ch.Close() })
	status := make(chan int, 1)
	go func() {
		for req := range reqs {
			var msg wire.ExitStatusMsg
			if req.Type == wire.ExitStatus && wire.Parse(req.Type, req.Payload, &msg) == nil {
				status <- int(msg.Status)
			}
			req.Reply(false, nil)
		}
	}()
	ok, err := ch.SendRequest(wire.Subsystem, true, ssh.Marshal(&wire.SubsystemMsg{Name: name}))
	require.NoError(t, err)
	require.True(t, ok, "subsystem %q refused", name)
	return ch, status
}

// receive waits for a value from ch, failing the test after a while.
func receive[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
	}
	t.Fatal("nothing was received")
	var zero T
	return zero
}

// TestSubsystemHandlers serves subsystems of the test's own and checks
// what the handler gets and what its result becomes.
func TestSubsystemHandlers(t *testing.T) {
	srv := newServer(t, &Config{Subsystems: map[string]SubsystemHandler{
		"upper": func(ctx context.Context, meta ssh.ConnMetadata, ch ssh.Channel) error {
			data, err := io.ReadAll(ch)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(ch, "%s says %s", meta.User(), bytes.ToUpper(data))
			return err
		},
		"broken": func(ctx context.Context, meta ssh.ConnMetadata, ch ssh.Channel) error {
			return errors.New("broken on purpose")
		},
	}})
	client := dial(t, srv)

	ch, status := startSubsystem(t, client, "upper")
	_, err := io.WriteString(ch, "hello")
	require.NoError(t, err)
	require.NoError(t, ch.CloseWrite())
	out, err := io.ReadAll(ch)
	require.NoError(t, err)
	assert.Equal(t, "sshtest says HELLO", string(out))
	assert.Equal(t, 0, receive(t, status))

	ch, status = startSubsystem(t, client, "broken")
	_, err = io.ReadAll(ch)
	require.NoError(t, err)
	assert.Equal(t, 1, receive(t, status))

	assert.Error(t, newSession(t, client).RequestSubsystem("sftp"), "Subsystems replaces the default sftp")
}

// TestSFTP uses the default sftp subsystem with pkg/sftp's client.
func TestSFTP(t *testing.T) {
	srv := newServer(t, nil)
	c, err := sftp.NewClient(dial(t, srv))
	require.NoError(t, err)
	defer c.Close()
	path := filepath.Join(t.TempDir(), "f")
	f, err := c.Create(path)
	require.NoError(t, err)
	_, err = f.Write([]byte("written over sftp"))
	require.NoError(t, err)
	require.NoError(t, f.Close())

	data, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "written over sftp", string(data))
	fi, err := c.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, int64(len(data)), fi.Size())
}

// TestDisableExec checks that no command runs when DisableExec is set,
// and that the rest still works.
func TestDisableExec(t *testing.T) {
	cfg, ev := recordEvents(&Config{DisableExec: true})
	srv := newServer(t, cfg)
	client := dial(t, srv)
	marker := filepath.Join(t.TempDir(), "ran")

	assert.Error(t, newSession(t, client).Run("touch "+marker), "exec ran")
	assert.ErrorIs(t, ev.last(t, EventSessionRequest, wire.Exec).Err, ErrNotPermitted)
	assert.Error(t, newSession(t, client).Shell(), "shell ran")
	assert.ErrorIs(t, ev.last(t, EventSessionRequest, wire.Shell).Err, ErrNotPermitted)
	_, err := os.Stat(marker)
	assert.True(t, errors.Is(err, os.ErrNotExist), "the command ran: %v", err)

	c, err := sftp.NewClient(client)
	require.NoError(t, err, "subsystems still work")
	c.Close()
}

// TestAgentForwarding forwards the client's agent to the session and
// reaches it through the socket the command is given.
func TestAgentForwarding(t *testing.T) {
	srv := newServer(t, nil)
	client := dial(t, srv)
	key, priv := newKey(t)
	keyring := agent.NewKeyring()
	require.NoError(t, keyring.Add(agent.AddedKey{PrivateKey: priv}))
	require.NoError(t, agent.ForwardToAgent(client, keyring))

	sess := newSession(t, client)
	require.NoError(t, agent.RequestAgentForwarding(sess))
	stdin, err := sess.StdinPipe()
	require.NoError(t, err)
	stdout, err := sess.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, sess.Start(`test -S "$SSH_AUTH_SOCK" && echo "$SSH_AUTH_SOCK"; exec cat`))
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	sock := strings.TrimSpace(line)

	c, err := net.Dial("unix", sock)
	require.NoError(t, err)
	keys, err := agent.NewClient(c).List()
	c.Close()
	require.NoError(t, err)
	require.Len(t, keys, 1)
	assert.Equal(t, key.PublicKey().Marshal(), keys[0].Marshal())

	require.NoError(t, stdin.Close())
	require.NoError(t, sess.Wait())
	assert.Eventually(t, func() bool {
		_, err := os.Stat(sock)
		return errors.Is(err, os.ErrNotExist)
	}, 5*time.Second, 10*time.Millisecond, "the agent socket outlived its session")
}

func TestAgentForwardingRefusals(t *testing.T) {
	disabled := newServer(t, &Config{DisableAgentForwarding: true})
	assert.Error(t, agent.RequestAgentForwarding(newSession(t, dial(t, disabled))), "agent forwarding was not disabled")

	srv := newServer(t, nil)
	sess := newSession(t, dial(t, srv))
	require.NoError(t, agent.RequestAgentForwarding(sess))
	assert.Error(t, agent.RequestAgentForwarding(sess), "a second agent socket was set up")
}
