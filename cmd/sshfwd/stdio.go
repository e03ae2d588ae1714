package main

import (
	"context"
	"errors"
	"io"

	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd"
	"github.com/sshfwd/sshfwd/sshconfig"
)

// stdioOrigin is the originator ssh -W names in its channel open.
const (
	stdioOriginHost = "127.0.0.1"
	stdioOriginPort = 65535
)

// stdioForward connects, opens a channel to target and relays stdin to it
// and it to stdout, as ssh -W does for a ProxyCommand, until both
// directions have ended or the connection has. It prints nothing unless
// something fails, since ssh shows its ProxyCommand's stderr.
func stdioForward(ctx context.Context, cfg *sshconfig.Config, target endpoint, std streams, log *logger) error {
	s, err := cfg.Dial(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	var ch *sshfwd.Channel
	if target.Path != "" {
		ch, err = s.OpenForwardUnix(ctx, target.Path, stdioOriginHost, stdioOriginPort)
	} else {
		ch, err = s.OpenForward(ctx, target.Host, target.Port, stdioOriginHost, stdioOriginPort)
	}
	var oce *ssh.OpenChannelError
	if errors.As(err, &oce) {
		log.Infof("channel 0: open failed: %s: %s", oce.Reason, oce.Message)
		return errors.New("stdio forwarding failed")
	}
	if err != nil {
		return err
	}
	defer ch.Close()

	toServer := make(chan struct{})
	go func() {
		defer close(toServer)
		if _, err := io.Copy(ch, std.in); err == nil {
			ch.CloseWrite()
		}
	}()
	io.Copy(std.out, ch)
	if c, ok := std.out.(io.Closer); ok {
		// What reads stdout learns that the far end has finished.
		c.Close()
	}
	// The far end may still read: wait for stdin's end, unless the
	// connection is gone or ctx ends. A read of stdin may then stay
	// blocked, as reads of a pipe cannot be interrupted; it ends with the
	// process.
	select {
	case <-toServer:
	case <-s.Done():
	case <-ctx.Done():
	}
	return nil
}
