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
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/sshfwd/sshfwd"
	"github.com/sshfwd/sshfwd/internal/peers"
	"github.com/sshfwd/sshfwd/internal/testnet"
)

// testTimeout bounds every connection the tests make.
const testTimeout = 30 * time.Second

func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// hostBlock returns a Host block that reaches d as name, logging in with
// key (d's own key when empty).
func hostBlock(d *peers.SSHD, name, key string) string {
	if key == "" {
		key = d.KeyFile
	}
	return fmt.Sprintf("Host %s\n  HostName 127.0.0.1\n  Port %d\n  User %s\n  IdentityFile %s\n", name, d.Port, d.User, key)
}

// knownHostsOf writes a known_hosts file listing the host keys of ds.
func knownHostsOf(t testing.TB, ds ...*peers.SSHD) string {
	t.Helper()
	var lines []string
	for _, d := range ds {
		lines = append(lines, knownhosts.Line([]string{knownhosts.Normalize(d.Addr)}, d.HostKey))
	}
	return writeFile(t, filepath.Join(t.TempDir(), "known_hosts"), strings.Join(lines, "\n")+"\n")
}

// dial connects to destination with opts, and closes the Session when the
// test ends.
func dial(t testing.TB, destination string, opts *Options) *sshfwd.Session {
	t.Helper()
	s, err := Dial(testContext(t), destination, opts)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// dialFails dials destination, expecting an error, and returns it; a
// Session opened all the same is closed, so that the test fails rather
// than leaves it open.
func dialFails(t testing.TB, destination string, opts *Options) error {
	t.Helper()
	s, err := Dial(testContext(t), destination, opts)
	if err == nil {
		s.Close()
		t.Errorf("Dial %s succeeded", destination)
	}
	return err
}

// checkSession runs a command on s and forwards a connection through it.
func checkSession(t testing.TB, s *sshfwd.Session) {
	t.Helper()
	sess, err := s.Client().NewSession()
	require.NoError(t, err)
	defer sess.Close()
	out, err := sess.Output("echo ok")
	require.NoError(t, err)
	assert.Equal(t, "ok\n", string(out))

	target := testnet.TCPServer(t, testnet.HashAfterEOF)
	ch, err := s.OpenForward(testContext(t), "127.0.0.1", target.Port, "127.0.0.1", 0)
	require.NoError(t, err)
	defer ch.Close()
	assert.NoError(t, testnet.RoundTrip(ch, []byte("through "+s.Client().RemoteAddr().String())))
}

// debugLines collects what Options.Debugf receives.
type debugLines struct {
	mu    sync.Mutex // guards lines
	lines []string
}

// watch makes opts's Debugf write to l, and returns l.
func (l *debugLines) watch(opts *Options) *debugLines {
	opts.Debugf = func(format string, args ...any) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.lines = append(l.lines, fmt.Sprintf(format, args...))
	}
	return l
}

func (l *debugLines) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

func TestOpenSSHAlias(t *testing.T) {
	d := peers.StartSSHD(t, peers.SSHDOptions{})
	opts := testOptions(t)
	debug := new(debugLines).watch(opts)
	userConfig(t, opts, hostBlock(d, "lab", "")+"Host *\n  UserKnownHostsFile "+d.KnownHosts+"\n  StrictHostKeyChecking yes\n")
	checkSession(t, dial(t, "lab", opts))
	port := strconv.Itoa(d.Port)
	assert.Equal(t, []string{
		"Connecting to 127.0.0.1 [127.0.0.1] port " + port + ".",
		"Connection established.",
		`Authenticated to 127.0.0.1 ([127.0.0.1]:` + port + `) using "publickey".`,
	}, debug.all(), "what ssh -v says of connecting, in its words")
}

