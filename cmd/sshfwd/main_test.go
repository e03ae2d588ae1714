package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sshfwd/sshfwd/internal/peers"
	"github.com/sshfwd/sshfwd/internal/testnet"
	"github.com/sshfwd/sshfwd/sshconfig"
)

// binDir holds the command built for the tests that run it as a user
// would; it is removed when the tests end.
var binDir string

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) {
		if binDir != "" {
			os.RemoveAll(binDir)
		}
	}))
}

// testTimeout bounds every wait in these tests.
const testTimeout = 30 * time.Second

// goEnv is the environment the tests start with, for building: isolate
// changes HOME, under which the build cache lives.
var goEnv = os.Environ()

var (
	buildOnce sync.Once
	built     string
	buildErr  error
)

// sshfwdBinary returns the path of sshfwd built from this package, building it
// the first time.
func sshfwdBinary(t testing.TB) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is needed to build sshfwd")
	}
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "sshfwd-bin"); buildErr != nil {
			return
		}
		built = filepath.Join(binDir, "sshfwd")
		cmd := exec.Command(goBin, "build", "-o", built, ".")
		cmd.Env = goEnv
		var out []byte
		if out, buildErr = cmd.CombinedOutput(); buildErr != nil {
			buildErr = fmt.Errorf("%v: %s", buildErr, out)
		}
	})
	require.NoError(t, buildErr)
	return built
}

// syncBuffer is a bytes.Buffer that run writes to while the test reads.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// isolate keeps the user's keys, agent, ssh_config and known_hosts out of
// the test, and returns the home directory it uses instead.
func isolate(t *testing.T) string {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("SSH_AUTH_SOCK", "")
	return home
}

// testBase is the sshconfig.Options run starts from in the tests: the
// system's files in an empty directory, and no prompts.
func testBase(t *testing.T) sshconfig.Options {
	return sshconfig.Options{SystemDir: t.TempDir()}
}

// cli is sshfwd running in the test's process.
type cli struct {
	args   []string
	stderr *syncBuffer
	done   chan struct{} // closed when run has returned
	code   int           // run's exit status, once done is closed
	cancel context.CancelFunc
	once   sync.Once // logs stderr once
}

// start runs the command until the test ends, and checks then that it
// exited cleanly.
func start(t *testing.T, args ...string) *cli {
	t.Helper()
	c := startStreams(t, streams{in: strings.NewReader(""), out: io.Discard}, args...)
	t.Cleanup(func() { assert.Equal(t, 0, c.stop(t), "exit status") })
	return c
}

// startStreams runs the command with std's stdin and stdout until it
// exits or the test ends.
func startStreams(t *testing.T, std streams, args ...string) *cli {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &cli{args: args, stderr: &syncBuffer{}, done: make(chan struct{}), cancel: cancel}
	std.err = c.stderr
	base := testBase(t)
	go func() {
		defer close(c.done)
		c.code = run(ctx, args, std, base)
	}()
	t.Cleanup(func() { c.stop(t) })
	return c
}

// exitCode waits for the command to exit and returns its status.
func (c *cli) exitCode(t testing.TB) int {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(testTimeout):
		t.Fatalf("sshfwd %q did not exit", c.args)
	}
	c.once.Do(func() { t.Logf("sshfwd %q stderr:\n%s", c.args, c.stderr) })
	return c.code
}

// stop ends the command as an interrupt does, and returns its status.
func (c *cli) stop(t testing.TB) int {
	t.Helper()
	c.cancel()
	return c.exitCode(t)
}

// waitLine waits until stderr has a line matching re, and returns its
// submatches.
func (c *cli) waitLine(t *testing.T, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(testTimeout)
	for time.Now().Before(deadline) {
		if m := rx.FindStringSubmatch(c.stderr.String()); m != nil {
			return m
		}
		select {
		case <-c.done:
			t.Fatalf("sshfwd exited with %d:\n%s", c.code, c.stderr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("no line matching %q in:\n%s", re, c.stderr)
	return nil
}

// runToEnd runs the command, expecting it to finish by itself, and
// returns its stdout, stderr and exit status.
func runToEnd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var out, errs syncBuffer
	code = run(ctx, args, streams{strings.NewReader(""), &out, &errs}, testBase(t))
	require.NoError(t, ctx.Err(), "sshfwd did not finish")
	return out.String(), errs.String(), code
}

// lines returns s's lines without their timestamps.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		out = append(out, stampRx.ReplaceAllString(l, ""))
	}
	return out
}

