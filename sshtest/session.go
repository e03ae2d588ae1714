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

	"github.com/creack/pty"
	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/internal/wire"
)

// outputGrace is how long a finished command's output may stay open, held
// by a process it left in the background, before the session gives up on it.
const outputGrace = time.Second

// shellPath is the shell that runs commands and interactive shells.
const shellPath = "/bin/sh"

// session is the state of one session channel (RFC 4254 6). The requests
// that prepare the command (env, pty-req, x11-req, auth-agent-req) record
// what they need in it before exec, shell or subsystem starts it. Only the
// goroutine that serves the channel's requests touches it.
type session struct {
	c   *Conn
	ch  ssh.Channel
	ctx context.Context // done when the channel or the connection closes; kills the command

	clientEnv []string    // NAME=VALUE pairs from env requests
	env       []string    // NAME=VALUE pairs the server sets (X11, agent), after clientEnv so they win
	term      *terminal   // what pty-req asked for, if anything
	display   *x11Display // the display x11-req set up, if any
	agent     string      // the socket auth-agent-req set up, if any
	started   bool        // a command or subsystem was started; a session runs one at most
}

// terminal is a session's pseudo-terminal.
type terminal struct {
	name string
	size pty.Winsize
	tty  *os.File // the terminal's master side, once the command runs on it
}

// session serves a session channel until the client closes it or the
// connection ends, either of which kills a command still running. Each
// request is reported before its reply, and what it started (output, exit
// status) comes after the reply.
func (c *Conn) session(o *channelOpen) {
	c.channelEvent(o, nil)
	ch, reqs, err := o.nch.Accept()
	if err != nil {
		c.logf("accept session: %v", err)
		return
	}
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	s := &session{c: c, ch: ch, ctx: ctx}
	for req := range reqs {
		target, wait, err := s.handle(req)
		c.srv.emit(c.event(EventSessionRequest, req.Type, target, err))
		req.Reply(err == nil, nil)
		if wait != nil {
			c.srv.spawn(wait)
		}
	}
}

// handle serves one request. For a request that started something it
// returns the function that waits for it, to run once the reply is out.
func (s *session) handle(req *ssh.Request) (target string, wait func(), err error) {
	switch req.Type {
	case wire.Exec:
		var msg wire.ExecMsg
		if err := wire.Parse(wire.Exec, req.Payload, &msg); err != nil {
			return "", nil, fmt.Errorf("sshtest: %w", err)
		}
		wait, err = s.run(msg.Command)
		return msg.Command, wait, err
	case wire.Shell:
		wait, err = s.run("")
		return "", wait, err
	case wire.Subsystem:
		var msg wire.SubsystemMsg
		if err := wire.Parse(wire.Subsystem, req.Payload, &msg); err != nil {
			return "", nil, fmt.Errorf("sshtest: %w", err)
		}
		wait, err = s.subsystem(msg.Name)
		return msg.Name, wait, err
	case wire.Env:
		target, err = s.setEnv(req.Payload)
	case wire.PtyReq:
		target, err = s.ptyRequest(req.Payload)
	case wire.WindowChange:
		err = s.windowChange(req.Payload)
	case wire.X11Req:
		err = s.x11Request(req.Payload)
	case wire.AuthAgentReq:
		err = s.agentRequest()
	default:
		// signal, break, xon-xoff...: a test server has no use for them.
		err = fmt.Errorf("sshtest: unsupported session request %q", req.Type)
	}
	return target, nil, err
}

// checkNotStarted refuses a request that comes after the command started.
func (s *session) checkNotStarted() error {
	if s.started {
		return errors.New("sshtest: the session's command has started already")
	}
	return nil
}

