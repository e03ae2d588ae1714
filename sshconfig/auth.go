package sshconfig

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// defaultIdentities are the key files ssh tries when no IdentityFile is
// given, in its order.
var defaultIdentities = []string{"id_rsa", "id_ecdsa", "id_ecdsa_sk", "id_ed25519", "id_ed25519_sk", "id_xmss", "id_dsa"}

// authSetup is what logging in to one host needs, and what to close once
// the handshake is over.
type authSetup struct {
	methods []ssh.AuthMethod
	agent   io.Closer // the agent connection, if any

	mu   sync.Mutex // guards last
	last string     // the method x/crypto tried last
}

// tried records that x/crypto is trying method. It tries the methods one
// after the other and stops at the first that logs in, so the last one
// tried is the one that did.
func (a *authSetup) tried(method string) {
	a.mu.Lock()
	a.last = method
	a.mu.Unlock()
}

// used returns the method that logged in, once the handshake succeeded:
// "none" when the server asked for nothing.
func (a *authSetup) used() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.last == "" {
		return "none"
	}
	return a.last
}

func (a *authSetup) Close() {
	if a.agent != nil {
		a.agent.Close()
	}
}

// auth returns the authentication methods for c in ssh's order:
// public keys (the agent's and those of the identity files, each followed
// by its certificate), then keyboard-interactive, then password.
func (c *Config) auth() (*authSetup, error) {
	a := &authSetup{}
	if c.PubkeyAuthentication {
		signers, err := c.signers(a)
		if err != nil {
			a.Close()
			return nil, err
		}
		if len(signers) > 0 {
			a.methods = append(a.methods, ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
				a.tried("publickey")
				return signers, nil
			}))
		}
	}
	prompts := !c.BatchMode
	if cb := c.opts.KeyboardInteractiveCallback; prompts && cb != nil && c.KbdInteractiveAuthentication {
		a.methods = append(a.methods, ssh.RetryableAuthMethod(ssh.KeyboardInteractive(
			func(name, instruction string, questions []string, echos []bool) ([]string, error) {
				a.tried("keyboard-interactive")
				return cb(name, instruction, questions, echos)
			}), c.NumberOfPasswordPrompts))
	}
	if cb := c.opts.PasswordCallback; prompts && cb != nil && c.PasswordAuthentication {
		user, host := c.User, c.HostName
		a.methods = append(a.methods, ssh.RetryableAuthMethod(ssh.PasswordCallback(func() (string, error) {
			a.tried("password")
			return cb(user, host)
		}), c.NumberOfPasswordPrompts))
	}
	if len(a.methods) == 0 {
		a.Close()
		return nil, errors.New("sshfwd: no way to log in: no keys in the agent or identity files, and no password or keyboard-interactive callback")
	}
	return a, nil
}

// DefaultIdentityFiles returns the key files that are tried when no
// IdentityFile is given, as ssh tries them: ~/.ssh/id_rsa, id_ecdsa and
// the others, in ssh's order, in the home directory c was resolved with.
// Those that do not exist are skipped quietly.
func (c *Config) DefaultIdentityFiles() []string {
	var files []string
	for _, name := range defaultIdentities {
		files = append(files, filepath.Join(c.home, ".ssh", name))
	}
	return files
}

// keyCache holds the identities once read, so that a reconnect neither
// reads the files again nor asks for a passphrase given before.
type keyCache struct {
	once sync.Once
	ids  []identity
}

// identity is a key file's public key, with the signer that reads the
// private key when the server accepts the public one.
type identity struct {
	file   string
	public ssh.PublicKey
	signer ssh.Signer
}

// signers returns the keys to offer, in ssh's order: the agent's keys
// that an identity file names, the agent's other keys (unless
// IdentitiesOnly), then the identity files' keys the agent does not hold.
// Each key with a certificate (CertificateFile, or the file's -cert.pub)
// is offered as the certificate first, then plain.
func (c *Config) signers(a *authSetup) ([]ssh.Signer, error) {
	c.keys.once.Do(func() { c.keys.ids = c.identities() })
	ids := c.keys.ids
	var agentKeys []ssh.Signer
	if c.IdentityAgent != "" {
		conn, err := net.Dial("unix", c.IdentityAgent)
		if err != nil {
			c.logf("Warning: ssh-agent at %s: %v", c.IdentityAgent, err)
		} else {
			a.agent = conn
			if agentKeys, err = agent.NewClient(conn).Signers(); err != nil {
				return nil, fmt.Errorf("sshfwd: ssh-agent: %w", err)
			}
		}
	}
	certs := c.certificates(ids)
	var out []ssh.Signer
	offer := func(s ssh.Signer) {
		for _, cert := range certs {
			if bytes.Equal(cert.Key.Marshal(), s.PublicKey().Marshal()) {
				if cs, err := ssh.NewCertSigner(cert, s); err == nil {
					out = append(out, cs)
				}
			}
		}
		out = append(out, s)
	}
	inAgent := func(pub ssh.PublicKey) ssh.Signer {
		for _, s := range agentKeys {
			if bytes.Equal(s.PublicKey().Marshal(), pub.Marshal()) {
				return s
			}
		}
		return nil
	}
	used := map[ssh.Signer]bool{}
	for _, id := range ids {
		if s := inAgent(id.public); s != nil && !used[s] {
			used[s] = true
			offer(s)
		}
	}
	if !c.IdentitiesOnly {
		for _, s := range agentKeys {
			if !used[s] {
				used[s] = true
				offer(s)
			}
		}
	}
	for _, id := range ids {
		if inAgent(id.public) == nil {
			offer(id.signer)
		}
	}
	return out, nil
}

