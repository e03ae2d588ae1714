package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/sshfwd/sshfwd/internal/peers"
	"github.com/sshfwd/sshfwd/internal/relay"
	"github.com/sshfwd/sshfwd/internal/testnet"
	"github.com/sshfwd/sshfwd/sshconfig"
	"github.com/sshfwd/sshfwd/sshtest"
)

func TestLocalForwardSurvivesServerRestart(t *testing.T) {
	isolate(t)
	d := startSSHD(t)
	target := hashServer(t)
	port := peers.FreePort(t)
	known := filepath.Join(t.TempDir(), "known_hosts")
	c := start(t, "-N", "-F", "none", "-i", d.KeyFile, "-p", strconv.Itoa(d.Port), "-l", d.User,
		"-o", "UserKnownHostsFile="+known, "-o", "StrictHostKeyChecking=accept-new", "-o", "ServerAliveInterval=1",
		"-L", fmt.Sprintf("%d:127.0.0.1:%d", port, target), "127.0.0.1")
	c.waitLine(t, `Connected to \S+@`+regexp.QuoteMeta(d.Addr))
	eventuallyRoundTrip(t, "tcp", local(port), []byte("before"))

	d.Stop()
	c.waitLine(t, `connection lost; reconnecting in [0-9.]+s`)
	// During the outage a new connection is closed at once, rather than
	// left waiting.
	conn, err := net.Dial("tcp", local(port))
	require.NoError(t, err)
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	assert.False(t, isTimeout(err), "a connection made during the outage waited: %v", err)
	conn.Close()

	d.Restart(t)
	eventuallyRoundTrip(t, "tcp", local(port), []byte("after"))
	c.waitLine(t, `reconnected`)
	assert.Equal(t, 1, strings.Count(c.stderr.String(), "Warning: Permanently added '"+knownhosts.Normalize(d.Addr)+"' (ED25519) to the list of known hosts."),
		"the host key is added once and matches after the restart")
}

// isTimeout reports whether err is a deadline's.
func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestRemoteForwardAllocatedPort(t *testing.T) {
	isolate(t)
	d := startSSHD(t)
	target := hashServer(t)
	to := local(target)
	c := start(t, append(sshArgs(d), "-R", "0:"+to, "-R", "127.0.0.1:0", "127.0.0.1")...)

	m := c.waitLine(t, `Allocated port (\d+) for remote forward to `+regexp.QuoteMeta(to)+"\n")
	eventuallyRoundTrip(t, "tcp", "127.0.0.1:"+m[1], bytes.Repeat([]byte("R"), 1<<20))

	m = c.waitLine(t, `Allocated port (\d+) for remote forward to socks:0\n`)
	conn := socks5Connect(t, "127.0.0.1:"+m[1], target)
	require.NoError(t, roundTrip(conn, []byte("remote SOCKS")))
}

func TestDynamicForward(t *testing.T) {
	isolate(t)
	d := startSSHD(t)
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	}))
	defer web.Close()
	target := hashServer(t)
	socksPort := peers.FreePort(t)
	c := start(t, append(sshArgs(d), "-D", strconv.Itoa(socksPort), "127.0.0.1")...)
	c.waitLine(t, `Connected to`)

	conn := socks5Connect(t, local(socksPort), target)
	require.NoError(t, roundTrip(conn, []byte("dynamic")))

	peers.Require(t, "curl")
	out, err := exec.Command("curl", "-sS", "--max-time", "20", "--socks5-hostname", local(socksPort), web.URL+"/through-sshfwd").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Equal(t, "hello /through-sshfwd", string(out))
}

func TestConfigFileAndAlias(t *testing.T) {
	isolate(t)
	d := startSSHD(t)
	target := hashServer(t)
	port, fromFile := peers.FreePort(t), peers.FreePort(t)
	config := writeConfig(t, hostBlock(d, "lab")+fmt.Sprintf("  LocalForward %d 127.0.0.1:%d\n", fromFile, target))
	c := start(t, "-F", config, "-L", fmt.Sprintf("%d:127.0.0.1:%d", port, target), "lab")
	c.waitLine(t, `Connected to \S+@`+regexp.QuoteMeta(d.Addr))
	eventuallyRoundTrip(t, "tcp", local(port), []byte("the command line's"))
	eventuallyRoundTrip(t, "tcp", local(fromFile), []byte("the file's LocalForward"))
}