// setEnv answers an env request (RFC 4254 6.4), with the name checked
// against AcceptEnv and the variable against MaxEnvSize and MaxEnv. It
// returns the variable's name.
func (s *session) setEnv(payload []byte) (string, error) {
	var msg wire.EnvMsg
	if err := wire.Parse(wire.Env, payload, &msg); err != nil {
		return "", fmt.Errorf("sshtest: %w", err)
	}
	cfg := s.c.srv.Config
	name, size := msg.Name, len(msg.Name)+1+len(msg.Value)
	switch {
	case s.started:
		return name, s.checkNotStarted()
	case name == "" || strings.ContainsAny(name, "=\x00") || strings.ContainsRune(msg.Value, 0):
		return name, fmt.Errorf("sshtest: bad environment variable %q", name)
	case !acceptEnv(cfg.AcceptEnv, name):
		return name, fmt.Errorf("%w: %s is not in AcceptEnv %q", ErrNotPermitted, name, cfg.AcceptEnv)
	case cfg.MaxEnvSize >= 0 && size > cfg.MaxEnvSize:
		return name, fmt.Errorf("%w: %s is %d bytes, over MaxEnvSize %d", ErrLimit, name, size, cfg.MaxEnvSize)
	}
	kv := name + "=" + msg.Value
	for i, old := range s.clientEnv {
		if strings.HasPrefix(old, name+"=") {
			s.clientEnv[i] = kv
			return name, nil
		}
	}
	if !fits(len(s.clientEnv), cfg.MaxEnv) {
		return name, fmt.Errorf("%w: MaxEnv %d variables set", ErrLimit, cfg.MaxEnv)
	}
	s.clientEnv = append(s.clientEnv, kv)
	return name, nil
}

// acceptEnv reports whether name matches one of the AcceptEnv patterns.
func acceptEnv(patterns []string, name string) bool {
	for _, p := range patterns {
		if matchPattern(p, name) {
			return true
		}
	}
	return false
}

