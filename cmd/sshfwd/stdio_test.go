package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sshfwd/sshfwd/internal/peers"
	"github.com/sshfwd/sshfwd/internal/testnet"
)

func TestStdioForward(t *testing.T) {
	isolate(t)
	d := startSSHD(t)
	target := hashServer(t)
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	t.Cleanup(func() {
		inR.Close()
		outR.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var stderr syncBuffer
	done := make(chan int, 1)
	base := testBase(t)
	go func() {
		done <- run(ctx, append(sshArgs(d), "-W", local(target), "127.0.0.1"), streams{inR, outW, &stderr}, base)
	}()

	data := testnet.RandomBytes(t, 1<<20)
	go func() {
		inW.Write(data)
		inW.Close()
	}()
	got, err := io.ReadAll(outR)
	require.NoError(t, err)
	sum := sha256.Sum256(data)
	assert.Equal(t, hex.EncodeToString(sum[:]), string(got), "stdin went to the target with its EOF, the answer came to stdout")
	select {
	case code := <-done:
		assert.Equal(t, 0, code)
	case <-time.After(testTimeout):
		t.Fatal("-W did not exit once both directions ended")
	}
	assert.Empty(t, stderr.String(), "a ProxyCommand's stderr shows in ssh's output: -W says nothing when all goes well")

	_, errs, code := runToEnd(t, append(sshArgs(d), "-W", local(peers.FreePort(t)), "127.0.0.1")...)
	assert.Equal(t, exitFailure, code)
	assert.Equal(t, []string{"channel 0: open failed: connect failed: Connection refused", "stdio forwarding failed"}, lines(errs),
		"in ssh's words")
}

// TestOpenSSHProxyCommand has OpenSSH's ssh reach a server through a jump
// host with sshfwd -W as its ProxyCommand, as a user's ssh_config has it.
func TestOpenSSHProxyCommand(t *testing.T) {
	isolate(t)
	jump := startSSHD(t, "LogLevel DEBUG1")
	inner := startSSHD(t)
	peers.Require(t, peers.SSHBin)
	// OpenSSH reads the home directory of the passwd file, not $HOME:
	// both commands are given the file.
	config := filepath.Join(t.TempDir(), "config")
	proxy := sshfwdBinary(t) + " -F " + config + " -W %h:%p jump"
	require.NoError(t, os.WriteFile(config, []byte(hostBlock(jump, "jump")+hostBlock(inner, "inner")+"  ProxyCommand "+proxy+"\n"), 0o600))
	out, err := sshOutput(t, "-F", config, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "inner", "echo", "through", "sshfwd")
	require.NoError(t, err, "%s", out)
	assert.Equal(t, "through sshfwd\n", out, "nothing but the command's output: -W is silent")
	assert.Contains(t, jump.ReadLog(), "target 127.0.0.1 port "+strconv.Itoa(inner.Port), "the jump host opened the way")

	// A port where nothing listens fails in ssh's words.
	closed := strconv.Itoa(peers.FreePort(t))
	out, err = sshOutput(t, "-F", config, "-o", "BatchMode=yes", "-o", "ProxyCommand="+sshfwdBinary(t)+" -F "+config+" -W %h:"+closed+" jump", "inner", "true")
	require.Error(t, err)
	assert.Contains(t, out, "channel 0: open failed: connect failed: Connection refused\n")
	assert.Contains(t, out, "stdio forwarding failed\n")
}
