//go:build unix

package sshtest

import (
	"bufio"
	"errors"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
)

// startSleeper runs a long command in a new session and returns the
// session and the PID of the process.
func startSleeper(t testing.TB, client *ssh.Client) (*ssh.Session, int) {
	t.Helper()
	sess := newSession(t, client)
	stdout, err := sess.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, sess.Start("echo $$; exec sleep 1000"))
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pid, 0), "process %d not running", pid)
	return sess, pid
}

func gone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func TestChannelCloseKillsProcess(t *testing.T) {
	srv := newServer(t, nil)
	client := dial(t, srv)
	sess, pid := startSleeper(t, client)

	require.NoError(t, sess.Close())
	assert.Eventually(t, func() bool { return gone(pid) }, 5*time.Second, 10*time.Millisecond,
		"process %d outlived its channel", pid)
}
