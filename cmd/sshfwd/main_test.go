package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/sshfwd/sshfwd/internal/peers"
	"github.com/sshfwd/sshfwd/internal/testnet"
	"github.com/sshfwd/sshfwd/sshconfig"
	"github.com/sshfwd/sshfwd/sshtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testTimeout bounds every wait in these tests.
const testTimeout = 30 * time.Second

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
// the test.
func isolate(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Setenv("SSH_AUTH_SOCK", "")
}

// testBase is the sshconfig.Options run starts from in the tests: the
// system's files in an empty directory, and no prompts.
func testBase(t *testing.T) sshconfig.Options {
	return sshconfig.Options{SystemDir: t.TempDir()}
}

// start runs the command until the test ends, and checks then that it
// exited cleanly; its stderr is returned, and done reports an early exit.
func start(t *testing.T, args ...string) (stderr *syncBuffer, done <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stderr = &syncBuffer{}
	ch := make(chan error, 1)
	base := testBase(t)
	go func() { ch <- run(ctx, args, io.Discard, stderr, base) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-ch:
			assert.NoError(t, err)
		case <-time.After(testTimeout):
			t.Error("sshfwd did not stop when its context ended")
		}
		t.Logf("sshfwd stderr:\n%s", stderr)
	})
	return stderr, ch
}

// runToEnd runs the command, expecting it to give up by itself.
func runToEnd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var stderr syncBuffer
	err := run(ctx, args, io.Discard, &stderr, testBase(t))
	require.NoError(t, ctx.Err(), "sshfwd did not give up")
	return stderr.String(), err
}

// waitLine waits until stderr has a line matching re, and returns its
// submatches.
func waitLine(t *testing.T, stderr *syncBuffer, done <-chan error, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(testTimeout)
	for time.Now().Before(deadline) {
		if m := rx.FindStringSubmatch(stderr.String()); m != nil {
			return m
		}
		select {
		case err := <-done:
			t.Fatalf("sshfwd exited: %v\n%s", err, stderr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("no line matching %q in:\n%s", re, stderr)
	return nil
}

// hashServer answers every connection with the sha256 of what it read
// before EOF, until the test ends.
func hashServer(t *testing.T) int {
	return testnet.TCPServer(t, testnet.HashAfterEOF).Port
}

var roundTrip = testnet.RoundTrip

// eventuallyRoundTrip waits until a connection to addr makes a round trip.
func eventuallyRoundTrip(t *testing.T, addr string, data []byte) {
	t.Helper()
	var last error
	if !assert.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			last = err
			return false
		}
		defer c.Close()
		last = roundTrip(c, data)
		return last == nil
	}, testTimeout, 50*time.Millisecond) {
		t.Fatalf("no round trip through %s: %v", addr, last)
	}
}

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

// sshArgs are the options that reach an OpenSSH server from peers.
func sshArgs(d *peers.SSHD) []string {
	return []string{"-p", strconv.Itoa(d.Port), "-i", d.KeyFile, "-o", "UserKnownHostsFile=" + d.KnownHosts, "-l", d.User}
}

// exampleSSHD is the examples/sshd program, built for the test, run as a
// process that the test can kill and start again on the same address with
// the same host key.
type exampleSSHD struct {
	t    *testing.T
	bin  string
	args []string
	cmd  *exec.Cmd
}

func newExampleSSHD(t *testing.T, authorizedKey ssh.PublicKey) *exampleSSHD {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is needed to build examples/sshd")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "sshd")
	out, err := exec.Command(goBin, "build", "-o", bin, "github.com/sshfwd/sshfwd/examples/sshd").CombinedOutput()
	require.NoError(t, err, "%s", out)
	ak := filepath.Join(dir, "authorized_keys")
	require.NoError(t, os.WriteFile(ak, ssh.MarshalAuthorizedKey(authorizedKey), 0o600))
	e := &exampleSSHD{t: t, bin: bin}
	e.args = []string{"-addr", "127.0.0.1:" + strconv.Itoa(peers.FreePort(t)), "-authorized-keys", ak, "-host-key", filepath.Join(dir, "host_key")}
	t.Cleanup(e.kill)
	e.start()
	return e
}

