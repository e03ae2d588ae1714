package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sshfwd/sshfwd"
	"github.com/sshfwd/sshfwd/sshconfig"
)

// forwardAll sets every forward up and keeps them up, reconnecting as
// needed, until ctx ends or a client of the master (-M) asks it to exit.
func forwardAll(ctx context.Context, opts *options, cfg *sshconfig.Config, forwards []forward, log *logger) error {
	ctx, terminate := context.WithCancel(ctx)
	defer terminate()
	sv := &sshfwd.Supervisor{
		Dial:                 cfg.Dial,
		DialTimeout:          dialTimeout(cfg),
		KeepAliveInterval:    cfg.ServerAliveInterval,
		KeepAliveCountMax:    cfg.ServerAliveCountMax,
		ExitOnForwardFailure: cfg.ExitOnForwardFailure,
		Logf:                 log.Infof,
	}
	fw := &forwarder{sv: sv, log: log, gateway: cfg.GatewayPorts, family: cfg.AddressFamily}
	defer fw.closeAll()
	keepStderr := opts.verbose > 0 && opts.logFile == ""
	up := &readiness{pending: map[string]bool{}, ready: backgroundReady(keepStderr, log)}
	for _, f := range forwards {
		if f.Kind == 'R' {
			up.expect(f.Listen.String())
			if _, err := fw.addRemote(ctx, f); err != nil {
				return err
			}
			continue
		}
		if err := fw.addLocal(f); err != nil {
			if cfg.ExitOnForwardFailure {
				return fmt.Errorf("sshfwd: could not request local forwarding on %s: %w", f.Listen, err)
			}
			log.Infof("Warning: could not request local forwarding on %s: %v", f.Listen, err)
		}
	}
	if opts.master {
		// A master connects by itself, as ssh -M does, rather than ride
		// whatever answers on the socket it is to serve.
		path := cfg.ControlPath
		cfg.ControlPath = ""
		stop, err := serveMaster(ctx, path, fw, terminate, log)
		if err != nil {
			return err
		}
		defer stop()
	}

	sv.StateCallback = func(st sshfwd.State, _ error) {
		if st == sshfwd.StateConnected && up.connect() {
			log.Infof("Connected to %s@%s; forwarding until interrupted, reconnecting whenever the connection is lost.",
				cfg.User, net.JoinHostPort(cfg.HostName, strconv.Itoa(cfg.Port)))
		}
	}
	sv.RemoteForwardCallback = func(f sshfwd.RemoteForward, port int, err error) {
		if err != nil {
			// With ExitOnForwardFailure the refusal ends Run, and -f's
			// parent hears of it from the exit of the process that
			// would have stayed.
			if !cfg.ExitOnForwardFailure {
				up.report(f.RemoteAddr)
			}
			return
		}
		defer up.report(f.RemoteAddr)
		to := destination(f.LocalAddr)
		log.Debugf("remote forward success for: listen %s, connect %s", f.RemoteAddr, to)
		if _, p, err := net.SplitHostPort(f.RemoteAddr); err == nil && p == "0" {
			log.Infof("Allocated port %d for remote forward to %s", port, to)
		}
	}
	err := sv.Run(ctx)
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	return err
}

// dialTimeout bounds one Dial, which tries to connect ConnectionAttempts
// times a second apart, each attempt bounded by ConnectTimeout (or the
// system, which gives up on an unanswered connection after some time),
// before the handshake and the login.
func dialTimeout(cfg *sshconfig.Config) time.Duration {
	const handshake, unbounded = 30 * time.Second, 30 * time.Second
	attempt := cfg.ConnectTimeout
	if attempt == 0 {
		attempt = unbounded
	}
	return time.Duration(cfg.ConnectionAttempts)*(attempt+time.Second) + handshake
}

// notes tells, with -v, of the options read and not acted on, as ssh
// does not know them all either, and why for those a user would miss.
func notes(cfg *sshconfig.Config, log *logger) {
	for _, ig := range cfg.Ignored {
		why := "not acted on by sshfwd"
		if strings.Contains(strings.ToLower(ig), ": compression ") {
			why = "golang.org/x/crypto/ssh has no compression, so the connection is not compressed"
		}
		log.Debugf("%s: %s", ig, why)
	}
	if cfg.ForwardAgent {
		log.Debugf("ForwardAgent yes: sshfwd opens no session, as ssh -N, so no agent is forwarded")
	}
	if cfg.ForwardX11 {
		log.Debugf("ForwardX11 yes: sshfwd opens no session, as ssh -N, so no X11 is forwarded")
	}
}

// readiness tells when the first connection is up and the server has
// answered for every remote forward of the command line and the files:
// the moment -f goes to the background.
type readiness struct {
	ready func()

	mu        sync.Mutex      // guards the fields below
	connected bool            // the first connection is up
	pending   map[string]bool // the remote forwards not answered yet, by RemoteAddr
	done      bool
}

// expect adds the remote forward listening on remoteAddr to those to
// wait for.
func (r *readiness) expect(remoteAddr string) { r.pending[remoteAddr] = true }

// connect records a connection and reports whether it is the first.
func (r *readiness) connect() bool {
	r.mu.Lock()
	first := !r.connected
	r.connected = true
	r.mu.Unlock()
	r.check()
	return first
}

// report records the server's answer for the remote forward listening on
// remoteAddr.
func (r *readiness) report(remoteAddr string) {
	r.mu.Lock()
	delete(r.pending, remoteAddr)
	r.mu.Unlock()
	r.check()
}

// check calls ready once everything is up.
func (r *readiness) check() {
	r.mu.Lock()
	fire := r.connected && len(r.pending) == 0 && !r.done
	r.done = r.done || fire
	r.mu.Unlock()
	if fire {
		r.ready()
	}
}
