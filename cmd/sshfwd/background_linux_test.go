package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sshfwd/sshfwd/internal/peers"
)

// adoptOrphans makes this process the reaper of its orphaned
// descendants until the test ends, so that the process -f leaves behind,
// whose parent exits, becomes a child of the test: one it can stop by
// its PID and wait for.
func adoptOrphans(t *testing.T) {
	t.Helper()
	require.NoError(t, unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))
	t.Cleanup(func() { unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })
}

// stopAdopted ends the adopted process pid with SIGTERM and reaps it.
func stopAdopted(t *testing.T, pid int) {
	t.Helper()
	p, err := os.FindProcess(pid)
	require.NoError(t, err)
	require.NoError(t, p.Signal(syscall.SIGTERM))
	exited := make(chan error, 1)
	go func() {
		_, err := p.Wait()
		exited <- err
	}()
	select {
	case err := <-exited:
		assert.NoError(t, err)
	case <-time.After(testTimeout):
		t.Errorf("background process %d did not exit on SIGTERM", pid)
		p.Kill()
		<-exited
	}
}

func TestBackground(t *testing.T) {
	isolate(t)
	d := startSSHD(t)
	adoptOrphans(t)
	target := hashServer(t)
	port := peers.FreePort(t)
	logFile := filepath.Join(t.TempDir(), "sshfwd.log")
	cmd := exec.Command(sshfwdBinary(t), append(sshArgs(d), "-f", "-v", "-E", logFile,
		"-L", fmt.Sprintf("%d:127.0.0.1:%d", port, target), "-R", "0:127.0.0.1:"+strconv.Itoa(target), "127.0.0.1")...)
	// A file, as a terminal is, rather than a pipe that Wait would wait
	// for the background process to close too.
	stderr, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	require.NoError(t, err)
	defer stderr.Close()
	cmd.Stderr = stderr
	err = cmd.Run()
	log, _ := os.ReadFile(logFile)
	errs, _ := os.ReadFile(stderr.Name())
	require.NoError(t, err, "%s%s", errs, log)
	m := regexp.MustCompile(`debug1: forking to background, pid (\d+)\n`).FindSubmatch(log)
	require.NotNil(t, m, "%s", log)
	pid, err := strconv.Atoi(string(m[1]))
	require.NoError(t, err)
	t.Cleanup(func() { stopAdopted(t, pid) })

	// The parent returned once the forwards were up: they work at the
	// first try.
	assert.NoError(t, roundTripTo("tcp", local(port), []byte("-L in the background")))
	m = regexp.MustCompile(`Allocated port (\d+) for remote`).FindSubmatch(log)
	require.NotNil(t, m, "the remote forward was granted before the parent returned:\n%s", log)
	assert.NoError(t, roundTripTo("tcp", "127.0.0.1:"+string(m[1]), []byte("-R in the background")))
	errs, _ = os.ReadFile(stderr.Name())
	assert.Empty(t, errs, "-E takes the lines")
	sid, err := unix.Getsid(pid)
	require.NoError(t, err)
	assert.Equal(t, pid, sid, "the background process leads a session of its own, away from the terminal's")
}

func TestBackgroundFailure(t *testing.T) {
	isolate(t)
	d := startSSHD(t, "PermitListen none")
	known := filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, os.WriteFile(known, nil, 0o600))
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown host key", []string{"-o", "UserKnownHostsFile=" + known, "-o", "StrictHostKeyChecking=yes",
			"-L", fmt.Sprintf("%d:127.0.0.1:1", peers.FreePort(t))}, "Host key verification failed."},
		{"refused remote forward", []string{"-o", "UserKnownHostsFile=" + d.KnownHosts, "-o", "ExitOnForwardFailure=yes",
			"-R", "0:127.0.0.1:1"}, "request denied by peer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(sshfwdBinary(t), append([]string{"-f", "-F", "none", "-p", strconv.Itoa(d.Port), "-i", d.KeyFile}, append(tc.args, "127.0.0.1")...)...)
			var stderr syncBuffer
			cmd.Stderr = &stderr
			cmd.WaitDelay = testTimeout
			err := cmd.Run()
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee, "the parent reports the failure of the process that would have stayed")
			assert.Equal(t, exitFailure, ee.ExitCode())
			assert.Contains(t, stderr.String(), tc.want)
		})
	}
}
