package sshconfig

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	skeema "github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// openSSHHostKeyOrder is OpenSSH's default HostKeyAlgorithms (9.x) as far
// as x/crypto implements them as host keys (not the sk- ones): certificates
// first, then ed25519 and ECDSA
// before RSA. x/crypto's own default puts RSA first, which fails the
// handshake with dropbear before 2024.84: it advertises rsa-sha2-256
// without an RSA host key, and aborts when a client picks it.
var openSSHHostKeyOrder = []string{
	ssh.CertAlgoED25519v01,
	ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01,
	ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01,
	ssh.KeyAlgoED25519,
	ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
}

// HostKeyAlgorithms returns OpenSSH's default order of host key
// algorithms, for clients that know nothing of a host: a copy the caller
// may change.
func HostKeyAlgorithms() []string { return slices.Clone(openSSHHostKeyOrder) }

// HostKeys checks servers' host keys against known_hosts files as
// OpenSSH's client does: hashed entries, @cert-authority lines for host
// certificates and @revoked keys count, and a host not listed is refused,
// asked about or added according to Strict. It reads the files at every
// check, so keys added since, by it or by ssh, count. Its methods are safe
// for concurrent use.
type HostKeys struct {
	// Files are the known_hosts files to read, the user's then the
	// global ones; new keys are added to the first. Missing files are
	// skipped.
	Files  []string
	Strict Strict
	// Hash makes added entries hashed, as HashKnownHosts yes does.
	Hash bool

	// ConfirmCallback asks about an unknown host under StrictAsk; nil
	// refuses it.
	ConfirmCallback func(message string) (bool, error)
	// Logf, if not nil, receives ssh's warnings: a key added, a changed
	// key let through by StrictNo.
	Logf func(format string, args ...any)

	mu sync.Mutex // serializes reading and appending to the files
}

// HostKeyError is the error of a host key refused by HostKeys.Check. Its
// text is OpenSSH's explanation of the refusal. Like every error of Check,
// it has no "sshfwd:" prefix: it reaches callers inside the handshake's
// error, which has one.
type HostKeyError struct {
	Host  string                // the host as known_hosts names it: "[127.0.0.1]:2222"
	Key   ssh.PublicKey         // the key the server sent
	Known []knownhosts.KnownKey // the keys listed for Host; none when it is unknown
	File  string                // the file new keys go to
}

func (e *HostKeyError) Error() string {
	var b strings.Builder
	b.WriteString("host key verification failed\n")
	if len(e.Known) == 0 {
		fmt.Fprintf(&b, "No %s host key is known for %s and you have requested strict checking.\n", KeyName(e.Key), e.Host)
		b.WriteString("Host key verification failed.")
		return b.String()
	}
	const bar = "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n"
	b.WriteString(bar)
	b.WriteString("@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n")
	b.WriteString(bar)
	b.WriteString("IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n")
	b.WriteString("Someone could be eavesdropping on you right now (man-in-the-middle attack)!\n")
	b.WriteString("It is also possible that a host key has just been changed.\n")
	fmt.Fprintf(&b, "The fingerprint for the %s key sent by the remote host is\n%s.\n", KeyName(e.Key), ssh.FingerprintSHA256(e.Key))
	b.WriteString("Please contact your system administrator.\n")
	fmt.Fprintf(&b, "Add correct host key in %s to get rid of this message.\n", e.File)
	for _, k := range e.Known {
		fmt.Fprintf(&b, "Offending %s key in %s:%d\n", KeyName(k.Key), k.Filename, k.Line)
	}
	fmt.Fprintf(&b, "Host key for %s has changed and you have requested strict checking.\n", e.Host)
	b.WriteString("Host key verification failed.")
	return b.String()
}

// KeyName names a key's type as OpenSSH's messages do: ED25519, ECDSA,
// RSA, with -CERT for certificates.
func KeyName(k ssh.PublicKey) string {
	if c, ok := k.(*ssh.Certificate); ok {
		return KeyName(c.Key) + "-CERT"
	}
	t := k.Type()
	switch {
	case strings.HasPrefix(t, "ssh-ed25519"), strings.HasPrefix(t, "sk-ssh-ed25519"):
		return "ED25519"
	case strings.HasPrefix(t, "ecdsa-"), strings.HasPrefix(t, "sk-ecdsa-"):
		return "ECDSA"
	case strings.HasPrefix(t, "ssh-rsa"):
		return "RSA"
	}
	return strings.ToUpper(strings.TrimPrefix(t, "ssh-"))
}

// Check is an ssh.HostKeyCallback. It accepts key when the files list it
// for hostname, or list a CA that signed it as a certificate valid for
// hostname. A certificate no listed CA signed is checked as its plain key,
// as ssh does. Otherwise Strict decides.
//
// Keys are looked up by hostname alone, as ssh does with its default
// CheckHostIP no: remote is not consulted.
func (h *HostKeys) Check(hostname string, _ net.Addr, key ssh.PublicKey) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	known, err := h.lookup(hostname, key)
	if cert, ok := key.(*ssh.Certificate); ok && err != nil && !errors.Is(err, errRevoked) {
		// No authority for it: the plain key may still be known.
		key = cert.Key
		known, err = h.lookup(hostname, key)
	}
	if err != nil {
		return err
	}
	host := knownhosts.Normalize(hostname)
	switch {
	case known == nil:
		return nil
	case len(known) > 0 && h.Strict == StrictNo:
		h.logf("Warning: the %s host key for %s has changed (now %s); StrictHostKeyChecking=no lets it through.", KeyName(key), host, ssh.FingerprintSHA256(key))
		return nil
	case len(known) > 0 || h.Strict == StrictYes:
		return &HostKeyError{Host: host, Key: key, Known: known, File: h.firstFile()}
	case h.Strict == StrictAsk:
		if err := h.confirm(host, key); err != nil {
			return err
		}
	}
	if err := h.add(host, key); err != nil {
		return err
	}
	h.logf("Warning: Permanently added '%s' (%s) to the list of known hosts.", host, KeyName(key))
	return nil
}