func TestControlMasterOfOpenSSH(t *testing.T) {
	isolate(t)
	d := startSSHD(t)
	m := peers.StartControlMaster(t, d)
	target := hashServer(t)
	port := peers.FreePort(t)
	to := local(target)
	// No key and no known_hosts: only the master can carry this.
	c := start(t, "-F", "none", "-S", m.Socket, "-L", fmt.Sprintf("%d:%s", port, to), "-R", "0:"+to, "127.0.0.1")
	eventuallyRoundTrip(t, "tcp", local(port), []byte("-L through the master"))
	remote := c.waitLine(t, `Allocated port (\d+) for remote forward to `+regexp.QuoteMeta(to)+"\n")[1]
	eventuallyRoundTrip(t, "tcp", "127.0.0.1:"+remote, []byte("-R through the master"))
}

func TestJumpHost(t *testing.T) {
	isolate(t)
	jump := startSSHD(t)
	inner := sshtest.NewServer(&sshtest.Config{AuthorizedKeys: []ssh.PublicKey{jump.Signer.PublicKey()}})
	defer inner.Close()
	host, port, err := net.SplitHostPort(inner.Addr())
	require.NoError(t, err)
	known := filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, os.WriteFile(known, []byte(knownhosts.Line([]string{knownhosts.Normalize(inner.Addr())}, inner.HostKey())+"\n"), 0o600))
	target := hashServer(t)
	localPort := peers.FreePort(t)

	// The jump host is an alias of the file, whose settings apply to it;
	// the command line's apply to the destination only, as with ssh -J.
	config := writeConfig(t, hostBlock(jump, "bastion")+"Host "+host+"\n  ProxyJump bastion\n")
	args := []string{"-F", config, "-i", jump.KeyFile, "-o", "UserKnownHostsFile=" + known, "-p", port,
		"-L", fmt.Sprintf("%d:127.0.0.1:%d", localPort, target), "someone@" + host}
	c := start(t, append([]string{"-J", "bastion"}, args...)...)
	c.waitLine(t, `Connected to someone@`+regexp.QuoteMeta(inner.Addr()))
	eventuallyRoundTrip(t, "tcp", local(localPort), []byte("jumped"))

	// -J none overrides the file's ProxyJump: the connection goes
	// straight to the server, which sshtest takes from anywhere.
	c = start(t, append([]string{"-v", "-J", "none"}, args...)...)
	c.waitLine(t, `Connected to someone@`+regexp.QuoteMeta(inner.Addr()))
	assert.Contains(t, c.stderr.String(), "debug1: Connecting to "+host+" ["+host+"] port "+port+".", "straight to the server")
	assert.NotContains(t, c.stderr.String(), "ProxyJump")
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
		return []string{"-F", "none", "-i", key, "-p", port, "-o", "UserKnownHostsFile=" + known, "-o", "StrictHostKeyChecking=" + strict, host}
	}

	t.Run("unknown host refused", func(t *testing.T) {
		known := filepath.Join(t.TempDir(), "known_hosts")
		for _, strict := range []string{"yes", "YES"} {
			_, errs, code := runToEnd(t, args(known, strict)...)
			assert.Equal(t, exitFailure, code)
			assert.Contains(t, errs, "No ED25519 host key is known for "+name+" and you have requested strict checking.\nHost key verification failed.")
			assert.Equal(t, 1, strings.Count(errs, "sshfwd:"), errs)
			assert.NoFileExists(t, known)
		}
	})
	t.Run("accept-new adds the key", func(t *testing.T) {
		known := filepath.Join(t.TempDir(), ".ssh", "known_hosts")
		c := start(t, args(known, "accept-new")...)
		c.waitLine(t, `Connected to`)
		assert.Contains(t, c.stderr.String(), "Warning: Permanently added '"+name+"' (ED25519) to the list of known hosts.")
		data, err := os.ReadFile(known)
		require.NoError(t, err)
		assert.Equal(t, knownhosts.Line([]string{name}, srv.HostKey())+"\n", string(data))
	})

	_, otherSigner := newKey(t, t.TempDir())
	changed := filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, os.WriteFile(changed, []byte("# comment\n"+knownhosts.Line([]string{name}, otherSigner.PublicKey())+"\n"), 0o600))

	t.Run("changed key refused", func(t *testing.T) {
		for _, strict := range []string{"yes", "accept-new"} {
			_, errs, code := runToEnd(t, args(changed, strict)...)
			assert.Equal(t, exitFailure, code, strict)
			assert.Contains(t, errs, "WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!", strict)
			assert.Contains(t, errs, ssh.FingerprintSHA256(srv.HostKey()), strict)
			assert.Contains(t, errs, "Offending ED25519 key in "+changed+":2", strict)
			assert.Contains(t, errs, "Host key for "+name+" has changed and you have requested strict checking.\nHost key verification failed.", strict)
		}
	})
	t.Run("changed key let through by no", func(t *testing.T) {
		c := start(t, args(changed, "no")...)
		c.waitLine(t, `Connected to`)
		assert.Contains(t, c.stderr.String(), "has changed")
	})
}