// stampRx matches the timestamp in front of a log line.
var stampRx = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} `)

// hashServer answers every connection with the sha256 of what it read
// before EOF, until the test ends.
func hashServer(t *testing.T) int {
	return testnet.TCPServer(t, testnet.HashAfterEOF).Port
}

var roundTrip = testnet.RoundTrip

// eventuallyRoundTrip waits until a connection to addr makes a round trip.
func eventuallyRoundTrip(t *testing.T, network, addr string, data []byte) {
	t.Helper()
	var last error
	if !assert.Eventually(t, func() bool {
		last = roundTripTo(network, addr, data)
		return last == nil
	}, testTimeout, 50*time.Millisecond) {
		t.Fatalf("no round trip through %s: %v", addr, last)
	}
}

// roundTripTo makes one half-close round trip to addr.
func roundTripTo(network, addr string, data []byte) error {
	c, err := net.DialTimeout(network, addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	return roundTrip(c, data)
}

// local is the address of a local port on 127.0.0.1.
func local(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// socks5Connect asks the SOCKS5 proxy at proxy for 127.0.0.1:port and
// returns the connection once the proxy said yes.
func socks5Connect(t *testing.T, proxy string, port int) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", proxy, testTimeout)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(testTimeout)))
	req := binary.BigEndian.AppendUint16([]byte{5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1}, uint16(port))
	_, err = c.Write(req)
	require.NoError(t, err)
	reply := make([]byte, 2+10)
	_, err = io.ReadFull(c, reply)
	require.NoError(t, err)
	require.Equal(t, []byte{5, 0, 5, 0}, reply[:4], "method selection and reply")
	return c
}

// newKey writes a fresh ed25519 key to dir and returns its file and signer.
var newKey = testnet.KeyFile

// sshArgs are the options that reach an OpenSSH server from peers. They
// name every file read, so that the command run as a process, where the
// system's directory cannot be replaced, reads nothing of /etc/ssh.
func sshArgs(d *peers.SSHD) []string {
	return []string{"-F", "none", "-p", strconv.Itoa(d.Port), "-i", d.KeyFile,
		"-o", "UserKnownHostsFile=" + d.KnownHosts, "-o", "GlobalKnownHostsFile=none", "-l", d.User}
}

// startSSHD starts OpenSSH's sshd, or skips the test without it.
func startSSHD(t *testing.T, config ...string) *peers.SSHD {
	t.Helper()
	peers.Require(t, peers.SSHDBin)
	return peers.StartSSHD(t, peers.SSHDOptions{Config: config})
}

// writeConfig writes an ssh_config file for -F.
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "config")
	require.NoError(t, os.WriteFile(file, []byte(content), 0o600))
	return file
}

// hostBlock is a Host block that reaches d as name, naming every file it
// reads.
func hostBlock(d *peers.SSHD, name string) string {
	return fmt.Sprintf("Host %s\n  HostName 127.0.0.1\n  Port %d\n  User %s\n  IdentityFile %s\n  UserKnownHostsFile %s\n  GlobalKnownHostsFile none\n",
		name, d.Port, d.User, d.KeyFile, d.KnownHosts)
}

// socketDir returns a short directory of its own for Unix sockets, whose
// paths are limited to about 100 bytes, removed when the test ends.
func socketDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sf")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// process is sshfwd run as a process, as a user runs it.
type process struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
	err    error // Wait's, once done is closed
}

// startProcess runs the built command with args until the test ends,
// when it is stopped by its PID.
func startProcess(t *testing.T, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(sshfwdBinary(t), args...), stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stderr = p.stderr
	require.NoError(t, p.cmd.Start())
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		t.Logf("sshfwd %q stderr:\n%s", args, p.stderr)
	})
	return p
}

// stop ends the process with SIGTERM, as systemd does, and returns its
// exit status; it is killed if it does not exit in time.
func (p *process) stop(t testing.TB) int {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(testTimeout):
		t.Error("sshfwd did not exit on SIGTERM")
		p.cmd.Process.Kill()
		<-p.done
	}
	return p.cmd.ProcessState.ExitCode()
}

// waitLine waits until the process's stderr has a line matching re.
func (p *process) waitLine(t *testing.T, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(testTimeout)
	for time.Now().Before(deadline) {
		if m := rx.FindStringSubmatch(p.stderr.String()); m != nil {
			return m
		}
		select {
		case <-p.done:
			t.Fatalf("sshfwd exited: %v\n%s", p.err, p.stderr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("no line matching %q in:\n%s", re, p.stderr)
	return nil
}

// sshOutput runs OpenSSH's ssh with args and returns its combined output.
func sshOutput(t *testing.T, args ...string) (string, error) {
	t.Helper()
	peers.Require(t, peers.SSHBin)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, peers.SSHBin, args...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// firstLine returns the first line of s.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