func TestConnectErrorsInSSHWords(t *testing.T) {
	opts := testOptions(t)
	opts.ConfigFile = "none"
	port := peers.FreePort(t)
	err := dialFails(t, "ssh://127.0.0.1:"+strconv.Itoa(port), opts)
	assert.EqualError(t, err, "sshfwd: connect to host 127.0.0.1 port "+strconv.Itoa(port)+": Connection refused")
	assert.ErrorIs(t, err, syscall.ECONNREFUSED)

	err = dialFails(t, "nosuchhost.invalid", opts)
	assert.ErrorContains(t, err, "sshfwd: Could not resolve hostname nosuchhost.invalid: ")
	var dns *net.DNSError
	assert.ErrorAs(t, err, &dns)
}

func TestOpenSSHInclude(t *testing.T) {
	d := peers.StartSSHD(t, peers.SSHDOptions{})
	opts := testOptions(t)
	writeFile(t, filepath.Join(opts.Home, ".ssh", "config.d", "lab.conf"), hostBlock(d, "lab", ""))
	// The system's known_hosts, read by default as ssh reads
	// /etc/ssh/ssh_known_hosts.
	known, err := os.ReadFile(d.KnownHosts)
	require.NoError(t, err)
	writeFile(t, filepath.Join(opts.SystemDir, "ssh_known_hosts"), string(known))
	userConfig(t, opts, "Include config.d/*.conf\nStrictHostKeyChecking yes\n")
	checkSession(t, dial(t, "lab", opts))
}

func TestOpenSSHUserCertificate(t *testing.T) {
	dir := t.TempDir()
	ca := newSigner(t)
	caFile := writeFile(t, filepath.Join(dir, "ca.pub"), string(ssh.MarshalAuthorizedKey(ca.PublicKey())))
	d := peers.StartSSHD(t, peers.SSHDOptions{Config: []string{"TrustedUserCAKeys " + caFile}})
	key := filepath.Join(dir, "id_ed25519")
	priv := writeKey(t, key, nil)
	opts := testOptions(t)
	userConfig(t, opts, hostBlock(d, "lab", key)+"  IdentitiesOnly yes\n  UserKnownHostsFile "+d.KnownHosts+"\n")

	err := dialFails(t, "lab", opts)
	require.Error(t, err, "the key alone is not authorized")
	assert.Contains(t, err.Error(), "unable to authenticate")

	writeFile(t, key+"-cert.pub", string(ssh.MarshalAuthorizedKey(userCert(t, ca, publicOf(t, priv), d.User))))
	checkSession(t, dial(t, "lab", opts))
}

// hostWithCertificate starts an sshd whose host key has a certificate of
// ca for 127.0.0.1.
func hostWithCertificate(t testing.TB, ca ssh.Signer) *peers.SSHD {
	t.Helper()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "host_key")
	priv := writeKey(t, keyFile, nil)
	certFile := writeFile(t, keyFile+"-cert.pub", string(ssh.MarshalAuthorizedKey(hostCert(t, ca, publicOf(t, priv), "127.0.0.1"))))
	return peers.StartSSHD(t, peers.SSHDOptions{HostKeyFile: keyFile, Config: []string{"HostCertificate " + certFile}})
}

func TestOpenSSHHostCertificate(t *testing.T) {
	ca, wrongCA := newSigner(t), newSigner(t)
	d := hostWithCertificate(t, ca)
	opts := testOptions(t)
	known := filepath.Join(t.TempDir(), "known_hosts")
	userConfig(t, opts, hostBlock(d, "lab", "")+"  UserKnownHostsFile "+known+"\n  StrictHostKeyChecking yes\n")

	writeFile(t, known, "@cert-authority "+knownhosts.Normalize(d.Addr)+" "+authorizedLine(ca.PublicKey())+"\n")
	c, err := Resolve("lab", opts)
	require.NoError(t, err)
	assert.Equal(t, ssh.CertAlgoED25519v01, c.HostKeys().Algorithms(d.Addr)[0], "the certificate is asked for")
	checkSession(t, dial(t, "lab", opts))

	writeFile(t, known, "@cert-authority "+knownhosts.Normalize(d.Addr)+" "+authorizedLine(wrongCA.PublicKey())+"\n")
	err = dialFails(t, "lab", opts)
	var hke *HostKeyError
	require.ErrorAs(t, err, &hke, "a certificate of another CA is refused")
	assert.Empty(t, hke.Known, "and its plain key is unknown")
}

