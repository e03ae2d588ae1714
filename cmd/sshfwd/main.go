// Command sshfwd keeps SSH port forwards up, for use where people run
// ssh -N (or autossh): it takes ssh's command line for forwarding (-L, -R,
// -D, -J, -W, -F, -S, -o and the others -h lists), runs no remote command,
// sends keepalives and redials whenever the connection is lost, setting
// every forward up again.
//
//	sshfwd -L 8080:intranet:80 -R 0:localhost:22 -D 1080 user@gateway
//	sshfwd -NT -o ServerAliveInterval=60 -o ExitOnForwardFailure=yes -L 5432:db:5432 bastion
//	ssh -o ProxyCommand='sshfwd -W %h:%p bastion' inner-host
//
// It connects as ssh does (package sshconfig): ~/.ssh/config and the
// system's ssh_config (or -F), host aliases, known_hosts with certificates,
// the agent, identity files with their certificates, ProxyJump and
// ProxyCommand, and a running ControlMaster at ControlPath (-S). With -M it
// is a ControlMaster itself, to which ssh -O and sshfwd -O add and cancel
// forwards at run time. Passphrases, passwords and unknown host keys are
// asked about on the terminal, unless BatchMode is set. Keepalives go every
// 30 s unless ServerAliveInterval gives another interval.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/sshfwd/sshfwd/sshconfig"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var base sshconfig.Options
	closeTTY := terminalPrompts(&base)
	code := run(ctx, os.Args[1:], streams{os.Stdin, os.Stdout, os.Stderr}, base)
	closeTTY()
	stop()
	os.Exit(code)
}

// streams are the standard streams run uses: stdin for -W, stdout for -W,
// -G, -h and the ports -O forward prints, stderr for everything else.
type streams struct {
	in  io.Reader
	out io.Writer
	err io.Writer
}

// exitFailure is the exit status of every failure, as ssh's.
const exitFailure = 255

// run does what the command line asks until it is done or ctx ends, which
// is a clean exit, and returns the exit status. base holds what the
// command line does not set: where the files are, and the prompts.
func run(ctx context.Context, args []string, std streams, base sshconfig.Options) int {
	opts, err := parseArgs(args)
	if err != nil {
		var ue *usageError
		errors.As(err, &ue)
		fmt.Fprintln(std.err, ue.msg)
		if ue.synopsis {
			fmt.Fprintln(std.err, synopsis())
		}
		return exitFailure
	}
	switch {
	case opts.help:
		fmt.Fprint(std.out, help())
		return 0
	case opts.version:
		fmt.Fprintln(std.err, version())
		return 0
	}
	level := levelInfo + opts.verbose
	if opts.quiet {
		level = levelQuiet
	}
	logTo := std.err
	if opts.logFile != "" {
		f, err := os.OpenFile(opts.logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			fmt.Fprintf(std.err, "Couldn't open logfile %s: %s\n", opts.logFile, strerror(err))
			return exitFailure
		}
		defer f.Close()
		logTo = f
	}
	log := newLogger(logTo, level)
	forwarding := !opts.printConfig && opts.control == "" && opts.stdio == nil
	if opts.background && forwarding && !isBackgroundChild() {
		return startBackground(ctx, args, std.err, log)
	}

	so := base
	so.ConfigFile, so.ControlPath = opts.configFile, opts.controlPath
	so.Overrides, so.IdentityFiles = opts.overrides, opts.identityFiles
	so.Logf, so.Debugf = log.Infof, log.Debugf
	cfg, err := sshconfig.Resolve(opts.destination, &so)
	if err != nil {
		log.Infof("%v", err)
		return exitFailure
	}
	notes(cfg, log)
	forwards, err := allForwards(opts, cfg)
	if err != nil {
		log.Infof("%v", err)
		return exitFailure
	}

	switch {
	case opts.printConfig:
		printConfig(std.out, cfg, forwards)
		return 0
	case opts.control != "":
		return control(opts.control, cfg, forwards, std, log)
	case opts.stdio != nil:
		err = stdioForward(ctx, cfg, *opts.stdio, std, log)
	default:
		err = forwardAll(ctx, opts, cfg, forwards, log)
	}
	if err != nil {
		log.Infof("%v", fatal(err))
		return exitFailure
	}
	return 0
}

// fatal is err as the last line says it: with "sshfwd: " once in front,
// as the module's errors have it, and ssh's own explanations of a refused
// host key as they are, after it.
func fatal(err error) error {
	var hke *sshconfig.HostKeyError
	if errors.As(err, &hke) {
		return fmt.Errorf("sshfwd: %w", hke)
	}
	return err
}

// allForwards returns the forwards of the command line, then those of the
// configuration files (LocalForward, RemoteForward, DynamicForward), as
// ssh takes them. -W forwards nothing else, as ssh's ClearAllForwardings.
func allForwards(opts *options, cfg *sshconfig.Config) ([]forward, error) {
	if opts.stdio != nil {
		return nil, nil
	}
	all := append([]forward(nil), opts.forwards...)
	for _, fs := range []struct {
		kind  byte
		specs []string
	}{{'L', cfg.LocalForwards}, {'R', cfg.RemoteForwards}, {'D', cfg.DynamicForwards}} {
		for _, spec := range fs.specs {
			f, err := parseForward(fs.kind, spec)
			if err != nil {
				return nil, err
			}
			all = append(all, f)
		}
	}
	return all, nil
}

// strerror words a system error as strerror does, "No such file or
// directory", as ssh's messages end.
func strerror(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		msg := errno.Error()
		return strings.ToUpper(msg[:1]) + msg[1:]
	}
	return err.Error()
}