// start runs the server and waits until it listens.
func (e *exampleSSHD) start() {
	e.t.Helper()
	e.cmd = exec.Command(e.bin, e.args...)
	stdout, err := e.cmd.StdoutPipe()
	require.NoError(e.t, err)
	e.cmd.Stderr = os.Stderr
	require.NoError(e.t, e.cmd.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(e.t, err, "examples/sshd did not start")
	require.Contains(e.t, line, "listening on "+e.args[1])
}

// kill kills the server by its PID and reaps it.
func (e *exampleSSHD) kill() {
	if e.cmd == nil {
		return
	}
	e.cmd.Process.Kill()
	e.cmd.Wait()
	e.cmd = nil
}

func TestLocalForwardSurvivesServerRestart(t *testing.T) {
	dir := t.TempDir()
	key, signer := newKey(t, dir)
	// Built before isolate changes HOME, which holds the build cache.
	srv := newExampleSSHD(t, signer.PublicKey())
	isolate(t)
	_, port, err := net.SplitHostPort(srv.args[1])
	require.NoError(t, err)
	target := hashServer(t)
	local := peers.FreePort(t)
	known := filepath.Join(dir, "known_hosts")

	stderr, done := start(t, "-N", "-i", key, "-p", port,
		"-o", "UserKnownHostsFile="+known, "-o", "StrictHostKeyChecking=accept-new", "-o", "ServerAliveInterval=1",
		"-L", fmt.Sprintf("%d:127.0.0.1:%d", local, target), "127.0.0.1")
	waitLine(t, stderr, done, `Connected to \S+@127\.0\.0\.1:`+port)
	localAddr := "127.0.0.1:" + strconv.Itoa(local)
	eventuallyRoundTrip(t, localAddr, []byte("before"))

	srv.kill()
	waitLine(t, stderr, done, `connection lost; reconnecting in [0-9.]+s`)
	srv.start()
	eventuallyRoundTrip(t, localAddr, []byte("after"))
	waitLine(t, stderr, done, `reconnected`)
	assert.Equal(t, 1, strings.Count(stderr.String(), "Warning: Permanently added '[127.0.0.1]:"+port+"' (ED25519) to the list of known hosts."),
		"the host key is added once and matches after the restart")
	data, err := os.ReadFile(known)
	require.NoError(t, err)
	assert.Equal(t, 1, strings.Count(string(data), "[127.0.0.1]:"+port+" ssh-ed25519 "))
}

func TestRemoteForwardAllocatedPort(t *testing.T) {
	isolate(t)
	peers.Require(t, peers.SSHDBin)
	d := peers.StartSSHD(t, peers.SSHDOptions{})
	target := hashServer(t)
	to := fmt.Sprintf("127.0.0.1:%d", target)
	stderr, done := start(t, append(sshArgs(d), "-R", "0:"+to, "-R", "127.0.0.1:0", "127.0.0.1")...)

	m := waitLine(t, stderr, done, `Allocated port (\d+) for remote forward to `+regexp.QuoteMeta(to)+"\n")
	eventuallyRoundTrip(t, "127.0.0.1:"+m[1], bytes.Repeat([]byte("R"), 1<<20))

	m = waitLine(t, stderr, done, `Allocated port (\d+) for remote forward to SOCKS\n`)
	c := socks5Connect(t, "127.0.0.1:"+m[1], target)
	require.NoError(t, roundTrip(c, []byte("remote SOCKS")))
}

func TestDynamicForward(t *testing.T) {
	isolate(t)
	peers.Require(t, peers.SSHDBin)
	d := peers.StartSSHD(t, peers.SSHDOptions{})
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	}))
	defer web.Close()
	target := hashServer(t)
	socksPort := peers.FreePort(t)
	proxy := "127.0.0.1:" + strconv.Itoa(socksPort)
	stderr, done := start(t, append(sshArgs(d), "-D", strconv.Itoa(socksPort), "127.0.0.1")...)
	waitLine(t, stderr, done, `Connected to`)

	c := socks5Connect(t, proxy, target)
	require.NoError(t, roundTrip(c, []byte("dynamic")))

	peers.Require(t, "curl")
	out, err := exec.Command("curl", "-sS", "--max-time", "20", "--socks5-hostname", proxy, web.URL+"/through-sshfwd").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Equal(t, "hello /through-sshfwd", string(out))
}

// writeConfig writes an ssh_config file for -F.
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "config")
	require.NoError(t, os.WriteFile(file, []byte(content), 0o600))
	return file
}

