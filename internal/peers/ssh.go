package peers

import (
	"context"
	"os/exec"
	"testing"
	"time"
)

// SSHDefaultArgs are the options [SSHCommand] puts before the caller's
// arguments. The OpenSSH client uses the first value it sees for an option,
// so callers cannot override these; everything else (port, identity,
// known_hosts file, forwardings) is left to the caller.
var SSHDefaultArgs = []string{
	"-F", "none", // ignore ~/.ssh/config and /etc/ssh/ssh_config
	"-o", "BatchMode=yes", // never prompt
	"-o", "StrictHostKeyChecking=yes", // the caller must pass a known_hosts file
	"-o", "UpdateHostKeys=no", // never write to the known_hosts file
	"-o", "IdentitiesOnly=yes", // only the -i keys, not the agent's or ~/.ssh's
	"-o", "ControlMaster=no", // no connection sharing with other tests
	"-o", "ControlPath=none",
	"-o", "ConnectTimeout=10",
}

// SSHCommand returns an unstarted /usr/bin/ssh command with
// [SSHDefaultArgs] followed by args. Use [SSHD.SSHArgs] to reach a server
// from [StartSSHD]:
//
//	cmd := peers.SSHCommand(t, ctx, append(srv.SSHArgs(), "127.0.0.1", "echo", "ok")...)
//
// Useful additions: "-N" (no command, e.g. with forwardings), "-T"/"-tt"
// (no/forced pty), "-L 127.0.0.1:P:127.0.0.1:Q", "-R ...", "-D 127.0.0.1:P",
// "-o ExitOnForwardFailure=yes", "-o ServerAliveInterval=1", "-X"
// (X11 forwarding, needs DISPLAY and XAUTHORITY in cmd.Env), "-v".
//
// The command is killed when ctx is done and its Wait gives up on its I/O
// 5 s after exit (cmd.WaitDelay). If the test starts it but never waits for
// it, a t.Cleanup kills and reaps it.
func SSHCommand(t testing.TB, ctx context.Context, args ...string) *exec.Cmd {
	t.Helper()
	return command(t, ctx, SSHBin, args)
}

// SFTPCommand is [SSHCommand] for /usr/bin/sftp, which takes the same
// options (with -P for the port). Give it "-b" and a batch file: it reads
// its commands there and never prompts.
func SFTPCommand(t testing.TB, ctx context.Context, args ...string) *exec.Cmd {
	t.Helper()
	return command(t, ctx, SFTPBin, args)
}

// command returns bin with [SSHDefaultArgs] and args, killed when ctx is
// done and reaped by a t.Cleanup if the test started it but did not wait.
func command(t testing.TB, ctx context.Context, bin string, args []string) *exec.Cmd {
	t.Helper()
	Require(t, bin)
	all := append(append([]string{}, SSHDefaultArgs...), args...)
	cmd := exec.CommandContext(ctx, bin, all...)
	cmd.WaitDelay = 5 * time.Second
	t.Cleanup(func() {
		if cmd.Process != nil && cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}
