// Command sshd is a small SSH server built on sshtest, for pointing real
// clients at: OpenSSH's ssh with -L, -R, -W and -X, or programs using
// sshfwd. It accepts any user name whose key is in -authorized-keys, serves
// direct and reverse forwarding (TCP and Unix sockets), X11 forwarding and
// exec sessions, and binds forwards to loopback like OpenSSH's
// "GatewayPorts no".
//
//	go run ./examples/sshd -authorized-keys ~/.ssh/id_ed25519.pub
//	ssh -p 2022 -o UserKnownHostsFile=... -N -L 8080:example.com:80 127.0.0.1
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
	"os"
	"os/signal"
	"strings"
	"syscall"

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
	if err := exampleflag.Parse(fs, args); err != nil {
		return err
	}
	if *authorized == "" {
		return errors.New("-authorized-keys is required")
	}
	keys, err := loadAuthorizedKeys(*authorized)
	if err != nil {
		return err
	}
	hostKey, err := loadHostKey(*hostKeyFile)
	if err != nil {
		return err
	}
	srv := sshtest.NewServer(&sshtest.Config{
		Addr:           *addr,
		HostKey:        hostKey,
		AuthorizedKeys: keys,
	})
	defer srv.Close()
	fmt.Fprintf(out, "listening on %s\nhost key %s %s\n", srv.Addr(), hostKey.PublicKey().Type(), ssh.FingerprintSHA256(hostKey.PublicKey()))
	if ready != nil {
		ready <- srv.Addr()
	}
	<-ctx.Done()
	return srv.Close()
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
