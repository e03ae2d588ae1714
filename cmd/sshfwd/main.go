// Command sshfwd keeps SSH port forwards up, for use where people run
// ssh -N (or autossh): it takes OpenSSH's syntax for -L, -R, -D and -J, runs
// no remote command, sends keepalives and redials whenever the connection is
// lost, setting every forward up again.
//
//	sshfwd -L 8080:intranet:80 -R 0:localhost:22 -D 1080 user@gateway
//	sshfwd -J bastion -o ServerAliveInterval=15 -L /tmp/db.sock:db:5432 db-host
//
// Keys come from -i files, else ~/.ssh/id_ed25519, id_ecdsa and id_rsa,
// and from ssh-agent (SSH_AUTH_SOCK). Host keys are checked against
// ~/.ssh/known_hosts (UserKnownHostsFile) and unknown hosts are refused
// unless StrictHostKeyChecking is accept-new or no.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"os/user"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd"
	"github.com/sshfwd/sshfwd/internal/sshconfig"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(255)
	}
}

// run forwards until ctx ends, which is a clean exit, or a fatal error.
// Messages go to stderr, as ssh writes them; stdout gets the usage for -h.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
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

	d, err := newDialer(opts, log.Logf)
	if err != nil {
		return err
	}
	sv := &sshfwd.Supervisor{
		Dial:                 d.dial,
		KeepAliveInterval:    opts.aliveInterval,
		KeepAliveCountMax:    opts.aliveCountMax,
		ExitOnForwardFailure: opts.exitOnForwardFailure,
		Logf:                 log.Logf,
		AllocatedPortCallback: func(f sshfwd.RemoteForward, port int) {
			to := f.LocalAddr
			if to == "" {
				to = "SOCKS"
			}
			log.Logf("Allocated port %d for remote forward to %s", port, to)
		},
	}
	listeners, err := listenLocal(opts, sv, log.Logf)
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
	d.wait()
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	var hke *sshconfig.HostKeyError
	if errors.As(err, &hke) {
		return hke
	}
	return err
}

// listenLocal opens the listeners of -L and -D and adds their forwards to
// sv. A forward that cannot listen is skipped with a warning, as ssh does,
// or is an error with ExitOnForwardFailure. It returns every listener it
// opened, for the caller to close.
func listenLocal(opts *options, sv *sshfwd.Supervisor, logf func(string, ...any)) ([]net.Listener, error) {
	var all []net.Listener
	for _, f := range append(append([]forward(nil), opts.local...), opts.dynamic...) {
		lns, err := listen(f.Listen)
		all = append(all, lns...)
		if err != nil {
			if opts.exitOnForwardFailure {
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

// dialer connects to the destination, through the -J hosts if any.
type dialer struct {
	hops     []sshconfig.Target // the -J hosts, then the destination
	hostKeys *sshconfig.HostKeys
	signers  []ssh.Signer // from identity files
	logf     func(string, ...any)

	mu        sync.Mutex // guards connected
	connected bool       // a first connection was made

	jumps sync.WaitGroup // goroutines that close jump sessions
}

// newDialer gathers what every connection needs.
func newDialer(opts *options, logf func(string, ...any)) (*dialer, error) {
	u := opts.user
	if u == "" {
		cur, err := user.Current()
		if err != nil {
			return nil, fmt.Errorf("sshfwd: no user given and %w", err)
		}
		u = cur.Username
	}
	port := opts.port
	if port == 0 {
		port = 22
	}
	known := opts.knownHosts
	if known == "" {
		known = sshconfig.DefaultKnownHosts()
	}
	files := opts.identityFiles
	if len(files) == 0 {
		files = sshconfig.DefaultIdentityFiles()
	}
	return &dialer{
		hops:     append(append([]sshconfig.Target(nil), opts.jumps...), sshconfig.Target{User: u, Addr: net.JoinHostPort(opts.host, strconv.Itoa(port))}),
		hostKeys: &sshconfig.HostKeys{File: known, Strict: opts.strict, Warnf: logf},
		signers:  sshconfig.LoadSigners(files, logf),
		logf:     logf,
	}, nil
}

// dial connects to every hop in turn, each through the one before, and
// returns the Session to the last. When it reached it through jump hosts,
// a goroutine closes their Sessions once that one ends.
func (d *dialer) dial(ctx context.Context) (*sshfwd.Session, error) {
	var s *sshfwd.Session
	var outer []*sshfwd.Session
	closeAll := func() {
		for i := len(outer) - 1; i >= 0; i-- {
			outer[i].Close()
		}
	}
	for _, hop := range d.hops {
		next, err := d.dialHop(ctx, s, hop)
		if err != nil {
			if s != nil {
				outer = append(outer, s)
			}
			closeAll()
			return nil, err
		}
		if s != nil {
			outer = append(outer, s)
		}
		s = next
	}
	if len(outer) > 0 {
		d.jumps.Add(1)
		go func() {
			defer d.jumps.Done()
			<-s.Done()
			closeAll()
		}()
	}
	d.mu.Lock()
	if !d.connected {
		d.connected = true
		last := d.hops[len(d.hops)-1]
		d.logf("Connected to %s@%s; forwarding until interrupted, reconnecting whenever the connection is lost.", last.User, last.Addr)
	}
	d.mu.Unlock()
	return s, nil
}

// dialHop connects to hop, through via unless it is nil.
func (d *dialer) dialHop(ctx context.Context, via *sshfwd.Session, hop sshconfig.Target) (*sshfwd.Session, error) {
	signers := d.signers
	agentSigners, agentConn, err := sshconfig.Agent()
	if err != nil {
		d.logf("Warning: %v", err)
	}
	if agentConn != nil {
		defer agentConn.Close()
		signers = append(append([]ssh.Signer(nil), signers...), agentSigners...)
	}
	if len(signers) == 0 {
		return nil, errors.New("sshfwd: no keys to log in with: give -i FILE, or load keys into ssh-agent")
	}
	cfg := &ssh.ClientConfig{
		User:              hop.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signers...)},
		HostKeyCallback:   d.hostKeys.Check,
		HostKeyAlgorithms: d.hostKeys.Algorithms(hop.Addr),
	}
	var s *sshfwd.Session
	if via == nil {
		s, err = sshfwd.Dial(ctx, "tcp", hop.Addr, cfg)
	} else {
		s, err = via.DialSSH(ctx, hop.Addr, cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("sshfwd: %s@%s: %w", hop.User, hop.Addr, err)
	}
	return s, nil
}

// wait waits for the goroutines that close jump sessions; call it once Run
// has returned, and every Session has ended.
func (d *dialer) wait() { d.jumps.Wait() }
