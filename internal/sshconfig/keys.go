package sshconfig

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// DefaultIdentityFiles returns those of OpenSSH's default identity files
// that exist: ~/.ssh/id_ed25519, ~/.ssh/id_ecdsa and ~/.ssh/id_rsa.
func DefaultIdentityFiles() []string {
	home, err := os.UserHomeDir()
	if err != nil {
		return nil
	}
	var files []string
	for _, name := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
		f := filepath.Join(home, ".ssh", name)
		if _, err := os.Stat(f); err == nil {
			files = append(files, f)
		}
	}
	return files
}

// LoadSigners reads the private keys in files. Like OpenSSH, it warns about
// a file it cannot use (missing, unreadable, or protected by a passphrase,
// which these programs do not ask for: load such keys into ssh-agent) and
// goes on with the others.
func LoadSigners(files []string, warnf func(format string, args ...any)) []ssh.Signer {
	var signers []ssh.Signer
	for _, f := range files {
		signer, err := loadSigner(f)
		if err != nil {
			if warnf != nil {
				warnf("Warning: identity file %s not usable: %v", f, err)
			}
			continue
		}
		signers = append(signers, signer)
	}
	return signers
}

func loadSigner(file string) (ssh.Signer, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	signer, err := ssh.ParsePrivateKey(data)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		return nil, errors.New("it is protected by a passphrase; add it to ssh-agent instead")
	}
	return signer, err
}

// Agent connects to the ssh-agent whose socket SSH_AUTH_SOCK names and
// returns its keys, which sign through the connection: close it once they
// are no longer needed (after the SSH handshake). It returns nothing, and no
// error, when SSH_AUTH_SOCK is not set.
func Agent() ([]ssh.Signer, io.Closer, error) {
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return nil, nil, nil
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return nil, nil, fmt.Errorf("sshfwd: ssh-agent: %w", err)
	}
	signers, err := agent.NewClient(conn).Signers()
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("sshfwd: ssh-agent: %w", err)
	}
	return signers, conn, nil
}
