package sshfwd_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd"
)

// TestErrorsSaySSHFWDOnce collects the errors of every public call that can
// fail, from bad input, from a server's refusals and from a closed Session,
// and checks that each says "sshfwd:" once while errors.Is and errors.As
// still reach what it wraps.
func TestErrorsSaySSHFWDOnce(t *testing.T) {
	h := startHostile(t, "x11-refused", "0") // refuses forwards, X11 and streamlocal
	s := dial(t, h.addr, h.cfg)
	sess := newSSHSession(t, s)
	ctx := testContext(t)
	ln := localListener(t)
	closed := strconv.Itoa(closedPort(t))
	t.Setenv("DISPLAY", "")

	type check struct {
		name string
		err  error
		is   error // nil: no sentinel to reach
	}
	var checks []check
	add := func(name string, err error, is error) { checks = append(checks, check{name, err, is}) }
	second := func(_ any, err error) error { return err }
	third := func(_, _ any, err error) error { return err }

	add("New", second(sshfwd.New(nil)), nil)
	add("Dial nil config", second(sshfwd.Dial(ctx, "tcp", h.addr, nil)), nil)
	add("Dial refused", second(sshfwd.Dial(ctx, "tcp", "127.0.0.1:"+closed, h.cfg)), nil)
	add("OpenForward bad port", second(s.OpenForward(ctx, "example.com", 70000, "", 0)), sshfwd.ErrBadAddress)
	add("OpenForwardUnix empty", second(s.OpenForwardUnix(ctx, "", "", 0)), sshfwd.ErrBadAddress)
	add("OpenForwardUnix refused", second(s.OpenForwardUnix(ctx, "/tmp/x.sock", "", 0)), nil)
	add("DialContext network", second(s.DialContext(ctx, "udp", "127.0.0.1:53")), sshfwd.ErrBadAddress)
	add("DialContext address", second(s.DialContext(ctx, "tcp", "nowhere")), sshfwd.ErrBadAddress)
	add("DialContext family", second(s.DialContext(ctx, "tcp6", "127.0.0.1:80")), sshfwd.ErrBadAddress)
	add("ListenForward bad port", second(s.ListenForward(ctx, "", -1)), sshfwd.ErrBadAddress)
	add("ListenForward denied", second(s.ListenForward(ctx, "127.0.0.1", 0)), sshfwd.ErrRequestDenied)
	add("Listen network", second(s.Listen("sctp", "127.0.0.1:0")), sshfwd.ErrBadAddress)
	add("Listen denied", second(s.Listen("unix", "/tmp/x.sock")), sshfwd.ErrRequestDenied)
	add("CancelForward bad port", s.CancelForward(ctx, "", 0), sshfwd.ErrBadAddress)
	add("CancelForward denied", s.CancelForward(ctx, "127.0.0.1", 8080), sshfwd.ErrRequestDenied)
	add("ForwardLocal destination", s.ForwardLocal(ctx, ln, "nowhere"), sshfwd.ErrBadAddress)
	add("ForwardRemote local address", s.ForwardRemote(ctx, "127.0.0.1:0", "nowhere"), sshfwd.ErrBadAddress)
	add("ForwardRemote denied", s.ForwardRemote(ctx, "127.0.0.1:0", "127.0.0.1:1"), sshfwd.ErrRequestDenied)
	add("ServeRemoteSOCKS denied", s.ServeRemoteSOCKS(ctx, "127.0.0.1:0"), sshfwd.ErrRequestDenied)
	add("RequestX11 cookie", second(s.RequestX11(sess, sshfwd.X11Request{AuthCookie: "xyz"})), nil)
	add("RequestX11 denied", second(s.RequestX11(sess, sshfwd.X11Request{})), sshfwd.ErrRequestDenied)
	add("ForwardX11 no display", s.ForwardX11(ctx, sess, ""), nil)
	add("ForwardX11 bad display", s.ForwardX11(ctx, sess, "nonsense"), nil)
	add("DialSSH nil config", second(s.DialSSH(ctx, "127.0.0.1:22", nil)), nil)
	add("KeepAlive interval", s.KeepAlive(ctx, 0, 0), nil)
	sv := &sshfwd.Supervisor{
		LocalForwards:  []sshfwd.LocalForward{{Listener: ln, RemoteAddr: "nowhere"}},
		RemoteForwards: []sshfwd.RemoteForward{{RemoteAddr: "nowhere", LocalAddr: "127.0.0.1:80"}},
	}
	add("Supervisor configuration", sv.Run(ctx), sshfwd.ErrBadAddress)

	require.NoError(t, s.Close())
	add("OpenForward after Close", second(s.OpenForward(ctx, "127.0.0.1", 80, "127.0.0.1", 0)), sshfwd.ErrSessionClosed)
	add("AcceptForward after Close", third(s.AcceptForward(ctx)), sshfwd.ErrSessionClosed)
	add("ListenForward after Close", second(s.ListenForward(ctx, "127.0.0.1", 0)), sshfwd.ErrSessionClosed)
	shortCtx, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	add("ForwardLocal after Close", s.ForwardLocal(shortCtx, ln, "127.0.0.1:80"), net.ErrClosed)

	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			require.Error(t, c.err)
			msg := c.err.Error()
			assert.Equal(t, 1, strings.Count(msg, "sshfwd:"), msg)
			assert.True(t, strings.HasPrefix(msg, "sshfwd: "), msg)
			if c.is != nil {
				assert.ErrorIs(t, c.err, c.is)
			}
		})
	}

	var oce *ssh.OpenChannelError
	for _, c := range checks {
		if c.name == "OpenForwardUnix refused" {
			require.True(t, errors.As(c.err, &oce), "the refusal is reachable: %v", c.err)
			assert.Equal(t, ssh.UnknownChannelType, oce.Reason)
		}
	}
}