// hostBlock is a Host block that reaches d as name.
func hostBlock(d *peers.SSHD, name string) string {
	return fmt.Sprintf("Host %s\n  HostName 127.0.0.1\n  Port %d\n  User %s\n  IdentityFile %s\n  UserKnownHostsFile %s\n",
		name, d.Port, d.User, d.KeyFile, d.KnownHosts)
}

func TestHostAlias(t *testing.T) {
	isolate(t)
	peers.Require(t, peers.SSHDBin)
	d := peers.StartSSHD(t, peers.SSHDOptions{})
	target := hashServer(t)
	local := peers.FreePort(t)
	stderr, done := start(t, "-F", writeConfig(t, hostBlock(d, "lab")), "-L", fmt.Sprintf("%d:127.0.0.1:%d", local, target), "lab")
	waitLine(t, stderr, done, `Connected to \S+@`+regexp.QuoteMeta(d.Addr))
	eventuallyRoundTrip(t, "127.0.0.1:"+strconv.Itoa(local), []byte("alias"))
}

func TestControlMaster(t *testing.T) {
	isolate(t)
	peers.Require(t, peers.SSHDBin)
	d := peers.StartSSHD(t, peers.SSHDOptions{})
	m := peers.StartControlMaster(t, d)
	target := hashServer(t)
	local := peers.FreePort(t)
	to := fmt.Sprintf("127.0.0.1:%d", target)
	// No key and no known_hosts: only the master can carry this.
	stderr, done := start(t, "-F", "none", "-S", m.Socket, "-L", fmt.Sprintf("%d:%s", local, to), "-R", "0:"+to, "127.0.0.1")
	eventuallyRoundTrip(t, "127.0.0.1:"+strconv.Itoa(local), []byte("-L through the master"))
	port := waitLine(t, stderr, done, `Allocated port (\d+) for remote forward to `+regexp.QuoteMeta(to)+"\n")[1]
	eventuallyRoundTrip(t, "127.0.0.1:"+port, []byte("-R through the master"))
}

func TestJumpHost(t *testing.T) {
	isolate(t)
	peers.Require(t, peers.SSHDBin)
	jump := peers.StartSSHD(t, peers.SSHDOptions{})
	inner := sshtest.NewServer(&sshtest.Config{AuthorizedKeys: []ssh.PublicKey{jump.Signer.PublicKey()}})
	defer inner.Close()
	host, port, err := net.SplitHostPort(inner.Addr())
	require.NoError(t, err)
	known := filepath.Join(t.TempDir(), "known_hosts")
	innerLine := knownhosts.Line([]string{knownhosts.Normalize(inner.Addr())}, inner.HostKey())
	require.NoError(t, os.WriteFile(known, []byte(innerLine+"\n"), 0o600))
	target := hashServer(t)
	local := peers.FreePort(t)

	// The jump host is an alias of the file, whose settings apply to it;
	// the command line's apply to the destination only, as with ssh -J.
	stderr, done := start(t, "-F", writeConfig(t, hostBlock(jump, "bastion")), "-i", jump.KeyFile, "-o", "UserKnownHostsFile="+known, "-p", port,
		"-J", "bastion", "-L", fmt.Sprintf("%d:127.0.0.1:%d", local, target), "someone@"+host)
	waitLine(t, stderr, done, `Connected to someone@`+regexp.QuoteMeta(inner.Addr()))
	eventuallyRoundTrip(t, "127.0.0.1:"+strconv.Itoa(local), []byte("jumped"))
}

