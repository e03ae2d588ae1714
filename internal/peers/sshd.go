package peers

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHDOptions configures [StartSSHD].
type SSHDOptions struct {
	// Config holds extra sshd_config lines, e.g. "X11Forwarding no" or
	// "Ciphers aes128-gcm@openssh.com". sshd uses the first value it reads
	// for a keyword, so these lines are written before the package defaults
	// and override them. Lines from the first "Match" onwards are written
	// after the defaults.
	Config []string

	// HostKeyFile is an OpenSSH private host key to use (it is copied into
	// the server's directory). When empty a fresh ed25519 host key is
	// generated.
	HostKeyFile string
}

// SSHD is a running OpenSSH server listening on 127.0.0.1.
type SSHD struct {
	Addr string // "127.0.0.1:port"
	Port int
	Dir  string // directory holding config, keys and log
	User string // the current user, whom the server lets in

	KeyFile string     // client private key (ed25519, no passphrase) authorized for User
	Signer  ssh.Signer // the client key, parsed

	HostKeyFile string        // the server's private host key
	HostKey     ssh.PublicKey // the server's public host key

	KnownHosts string // known_hosts file with "[127.0.0.1]:port <host key>"
	Config     string // the sshd_config file
	Log        string // sshd's log file (-E)

	extra []string

	mu   sync.Mutex
	proc *proc
}

// defaultSSHDConfig returns the package's sshd_config lines.
func defaultSSHDConfig(s *SSHD) []string {
	return []string{
		"Port " + strconv.Itoa(s.Port),
		"ListenAddress 127.0.0.1",
		"HostKey " + s.HostKeyFile,
		"PidFile " + filepath.Join(s.Dir, "sshd.pid"),
		"AuthorizedKeysFile " + filepath.Join(s.Dir, "authorized_keys"),
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PubkeyAuthentication yes",
		"PermitRootLogin yes",
		"UsePAM no",
		"AllowTcpForwarding yes",
		"AllowStreamLocalForwarding yes",
		"StreamLocalBindUnlink yes",
		"GatewayPorts no",
		"X11Forwarding yes",
		"X11UseLocalhost yes",
		"XAuthLocation " + XauthBin,
		// Sessions get HOME=Dir/home (empty), so the user's dotfiles
		// (a slow ~/.bashrc) are not read, and XAUTHORITY=Dir/xauthority,
		// so the cookies sshd's xauth writes for X11 forwarding stay in
		// Dir and X clients started by session commands find them. sshd
		// honours only the first SetEnv line.
		"SetEnv HOME=" + filepath.Join(s.Dir, "home") + " XAUTHORITY=" + filepath.Join(s.Dir, "xauthority"),
		"StrictModes no",
		"MaxStartups 100:30:200",
		"MaxSessions 1000",
		"LogLevel ERROR",
	}
}

// StartSSHD starts /usr/sbin/sshd in the foreground on a free port of
// 127.0.0.1, with a generated client key authorized for the current user,
// and waits until it answers with an SSH banner. The server is stopped by a
// t.Cleanup. The test is skipped (or failed, see [Require]) when sshd is not
// installed.
func StartSSHD(t testing.TB, opts SSHDOptions) *SSHD {
	t.Helper()
	Require(t, SSHDBin)

	u, err := user.Current()
	if err != nil {
		t.Fatalf("peers: current user: %v", err)
	}
	s := &SSHD{
		Dir:   t.TempDir(),
		User:  u.Username,
		extra: append([]string(nil), opts.Config...),
	}
	s.KeyFile = filepath.Join(s.Dir, "id_ed25519")
	s.HostKeyFile = filepath.Join(s.Dir, "host_ed25519")
	s.KnownHosts = filepath.Join(s.Dir, "known_hosts")
	s.Config = filepath.Join(s.Dir, "sshd_config")
	s.Log = filepath.Join(s.Dir, "sshd.log")

	// Client key, authorized for the user.
	s.Signer, err = writeNewKey(s.KeyFile, "sshfwd-test-client")
	if err != nil {
		t.Fatalf("peers: client key: %v", err)
	}
	ak := ssh.MarshalAuthorizedKey(s.Signer.PublicKey())
	if err := os.WriteFile(filepath.Join(s.Dir, "authorized_keys"), ak, 0o600); err != nil {
		t.Fatalf("peers: authorized_keys: %v", err)
	}

	// Host key: copied or generated.
	var host ssh.Signer
	if opts.HostKeyFile != "" {
		pemBytes, err := os.ReadFile(opts.HostKeyFile)
		if err != nil {
			t.Fatalf("peers: host key: %v", err)
		}
		if host, err = ssh.ParsePrivateKey(pemBytes); err != nil {
			t.Fatalf("peers: host key %s: %v", opts.HostKeyFile, err)
		}
		if err := os.WriteFile(s.HostKeyFile, pemBytes, 0o600); err != nil {
			t.Fatalf("peers: host key: %v", err)
		}
	} else if host, err = writeNewKey(s.HostKeyFile, "sshfwd-test-host"); err != nil {
		t.Fatalf("peers: host key: %v", err)
	}
	s.HostKey = host.PublicKey()

	if err := os.Mkdir(filepath.Join(s.Dir, "home"), 0o700); err != nil {
		t.Fatalf("peers: %v", err)
	}

	// Privilege separation directory, needed when sshd runs as root.
	_ = os.MkdirAll("/run/sshd", 0o755)

	t.Cleanup(s.Stop)

	const attempts = 5
	for i := 1; ; i++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("peers: free port: %v", err)
		}
		s.setPort(port)
		err = s.start()
		if err == nil {
			return s
		}
		if errors.Is(err, errPortTaken) && i < attempts {
			t.Logf("peers: sshd port %d was taken, retrying", port)
			continue
		}
		t.Fatalf("peers: start sshd: %v\n--- sshd log %s ---\n%s", err, s.Log, readLog(s.Log))
	}
}

