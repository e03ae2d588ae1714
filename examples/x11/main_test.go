package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/internal/peers"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// useXvfb starts Xvfb and makes it the local display for the rest of the
// test.
func useXvfb(t *testing.T) {
	t.Helper()
	peers.Require(t, peers.XvfbBin, peers.XauthBin, peers.XdpyinfoBin)
	xv := peers.StartXvfb(t)
	t.Setenv("DISPLAY", xv.DisplayString)
	t.Setenv("XAUTHORITY", xv.AuthFile)
}

func TestEmbeddedServer(t *testing.T) {
	useXvfb(t)
	var stdout, stderr bytes.Buffer
	err := run(testContext(t), nil, &stdout, &stderr)
	require.NoError(t, err, "stderr:\n%s", &stderr)
	assert.Contains(t, stdout.String(), "dimensions:    1280x1024 pixels")
	assert.Contains(t, stderr.String(), "embedded SSH server")
}

func TestOpenSSHServer(t *testing.T) {
	useXvfb(t)
	d := peers.StartSSHD(t, peers.SSHDOptions{})
	t.Setenv("SSH_AUTH_SOCK", "")
	var stdout, stderr bytes.Buffer
	err := run(testContext(t), []string{"-F", "none", "-ssh", d.User + "@" + d.Addr, "-i", d.KeyFile, "-known-hosts", d.KnownHosts}, &stdout, &stderr)
	require.NoError(t, err, "stderr:\n%s", &stderr)
	assert.Contains(t, stdout.String(), "dimensions:    1280x1024 pixels")
}

func TestCommand(t *testing.T) {
	t.Setenv("DISPLAY", ":0")
	var stdout, stderr bytes.Buffer
	require.NoError(t, run(testContext(t), []string{"-cmd", `echo "$DISPLAY"`}, &stdout, &stderr))
	assert.Regexp(t, `^localhost:\d+\.0\n$`, stdout.String())

	err := run(testContext(t), []string{"-cmd", "exit 3"}, &stdout, &stderr)
	var exit *ssh.ExitError
	require.True(t, errors.As(err, &exit), "%v", err)
	assert.Equal(t, 3, exit.ExitStatus())
}

func TestNoDisplay(t *testing.T) {
	t.Setenv("DISPLAY", "")
	var stdout, stderr bytes.Buffer
	err := run(testContext(t), nil, &stdout, &stderr)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Xvfb :99 -auth ~/.Xauthority &")
	assert.Contains(t, err.Error(), "export DISPLAY=:99")
}

func TestBadArguments(t *testing.T) {
	t.Setenv("DISPLAY", ":0")
	var stdout, stderr bytes.Buffer
	assert.Error(t, run(testContext(t), []string{"-nosuchflag"}, &stdout, &stderr))
	assert.ErrorContains(t, run(testContext(t), []string{"xdpyinfo"}, &stdout, &stderr), "takes flags only")
	assert.ErrorIs(t, run(testContext(t), []string{"-h"}, &stdout, &stderr), flag.ErrHelp, "which exits 0")
	assert.ErrorContains(t, run(testContext(t), []string{"-F", "none", "-ssh", "me@127.0.0.1:1"}, &stdout, &stderr), "refused")
}
