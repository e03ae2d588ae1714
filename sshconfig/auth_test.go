package sshconfig

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/sshfwd/sshfwd/internal/testnet"
)

// writeKey writes a fresh ed25519 key to file, protected by passphrase
// unless it is nil, and returns it.
func writeKey(t testing.TB, file string, passphrase []byte) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if passphrase != nil {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "", passphrase)
	}
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Dir(file), 0o700))
	require.NoError(t, os.WriteFile(file, pem.EncodeToMemory(block), 0o600))
	return priv
}

func publicOf(t testing.TB, priv ed25519.PrivateKey) ssh.PublicKey {
	t.Helper()
	pub, err := ssh.NewPublicKey(priv.Public())
	require.NoError(t, err)
	return pub
}

// userCert returns a user certificate for key, signed by ca.
func userCert(t testing.TB, ca ssh.Signer, key ssh.PublicKey, principals ...string) *ssh.Certificate {
	t.Helper()
	cert := &ssh.Certificate{
		Key:             key,
		CertType:        ssh.UserCert,
		KeyId:           "test user",
		ValidPrincipals: principals,
		Permissions: ssh.Permissions{Extensions: map[string]string{
			"permit-port-forwarding": "", "permit-pty": "", "permit-X11-forwarding": "",
		}},
		ValidAfter:  uint64(time.Now().Add(-time.Hour).Unix()),
		ValidBefore: uint64(time.Now().Add(time.Hour).Unix()),
	}
	require.NoError(t, cert.SignCert(rand.Reader, ca))
	return cert
}

// serveAgent serves keyring on a Unix socket until the test ends and
// returns the socket's path.
func serveAgent(t testing.TB, keyring agent.Agent) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	require.NoError(t, err)
	testnet.Serve(t, ln, func(c net.Conn) { agent.ServeAgent(keyring, c) })
	return sock
}

// resolveWith resolves "h" with the given overrides and a logger that
// collects warnings.
func resolveWith(t testing.TB, opts *Options, overrides ...string) (*Config, *[]string) {
	t.Helper()
	var warnings []string
	opts.Overrides = overrides
	opts.Logf = func(f string, args ...any) { warnings = append(warnings, f) }
	c, err := Resolve("h", opts)
	require.NoError(t, err)
	return c, &warnings
}

func TestIdentities(t *testing.T) {
	opts := testOptions(t)
	ssh := filepath.Join(opts.Home, ".ssh")
	writeKey(t, filepath.Join(ssh, "id_ed25519"), nil)
	writeKey(t, filepath.Join(ssh, "id_rsa"), nil)
	c, warnings := resolveWith(t, opts)
	ids := c.identities()
	require.Len(t, ids, 2, "ssh's default files that exist")
	assert.Equal(t, filepath.Join(ssh, "id_rsa"), ids[0].file, "in ssh's order")
	assert.Empty(t, *warnings, "missing default files are skipped quietly")

	locked := filepath.Join(t.TempDir(), "locked")
	writeKey(t, locked, []byte("secret"))
	missing := filepath.Join(t.TempDir(), "missing")
	c, warnings = resolveWith(t, opts, "IdentityFile="+missing, "IdentityFile="+locked)
	assert.Empty(t, c.identities(), "a protected key with no one to ask is skipped")
	assert.Len(t, *warnings, 2)

	opts.PassphraseCallback = func(string) ([]byte, error) { return []byte("secret"), nil }
	c, _ = resolveWith(t, opts, "IdentityFile="+locked)
	ids = c.identities()
	require.Len(t, ids, 1)
	assert.IsType(t, &lockedKey{}, ids[0].signer, "decrypted only when the server wants it")

	c, _ = resolveWith(t, opts, "IdentityFile="+locked, "BatchMode=yes")
	assert.Empty(t, c.identities(), "BatchMode never prompts")
}

func TestLockedKey(t *testing.T) {
	file := filepath.Join(t.TempDir(), "locked")
	priv := writeKey(t, file, []byte("right"))
	answers := []string{"wrong", "also wrong", "right"}
	var asked []string
	opts := testOptions(t)
	opts.PassphraseCallback = func(f string) ([]byte, error) {
		asked = append(asked, f)
		a := answers[0]
		answers = answers[1:]
		return []byte(a), nil
	}
	c, _ := resolveWith(t, opts, "IdentityFile="+file)
	ids := c.identities()
	require.Len(t, ids, 1)
	assert.Equal(t, publicOf(t, priv).Marshal(), ids[0].public.Marshal(), "the public half is read without the passphrase")
	sig, err := ids[0].signer.Sign(rand.Reader, []byte("data"))
	require.NoError(t, err)
	assert.NoError(t, ids[0].public.Verify([]byte("data"), sig))
	assert.Equal(t, []string{file, file, file}, asked, "asked until it is right")
	_, err = ids[0].signer.(ssh.AlgorithmSigner).SignWithAlgorithm(rand.Reader, []byte("x"), ssh.KeyAlgoED25519)
	assert.NoError(t, err)
	assert.Len(t, asked, 3, "and not again")

	answers = []string{"a", "b", "c"}
	c, _ = resolveWith(t, opts, "IdentityFile="+file)
	_, err = c.identities()[0].signer.Sign(rand.Reader, []byte("data"))
	assert.ErrorContains(t, err, "incorrect passphrase")

	opts.PassphraseCallback = func(string) ([]byte, error) { return nil, errors.New("cancelled") }
	c, _ = resolveWith(t, opts, "IdentityFile="+file)
	_, err = c.identities()[0].signer.Sign(rand.Reader, []byte("data"))
	assert.ErrorContains(t, err, "cancelled")
}