func TestExitOnForwardFailure(t *testing.T) {
	isolate(t)
	d := startSSHD(t, "PermitListen none")

	t.Run("remote refused", func(t *testing.T) {
		_, errs, code := runToEnd(t, append(sshArgs(d), "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:1", "127.0.0.1")...)
		assert.Equal(t, exitFailure, code)
		got := lines(errs)
		assert.Equal(t, "sshfwd: remote forward localhost:0 -> 127.0.0.1:1: forward localhost:0: request denied by peer", got[len(got)-1])
		assert.Equal(t, 1, strings.Count(errs, "request denied"), "said once: %s", errs)
		assert.Equal(t, 1, strings.Count(errs, "sshfwd:"), "said once: %s", errs)
	})
	t.Run("remote refused without the option", func(t *testing.T) {
		c := start(t, append(sshArgs(d), "-R", "0:127.0.0.1:1", "127.0.0.1")...)
		c.waitLine(t, `remote forward localhost:0 -> 127.0.0.1:1 failed: .*request denied.*; retrying in`)
	})
	t.Run("local port in use", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		_, errs, code := runToEnd(t, append(sshArgs(d), "-o", "exitonforwardfailure yes", "-L", port+":127.0.0.1:1", "127.0.0.1")...)
		assert.Equal(t, exitFailure, code)
		assert.Equal(t, []string{"sshfwd: could not request local forwarding on localhost:" + port + ": listen tcp 127.0.0.1:" + port + ": bind: address already in use"}, lines(errs))
	})
}

func TestRelativeSocketPath(t *testing.T) {
	isolate(t)
	d := startSSHD(t)
	target := hashServer(t)
	dir := socketDir(t)
	t.Chdir(dir)
	require.NoError(t, os.Mkdir("rel", 0o700))
	c := start(t, append(sshArgs(d), "-L", "rel/x.sock:127.0.0.1:"+strconv.Itoa(target), "127.0.0.1")...)
	c.waitLine(t, `Connected to`)
	eventuallyRoundTrip(t, "unix", filepath.Join(dir, "rel", "x.sock"), []byte("relative"))
}

func TestConnectionAttempts(t *testing.T) {
	isolate(t)
	d := startSSHD(t)
	target := hashServer(t)
	port := peers.FreePort(t)
	d.Stop()
	c := start(t, append(sshArgs(d), "-v", "-o", "ConnectionAttempts=30", "-L", fmt.Sprintf("%d:127.0.0.1:%d", port, target), "127.0.0.1")...)
	c.waitLine(t, `debug1: connect to host 127\.0\.0\.1 port `+strconv.Itoa(d.Port)+`: Connection refused; trying again`)
	d.Restart(t)
	c.waitLine(t, `Connected to`)
	eventuallyRoundTrip(t, "tcp", local(port), []byte("after a few attempts"))

	_, errs, code := runToEnd(t, "-F", "none", "-o", "ConnectionAttempts=1", "-p", strconv.Itoa(peers.FreePort(t)), "127.0.0.1")
	assert.Equal(t, exitFailure, code)
	assert.Regexp(t, `^sshfwd: connect to host 127\.0\.0\.1 port \d+: Connection refused$`, strings.Join(lines(errs), "\n"))
}

