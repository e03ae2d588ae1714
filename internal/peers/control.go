package peers

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// ControlMaster is an OpenSSH client running as a connection-sharing
// master for an [SSHD] (ssh -M -S socket -N): other clients reach the
// server through its socket without logging in.
type ControlMaster struct {
	Socket string // the master's Unix socket (ControlPath)
	Log    string // the master's stderr

	proc *proc
}

// StartControlMaster starts /usr/bin/ssh as a ControlMaster logged in to
// s and waits until its socket accepts connections. It runs in the
// foreground (ssh -M -N, not -f, so that this package knows its PID and
// stops it by that PID in a t.Cleanup). The socket lives in a short
// directory of its own, since ssh appends a random suffix to the path
// while binding and Unix socket paths are limited to about 100 bytes.
func StartControlMaster(t testing.TB, s *SSHD) *ControlMaster {
	t.Helper()
	Require(t, SSHBin)
	dir, err := os.MkdirTemp("", "cm")
	if err != nil {
		t.Fatalf("peers: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	m := &ControlMaster{Socket: filepath.Join(dir, "s"), Log: filepath.Join(t.TempDir(), "master.log")}
	logf, err := os.Create(m.Log)
	if err != nil {
		t.Fatalf("peers: %v", err)
	}
	defer logf.Close()
	args := append([]string{
		"-F", "none", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
		"-o", "UpdateHostKeys=no", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10",
		"-M", "-S", m.Socket, "-N",
	}, append(s.SSHArgs(), "127.0.0.1")...)
	cmd := exec.Command(SSHBin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := startProc(cmd)
	if err != nil {
		t.Fatalf("peers: start ssh master: %v", err)
	}
	m.proc = p
	t.Cleanup(m.Stop)
	err = waitReady(p, func() error {
		c, err := net.Dial("unix", m.Socket)
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		t.Fatalf("peers: ssh master: %v\n--- log ---\n%s\n--- sshd log ---\n%s", err, readLog(m.Log), s.ReadLog())
	}
	return m
}

// Running reports whether the master process is still running.
func (m *ControlMaster) Running() bool { return !m.proc.exited() }

// Stop ends the master by its PID (SIGTERM, which makes ssh remove its
// socket) and waits for it. It is registered with t.Cleanup.
func (m *ControlMaster) Stop() { m.proc.stop(syscall.SIGTERM, StartTimeout) }

// Check asks the master whether it is alive, as ssh -O check does, with
// the OpenSSH client itself.
func (m *ControlMaster) Check() error {
	out, err := exec.Command(SSHBin, "-F", "none", "-S", m.Socket, "-O", "check", "127.0.0.1").CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("ssh -O check: %s", out)
		}
		return err
	}
	return nil
}
