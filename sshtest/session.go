package sshtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/internal/wire"
)

// outputGrace is how long a finished command's output may stay open, held
// by a process it left in the background, before the session gives up on it.
const outputGrace = time.Second

// session is the state of one session channel (RFC 4254 6). Requests that
// prepare the command (env here, x11-req in x11.go) record what they
// need in it before exec starts the command.
type session struct {
	c   *conn
	ch  ssh.Channel
	ctx context.Context // done when the channel or the connection closes; kills the command

	env     []string    // NAME=VALUE pairs from env and x11-req requests, added to the command's environment
	started bool        // exec started a command; a session runs one at most
	display *x11Display // the display x11-req set up, if any
}

// exitSignalMsg is the payload of the exit-signal channel request
// (RFC 4254 6.10).
type exitSignalMsg struct {
	Signal     string
	CoreDumped bool
	Message    string
	Lang       string
}

// session serves a session channel until the client closes it or the
// connection ends, either of which kills a command still running.
func (c *conn) session(nch ssh.NewChannel) {
	ch, reqs, err := nch.Accept()
	if err != nil {
		c.logf("accept session: %v", err)
		return
	}
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	s := &session{c: c, ch: ch, ctx: ctx}
	for req := range reqs {
		if req.Type == wire.Exec {
			s.exec(req)
			continue
		}
		var ok bool
		switch req.Type {
		case wire.Env:
			ok = s.setEnv(req.Payload)
		case wire.X11Req:
			ok = s.x11Request(req)
		default:
			// shell, pty-req, subsystem, signal, window-change: a test
			// server has no terminal and no subsystems.
		}
		req.Reply(ok, nil)
	}
}

func (s *session) setEnv(payload []byte) bool {
	var msg wire.EnvMsg
	if err := wire.Parse(wire.Env, payload, &msg); err != nil {
		s.c.logf("refused %s: %v", wire.Env, err)
		return false
	}
	if s.started || msg.Name == "" || strings.ContainsAny(msg.Name, "=\x00") || strings.ContainsRune(msg.Value, 0) {
		s.c.logf("refused %s %q", wire.Env, msg.Name)
		return false
	}
	s.env = append(s.env, msg.Name+"="+msg.Value)
	return true
}

// exec answers an exec request (RFC 4254 6.5): it runs the command with
// /bin/sh -c, the channel as its standard input and output and the
// channel's extended data as its standard error. The reply is sent before
// any exit status.
func (s *session) exec(req *ssh.Request) {
	cmd, err := s.start(req.Payload)
	if err != nil {
		s.c.logf("refused %s: %v", wire.Exec, err)
		req.Reply(false, nil)
		return
	}
	req.Reply(true, nil)
	s.c.srv.spawn(func() { s.wait(cmd) })
}

func (s *session) start(payload []byte) (*exec.Cmd, error) {
	var msg wire.ExecMsg
	if err := wire.Parse(wire.Exec, payload, &msg); err != nil {
		return nil, err
	}
	if s.started {
		return nil, errors.New("sshtest: a command already ran in this session")
	}
	cmd := exec.CommandContext(s.ctx, "/bin/sh", "-c", msg.Command)
	cmd.Env = append(os.Environ(), s.env...)
	cmd.Stdout = s.ch
	cmd.Stderr = s.ch.Stderr()
	cmd.WaitDelay = outputGrace
	ownProcessGroup(cmd)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("sshtest: stdin pipe: %w", err)
	}
	if err := cmd.Start(); err != nil {
		stdin.Close()
		return nil, fmt.Errorf("sshtest: start %q: %w", msg.Command, err)
	}
	s.started = true
	s.c.logf("started %q as process %d", msg.Command, cmd.Process.Pid)
	// The client's EOF becomes the command's: the copy ends there, or when
	// the command exits and Wait closes the pipe.
	s.c.srv.spawn(func() {
		io.Copy(stdin, s.ch)
		stdin.Close()
	})
	return cmd, nil
}

// wait waits for the command, reports how it ended and closes the channel.
func (s *session) wait(cmd *exec.Cmd) {
	err := cmd.Wait()
	ps := cmd.ProcessState
	s.c.logf("process %d ended: %v", cmd.Process.Pid, err)
	s.ch.CloseWrite()
	if sig, ok := exitSignal(ps); ok {
		s.ch.SendRequest("exit-signal", false, ssh.Marshal(&exitSignalMsg{Signal: sig}))
	} else {
		s.ch.SendRequest(wire.ExitStatus, false, ssh.Marshal(&wire.ExitStatusMsg{Status: exitStatus(ps)}))
	}
	s.ch.Close()
}
