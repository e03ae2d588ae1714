package sshconfig

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

func writeKey(t *testing.T, file string, passphrase []byte) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if passphrase != nil {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "", passphrase)
	}
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(file, pem.EncodeToMemory(block), 0o600))
	return priv
}

func TestLoadSigners(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	writeKey(t, good, nil)
	locked := filepath.Join(dir, "locked")
	writeKey(t, locked, []byte("secret"))
	var warnings []string
	signers := LoadSigners([]string{filepath.Join(dir, "missing"), locked, good}, func(f string, args ...any) {
		warnings = append(warnings, f)
	})
	assert.Len(t, signers, 1)
	assert.Len(t, warnings, 2)
}

func TestDefaultIdentityFiles(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	assert.Empty(t, DefaultIdentityFiles())
	require.NoError(t, os.Mkdir(filepath.Join(home, ".ssh"), 0o700))
	writeKey(t, filepath.Join(home, ".ssh", "id_rsa"), nil)
	writeKey(t, filepath.Join(home, ".ssh", "id_ed25519"), nil)
	assert.Equal(t, []string{filepath.Join(home, ".ssh", "id_ed25519"), filepath.Join(home, ".ssh", "id_rsa")}, DefaultIdentityFiles())
}

func TestAgent(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	signers, closer, err := Agent()
	require.NoError(t, err)
	assert.Nil(t, signers)
	assert.Nil(t, closer)

	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	require.NoError(t, err)
	keyring := agent.NewKeyring()
	priv := writeKey(t, filepath.Join(t.TempDir(), "k"), nil)
	require.NoError(t, keyring.Add(agent.AddedKey{PrivateKey: priv}))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		agent.ServeAgent(keyring, c)
	}()
	defer func() {
		ln.Close()
		wg.Wait()
	}()

	t.Setenv("SSH_AUTH_SOCK", sock)
	signers, closer, err = Agent()
	require.NoError(t, err)
	require.Len(t, signers, 1)
	sig, err := signers[0].Sign(rand.Reader, []byte("data"))
	require.NoError(t, err)
	assert.NoError(t, signers[0].PublicKey().Verify([]byte("data"), sig))
	require.NoError(t, closer.Close())

	t.Setenv("SSH_AUTH_SOCK", filepath.Join(t.TempDir(), "none"))
	_, _, err = Agent()
	assert.ErrorContains(t, err, "sshfwd: ssh-agent")
}