func TestOpenSSHHashedKnownHosts(t *testing.T) {
	d := peers.StartSSHD(t, peers.SSHDOptions{})
	known := writeFile(t, filepath.Join(t.TempDir(), "known_hosts"),
		knownhosts.Line([]string{knownhosts.HashHostname(knownhosts.Normalize(d.Addr))}, d.HostKey)+"\n")
	opts := testOptions(t)
	userConfig(t, opts, hostBlock(d, "lab", "")+"  UserKnownHostsFile "+known+"\n  StrictHostKeyChecking yes\n")
	checkSession(t, dial(t, "lab", opts))
}

func TestOpenSSHAcceptNewThenYes(t *testing.T) {
	d := peers.StartSSHD(t, peers.SSHDOptions{})
	known := filepath.Join(t.TempDir(), "new", "known_hosts")
	opts := testOptions(t)
	var warnings []string
	opts.Logf = func(f string, args ...any) { warnings = append(warnings, fmt.Sprintf(f, args...)) }
	userConfig(t, opts, hostBlock(d, "lab", "")+"  UserKnownHostsFile "+known+"\n  HashKnownHosts yes\n")

	opts.Overrides = []string{"StrictHostKeyChecking=yes"}
	err := dialFails(t, "lab", opts)
	var hke *HostKeyError
	require.ErrorAs(t, err, &hke)
	assert.NoFileExists(t, known)

	opts.Overrides = []string{"StrictHostKeyChecking=accept-new"}
	dial(t, "lab", opts).Close()
	assert.Contains(t, warnings, "Warning: Permanently added '"+knownhosts.Normalize(d.Addr)+"' (ED25519) to the list of known hosts.")
	data, err := os.ReadFile(known)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(data), "|1|"), "hashed: %s", data)

	opts.Overrides = []string{"StrictHostKeyChecking=yes"}
	checkSession(t, dial(t, "lab", opts))

	out, err := peers.SSHCommand(t, testContext(t), append(d.SSHArgs(), "-o", "UserKnownHostsFile="+known, "127.0.0.1", "echo", "ssh agrees")...).CombinedOutput()
	require.NoError(t, err, "OpenSSH reads the entry written: %s", out)
	assert.Equal(t, "ssh agrees\n", string(out))
}

