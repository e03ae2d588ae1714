package sshtest

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"slices"

	"golang.org/x/crypto/ssh"
)

var errAuth = errors.New("sshtest: authentication failed")

// serverConfig returns the x/crypto configuration for connection c, whose
// authentication attempts it reports as events.
func (s *Server) serverConfig(c *Conn) *ssh.ServerConfig {
	cfg := s.Config
	checker := &ssh.CertChecker{
		IsUserAuthority: s.trustedUserCA,
		UserKeyFallback: s.checkKey,
	}
	sc := &ssh.ServerConfig{
		Config:            cfg.SSHConfig,
		ServerVersion:     cfg.ServerVersion,
		PublicKeyCallback: checker.Authenticate,
		AuthLogCallback: func(meta ssh.ConnMetadata, method string, err error) {
			e := c.event(EventAuth, method, "", err)
			e.User = meta.User()
			s.emit(e)
		},
	}
	if len(cfg.Passwords) > 0 {
		sc.PasswordCallback = s.checkPassword
	}
	if len(cfg.KeyboardInteractive) > 0 {
		sc.KeyboardInteractiveCallback = s.checkKeyboardInteractive
	}
	sc.AddHostKey(cfg.HostKey)
	return sc
}

// trustedUserCA reports whether auth is one of TrustedUserCAKeys.
func (s *Server) trustedUserCA(auth ssh.PublicKey) bool {
	return slices.ContainsFunc(s.Config.TrustedUserCAKeys, func(k ssh.PublicKey) bool { return sameKey(k, auth) })
}

// checkKey accepts the client key and AuthorizedKeys for any user, and
// UserKeys for their user.
func (s *Server) checkKey(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	cfg := s.Config
	matches := func(k ssh.PublicKey) bool { return sameKey(k, key) }
	if sameKey(cfg.ClientKey.PublicKey(), key) ||
		slices.ContainsFunc(cfg.AuthorizedKeys, matches) ||
		slices.ContainsFunc(cfg.UserKeys[meta.User()], matches) {
		return nil, nil
	}
	return nil, errAuth
}

func sameKey(a, b ssh.PublicKey) bool {
	return bytes.Equal(a.Marshal(), b.Marshal())
}

func (s *Server) checkPassword(meta ssh.ConnMetadata, password []byte) (*ssh.Permissions, error) {
	want, ok := s.Config.Passwords[meta.User()]
	if ok && subtle.ConstantTimeCompare([]byte(want), password) == 1 {
		return nil, nil
	}
	return nil, errAuth
}

// unknownUserQuestions are asked of users KeyboardInteractive does not
// know, so that a client cannot tell which users exist.
var unknownUserQuestions = []Question{{Prompt: "Password: "}}

// checkKeyboardInteractive asks the user's questions in one round and
// checks every answer.
func (s *Server) checkKeyboardInteractive(meta ssh.ConnMetadata, client ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
	questions, known := s.Config.KeyboardInteractive[meta.User()]
	if !known {
		questions = unknownUserQuestions
	}
	prompts := make([]string, len(questions))
	echos := make([]bool, len(questions))
	for i, q := range questions {
		prompts[i], echos[i] = q.Prompt, q.Echo
	}
	answers, err := client(meta.User(), "", prompts, echos)
	if err != nil {
		return nil, err
	}
	if !known || len(answers) != len(questions) {
		return nil, errAuth
	}
	right := 1
	for i, q := range questions {
		right &= subtle.ConstantTimeCompare([]byte(q.Answer), []byte(answers[i]))
	}
	if right != 1 {
		return nil, errAuth
	}
	return nil, nil
}