func TestGatewayPortsAndAddressFamily(t *testing.T) {
	isolate(t)
	d := startSSHD(t)
	target := hashServer(t)
	// sshd listens on 127.0.0.1 only: -6 reaches it through a relay on
	// ::1, where there is one.
	via6 := 0
	if ln, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		testnet.Serve(t, ln, func(c net.Conn) {
			up, err := net.Dial("tcp", d.Addr)
			if err == nil {
				relay.Relay(c, up)
			}
		})
		via6 = ln.Addr().(*net.TCPAddr).Port
	}
	for _, tc := range []struct {
		flag       string
		reach      []string // the addresses that reach the forward
		turnedAway []string // those that do not
	}{
		{"", []string{"127.0.0.1"}, []string{"127.0.0.2"}},
		{"-g", []string{"127.0.0.1", "127.0.0.2"}, nil},
		{"-4", []string{"127.0.0.1"}, []string{"::1"}},
		{"-6", []string{"::1"}, []string{"127.0.0.1"}},
	} {
		t.Run("flag "+tc.flag, func(t *testing.T) {
			port := peers.FreePort(t)
			args := append(sshArgs(d), "-L", fmt.Sprintf("%d:127.0.0.1:%d", port, target))
			switch tc.flag {
			case "":
				args = append(args, "127.0.0.1")
			case "-6":
				if via6 == 0 {
					t.Skip("no IPv6 loopback here")
				}
				args = append([]string{"-6", "-o", "StrictHostKeyChecking=no", "-p", strconv.Itoa(via6)}, append(args, "::1")...)
			default:
				args = append([]string{tc.flag}, append(args, "127.0.0.1")...)
			}
			c := start(t, args...)
			c.waitLine(t, `Connected to`)
			for _, ip := range tc.reach {
				eventuallyRoundTrip(t, "tcp", net.JoinHostPort(ip, strconv.Itoa(port)), []byte("reached through "+ip))
			}
			for _, ip := range tc.turnedAway {
				_, err := net.Dial("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
				assert.Error(t, err, "%s %s", tc.flag, ip)
			}
		})
	}
}

// TestSystemdUnitLine runs the line a systemd unit has for ssh, as
// sshfwd, against a host of the configuration; -F keeps the system's
// ssh_config out of the test.
func TestSystemdUnitLine(t *testing.T) {
	isolate(t)
	d := startSSHD(t)
	config := writeConfig(t, hostBlock(d, "tunnel-host"))
	target := hashServer(t)
	port := peers.FreePort(t)
	p := startProcess(t, "-F", config, "-NT", "-o", "ServerAliveInterval=60", "-o", "ExitOnForwardFailure=yes", "-o", "BatchMode=yes",
		"-o", "ConnectTimeout=10", "-L", fmt.Sprintf("%d:127.0.0.1:%d", port, target), "tunnel-host")
	p.waitLine(t, `Connected to`)
	eventuallyRoundTrip(t, "tcp", local(port), []byte("systemd"))
	assert.Regexp(t, `^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} Connected to `, p.stderr.String(), "journald gets timestamps: stderr is not a terminal")
	assert.Equal(t, 0, p.stop(t), "SIGTERM is a clean exit")
}

func TestDialTimeout(t *testing.T) {
	c, err := sshconfig.Resolve("host", &sshconfig.Options{ConfigFile: "none", Overrides: []string{"ConnectionAttempts=3", "ConnectTimeout=10"}})
	require.NoError(t, err)
	assert.Equal(t, 3*11*time.Second+30*time.Second, dialTimeout(c), "every attempt, the pauses between, and the handshake")
	c, err = sshconfig.Resolve("host", &sshconfig.Options{ConfigFile: "none"})
	require.NoError(t, err)
	assert.Equal(t, time.Minute+time.Second, dialTimeout(c))
}