func (s *SSHD) setPort(port int) {
	s.Port = port
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// writeNewKey generates an ed25519 key, writes it in OpenSSH format with
// mode 0600 and returns it as a signer.
func writeNewKey(path, comment string) (ssh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	return ssh.NewSignerFromKey(priv)
}

var errPortTaken = errors.New("port already in use")

// start writes the config and known_hosts for the current port, starts sshd
// and waits for its banner.
func (s *SSHD) start() error {
	var head, tail []string
	for i, l := range s.extra {
		if strings.HasPrefix(strings.ToLower(strings.TrimSpace(l)), "match ") {
			tail = s.extra[i:]
			break
		}
		head = append(head, l)
	}
	lines := append(append(append([]string{}, head...), defaultSSHDConfig(s)...), tail...)
	if err := os.WriteFile(s.Config, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	kh := knownhosts.Line([]string{s.Addr}, s.HostKey) + "\n"
	if err := os.WriteFile(s.KnownHosts, []byte(kh), 0o600); err != nil {
		return err
	}

	logf, err := os.OpenFile(s.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close() // the child keeps its own descriptor
	var logStart int64
	if fi, err := logf.Stat(); err == nil {
		logStart = fi.Size()
	}
	fmt.Fprintf(logf, "=== peers: starting sshd on %s at %s\n", s.Addr, time.Now().Format(time.RFC3339Nano))

	cmd := exec.Command(SSHDBin, "-D", "-f", s.Config, "-E", s.Log)
	cmd.Dir = s.Dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	p, err := startProc(cmd)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()

	err = waitReady(p, func() error { return probeSSH(s.Addr) })
	if err == nil {
		return nil
	}
	s.Stop()
	if errors.Is(err, errExited) && strings.Contains(logSince(s.Log, logStart), "Address already in use") {
		return fmt.Errorf("%w: %v", errPortTaken, err)
	}
	return err
}

// logSince returns the part of the file at path after offset.
func logSince(path string, offset int64) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	return string(b[offset:])
}

// probeSSH connects to addr and checks for an SSH identification line.
func probeSSH(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading banner: %w", err)
	}
	if !strings.HasPrefix(line, "SSH-") {
		return fmt.Errorf("unexpected banner %q", line)
	}
	return nil
}

// ClientConfig returns a config for golang.org/x/crypto/ssh that logs in as
// User with Signer and accepts only HostKey, with a 10 s timeout.
func (s *SSHD) ClientConfig() *ssh.ClientConfig {
	return &ssh.ClientConfig{
		User:            s.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(s.Signer)},
		HostKeyCallback: ssh.FixedHostKey(s.HostKey),
		Timeout:         StartTimeout,
	}
}

// SSHArgs returns the OpenSSH client arguments that reach this server:
// port, identity, known_hosts file and login name. Append the host
// "127.0.0.1" and an optional command, e.g.
//
//	SSHCommand(t, ctx, append(s.SSHArgs(), "127.0.0.1", "echo", "ok")...)
func (s *SSHD) SSHArgs() []string {
	return []string{
		"-p", strconv.Itoa(s.Port),
		"-i", s.KeyFile,
		"-o", "UserKnownHostsFile=" + s.KnownHosts,
		"-l", s.User,
	}
}

// ReadLog returns the current contents of sshd's log file.
func (s *SSHD) ReadLog() string { return readLog(s.Log) }

// Running reports whether the server process is running.
func (s *SSHD) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil && !s.proc.exited()
}

// Stop kills the server and every process it started (the per-connection
// sshd processes and their sessions), so established connections drop, and
// waits for the server to exit. It is safe to call more than once and is
// registered with t.Cleanup by [StartSSHD].
func (s *SSHD) Stop() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return
	}
	if !p.exited() {
		killTree(p.cmd.Process.Pid)
	}
	p.stop(syscall.SIGKILL, StartTimeout)
}

// Restart stops the server if it is running and starts it again on the same
// port with the same host key, client key and configuration, as a server
// coming back after a crash would. It keeps retrying for up to
// [StartTimeout] if the port is briefly unavailable.
func (s *SSHD) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	deadline := time.Now().Add(StartTimeout)
	for {
		err := s.start()
		if err == nil {
			return
		}
		if errors.Is(err, errPortTaken) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		t.Fatalf("peers: restart sshd on %s: %v\n--- sshd log %s ---\n%s", s.Addr, err, s.Log, readLog(s.Log))
	}
}
