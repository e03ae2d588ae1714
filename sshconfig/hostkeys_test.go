package sshconfig

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func newSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	s, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	return s
}

func newHostKey(t testing.TB) ssh.PublicKey {
	t.Helper()
	return newSigner(t).PublicKey()
}

// hostCert returns a host certificate for key, signed by ca, valid for
// principals now.
func hostCert(t testing.TB, ca ssh.Signer, key ssh.PublicKey, principals ...string) *ssh.Certificate {
	t.Helper()
	cert := &ssh.Certificate{
		Key:             key,
		CertType:        ssh.HostCert,
		KeyId:           "test host",
		ValidPrincipals: principals,
		ValidAfter:      uint64(time.Now().Add(-time.Hour).Unix()),
		ValidBefore:     uint64(time.Now().Add(time.Hour).Unix()),
	}
	require.NoError(t, cert.SignCert(rand.Reader, ca))
	return cert
}

func authorizedLine(key ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
}

func TestHostKeysCheck(t *testing.T) {
	const addr = "127.0.0.1:2222"
	key, other := newHostKey(t), newHostKey(t)
	knownLine := knownhosts.Line([]string{"[127.0.0.1]:2222"}, key) + "\n"
	otherLine := knownhosts.Line([]string{"[127.0.0.1]:2222"}, other) + "\n"

	for _, tc := range []struct {
		name    string
		file    string // contents; "-" for no file
		strict  Strict
		ok      bool
		changed bool   // a HostKeyError for a changed key is expected
		after   string // the file's contents after the check
		warning string
	}{
		{"known", knownLine, StrictYes, true, false, knownLine, ""},
		{"unknown, no file, yes", "-", StrictYes, false, false, "-", ""},
		{"unknown, yes", "# nothing\n", StrictYes, false, false, "# nothing\n", ""},
		{"unknown, ask without a callback", "-", StrictAsk, false, false, "-", ""},
		{"unknown, accept-new", "-", StrictAcceptNew, true, false, knownLine, "Permanently added '[127.0.0.1]:2222' (ED25519)"},
		{"unknown, no", "# x\n", StrictNo, true, false, "# x\n" + knownLine, "Permanently added"},
		{"changed, yes", otherLine, StrictYes, false, true, otherLine, ""},
		{"changed, accept-new", otherLine, StrictAcceptNew, false, true, otherLine, ""},
		{"changed, no", otherLine, StrictNo, true, false, otherLine, "has changed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "ssh", "known_hosts")
			if tc.file != "-" {
				writeFile(t, file, tc.file)
			}
			var warnings []string
			h := &HostKeys{Files: []string{file}, Strict: tc.strict, Logf: func(f string, args ...any) {
				warnings = append(warnings, f)
			}}
			err := h.Check(addr, &net.TCPAddr{}, key)
			if tc.ok {
				require.NoError(t, err)
			} else {
				var hke *HostKeyError
				require.True(t, errors.As(err, &hke), "%v", err)
				assert.Equal(t, tc.changed, len(hke.Known) > 0)
				assert.True(t, strings.HasPrefix(err.Error(), "host key verification failed\n"))
				assert.True(t, strings.HasSuffix(err.Error(), "\nHost key verification failed."))
			}
			data, err := os.ReadFile(file)
			if tc.after == "-" {
				assert.True(t, errors.Is(err, os.ErrNotExist), "no file is created")
			} else {
				require.NoError(t, err)
				assert.Equal(t, tc.after, string(data))
			}
			if tc.warning == "" {
				assert.Empty(t, warnings)
			} else if assert.Len(t, warnings, 1) {
				assert.Contains(t, warnings[0], strings.Fields(tc.warning)[0])
			}
		})
	}
}

func TestHostKeysAsk(t *testing.T) {
	key := newHostKey(t)
	file := filepath.Join(t.TempDir(), "known_hosts")
	var asked string
	answer := false
	h := &HostKeys{Files: []string{file}, ConfirmCallback: func(msg string) (bool, error) {
		asked = msg
		return answer, nil
	}}
	var hke *HostKeyError
	require.ErrorAs(t, h.Check("example.com:22", nil, key), &hke, "no is a refusal")
	assert.Contains(t, asked, "The authenticity of host 'example.com' can't be established.\nED25519 key fingerprint is "+ssh.FingerprintSHA256(key))
	assert.NoFileExists(t, file)
	answer = true
	require.NoError(t, h.Check("example.com:22", nil, key))
	require.NoError(t, (&HostKeys{Files: []string{file}, Strict: StrictYes}).Check("example.com:22", nil, key), "yes adds the key")

	h.ConfirmCallback = func(string) (bool, error) { return false, errors.New("no terminal") }
	assert.ErrorContains(t, h.Check("other.example:22", nil, key), "no terminal")
}

