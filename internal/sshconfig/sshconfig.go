// Package sshconfig builds the ssh.ClientConfig the example programs use to
// reach a real server: user@host:port parsing, a private key file, and host
// keys checked against a known_hosts file.
package sshconfig

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/sshfwd/sshfwd"
)

// Target is where to connect: [user@]host[:port].
type Target struct {
	User string
	Addr string // host:port, port 22 unless given
}

// ParseTarget parses "[user@]host[:port]"; the user defaults to the current
// one. IPv6 hosts with a port are written in brackets: user@[::1]:2222.
func ParseTarget(s string) (Target, error) {
	var t Target
	if s == "" || strings.ContainsAny(s, "\x00 \t\n") {
		return t, fmt.Errorf("sshfwd: bad ssh target %q: want [user@]host[:port]", s)
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		t.User, s = s[:i], s[i+1:]
	}
	if t.User == "" {
		u, err := user.Current()
		if err != nil {
			return t, fmt.Errorf("sshfwd: no user given and %w", err)
		}
		t.User = u.Username
	}
	host, port := s, "22"
	if h, p, err := net.SplitHostPort(s); err == nil {
		host, port = h, p
	} else if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		host = s[1 : len(s)-1]
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return t, fmt.Errorf("sshfwd: bad port %q in ssh target", port)
	}
	if host == "" {
		return t, fmt.Errorf("sshfwd: empty host in ssh target")
	}
	t.Addr = net.JoinHostPort(host, port)
	return t, nil
}

// DefaultKnownHosts returns ~/.ssh/known_hosts.
func DefaultKnownHosts() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".ssh", "known_hosts")
}

// ClientConfig returns a config that authenticates as t.User with the
// private key in keyFile and accepts only host keys listed in knownHosts.
func ClientConfig(t Target, keyFile, knownHosts string) (*ssh.ClientConfig, error) {
	pem, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("sshfwd: reading key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		return nil, fmt.Errorf("sshfwd: parsing key %s: %w", keyFile, err)
	}
	check, err := knownhosts.New(knownHosts)
	if err != nil {
		return nil, fmt.Errorf("sshfwd: reading known hosts: %w", err)
	}
	return &ssh.ClientConfig{
		User:            t.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: check,
		Timeout:         15 * time.Second,
	}, nil
}

// Dial connects to server, "[user@]host[:port]", authenticating with the
// private key in keyFile and checking the host key against knownHosts: what
// the example programs do with their -ssh, -i and -known-hosts flags.
func Dial(ctx context.Context, server, keyFile, knownHosts string) (*sshfwd.Session, error) {
	if keyFile == "" {
		return nil, errors.New("sshfwd: -ssh needs a private key file: -i")
	}
	t, err := ParseTarget(server)
	if err != nil {
		return nil, err
	}
	cfg, err := ClientConfig(t, keyFile, knownHosts)
	if err != nil {
		return nil, err
	}
	return sshfwd.Dial(ctx, "tcp", t.Addr, cfg)
}