func TestHostKeyChecking(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	key, signer := newKey(t, dir)
	srv := sshtest.NewServer(&sshtest.Config{AuthorizedKeys: []ssh.PublicKey{signer.PublicKey()}})
	defer srv.Close()
	host, port, err := net.SplitHostPort(srv.Addr())
	require.NoError(t, err)
	name := "[" + host + "]:" + port
	args := func(known, strict string) []string {
		return []string{"-i", key, "-p", port, "-o", "UserKnownHostsFile=" + known, "-o", "StrictHostKeyChecking=" + strict, host}
	}

	t.Run("unknown host refused", func(t *testing.T) {
		known := filepath.Join(t.TempDir(), "known_hosts")
		for _, strict := range []string{"yes", "YES"} {
			_, err := runToEnd(t, args(known, strict)...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "No ED25519 host key is known for "+name+" and you have requested strict checking.\nHost key verification failed.")
			assert.True(t, strings.HasPrefix(err.Error(), "sshfwd: "), err.Error())
			assert.NoFileExists(t, known)
		}
	})
	t.Run("accept-new adds the key", func(t *testing.T) {
		known := filepath.Join(t.TempDir(), ".ssh", "known_hosts")
		stderr, done := start(t, args(known, "accept-new")...)
		waitLine(t, stderr, done, `Connected to`)
		assert.Contains(t, stderr.String(), "Warning: Permanently added '"+name+"' (ED25519) to the list of known hosts.")
		data, err := os.ReadFile(known)
		require.NoError(t, err)
		assert.Equal(t, knownhosts.Line([]string{name}, srv.HostKey())+"\n", string(data))
	})

	_, otherSigner := newKey(t, t.TempDir())
	changed := filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, os.WriteFile(changed, []byte("# comment\n"+knownhosts.Line([]string{name}, otherSigner.PublicKey())+"\n"), 0o600))

	t.Run("changed key refused", func(t *testing.T) {
		for _, strict := range []string{"yes", "accept-new"} {
			_, err := runToEnd(t, args(changed, strict)...)
			require.Error(t, err, strict)
			msg := err.Error()
			assert.Contains(t, msg, "WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!", strict)
			assert.Contains(t, msg, ssh.FingerprintSHA256(srv.HostKey()), strict)
			assert.Contains(t, msg, "Offending ED25519 key in "+changed+":2", strict)
			assert.Contains(t, msg, "Host key for "+name+" has changed and you have requested strict checking.\nHost key verification failed.", strict)
		}
	})
	t.Run("changed key let through by no", func(t *testing.T) {
		stderr, done := start(t, args(changed, "no")...)
		waitLine(t, stderr, done, `Connected to`)
		assert.Contains(t, stderr.String(), "has changed")
	})
}

func TestExitOnForwardFailure(t *testing.T) {
	isolate(t)
	peers.Require(t, peers.SSHDBin)
	d := peers.StartSSHD(t, peers.SSHDOptions{Config: []string{"PermitListen none"}})

	t.Run("remote refused", func(t *testing.T) {
		_, err := runToEnd(t, append(sshArgs(d), "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:1", "127.0.0.1")...)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "sshfwd: remote forward localhost:0 -> 127.0.0.1:1")
		assert.Contains(t, err.Error(), "request denied")
	})
	t.Run("remote refused without the option", func(t *testing.T) {
		stderr, done := start(t, append(sshArgs(d), "-R", "0:127.0.0.1:1", "127.0.0.1")...)
		waitLine(t, stderr, done, `remote forward localhost:0 -> 127.0.0.1:1 failed: .*request denied.*; retrying in`)
	})
	t.Run("local port in use", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		_, err = runToEnd(t, append(sshArgs(d), "-o", "exitonforwardfailure yes", "-L", port+":127.0.0.1:1", "127.0.0.1")...)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "sshfwd: could not request local forwarding on localhost:"+port)
		assert.True(t, errors.Is(err, errAddrInUse(t)), "%v", err)
	})
}

// errAddrInUse returns the error the system gives for a port in use.
func errAddrInUse(t *testing.T) error {
	t.Helper()
	a, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer a.Close()
	_, err = net.Listen("tcp", a.Addr().String())
	require.Error(t, err)
	var se *os.SyscallError
	require.True(t, errors.As(err, &se))
	return se.Err
}

func TestUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"-h"}, &stdout, &stderr, testBase(t)))
	assert.Contains(t, stdout.String(), "usage: sshfwd")
	err := run(context.Background(), []string{"-x", "host"}, &stdout, &stderr, testBase(t))
	assert.ErrorContains(t, err, `sshfwd: unknown option -x`)
	assert.Contains(t, stderr.String(), "usage: sshfwd")

	isolate(t)
	for _, tc := range []struct{ option, want string }{
		{"Bogus=1", "sshfwd: command line: Bad configuration option: Bogus"},
		{"Port=0", `sshfwd: command line: "0": want a number from 1 to 65535`},
		{"ServerAliveInterval=5x", "bad time unit"},
		{"LocalForward=8080", "sshfwd: LocalForward 8080: "},
	} {
		_, err := runToEnd(t, "-o", tc.option, "host")
		assert.ErrorContains(t, err, tc.want, tc.option)
	}
}