// matchPattern reports whether s matches pattern, in which '*' stands for
// any run of bytes and '?' for any one byte, as OpenSSH's match_pattern
// has it. It backtracks only to the last '*', so it takes time linear in
// len(pattern)*len(s) at worst.
func matchPattern(pattern, s string) bool {
	p, i := 0, 0
	star, resume := -1, 0 // the last '*' seen, and where in s it matches up to
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, resume = p, i
			p++
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case star >= 0:
			resume++
			p, i = star+1, resume
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// ptyRequest answers pty-req (RFC 4254 6.2): the command will run on a
// pseudo-terminal of the size asked for, with TERM set. Terminal modes are
// left as the system sets them. It returns the terminal's name.
func (s *session) ptyRequest(payload []byte) (string, error) {
	var msg wire.PtyReqMsg
	if err := wire.Parse(wire.PtyReq, payload, &msg); err != nil {
		return "", fmt.Errorf("sshtest: %w", err)
	}
	if err := s.checkNotStarted(); err != nil {
		return msg.Term, err
	}
	if s.term != nil {
		return msg.Term, errors.New("sshtest: the session has a terminal already")
	}
	size, err := winsize(msg.Columns, msg.Rows, msg.Width, msg.Height)
	if err != nil {
		return msg.Term, err
	}
	if strings.ContainsRune(msg.Term, 0) {
		return msg.Term, fmt.Errorf("sshtest: bad terminal name %q", msg.Term)
	}
	s.term = &terminal{name: msg.Term, size: size}
	return msg.Term, nil
}

// windowChange answers window-change (RFC 4254 6.7).
func (s *session) windowChange(payload []byte) error {
	var msg wire.WindowChangeMsg
	if err := wire.Parse(wire.WindowChange, payload, &msg); err != nil {
		return fmt.Errorf("sshtest: %w", err)
	}
	if s.term == nil {
		return errors.New("sshtest: the session has no terminal")
	}
	size, err := winsize(msg.Columns, msg.Rows, msg.Width, msg.Height)
	if err != nil {
		return err
	}
	s.term.size = size
	if s.term.tty == nil {
		return nil
	}
	if err := pty.Setsize(s.term.tty, &size); err != nil {
		return fmt.Errorf("sshtest: resize terminal: %w", err)
	}
	return nil
}

// winsize checks a terminal size from the client, which the kernel keeps
// in 16 bits.
func winsize(cols, rows, width, height uint32) (pty.Winsize, error) {
	for _, v := range []uint32{cols, rows, width, height} {
		if v > 0xffff {
			return pty.Winsize{}, fmt.Errorf("sshtest: terminal size %dx%d (%dx%d pixels) too large", cols, rows, width, height)
		}
	}
	return pty.Winsize{Cols: uint16(cols), Rows: uint16(rows), X: uint16(width), Y: uint16(height)}, nil
}

// run starts command, or an interactive shell for "", with /bin/sh: on the
// session's terminal if it asked for one, else with the channel as its
// standard input and output and the channel's extended data as its
// standard error (RFC 4254 6.5).
func (s *session) run(command string) (wait func(), err error) {
	if s.c.srv.Config.DisableExec {
		return nil, fmt.Errorf("%w: running commands (DisableExec)", ErrNotPermitted)
	}
	if err := s.checkNotStarted(); err != nil {
		return nil, err
	}
	args := []string{"-c", command}
	if command == "" {
		args = nil
	}
	cmd := exec.CommandContext(s.ctx, shellPath, args...)
	cmd.Env = append(append(os.Environ(), s.clientEnv...), s.env...)
	if s.term != nil {
		wait, err = s.startOnTerminal(cmd)
	} else {
		wait, err = s.startPiped(cmd)
	}
	if err != nil {
		return nil, err
	}
	s.started = true
	s.c.logf("started %q as process %d", command, cmd.Process.Pid)
	return wait, nil
}

// startPiped starts cmd with the channel as its standard streams.
func (s *session) startPiped(cmd *exec.Cmd) (wait func(), err error) {
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
		return nil, fmt.Errorf("sshtest: start %s: %w", cmd.Path, err)
	}
	// The client's EOF becomes the command's: the copy ends there, or when
	// the command exits and Wait closes the pipe.
	s.c.srv.spawn(func() {
		io.Copy(stdin, s.ch)
		stdin.Close()
	})
	return func() {
		err := cmd.Wait()
		s.c.logf("process %d ended: %v", cmd.Process.Pid, err)
		s.exited(cmd.ProcessState)
	}, nil
}

// exited reports how the command ended and closes the channel.
func (s *session) exited(ps *os.ProcessState) {
	sig, _ := exitSignal(ps)
	s.finish(exitStatus(ps), sig)
}

// finish reports how the command or subsystem ended, with exit-signal if
// signal is set and exit-status otherwise (RFC 4254 6.10), and closes the
// channel.
func (s *session) finish(status uint32, signal string) {
	s.ch.CloseWrite()
	if signal != "" {
		s.ch.SendRequest(wire.ExitSignal, false, ssh.Marshal(&wire.ExitSignalMsg{Signal: signal}))
	} else {
		s.ch.SendRequest(wire.ExitStatus, false, ssh.Marshal(&wire.ExitStatusMsg{Status: status}))
	}
	s.ch.Close()
}

// subsystem answers a subsystem request (RFC 4254 6.5) with its handler
// from Config.Subsystems.
func (s *session) subsystem(name string) (wait func(), err error) {
	handler, ok := s.c.srv.Config.Subsystems[name]
	if !ok {
		return nil, fmt.Errorf("sshtest: no subsystem %q", name)
	}
	if err := s.checkNotStarted(); err != nil {
		return nil, err
	}
	s.started = true
	return func() {
		var status uint32
		if err := handler(s.ctx, s.c.sconn, s.ch); err != nil {
			s.c.logf("subsystem %s: %v", name, err)
			status = 1
		}
		s.finish(status, "")
	}, nil
}
