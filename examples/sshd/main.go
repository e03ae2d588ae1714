// Command sshd is a small SSH server built on sshtest, for pointing real
// clients at: OpenSSH's ssh with -L, -R, -W, -X, -A and -t, sftp, or
// programs using sshfwd. It accepts any user name whose key is in
// -authorized-keys, serves direct and reverse forwarding (TCP and Unix
// sockets), X11 and agent forwarding, exec, shell and terminal sessions
// and the sftp subsystem, binds forwards to loopback like OpenSSH's
// "GatewayPorts no", and applies sshd's limits, each of which has a flag.
//
//	go run ./examples/sshd -authorized-keys ~/.ssh/id_ed25519.pub
//	ssh -p 2022 -o UserKnownHostsFile=... -N -L 8080:example.com:80 127.0.0.1
//
// -latency and -bandwidth make every connection a slow link.
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/examples/internal/exampleflag"
	"github.com/sshfwd/sshfwd/sshtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, nil)
	stop()
	os.Exit(exampleflag.Status("sshd", err, os.Stderr))
}

// run serves until ctx ends. It sends the server's address on ready, if not
// nil, once it accepts connections.
func run(ctx context.Context, args []string, out io.Writer, ready chan<- string) error {
	fs := flag.NewFlagSet("sshd", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:2022", "address to listen on")
	authorized := fs.String("authorized-keys", "", "OpenSSH authorized_keys file of the keys to accept (required)")
	hostKeyFile := fs.String("host-key", "", "OpenSSH private host key; created if the file does not exist; empty: a fresh key each run")
	cfg := sshtest.Config{MaxStartups: sshtest.DefaultMaxStartups}
	fs.StringVar(&cfg.ServerVersion, "server-version", "", `identification line, beginning with "SSH-2.0-" (libssh wants "OpenSSH" in it); empty: x/crypto's`)
	fs.DurationVar(&cfg.LoginGraceTime, "login-grace-time", sshtest.DefaultLoginGraceTime, "LoginGraceTime: time to authenticate in; negative: no limit")
	fs.Var(&cfg.MaxStartups, "max-startups", `MaxStartups: "start:rate:full", "full" or "none", for connections not yet authenticated`)
	fs.IntVar(&cfg.MaxSessions, "max-sessions", sshtest.DefaultMaxSessions, "MaxSessions: session channels per connection; negative: no limit")
	fs.IntVar(&cfg.MaxChannels, "max-channels", sshtest.DefaultMaxChannels, "channels per connection; negative: no limit")
	fs.IntVar(&cfg.MaxForwards, "max-forwards", sshtest.DefaultMaxForwards, "tcpip and streamlocal forwards per connection; negative: no limit")
	acceptEnv := fs.String("accept-env", strings.Join(sshtest.DefaultAcceptEnv, " "), "AcceptEnv: patterns of the variables env requests may set, separated by spaces")
	fs.IntVar(&cfg.MaxEnv, "max-env", sshtest.DefaultMaxEnv, "variables env requests may set per session; negative: no limit")
	fs.IntVar(&cfg.MaxEnvSize, "max-env-size", sshtest.DefaultMaxEnvSize, "bytes of each NAME=value an env request sets; negative: no limit")
	fs.BoolVar(&cfg.PermitPrivilegedPorts, "permit-privileged-ports", false, "let remote forwards listen on ports below 1024")
	fs.BoolVar(&cfg.StreamLocalBindUnlink, "stream-local-bind-unlink", false, "StreamLocalBindUnlink: let a Unix-socket forward replace a stale socket")
	fs.BoolVar(&cfg.GatewayPorts, "gateway-ports", false, "GatewayPorts clientspecified: bind remote forwards where the client asks")
	fs.BoolVar(&cfg.DisableExec, "disable-exec", false, "refuse exec and shell requests")
	fs.BoolVar(&cfg.DisableX11, "disable-x11", false, "X11Forwarding no")
	fs.BoolVar(&cfg.DisableAgentForwarding, "disable-agent-forwarding", false, "AllowAgentForwarding no")
	sftp := fs.Bool("sftp", true, "serve the sftp subsystem")
	latency := fs.Duration("latency", 0, "latency added to each direction of every connection")
	bandwidth := fs.Int("bandwidth", 0, "bytes per second each direction of every connection may carry; 0: no cap")
	if err := exampleflag.Parse(fs, args); err != nil {
		return err
	}
	if *authorized == "" {
		return errors.New("-authorized-keys is required")
	}
	if *bandwidth < 0 {
		return fmt.Errorf("-bandwidth %d is negative", *bandwidth)
	}
	if err := cfg.Check(); err != nil {
		return err
	}
	keys, err := loadAuthorizedKeys(*authorized)
	if err != nil {
		return err
	}
	hostKey, err := loadHostKey(*hostKeyFile)
	if err != nil {
		return err
	}
	cfg.Addr, cfg.HostKey, cfg.AuthorizedKeys = *addr, hostKey, keys
	cfg.AcceptEnv = strings.Fields(*acceptEnv)
	if !*sftp {
		cfg.Subsystems = map[string]sshtest.SubsystemHandler{}
	}
	cfg.WrapConn = linkConditions(*latency, *bandwidth)
	srv := sshtest.NewServer(&cfg)
	defer srv.Close()
	fmt.Fprintf(out, "listening on %s\nhost key %s %s\n", srv.Addr(), hostKey.PublicKey().Type(), ssh.FingerprintSHA256(hostKey.PublicKey()))
	if ready != nil {
		ready <- srv.Addr()
	}
	<-ctx.Done()
	return srv.Close()
}

// linkConditions returns the WrapConn that gives each connection latency
// and a bandwidth cap, or nil for neither.
func linkConditions(latency time.Duration, bandwidth int) func(net.Conn) net.Conn {
	if latency <= 0 && bandwidth == 0 {
		return nil
	}
	return func(c net.Conn) net.Conn {
		if latency > 0 {
			c = sshtest.Delay(c, latency)
		}
		if bandwidth > 0 {
			c = sshtest.Throttle(c, bandwidth)
		}
		return c
	}
}

// loadAuthorizedKeys reads every key of an authorized_keys file.
func loadAuthorizedKeys(path string) ([]ssh.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var keys []ssh.PublicKey
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n+1, err)
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no keys", path)
	}
	return keys, nil
}

// loadHostKey reads the host key at path, writing a new one there first if
// there is none; an empty path means a key for this run only.
func loadHostKey(path string) (ssh.Signer, error) {
	if path != "" {
		data, err := os.ReadFile(path)
		if err == nil {
			return ssh.ParsePrivateKey(data)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if path != "" {
		block, err := ssh.MarshalPrivateKey(priv, "sshfwd example sshd")
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			return nil, err
		}
	}
	return ssh.NewSignerFromKey(priv)
}
