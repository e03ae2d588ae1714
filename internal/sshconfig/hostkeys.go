package sshconfig

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// StrictHostKeyChecking is OpenSSH's option of that name: what to do with a
// host whose key the known_hosts file does not list.
type StrictHostKeyChecking int

// The values of StrictHostKeyChecking. OpenSSH's "ask" needs a terminal;
// these programs never prompt, so their default is StrictYes.
const (
	// StrictYes refuses hosts that are not listed and keys that changed.
	StrictYes StrictHostKeyChecking = iota
	// StrictAcceptNew adds the keys of hosts not listed yet to the file,
	// and refuses keys that changed.
	StrictAcceptNew
	// StrictNo adds new keys as StrictAcceptNew does and lets changed keys
	// through with a warning.
	StrictNo
)

// ParseStrictHostKeyChecking parses the option's value as OpenSSH does:
// yes, accept-new, and no or off, in any case.
func ParseStrictHostKeyChecking(v string) (StrictHostKeyChecking, error) {
	switch strings.ToLower(v) {
	case "yes":
		return StrictYes, nil
	case "accept-new":
		return StrictAcceptNew, nil
	case "no", "off":
		return StrictNo, nil
	}
	return 0, fmt.Errorf("sshfwd: StrictHostKeyChecking %q: want yes, accept-new or no", v)
}

// HostKeys checks servers' host keys against a known_hosts file, as
// OpenSSH's client does. It reads the file at every check, so keys added
// since, by it or by ssh, count. Its methods are safe for concurrent use.
type HostKeys struct {
	File   string // the known_hosts file; need not exist yet
	Strict StrictHostKeyChecking

	// Warnf, if not nil, receives OpenSSH's warnings: a key added to the
	// file, a changed key let through by StrictNo.
	Warnf func(format string, args ...any)

	mu sync.Mutex // serializes reading and appending to File
}

// HostKeyError is the error of a host key refused by HostKeys.Check. Its
// text is OpenSSH's explanation of the refusal.
type HostKeyError struct {
	Host  string                // the host as known_hosts names it: "[127.0.0.1]:2222"
	Key   ssh.PublicKey         // the key the server sent
	Known []knownhosts.KnownKey // the keys listed for Host; none when it is unknown
	File  string
}

func (e *HostKeyError) Error() string {
	var b strings.Builder
	b.WriteString("sshfwd: host key verification failed\n")
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

// KeyName names a key's type as OpenSSH's messages do: ED25519, ECDSA, RSA.
func KeyName(k ssh.PublicKey) string {
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

// Check is an ssh.HostKeyCallback: it accepts key if the file lists it for
// hostname, and otherwise follows Strict.
func (h *HostKeys) Check(hostname string, remote net.Addr, key ssh.PublicKey) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	known, err := h.lookup(hostname, remote, key)
	if err != nil {
		return err
	}
	host := knownhosts.Normalize(hostname)
	switch {
	case known == nil:
		return nil
	case len(known) > 0 && h.Strict == StrictNo:
		h.warnf("Warning: the %s host key for %s has changed (now %s); StrictHostKeyChecking=no lets it through.", KeyName(key), host, ssh.FingerprintSHA256(key))
		return nil
	case len(known) > 0 || h.Strict == StrictYes:
		return &HostKeyError{Host: host, Key: key, Known: known, File: h.File}
	}
	if err := h.add(host, key); err != nil {
		return err
	}
	h.warnf("Warning: Permanently added '%s' (%s) to the list of known hosts.", host, KeyName(key))
	return nil
}

// lookup returns nil when the file lists key for hostname, else the keys it
// lists for hostname (none when it does not know the host).
func (h *HostKeys) lookup(hostname string, remote net.Addr, key ssh.PublicKey) ([]knownhosts.KnownKey, error) {
	check, err := knownhosts.New(h.File)
	if errors.Is(err, fs.ErrNotExist) {
		return []knownhosts.KnownKey{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sshfwd: known hosts: %w", err)
	}
	err = check(hostname, remote, key)
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case err == nil:
		return nil, nil
	case errors.As(err, &re):
		return nil, fmt.Errorf("sshfwd: the %s host key for %s is marked as revoked in %s:%d; host key verification failed",
			KeyName(key), knownhosts.Normalize(hostname), re.Revoked.Filename, re.Revoked.Line)
	case errors.As(err, &ke):
		if ke.Want == nil {
			return []knownhosts.KnownKey{}, nil
		}
		return ke.Want, nil
	}
	return nil, fmt.Errorf("sshfwd: known hosts: %w", err)
}

// add appends a line for host and key to the file, creating it and its
// directory when needed.
func (h *HostKeys) add(host string, key ssh.PublicKey) error {
	if err := os.MkdirAll(filepath.Dir(h.File), 0o700); err != nil {
		return fmt.Errorf("sshfwd: adding host key: %w", err)
	}
	f, err := os.OpenFile(h.File, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("sshfwd: adding host key: %w", err)
	}
	_, err = fmt.Fprintln(f, knownhosts.Line([]string{host}, key))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sshfwd: adding host key to %s: %w", h.File, err)
	}
	return nil
}

// Algorithms returns the host key algorithms to ask hostname for: those of
// the keys the file lists for it, so that a server with several host keys
// shows one that can be checked, or nil (x/crypto's defaults) when the
// host is not listed.
func (h *HostKeys) Algorithms(hostname string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	// A key no host has makes the file tell every key it lists for the
	// host.
	probe, err := ssh.NewPublicKey(ed25519.PublicKey(make([]byte, ed25519.PublicKeySize)))
	if err != nil {
		return nil
	}
	known, err := h.lookup(hostname, &net.TCPAddr{}, probe)
	if err != nil {
		return nil
	}
	var algos []string
	for _, k := range known {
		for _, a := range algorithmsFor(k.Key.Type()) {
			if !slices.Contains(algos, a) {
				algos = append(algos, a)
			}
		}
	}
	return algos
}

// algorithmsFor returns the signature algorithms a host key of type t can
// be shown with.
func algorithmsFor(t string) []string {
	if t == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{t}
}

func (h *HostKeys) warnf(format string, args ...any) {
	if h.Warnf != nil {
		h.Warnf(format, args...)
	}
}
