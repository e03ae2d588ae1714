// Command sshfwd keeps SSH port forwards up, for use where people run
// ssh -N (or autossh): it takes OpenSSH's syntax for -L, -R, -D and -J, runs
// no remote command, sends keepalives and redials whenever the connection is
// lost, setting every forward up again.
//
//	sshfwd -L 8080:intranet:80 -R 0:localhost:22 -D 1080 user@gateway
//	sshfwd -J bastion -o ServerAliveInterval=15 -L /tmp/db.sock:db:5432 db-host
//
// It connects as ssh does (package sshconfig): ~/.ssh/config and the
// system's ssh_config (or -F), host aliases, known_hosts with certificates,
// the agent, identity files with their certificates, ProxyJump and
// ProxyCommand, and a running ControlMaster at ControlPath (-S). Passphrases,
// passwords and unknown host keys are asked about on the terminal, unless
// BatchMode is set. Keepalives go every 30 s unless ServerAliveInterval
// gives another interval.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"

	"github.com/sshfwd/sshfwd"
	"github.com/sshfwd/sshfwd/sshconfig"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var base sshconfig.Options
	closeTTY := terminalPrompts(&base)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, base)
	closeTTY()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(255)
	}
}

// run forwards until ctx ends, which is a clean exit, or a fatal error.
// Messages go to stderr, as ssh writes them; stdout gets the usage for -h.
// base holds what the command line does not set: where the files are, and
// the prompts.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, base sshconfig.Options) error {
	opts, err := parseArgs(args)
	if errors.Is(err, errHelp) {
		fmt.Fprintln(stdout, usage)
		return nil
	}
	if err != nil {
		fmt.Fprintln(stderr, usage)
		return err
	}
	log := &logger{w: stderr}

	so := base
	so.ConfigFile, so.ControlPath = opts.configFile, opts.controlPath
	so.Overrides, so.IdentityFiles = opts.overrides, opts.identityFiles
	so.Logf = log.Logf
	cfg, err := sshconfig.Resolve(opts.destination, &so)
	if err != nil {
		return err
	}
	if err := addConfigForwards(opts, cfg); err != nil {
		return err
	}

	var connected sync.Once
	sv := &sshfwd.Supervisor{
		Dial:                 cfg.Dial,
		KeepAliveInterval:    cfg.ServerAliveInterval,
		KeepAliveCountMax:    cfg.ServerAliveCountMax,
		ExitOnForwardFailure: cfg.ExitOnForwardFailure,
		Logf:                 log.Logf,
		StateCallback: func(st sshfwd.State, _ error) {
			if st == sshfwd.StateConnected {
				connected.Do(func() {
					log.Logf("Connected to %s@%s; forwarding until interrupted, reconnecting whenever the connection is lost.",
						cfg.User, net.JoinHostPort(cfg.HostName, strconv.Itoa(cfg.Port)))
				})
			}
		},
		AllocatedPortCallback: func(f sshfwd.RemoteForward, port int) {
			to := f.LocalAddr
			if to == "" {
				to = "SOCKS"
			}
			log.Logf("Allocated port %d for remote forward to %s", port, to)
		},
	}
	listeners, err := listenLocal(opts, cfg.ExitOnForwardFailure, sv, log.Logf)
	defer func() {
		for _, ln := range listeners {
			ln.Close()
		}
	}()
	if err != nil {
		return err
	}
	for _, f := range opts.remote {
		rf := sshfwd.RemoteForward{RemoteAddr: f.Listen.String()}
		if !f.SOCKS {
			rf.LocalAddr = f.Connect.String()
		}
		sv.RemoteForwards = append(sv.RemoteForwards, rf)
	}

	err = sv.Run(ctx)
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	// OpenSSH's explanation of a refused host key stands alone, as ssh
	// prints it.
	var hke *sshconfig.HostKeyError
	if errors.As(err, &hke) {
		return fmt.Errorf("sshfwd: %w", hke)
	}
	return err
}

// addConfigForwards adds the forwards of the configuration files
// (LocalForward, RemoteForward, DynamicForward) after the command line's,
// as ssh does.
func addConfigForwards(opts *options, cfg *sshconfig.Config) error {
	for _, fs := range []struct {
		kind  byte
		name  string
		specs []string
		dst   *[]forward
	}{
		{'L', "LocalForward", cfg.LocalForwards, &opts.local},
		{'R', "RemoteForward", cfg.RemoteForwards, &opts.remote},
		{'D', "DynamicForward", cfg.DynamicForwards, &opts.dynamic},
	} {
		for _, spec := range fs.specs {
			f, err := parseForward(fs.kind, spec)
			if err != nil {
				return fmt.Errorf("sshfwd: %s %s: %w", fs.name, spec, err)
			}
			*fs.dst = append(*fs.dst, f)
		}
	}
	return nil
}

// listenLocal opens the listeners of -L and -D and adds their forwards to
// sv. A forward that cannot listen is skipped with a warning, as ssh does,
// or is an error with ExitOnForwardFailure. It returns every listener it
// opened, for the caller to close.
func listenLocal(opts *options, exitOnFailure bool, sv *sshfwd.Supervisor, logf func(string, ...any)) ([]net.Listener, error) {
	var all []net.Listener
	for _, f := range append(append([]forward(nil), opts.local...), opts.dynamic...) {
		lns, err := listen(f.Listen)
		all = append(all, lns...)
		if err != nil {
			if exitOnFailure {
				return all, fmt.Errorf("sshfwd: could not request local forwarding on %s: %w", f.Listen, err)
			}
			logf("Warning: could not request local forwarding on %s: %v", f.Listen, err)
			continue
		}
		for _, ln := range lns {
			if f.SOCKS {
				sv.DynamicForwards = append(sv.DynamicForwards, sshfwd.DynamicForward{Listener: ln})
			} else {
				sv.LocalForwards = append(sv.LocalForwards, sshfwd.LocalForward{Listener: ln, RemoteAddr: f.Connect.String()})
			}
		}
	}
	return all, nil
}

// listen opens the listeners of a local listen address: a Unix socket, every
// address for "", and for the default both loopback addresses, the IPv6 one
// only where it works, as ssh does with GatewayPorts no.
func listen(e endpoint) ([]net.Listener, error) {
	if e.Path != "" {
		ln, err := net.Listen("unix", e.Path)
		if err != nil {
			return nil, err
		}
		return []net.Listener{ln}, nil
	}
	port := strconv.Itoa(e.Port)
	if e.Host != defaultBind {
		ln, err := net.Listen("tcp", net.JoinHostPort(e.Host, port))
		if err != nil {
			return nil, err
		}
		return []net.Listener{ln}, nil
	}
	ln, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		return nil, err
	}
	lns := []net.Listener{ln}
	if ln6, err := net.Listen("tcp6", net.JoinHostPort("::1", port)); err == nil {
		lns = append(lns, ln6)
	}
	return lns, nil
}

// logger writes one message per line to w, from any goroutine.
type logger struct {
	mu sync.Mutex // serializes writes to w
	w  io.Writer
}

func (l *logger) Logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format+"\n", args...)
}
