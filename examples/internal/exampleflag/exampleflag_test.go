package exampleflag

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/sshfwd/sshfwd/internal/testnet"
	"github.com/sshfwd/sshfwd/sshtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newFlagSet() (*flag.FlagSet, *Server) {
	fs := flag.NewFlagSet("example", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs, AddServer(fs)
}

func TestParse(t *testing.T) {
	fs, srv := newFlagSet()
	require.NoError(t, Parse(fs, []string{"-ssh", "me@host", "-i", "/k"}))
	assert.Equal(t, "me@host", srv.Name())

	fs, _ = newFlagSet()
	assert.EqualError(t, Parse(fs, []string{"-ssh", "me@host", "stray"}), `unexpected argument "stray": example takes flags only (-h lists them)`)
	fs, _ = newFlagSet()
	assert.ErrorIs(t, Parse(fs, []string{"-h"}), flag.ErrHelp)
	fs, _ = newFlagSet()
	assert.Error(t, Parse(fs, []string{"-nosuchflag"}))
}

func TestStatus(t *testing.T) {
	var stderr bytes.Buffer
	assert.Equal(t, 0, Status("example", nil, &stderr))
	assert.Equal(t, 0, Status("example", flag.ErrHelp, &stderr), "-h is no failure")
	assert.Empty(t, stderr.String())
	assert.Equal(t, 1, Status("example", errors.New("it broke"), &stderr))
	assert.Equal(t, "example: it broke\n", stderr.String())
}

// TestDialAsTheCommandDoes reaches a server as the sshfwd command would
// with only a Host of ~/.ssh/config: the default key file and known_hosts
// of the home directory, with nothing given on the command line.
func TestDialAsTheCommandDoes(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("SSH_AUTH_SOCK", "")
	dotSSH := filepath.Join(home, ".ssh")
	require.NoError(t, os.MkdirAll(dotSSH, 0o700))
	keyFile, signer := testnet.KeyFile(t, t.TempDir())
	key, err := os.ReadFile(keyFile)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dotSSH, "id_ed25519"), key, 0o600))
	srv := sshtest.NewServer(&sshtest.Config{AuthorizedKeys: []ssh.PublicKey{signer.PublicKey()}})
	defer srv.Close()
	host, port, err := net.SplitHostPort(srv.Addr())
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dotSSH, "config"), []byte("Host lab\n  HostName "+host+"\n  Port "+port+"\n"), 0o600))
	known := knownhosts.Line([]string{knownhosts.Normalize(srv.Addr())}, srv.HostKey()) + "\n"
	require.NoError(t, os.WriteFile(filepath.Join(dotSSH, "known_hosts"), []byte(known), 0o600))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fs, server := newFlagSet()
	require.NoError(t, Parse(fs, []string{"-ssh", "lab"}))
	server.Base.SystemDir = t.TempDir()
	s, err := server.Dial(ctx)
	require.NoError(t, err)
	s.Close()

	fs, server = newFlagSet()
	require.NoError(t, Parse(fs, []string{"-ssh", "lab", "-known-hosts", filepath.Join(t.TempDir(), "empty")}))
	server.Base.SystemDir = t.TempDir()
	_, err = server.Dial(ctx)
	assert.ErrorContains(t, err, "Host key verification failed", "-known-hosts replaces the configuration's file, and nothing is asked")
}
