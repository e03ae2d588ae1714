package sshconfig

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		in, user, addr string
	}{
		{"alice@example.com", "alice", "example.com:22"},
		{"alice@example.com:2222", "alice", "example.com:2222"},
		{"bob@127.0.0.1:22", "bob", "127.0.0.1:22"},
		{"carol@[::1]:2022", "carol", "[::1]:2022"},
		{"dave@[::1]", "dave", "[::1]:22"},
		{"me@x@host", "me@x", "host:22"},
	} {
		got, err := ParseTarget(tc.in)
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.user, got.User, tc.in)
		assert.Equal(t, tc.addr, got.Addr, tc.in)
	}
	got, err := ParseTarget("host:23")
	require.NoError(t, err)
	assert.NotEmpty(t, got.User)
	for _, bad := range []string{"", "a@", "a@host:0", "a@host:x", "a@host:70000", "a b@host", "a@ho\x00st"} {
		_, err := ParseTarget(bad)
		assert.Error(t, err, "%q", bad)
	}
}

func TestClientConfig(t *testing.T) {
	dir := t.TempDir()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	block, err := ssh.MarshalPrivateKey(priv, "")
	require.NoError(t, err)
	keyFile := filepath.Join(dir, "id")
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600))

	hostPub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	hostKey, err := ssh.NewPublicKey(hostPub)
	require.NoError(t, err)
	known := filepath.Join(dir, "known_hosts")
	require.NoError(t, os.WriteFile(known, []byte(knownhosts.Line([]string{"[127.0.0.1]:2222"}, hostKey)+"\n"), 0o600))

	cfg, err := ClientConfig(Target{User: "u", Addr: "127.0.0.1:2222"}, keyFile, known)
	require.NoError(t, err)
	assert.Equal(t, "u", cfg.User)
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2222}
	assert.NoError(t, cfg.HostKeyCallback("127.0.0.1:2222", addr, hostKey))
	otherPub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	other, err := ssh.NewPublicKey(otherPub)
	require.NoError(t, err)
	assert.Error(t, cfg.HostKeyCallback("127.0.0.1:2222", addr, other), "an unknown host key must be refused")

	_, err = ClientConfig(Target{User: "u"}, filepath.Join(dir, "missing"), known)
	assert.Error(t, err)
	_, err = ClientConfig(Target{User: "u"}, known, known)
	assert.Error(t, err, "a known_hosts file is not a key")
}
