package sshtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/internal/wire"
)

// agentRequest answers auth-agent-req@openssh.com (OpenSSH
// PROTOCOL.agent) as sshd does: it listens on a socket in a directory of
// its own, names it in SSH_AUTH_SOCK for the session's command, and
// forwards each connection to it to the client's agent on an
// auth-agent@openssh.com channel, until the session ends.
func (s *session) agentRequest() error {
	switch {
	case s.c.srv.Config.DisableAgentForwarding:
		return fmt.Errorf("%w: agent forwarding (DisableAgentForwarding)", ErrNotPermitted)
	case s.agent != "":
		return errors.New("sshtest: agent forwarding is set up already")
	}
	if err := s.checkNotStarted(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "sshtest-agent-")
	if err != nil {
		return fmt.Errorf("sshtest: agent socket directory: %w", err)
	}
	path := filepath.Join(dir, "agent.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("sshtest: agent socket: %w", err)
	}
	s.agent = path
	s.env = append(s.env, "SSH_AUTH_SOCK="+path)
	s.c.srv.spawn(func() { s.c.acceptForwarded(s.ctx, l, wire.AuthAgent, path, s.c.openAgent) })
	s.c.srv.spawn(func() {
		<-s.ctx.Done()
		l.Close()
		os.RemoveAll(dir)
	})
	return nil
}

// openAgent opens an auth-agent@openssh.com channel to the client, whose
// agent answers on it.
func (c *Conn) openAgent(ctx context.Context, nc net.Conn) (io.ReadWriteCloser, error) {
	ch, reqs, err := c.sconn.OpenChannel(wire.AuthAgent, nil)
	if err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	c.srv.spawn(func() { ssh.DiscardRequests(reqs) })
	return ch, nil
}
