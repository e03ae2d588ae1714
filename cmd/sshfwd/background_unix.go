//go:build unix

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// backgroundEnv marks the process -f starts, and names the descriptor on
// which it tells its parent that its forwards are up.
const backgroundEnv = "SSHFWD_BACKGROUND_FD"

// isBackgroundChild reports whether this process is the one -f started.
func isBackgroundChild() bool { return os.Getenv(backgroundEnv) != "" }

// startBackground does -f: it runs sshfwd again with the same arguments,
// as the process that stays, and returns 0 once that process reports that
// its connection and forwards are up, leaving it running; if it exits
// before, its exit status. Go cannot fork, so the process that stays is a
// new one; it asks for passphrases on the terminal while the parent waits,
// as ssh -f asks before it forks.
func startBackground(ctx context.Context, args []string, stderr io.Writer, log *logger) int {
	exe, err := os.Executable()
	if err != nil {
		log.Infof("sshfwd: -f: %v", err)
		return exitFailure
	}
	r, w, err := os.Pipe()
	if err != nil {
		log.Infof("sshfwd: -f: %v", err)
		return exitFailure
	}
	defer r.Close()
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), backgroundEnv+"=3")
	cmd.ExtraFiles = []*os.File{w}
	if f, ok := stderr.(*os.File); ok {
		cmd.Stderr = f
	}
	err = cmd.Start()
	w.Close()
	if err != nil {
		log.Infof("sshfwd: -f: %v", err)
		return exitFailure
	}
	ready := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		ready <- line == "ok\n"
	}()
	select {
	case ok := <-ready:
		if ok {
			log.Debugf("forking to background, pid %d", cmd.Process.Pid)
			cmd.Process.Release()
			return 0
		}
	case <-ctx.Done():
		// The process that would stay has the same signal, from the
		// same terminal, or is told now.
		cmd.Process.Signal(syscall.SIGTERM)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() > 0 {
		return ee.ExitCode()
	}
	if err != nil {
		log.Infof("sshfwd: -f: %v", err)
	}
	return exitFailure
}

// backgroundReady returns what the process -f started calls once its
// forwards are up: it leaves the terminal's session, points stdin, stdout
// and, unless keepStderr, stderr to /dev/null, as ssh -f does, and tells
// its parent, which then exits. Elsewhere it returns a function that does
// nothing.
func backgroundReady(keepStderr bool, log *logger) func() {
	if !isBackgroundChild() {
		return func() {}
	}
	os.Unsetenv(backgroundEnv)
	parent := os.NewFile(3, "ready")
	return func() {
		defer parent.Close()
		// Whatever reads stderr may go away with the terminal: a write
		// to it must fail rather than end the process.
		signal.Ignore(syscall.SIGPIPE)
		if _, err := syscall.Setsid(); err != nil {
			log.Infof("sshfwd: -f: setsid: %v", err)
		}
		if null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0); err == nil {
			fds := []int{0, 1}
			if !keepStderr {
				fds = append(fds, 2)
			}
			for _, fd := range fds {
				unix.Dup2(int(null.Fd()), fd)
			}
			null.Close()
		}
		fmt.Fprintln(parent, "ok")
	}
}
