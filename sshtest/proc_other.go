//go:build !unix

package sshtest

import (
	"errors"
	"os"
	"os/exec"
)

// ownProcessGroup leaves cmd as it is: without Unix process groups,
// cancelling it kills the process alone.
func ownProcessGroup(cmd *exec.Cmd) {}

// startOnTerminal refuses: pseudo-terminals are a Unix thing.
func (s *session) startOnTerminal(cmd *exec.Cmd) (wait func(), err error) {
	return nil, errors.New("sshtest: terminals are supported on Unix only")
}

// exitSignal reports no signals: they exist on Unix only.
func exitSignal(ps *os.ProcessState) (string, bool) { return "", false }

// exitStatus returns the process's exit status.
func exitStatus(ps *os.ProcessState) uint32 { return uint32(ps.ExitCode()) }