// identities loads the public halves of the identity files, or of ssh's
// default files when none is given. A file given but unusable is skipped
// with a warning, as ssh does; a default file that does not exist is
// skipped quietly.
func (c *Config) identities() []identity {
	files, given := c.IdentityFiles, true
	if len(files) == 0 {
		files, given = c.DefaultIdentityFiles(), false
	}
	var ids []identity
	for _, f := range files {
		id, err := c.loadIdentity(f)
		if err != nil {
			if given || !errors.Is(err, os.ErrNotExist) {
				c.logf("Warning: identity file %s not accessible: %v", f, err)
			}
			continue
		}
		ids = append(ids, id)
	}
	return ids
}

// loadIdentity reads a private key file. A key protected by a passphrase
// is read for its public half, from the file itself (OpenSSH's format
// keeps it in the clear) or from file.pub; its private half is decrypted
// only when the server accepts it, asking PassphraseCallback.
func (c *Config) loadIdentity(file string) (identity, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return identity{}, err
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err == nil {
		return identity{file: file, public: signer.PublicKey(), signer: signer}, nil
	}
	var missing *ssh.PassphraseMissingError
	if !errors.As(err, &missing) {
		return identity{}, err
	}
	pub := missing.PublicKey
	if pub == nil {
		data, rerr := os.ReadFile(file + ".pub")
		if rerr != nil {
			return identity{}, fmt.Errorf("protected by a passphrase, and no %s.pub: %w", file, rerr)
		}
		if pub, _, _, _, err = ssh.ParseAuthorizedKey(data); err != nil {
			return identity{}, fmt.Errorf("%s.pub: %w", file, err)
		}
	}
	if c.BatchMode || c.opts.PassphraseCallback == nil {
		return identity{}, errors.New("protected by a passphrase, and there is no one to ask for it: add it to ssh-agent")
	}
	l := &lockedKey{file: file, pem: pem, public: pub, ask: c.opts.PassphraseCallback, tries: c.NumberOfPasswordPrompts}
	return identity{file: file, public: pub, signer: l}, nil
}

// certificates reads the certificates to offer: CertificateFile's, then
// each identity file's -cert.pub beside it. Unreadable ones given by
// CertificateFile are warned about; missing -cert.pub files are not.
func (c *Config) certificates(ids []identity) []*ssh.Certificate {
	var certs []*ssh.Certificate
	read := func(file string, warn bool) {
		data, err := os.ReadFile(file)
		if err == nil {
			var pub ssh.PublicKey
			if pub, _, _, _, err = ssh.ParseAuthorizedKey(data); err == nil {
				if cert, ok := pub.(*ssh.Certificate); ok {
					certs = append(certs, cert)
					return
				}
				err = errors.New("not a certificate")
			}
		}
		if warn || !errors.Is(err, os.ErrNotExist) {
			c.logf("Warning: certificate file %s not usable: %v", file, err)
		}
	}
	for _, f := range c.CertificateFiles {
		read(f, true)
	}
	for _, id := range ids {
		read(id.file+"-cert.pub", false)
	}
	return certs
}

func (c *Config) logf(format string, args ...any) {
	if c.opts.Logf != nil {
		c.opts.Logf(format, args...)
	}
}

func (c *Config) debugf(format string, args ...any) {
	if c.opts.Debugf != nil {
		c.opts.Debugf(format, args...)
	}
}

// lockedKey is a passphrase-protected key whose private half is decrypted
// the first time it must sign. It is an ssh.AlgorithmSigner so that RSA
// keys sign with SHA-2. Its errors reach the caller inside the handshake's,
// so they have no "sshfwd:" prefix.
type lockedKey struct {
	file   string
	pem    []byte
	public ssh.PublicKey
	ask    func(file string) ([]byte, error)
	tries  int

	mu     sync.Mutex // guards signer and err
	signer ssh.AlgorithmSigner
	err    error
}

func (l *lockedKey) PublicKey() ssh.PublicKey { return l.public }

func (l *lockedKey) Sign(rand io.Reader, data []byte) (*ssh.Signature, error) {
	s, err := l.unlock()
	if err != nil {
		return nil, err
	}
	return s.Sign(rand, data)
}

func (l *lockedKey) SignWithAlgorithm(rand io.Reader, data []byte, algorithm string) (*ssh.Signature, error) {
	s, err := l.unlock()
	if err != nil {
		return nil, err
	}
	return s.SignWithAlgorithm(rand, data, algorithm)
}

// unlock asks for the passphrase until it decrypts the key, tries times at
// most, and remembers the outcome.
func (l *lockedKey) unlock() (ssh.AlgorithmSigner, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.signer != nil || l.err != nil {
		return l.signer, l.err
	}
	for range l.tries {
		pass, err := l.ask(l.file)
		if err != nil {
			l.err = fmt.Errorf("passphrase for %s: %w", l.file, err)
			return nil, l.err
		}
		s, err := ssh.ParsePrivateKeyWithPassphrase(l.pem, pass)
		if errors.Is(err, x509.IncorrectPasswordError) {
			continue
		}
		if err != nil {
			l.err = fmt.Errorf("key %s: %w", l.file, err)
			return nil, l.err
		}
		as, ok := s.(ssh.AlgorithmSigner)
		if !ok {
			l.err = fmt.Errorf("key %s cannot sign with a chosen algorithm", l.file)
			return nil, l.err
		}
		l.signer = as
		return as, nil
	}
	l.err = fmt.Errorf("key %s: incorrect passphrase", l.file)
	return nil, l.err
}