func TestHostKeysHashed(t *testing.T) {
	key := newHostKey(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "known_hosts")
	h := &HostKeys{Files: []string{file}, Strict: StrictAcceptNew, Hash: true}
	require.NoError(t, h.Check("127.0.0.1:2222", nil, key))
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(data), "|1|"), "HashKnownHosts yes writes a hashed entry: %s", data)
	assert.NotContains(t, string(data), "127.0.0.1")

	strict := &HostKeys{Files: []string{file}, Strict: StrictYes}
	require.NoError(t, strict.Check("127.0.0.1:2222", nil, key), "the hashed entry is found")
	assert.Equal(t, []string{ssh.KeyAlgoED25519}, strict.Algorithms("127.0.0.1:2222")[:1])
	var hke *HostKeyError
	require.ErrorAs(t, strict.Check("127.0.0.1:2222", nil, newHostKey(t)), &hke)
	assert.Len(t, hke.Known, 1, "a changed key under a hashed entry is reported as changed")
}

func TestHostKeysCertificates(t *testing.T) {
	ca, wrongCA := newSigner(t), newSigner(t)
	host := newSigner(t)
	dir := t.TempDir()
	file := writeFile(t, filepath.Join(dir, "known_hosts"),
		"@cert-authority *.example.com,[127.0.0.1]:2222 "+authorizedLine(ca.PublicKey())+"\n")
	h := &HostKeys{Files: []string{filepath.Join(dir, "missing"), file}, Strict: StrictYes}

	assert.NoError(t, h.Check("a.example.com:22", nil, hostCert(t, ca, host.PublicKey(), "a.example.com")))
	assert.NoError(t, h.Check("127.0.0.1:2222", nil, hostCert(t, ca, host.PublicKey(), "127.0.0.1")), "the principal is the host without the port")
	var hke *HostKeyError
	assert.ErrorAs(t, h.Check("a.example.com:22", nil, hostCert(t, wrongCA, host.PublicKey(), "a.example.com")), &hke,
		"a certificate of another CA falls back to its plain key, which is unknown")
	assert.Error(t, h.Check("b.example.com:22", nil, hostCert(t, ca, host.PublicKey(), "a.example.com")), "a principal that does not match")

	algos := h.Algorithms("a.example.com:22")
	assert.Equal(t, ssh.CertAlgoED25519v01, algos[0], "the CA's certificates are asked for first")
	assert.Contains(t, algos, ssh.KeyAlgoED25519, "and the plain keys after them")

	// A host listed by plain key and presenting a certificate of an
	// unknown CA is accepted by that key, as ssh does.
	plain := writeFile(t, filepath.Join(dir, "plain"), knownhosts.Line([]string{"c.example.com"}, host.PublicKey())+"\n")
	h = &HostKeys{Files: []string{plain}, Strict: StrictYes}
	assert.NoError(t, h.Check("c.example.com:22", nil, hostCert(t, wrongCA, host.PublicKey(), "c.example.com")))
}

func TestHostKeysRevokedAndBroken(t *testing.T) {
	key := newHostKey(t)
	dir := t.TempDir()
	revoked := writeFile(t, filepath.Join(dir, "revoked"), "@revoked * "+authorizedLine(key)+"\n")
	h := &HostKeys{Files: []string{revoked}, Strict: StrictNo}
	err := h.Check("host:22", nil, key)
	assert.ErrorContains(t, err, "marked as revoked in "+revoked+":1")

	broken := writeFile(t, filepath.Join(dir, "broken"), "host ssh-ed25519 !!!\n")
	h = &HostKeys{Files: []string{broken}, Strict: StrictNo}
	assert.ErrorContains(t, h.Check("host:22", nil, key), "known hosts: ")
}

func TestHostKeysAlgorithms(t *testing.T) {
	dir := t.TempDir()
	h := &HostKeys{Files: []string{filepath.Join(dir, "known_hosts")}}
	assert.Equal(t, HostKeyAlgorithms(), h.Algorithms("example.com:22"), "no file: OpenSSH's order")
	order := HostKeyAlgorithms()
	assert.Subset(t, ssh.SupportedAlgorithms().HostKeys, order, "x/crypto implements every one")
	assert.Less(t, indexOf(order, ssh.KeyAlgoED25519), indexOf(order, ssh.KeyAlgoRSASHA256), "ed25519 before RSA")
	assert.Less(t, indexOf(order, ssh.KeyAlgoECDSA256), indexOf(order, ssh.KeyAlgoRSASHA256), "ECDSA before RSA")

	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ec, err := ssh.NewPublicKey(&priv.PublicKey)
	require.NoError(t, err)
	writeFile(t, h.Files[0], knownhosts.Line([]string{"example.com"}, ec)+"\n"+knownhosts.Line([]string{"other.example"}, newHostKey(t))+"\n")
	algos := h.Algorithms("example.com:22")
	assert.Equal(t, ssh.KeyAlgoECDSA256, algos[0], "the known key's algorithm first")
	assert.ElementsMatch(t, HostKeyAlgorithms(), algos, "then every other")
	assert.Equal(t, HostKeyAlgorithms(), h.Algorithms("unknown.example:22"))
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

func TestKeyName(t *testing.T) {
	key := newHostKey(t)
	assert.Equal(t, "ED25519", KeyName(key))
	assert.Equal(t, "ED25519-CERT", KeyName(hostCert(t, newSigner(t), key, "h")))
}
