// Package exampleflag holds what the example programs share on their
// command lines: parsing that refuses stray arguments, the exit status of
// -h, and the -ssh server, reached as the sshfwd command reaches one.
package exampleflag

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/sshfwd/sshfwd"
	"github.com/sshfwd/sshfwd/sshconfig"
)

// Parse parses args into fs and refuses arguments left over, since the
// examples take flags only.
func Parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: %s takes flags only (-h lists them)", fs.Arg(0), fs.Name())
	}
	return nil
}

// Status is the exit status of a program whose run returned err: 0 for
// success and for -h, whose usage the flag package has printed; 1 for an
// error, which it writes to stderr after the program's name.
func Status(name string, err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(stderr, name+":", err)
	return 1
}

// Server is the SSH server an example uses, named by its -ssh flag, and how
// to log in to it: -i, -F and -known-hosts.
type Server struct {
	// Base is where Dial starts from: the zero value reads the user's
	// and the system's files, as ssh does; tests point it elsewhere.
	Base sshconfig.Options

	dest, key, config, known *string
}

// AddServer adds the flags of the server to fs.
func AddServer(fs *flag.FlagSet) *Server {
	return &Server{
		dest:   fs.String("ssh", "", "SSH server as ssh takes it ([user@]host[:port], or a Host of ~/.ssh/config); empty: an embedded server, offline"),
		key:    fs.String("i", "", "private key file for -ssh, tried before those of ssh_config and the agent"),
		config: fs.String("F", "", `ssh_config file for -ssh; empty: ~/.ssh/config and /etc/ssh/ssh_config, "none": none`),
		known:  fs.String("known-hosts", "", "the known_hosts file that must list the server's host key; empty: those of ssh_config, ~/.ssh/known_hosts and the system's by default"),
	}
}

// Name returns the server given by -ssh, "" for none.
func (s *Server) Name() string { return *s.dest }

// Dial connects to the server as the sshfwd command does: the agent, the
// default keys and those of the configuration, known_hosts as the
// configuration says; -i comes first, and -known-hosts replaces every
// known_hosts file. Nothing is asked on the terminal, so a host whose key
// is not known is refused.
func (s *Server) Dial(ctx context.Context) (*sshfwd.Session, error) {
	opts := s.Base
	opts.ConfigFile = *s.config
	if *s.key != "" {
		opts.IdentityFiles = []string{*s.key}
	}
	if *s.known != "" {
		opts.Overrides = []string{"UserKnownHostsFile=" + *s.known, "GlobalKnownHostsFile=none"}
	}
	return sshconfig.Dial(ctx, *s.dest, &opts)
}
