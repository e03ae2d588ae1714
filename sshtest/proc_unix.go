//go:build unix

package sshtest

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/creack/pty"
)

// ownProcessGroup starts cmd in a process group of its own and makes
// cancelling it kill the whole group, so that what a shell command started
// dies with it.
func ownProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	killGroupOnCancel(cmd)
}

// killGroupOnCancel makes cancelling cmd kill its process group, which
// cmd leads.
func killGroupOnCancel(cmd *exec.Cmd) {
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

// startOnTerminal starts cmd on a new pseudo-terminal, as the leader of a
// session whose controlling terminal it is, as sshd does for a session
// with a pty-req: the terminal is the command's standard input, output and
// error, and the channel's data goes to and from its master side.
func (s *session) startOnTerminal(cmd *exec.Cmd) (wait func(), err error) {
	cmd.Env = append(cmd.Env, "TERM="+s.term.name)
	killGroupOnCancel(cmd)
	tty, err := pty.StartWithAttrs(cmd, &s.term.size, &syscall.SysProcAttr{Setsid: true, Setctty: true})
	if err != nil {
		return nil, fmt.Errorf("sshtest: start %s on a terminal: %w", cmd.Path, err)
	}
	tty, err = pollable(tty)
	if err != nil {
		cmd.Cancel()
		cmd.Wait()
		return nil, err
	}
	s.term.tty = tty
	// A terminal cannot be half-closed, so the client's EOF ends the copy
	// and nothing else, as with sshd.
	s.c.srv.spawn(func() { io.Copy(tty, s.ch) })
	output := make(chan struct{})
	s.c.srv.spawn(func() {
		defer close(output)
		io.Copy(s.ch, tty)
	})
	return func() {
		err := cmd.Wait()
		s.c.logf("process %d ended: %v", cmd.Process.Pid, err)
		// The output ends when the last process holding the terminal
		// exits; one left in the background gets outputGrace.
		select {
		case <-output:
		case <-time.After(outputGrace):
		}
		tty.Close()
		<-output
		s.exited(cmd.ProcessState)
	}, nil
}

// pollable returns a descriptor of the terminal's master side that the
// runtime poller serves, and closes tty: creack/pty hands it out in
// blocking mode, whose reads Close cannot interrupt. The new descriptor is
// close-on-exec, so that later commands do not inherit it.
func pollable(tty *os.File) (*os.File, error) {
	defer tty.Close()
	syscall.ForkLock.RLock()
	fd, err := syscall.Dup(int(tty.Fd()))
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("sshtest: terminal: %w", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("sshtest: terminal: %w", err)
	}
	return os.NewFile(uintptr(fd), tty.Name()), nil
}

// signalNames are the signal names of RFC 4254 6.10.
var signalNames = map[syscall.Signal]string{
	syscall.SIGABRT: "ABRT",
	syscall.SIGALRM: "ALRM",
	syscall.SIGFPE:  "FPE",
	syscall.SIGHUP:  "HUP",
	syscall.SIGILL:  "ILL",
	syscall.SIGINT:  "INT",
	syscall.SIGKILL: "KILL",
	syscall.SIGPIPE: "PIPE",
	syscall.SIGQUIT: "QUIT",
	syscall.SIGSEGV: "SEGV",
	syscall.SIGTERM: "TERM",
	syscall.SIGUSR1: "USR1",
	syscall.SIGUSR2: "USR2",
}

// exitSignal returns the RFC 4254 name of the signal that killed the
// process, if it was one of those.
func exitSignal(ps *os.ProcessState) (string, bool) {
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return "", false
	}
	name, ok := signalNames[ws.Signal()]
	return name, ok
}

// exitStatus returns the exit status to report: the process's own, or 128
// plus the signal number, as shells do, for a signal without an RFC 4254
// name.
func exitStatus(ps *os.ProcessState) uint32 {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + uint32(ws.Signal())
	}
	return uint32(ps.ExitCode())
}