func TestSignersOrder(t *testing.T) {
	dir := t.TempDir()
	both := writeKey(t, filepath.Join(dir, "both"), nil)
	agentOnly := writeKey(t, filepath.Join(dir, "agent_only"), nil)
	fileOnly := writeKey(t, filepath.Join(dir, "file_only"), nil)
	ca := newSigner(t)
	cert := userCert(t, ca, publicOf(t, fileOnly), "me")
	writeFile(t, filepath.Join(dir, "file_only-cert.pub"), string(ssh.MarshalAuthorizedKey(cert)))

	keyring := agent.NewKeyring()
	require.NoError(t, keyring.Add(agent.AddedKey{PrivateKey: agentOnly}))
	require.NoError(t, keyring.Add(agent.AddedKey{PrivateKey: both}))
	opts := testOptions(t)
	sock := serveAgent(t, keyring)

	keys := func(overrides ...string) []string {
		c, _ := resolveWith(t, opts, overrides...)
		a := &authSetup{}
		defer a.Close()
		signers, err := c.signers(a)
		require.NoError(t, err)
		var out []string
		for _, s := range signers {
			out = append(out, string(s.PublicKey().Marshal()))
		}
		return out
	}
	files := []string{"IdentityFile=" + filepath.Join(dir, "file_only"), "IdentityFile=" + filepath.Join(dir, "both")}
	agentOpt := "IdentityAgent=" + sock
	m := func(k ssh.PublicKey) string { return string(k.Marshal()) }
	assert.Equal(t, []string{m(publicOf(t, both)), m(publicOf(t, agentOnly)), m(cert), m(publicOf(t, fileOnly))},
		keys(append(files, agentOpt)...), "the agent's keys named by a file, its others, then the files' with their certificates")
	assert.Equal(t, []string{m(publicOf(t, both)), m(cert), m(publicOf(t, fileOnly))},
		keys(append(files, agentOpt, "IdentitiesOnly=yes")...), "IdentitiesOnly leaves out the agent's other keys")
	assert.Equal(t, []string{m(cert), m(publicOf(t, fileOnly)), m(publicOf(t, both))},
		keys(append(files, "IdentityAgent=none")...))

	t.Setenv("SSH_AUTH_SOCK", sock)
	assert.Len(t, keys(files...), 4, "SSH_AUTH_SOCK is the default agent")
}

func TestAuthMethods(t *testing.T) {
	opts := testOptions(t)
	c, _ := resolveWith(t, opts, "IdentityAgent=none")
	_, err := c.auth()
	assert.ErrorContains(t, err, "no way to log in")

	opts.PasswordCallback = func(string, string) (string, error) { return "pw", nil }
	opts.KeyboardInteractiveCallback = func(string, string, []string, []bool) ([]string, error) { return nil, nil }
	c, _ = resolveWith(t, opts, "IdentityAgent=none")
	a, err := c.auth()
	require.NoError(t, err)
	assert.Len(t, a.methods, 2)
	a.Close()

	c, _ = resolveWith(t, opts, "IdentityAgent=none", "BatchMode=yes")
	_, err = c.auth()
	assert.Error(t, err, "BatchMode never prompts")
	c, _ = resolveWith(t, opts, "IdentityAgent=none", "PasswordAuthentication=no")
	a, err = c.auth()
	require.NoError(t, err)
	assert.Len(t, a.methods, 1)
	a.Close()
}

func TestDefaultIdentityFiles(t *testing.T) {
	opts := testOptions(t)
	c, err := Resolve("host", opts)
	require.NoError(t, err)
	want := []string{"id_rsa", "id_ecdsa", "id_ecdsa_sk", "id_ed25519", "id_ed25519_sk", "id_xmss", "id_dsa"}
	for i := range want {
		want[i] = filepath.Join(opts.Home, ".ssh", want[i])
	}
	assert.Equal(t, want, c.DefaultIdentityFiles(), "ssh's files, in ssh's order, in the home given")
	assert.Empty(t, c.IdentityFiles)
}
