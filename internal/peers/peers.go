// Package peers starts real third-party peers on the loopback interface for
// the library's tests: the OpenSSH server (sshd), the OpenSSH client (ssh)
// and an X server (Xvfb).
//
// Every helper follows the same rules:
//
//   - all network traffic stays on 127.0.0.1; ports are chosen at runtime;
//   - every file is created below a t.TempDir() of the calling test;
//   - every process is started by the helper, and is stopped by its own PID
//     (signal, then Wait) from a t.Cleanup registered by the helper;
//   - every wait is bounded; on failure the peer's log is included in the
//     test failure message.
//
// A missing binary makes the test skip, naming the Debian package that
// provides it, unless the environment variable named by [RequireEnv] is "1",
// in which case the test fails instead (CI sets it so that skips cannot hide
// missing coverage).
package peers

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// RequireEnv is the environment variable that turns missing peer binaries
// from a skip into a failure when it is set to "1".
const RequireEnv = "SSHFWD_REQUIRE_PEERS"

// Absolute paths of the peer binaries used by this package.
const (
	SSHDBin     = "/usr/sbin/sshd"
	SSHBin      = "/usr/bin/ssh"
	SFTPBin     = "/usr/bin/sftp"
	SSHAddBin   = "/usr/bin/ssh-add"
	XvfbBin     = "/usr/bin/Xvfb"
	XauthBin    = "/usr/bin/xauth"
	XdpyinfoBin = "/usr/bin/xdpyinfo"
)

// StartTimeout bounds every wait for a peer to become ready (or to stop).
const StartTimeout = 10 * time.Second

// debianPackages maps binary base names to the Debian package providing them.
var debianPackages = map[string]string{
	"sshd":       "openssh-server",
	"ssh":        "openssh-client",
	"ssh-keygen": "openssh-client",
	"ssh-agent":  "openssh-client",
	"ssh-add":    "openssh-client",
	"scp":        "openssh-client",
	"sftp":       "openssh-client",
	"Xvfb":       "xvfb",
	"xauth":      "xauth",
	"xdpyinfo":   "x11-utils",
	"xprop":      "x11-utils",
	"xwininfo":   "x11-utils",
	"curl":       "curl",
	"gcc":        "gcc",
	"pkg-config": "pkg-config",
}

// Require checks that each binary in paths exists and is executable. A path
// without a slash is looked up in $PATH. When one is missing the test is
// skipped with a message naming the Debian package to install, or failed
// when the environment variable [RequireEnv] is "1".
func Require(t testing.TB, paths ...string) {
	t.Helper()
	var missing []string
	for _, p := range paths {
		if findBinary(p) {
			continue
		}
		base := filepath.Base(p)
		pkg, ok := debianPackages[base]
		if !ok {
			pkg = "unknown"
		}
		missing = append(missing, fmt.Sprintf("%s (Debian package %s)", p, pkg))
	}
	if len(missing) > 0 {
		skipOrFail(t, "peers: missing binaries: "+strings.Join(missing, ", "))
	}
}

// RequireLibrary checks with pkg-config that the C library module is
// installed with its headers, after [Require] for gcc and pkg-config. When
// it is not, the test is skipped or failed as by [Require], with a message
// naming pkg, the Debian package that provides it.
func RequireLibrary(t testing.TB, module, pkg string) {
	t.Helper()
	Require(t, "gcc", "pkg-config")
	if err := exec.Command("pkg-config", "--exists", module).Run(); err != nil {
		skipOrFail(t, fmt.Sprintf("peers: missing C library %s (Debian package %s)", module, pkg))
	}
}

// skipOrFail skips the test with msg, or fails it when the environment
// variable [RequireEnv] is "1".
func skipOrFail(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s; %s=1 makes this a failure", msg, RequireEnv)
		return
	}
	t.Skipf("%s; skipping (set %s=1 to fail instead)", msg, RequireEnv)
}

func findBinary(p string) bool {
	if !strings.Contains(p, "/") {
		_, err := exec.LookPath(p)
		return err == nil
	}
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode().Perm()&0o111 != 0
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago: it
// binds 127.0.0.1:0, reads the port and closes the listener. Another process
// may take the port before the caller binds it, so callers should retry with
// a new port when binding fails.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatalf("peers: free port: %v", err)
	}
	return port
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, err
	}
	return port, nil
}

// readLog returns the contents of a log file for failure messages.
func readLog(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("<cannot read %s: %v>", path, err)
	}
	if len(b) == 0 {
		return "<empty>"
	}
	return string(b)
}

// proc is a started process together with a goroutine that reaps it, so
// that exit can be observed while waiting for readiness.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid after done is closed
}

func startProc(cmd *exec.Cmd) (*proc, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig to the process, waits up to grace for it to exit, then
// kills it and waits for it.
func (p *proc) stop(sig os.Signal, grace time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.done:
		return
	case <-timer.C:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

var errExited = errors.New("process exited")

// waitReady polls ready until it returns nil, the process exits (errExited)
// or StartTimeout passes. It polls often at first and less from then on, so
// that a peer that starts in a few milliseconds is not reported late: how
// long a peer takes to start is measured (bench's BenchmarkFirstRoundTrip).
func waitReady(p *proc, ready func() error) error {
	deadline := time.Now().Add(StartTimeout)
	pause := time.Millisecond
	var last error
	for {
		if p.exited() {
			return fmt.Errorf("%w: %v", errExited, p.err)
		}
		if last = ready(); last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %v", StartTimeout, last)
		}
		time.Sleep(pause)
		pause = min(2*pause, 20*time.Millisecond)
	}
}
