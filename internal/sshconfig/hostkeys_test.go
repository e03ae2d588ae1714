package sshconfig

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func newHostKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	key, err := ssh.NewPublicKey(pub)
	require.NoError(t, err)
	return key
}

func TestHostKeysCheck(t *testing.T) {
	const addr = "127.0.0.1:2222"
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2222}
	key, other := newHostKey(t), newHostKey(t)
	knownLine := knownhosts.Line([]string{"[127.0.0.1]:2222"}, key) + "\n"
	otherLine := knownhosts.Line([]string{"[127.0.0.1]:2222"}, other) + "\n"

	for _, tc := range []struct {
		name    string
		file    string // contents; "-" for no file
		strict  StrictHostKeyChecking
		ok      bool
		changed bool   // a HostKeyError for a changed key is expected
		after   string // the file's contents after the check
		warning string
	}{
		{"known", knownLine, StrictYes, true, false, knownLine, ""},
		{"unknown, no file, yes", "-", StrictYes, false, false, "-", ""},
		{"unknown, yes", "# nothing\n", StrictYes, false, false, "# nothing\n", ""},
		{"unknown, accept-new", "-", StrictAcceptNew, true, false, knownLine, "Permanently added '[127.0.0.1]:2222' (ED25519)"},
		{"unknown, no", "# x\n", StrictNo, true, false, "# x\n" + knownLine, "Permanently added"},
		{"changed, yes", otherLine, StrictYes, false, true, otherLine, ""},
		{"changed, accept-new", otherLine, StrictAcceptNew, false, true, otherLine, ""},
		{"changed, no", otherLine, StrictNo, true, false, otherLine, "has changed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "ssh", "known_hosts")
			if tc.file != "-" {
				require.NoError(t, os.MkdirAll(filepath.Dir(file), 0o700))
				require.NoError(t, os.WriteFile(file, []byte(tc.file), 0o600))
			}
			var warnings []string
			h := &HostKeys{File: file, Strict: tc.strict, Warnf: func(f string, args ...any) {
				warnings = append(warnings, f)
			}}
			err := h.Check(addr, remote, key)
			if tc.ok {
				require.NoError(t, err)
			} else {
				var hke *HostKeyError
				require.True(t, errors.As(err, &hke), "%v", err)
				assert.Equal(t, tc.changed, len(hke.Known) > 0)
				assert.True(t, strings.HasPrefix(err.Error(), "sshfwd: host key verification failed\n"))
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

func TestHostKeysRevokedAndBroken(t *testing.T) {
	key := newHostKey(t)
	dir := t.TempDir()
	revoked := filepath.Join(dir, "revoked")
	require.NoError(t, os.WriteFile(revoked, []byte("@revoked * "+strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))+"\n"), 0o600))
	h := &HostKeys{File: revoked, Strict: StrictNo}
	assert.ErrorContains(t, h.Check("host:22", &net.TCPAddr{}, key), "revoked")

	broken := filepath.Join(dir, "broken")
	require.NoError(t, os.WriteFile(broken, []byte("host ssh-ed25519 !!!\n"), 0o600))
	h = &HostKeys{File: broken, Strict: StrictNo}
	assert.ErrorContains(t, h.Check("host:22", &net.TCPAddr{}, key), "sshfwd: known hosts")
}

func TestHostKeysAlgorithms(t *testing.T) {
	file := filepath.Join(t.TempDir(), "known_hosts")
	h := &HostKeys{File: file}
	assert.Nil(t, h.Algorithms("example.com:22"), "no file")
	ed := newHostKey(t)
	lines := knownhosts.Line([]string{"example.com"}, ed) + "\n" + knownhosts.Line([]string{"other.example"}, newHostKey(t)) + "\n"
	require.NoError(t, os.WriteFile(file, []byte(lines), 0o600))
	assert.Equal(t, []string{ssh.KeyAlgoED25519}, h.Algorithms("example.com:22"))
	assert.Nil(t, h.Algorithms("unknown.example:22"))
	assert.Equal(t, []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}, algorithmsFor(ssh.KeyAlgoRSA))
}

func TestParseStrictHostKeyChecking(t *testing.T) {
	for in, want := range map[string]StrictHostKeyChecking{"yes": StrictYes, "Accept-New": StrictAcceptNew, "no": StrictNo, "OFF": StrictNo} {
		got, err := ParseStrictHostKeyChecking(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "ask", "maybe"} {
		_, err := ParseStrictHostKeyChecking(in)
		assert.Error(t, err, in)
	}
}