// confirm asks ConfirmCallback about an unknown host, as ssh asks on the
// terminal, and returns nil when the answer is yes.
func (h *HostKeys) confirm(host string, key ssh.PublicKey) error {
	refused := &HostKeyError{Host: host, Key: key, File: h.firstFile()}
	if h.ConfirmCallback == nil {
		return refused
	}
	ok, err := h.ConfirmCallback(fmt.Sprintf("The authenticity of host '%s' can't be established.\n%s key fingerprint is %s.\nAre you sure you want to continue connecting (yes/no)?",
		host, KeyName(key), ssh.FingerprintSHA256(key)))
	if err != nil {
		return fmt.Errorf("host key confirmation: %w", err)
	}
	if !ok {
		return refused
	}
	return nil
}

var errRevoked = errors.New("revoked")

// existing returns the files that exist.
func (h *HostKeys) existing() []string {
	var files []string
	for _, f := range h.Files {
		if fileExists(f) {
			files = append(files, f)
		}
	}
	return files
}

// lookup returns nil when the files accept key for hostname, else the
// keys they list for hostname (none when they do not know it).
func (h *HostKeys) lookup(hostname string, key ssh.PublicKey) ([]knownhosts.KnownKey, error) {
	files := h.existing()
	if len(files) == 0 {
		return []knownhosts.KnownKey{}, nil
	}
	db, err := skeema.NewDB(files...)
	if err != nil {
		return nil, fmt.Errorf("known hosts: %w", err)
	}
	// The callback wants a remote address it can split; the host name
	// given takes precedence over it.
	err = db.HostKeyCallback()(hostname, &net.TCPAddr{IP: net.IPv4zero}, key)
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case err == nil:
		return nil, nil
	case errors.As(err, &re):
		return nil, fmt.Errorf("the %s host key for %s is marked as revoked in %s:%d; host key verification failed: %w",
			KeyName(key), knownhosts.Normalize(hostname), re.Revoked.Filename, re.Revoked.Line, errRevoked)
	case errors.As(err, &ke):
		// A CA's line is no key of the host: without one of its own,
		// the host is unknown rather than changed, as ssh has it.
		cas := map[string]bool{}
		for _, k := range db.HostKeys(hostname) {
			if k.Cert {
				cas[string(k.Marshal())] = true
			}
		}
		own := []knownhosts.KnownKey{}
		for _, k := range ke.Want {
			if !cas[string(k.Key.Marshal())] {
				own = append(own, k)
			}
		}
		return own, nil
	}
	return nil, fmt.Errorf("host key for %s: %w", knownhosts.Normalize(hostname), err)
}

func (h *HostKeys) firstFile() string {
	if len(h.Files) == 0 {
		return ""
	}
	return h.Files[0]
}

// add appends a line for host and key to the first file, creating it and
// its directory when needed; the host is hashed when Hash is set.
func (h *HostKeys) add(host string, key ssh.PublicKey) error {
	file := h.firstFile()
	if file == "" {
		return errors.New("adding host key: no known_hosts file")
	}
	if h.Hash {
		host = knownhosts.HashHostname(host)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("adding host key: %w", err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("adding host key: %w", err)
	}
	_, err = fmt.Fprintln(f, knownhosts.Line([]string{host}, key))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("adding host key to %s: %w", file, err)
	}
	return nil
}

// Algorithms returns the host key algorithms to ask hostname ("host:port")
// for, as OpenSSH orders them: first those the files know keys or a CA
// for, so that a server with several host keys shows one that can be
// checked, then the others, so that a changed key is reported as such
// rather than as a failed negotiation. A host the files do not know gets
// OpenSSH's default order.
func (h *HostKeys) Algorithms(hostname string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var knownAlgos []string
	if files := h.existing(); len(files) > 0 {
		if db, err := skeema.NewDB(files...); err == nil {
			knownAlgos = db.HostKeyAlgorithms(hostname)
		}
	}
	var first, rest []string
	for _, a := range openSSHHostKeyOrder {
		if slices.Contains(knownAlgos, a) {
			first = append(first, a)
		} else {
			rest = append(rest, a)
		}
	}
	// Known keys of a kind OpenSSH no longer offers by default (ssh-rsa
	// with SHA-1, DSA) still come first: the user chose to trust them.
	for _, a := range knownAlgos {
		if !slices.Contains(first, a) {
			first = append(first, a)
		}
	}
	return append(first, rest...)
}

func (h *HostKeys) logf(format string, args ...any) {
	if h.Logf != nil {
		h.Logf(format, args...)
	}
}
