// Command x11 is ssh -X in Go: it asks an SSH server to forward X11 for one
// remote session, runs an X client there (xdpyinfo unless -cmd names
// another) and prints what it prints, while sshfwd carries the client's X
// connections to the local display, swapping the fake cookie the server got
// for the display's real one on the way.
//
// With no -ssh flag it runs offline against the embedded sshtest server,
// which runs the command on this machine as sshd would, with DISPLAY
// pointing at the display it forwards.
//
//	go run ./examples/x11
//	go run ./examples/x11 -ssh me@host:22 -i ~/.ssh/id_ed25519 -cmd 'xeyes'
//
// Either way it needs a local X display in $DISPLAY, and its cookie in
// $XAUTHORITY or ~/.Xauthority. Without a desktop, a virtual display does:
//
//	xauth add :99 . $(mcookie)
//	Xvfb :99 -auth ~/.Xauthority &
//	export DISPLAY=:99
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/sshfwd/sshfwd"
	"github.com/sshfwd/sshfwd/examples/internal/exampleflag"
	"github.com/sshfwd/sshfwd/sshtest"
)

// errNoDisplay says how to get a display, since the usual reason for not
// having one is a machine without a desktop.
var errNoDisplay = errors.New(`no local X display: $DISPLAY is empty. Start a virtual one, for example:
	xauth add :99 . $(mcookie)
	Xvfb :99 -auth ~/.Xauthority &
	export DISPLAY=:99`)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exampleflag.Status("x11", err, os.Stderr))
}

// run is the program: it parses args, forwards X11 for one remote command
// and copies the command's output to stdout and stderr. It returns when
// the command has ended or ctx is done.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("x11", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := exampleflag.AddServer(fs)
	command := fs.String("cmd", "xdpyinfo", "X client to run on the server, a shell command")
	if err := exampleflag.Parse(fs, args); err != nil {
		return err
	}
	display := os.Getenv("DISPLAY")
	if display == "" {
		return errNoDisplay
	}

	var (
		s   *sshfwd.Session
		err error
	)
	if server.Name() == "" {
		srv := sshtest.NewServer(nil)
		defer srv.Close()
		fmt.Fprintf(stderr, "# no -ssh given: started an embedded SSH server on %s\n", srv.Addr())
		s, err = sshfwd.Dial(ctx, "tcp", srv.Addr(), srv.ClientConfig())
	} else {
		s, err = server.Dial(ctx)
	}
	if err != nil {
		return err
	}
	defer s.Close()

	sess, err := s.Client().NewSession()
	if err != nil {
		return fmt.Errorf("opening a session: %w", err)
	}
	defer sess.Close()
	if err := s.ForwardX11(ctx, sess, display); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "# forwarding X11 to the local display %s; running %q on the server\n", display, *command)
	sess.Stdout, sess.Stderr = stdout, stderr
	// Run cannot be interrupted but by closing the session.
	stopOnCancel := context.AfterFunc(ctx, func() { sess.Close() })
	defer stopOnCancel()
	if err := sess.Run(*command); err != nil {
		return fmt.Errorf("%q on the server: %w", *command, err)
	}
	return nil
}