func TestOpenSSHPassphraseKey(t *testing.T) {
	d := peers.StartSSHD(t, peers.SSHDOptions{})
	key := filepath.Join(t.TempDir(), "locked")
	priv := writeKey(t, key, []byte("open sesame"))
	ak, err := os.OpenFile(filepath.Join(d.Dir, "authorized_keys"), os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = ak.Write(ssh.MarshalAuthorizedKey(publicOf(t, priv)))
	require.NoError(t, errors.Join(err, ak.Close()))

	opts := testOptions(t)
	var asked []string
	opts.PassphraseCallback = func(file string) ([]byte, error) {
		asked = append(asked, file)
		return []byte("open sesame"), nil
	}
	userConfig(t, opts, hostBlock(d, "lab", key)+"  UserKnownHostsFile "+d.KnownHosts+"\n")
	checkSession(t, dial(t, "lab", opts))
	assert.Equal(t, []string{key}, asked)

	opts.Overrides = []string{"BatchMode=yes"}
	err = dialFails(t, "lab", opts)
	assert.ErrorContains(t, err, "no way to log in", "BatchMode never prompts")
	assert.Len(t, asked, 1)

	opts.Overrides = nil
	opts.PassphraseCallback = func(string) ([]byte, error) { return []byte("wrong"), nil }
	err = dialFails(t, "lab", opts)
	assert.ErrorContains(t, err, "key "+key+": incorrect passphrase")
	assert.Equal(t, 1, strings.Count(err.Error(), "sshfwd:"), err.Error())
}

func TestOpenSSHProxyJumpTwoHops(t *testing.T) {
	debug := peers.SSHDOptions{Config: []string{"LogLevel DEBUG1"}}
	a, b := peers.StartSSHD(t, debug), peers.StartSSHD(t, debug)
	c := peers.StartSSHD(t, peers.SSHDOptions{})
	opts := testOptions(t)
	userConfig(t, opts, hostBlock(a, "a", "")+hostBlock(b, "b", "")+hostBlock(c, "c", "")+
		"  ProxyJump a,b\nHost *\n  UserKnownHostsFile "+knownHostsOf(t, a, b, c)+"\n  StrictHostKeyChecking yes\n")
	s := dial(t, "c", opts)
	checkSession(t, s)
	assert.Contains(t, a.ReadLog(), "target 127.0.0.1 port "+strconv.Itoa(b.Port), "the first hop opened the way to the second")
	assert.Contains(t, b.ReadLog(), "target 127.0.0.1 port "+strconv.Itoa(c.Port), "the second hop opened the way to the destination")

	require.NoError(t, s.Close())
	userConfig(t, opts, hostBlock(a, "a", "")+hostBlock(b, "b", "")+"  ProxyJump a\n"+hostBlock(c, "c", "")+
		"  ProxyJump b\nHost *\n  UserKnownHostsFile "+knownHostsOf(t, a, b, c)+"\n")
	checkSession(t, dial(t, "c", opts))

	userConfig(t, opts, "Host x\n  ProxyJump y\nHost y\n  ProxyJump x\n")
	err := dialFails(t, "x", opts)
	assert.ErrorContains(t, err, "is there a loop")
}

func TestOpenSSHProxyCommand(t *testing.T) {
	jump := peers.StartSSHD(t, peers.SSHDOptions{Config: []string{"LogLevel DEBUG1"}})
	d := peers.StartSSHD(t, peers.SSHDOptions{})
	peers.Require(t, peers.SSHBin)
	proxy := strings.Join(append(append([]string{peers.SSHBin}, peers.SSHDefaultArgs...), jump.SSHArgs()...), " ") + " -W %h:%p 127.0.0.1"
	opts := testOptions(t)
	userConfig(t, opts, hostBlock(d, "lab", "")+"  ProxyCommand "+proxy+"\n  UserKnownHostsFile "+d.KnownHosts+"\n")
	debug := new(debugLines).watch(opts)
	checkSession(t, dial(t, "lab", opts))
	assert.Contains(t, jump.ReadLog(), "target 127.0.0.1 port "+strconv.Itoa(d.Port))
	assert.Equal(t, []string{
		"Executing proxy command: exec " + strings.ReplaceAll(strings.ReplaceAll(proxy, "%h", "127.0.0.1"), "%p", strconv.Itoa(d.Port)),
		`Authenticated to 127.0.0.1 (via proxy) using "publickey".`,
	}, debug.all())

	userConfig(t, opts, hostBlock(d, "lab", "")+"  ProxyCommand false\n  UserKnownHostsFile "+d.KnownHosts+"\n")
	err := dialFails(t, "lab", opts)
	assert.Error(t, err, "a proxy command that exits")
}

func TestConnectionAttempts(t *testing.T) {
	port := peers.FreePort(t)
	opts := testOptions(t)
	var warnings []string
	opts.Logf = func(f string, args ...any) { warnings = append(warnings, fmt.Sprintf(f, args...)) }
	opts.PasswordCallback = func(string, string) (string, error) { return "", nil }
	debug := new(debugLines).watch(opts)
	opts.Overrides = []string{"ConnectionAttempts 2"}
	start := time.Now()
	err := dialFails(t, "ssh://127.0.0.1:"+strconv.Itoa(port), opts)
	require.Error(t, err)
	assert.ErrorIs(t, err, syscall.ECONNREFUSED)
	assert.GreaterOrEqual(t, time.Since(start), attemptPause)
	assert.Empty(t, warnings, "ssh tells of a failed attempt with -v only")
	assert.Equal(t, []string{"connect to host 127.0.0.1 port " + strconv.Itoa(port) + ": Connection refused; trying again"}, debug.all())
}
