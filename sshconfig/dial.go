package sshconfig

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd"
)

// maxHops bounds a chain of ProxyJump hosts, whose own configuration may
// name more, so that a loop in the files is an error.
const maxHops = 16

// attemptPause is the wait between connection attempts, as ssh's.
const attemptPause = time.Second

// Dial connects to destination as ssh does and returns a Session for the
// connection: it resolves the configuration (Resolve), then rides the
// ControlMaster at ControlPath when one is listening there, or connects
// (through ProxyJump hosts or a ProxyCommand when configured), checks the
// host key against known_hosts and logs in. ctx bounds all of it.
// ssh_connect with ssh_options_parse_config, ssh_session_is_known_server
// and ssh_userauth_publickey_auto in libssh.
func Dial(ctx context.Context, destination string, opts *Options) (*sshfwd.Session, error) {
	c, err := Resolve(destination, opts)
	if err != nil {
		return nil, err
	}
	return c.Dial(ctx)
}

// Dial connects as c says; see the package's Dial. It may be called again
// to reconnect: keys read and passphrases given are remembered.
func (c *Config) Dial(ctx context.Context) (*sshfwd.Session, error) {
	if c.opts == nil {
		return nil, errors.New("sshfwd: Config.Dial: the Config does not come from Resolve")
	}
	return c.dial(ctx, 0)
}

func (c *Config) dial(ctx context.Context, depth int) (*sshfwd.Session, error) {
	if depth > maxHops {
		return nil, fmt.Errorf("sshfwd: more than %d ProxyJump hops: is there a loop in the configuration?", maxHops)
	}
	if c.ControlPath != "" {
		s, err := dialControl(ctx, c.ControlPath)
		if err == nil {
			c.debugf("Connected through the ControlMaster at %s.", c.ControlPath)
			return s, nil
		}
		// No master there is the usual case, and ssh then connects by
		// itself, quietly; anything else is worth a word.
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ECONNREFUSED) {
			c.logf("Warning: %v; connecting directly", err)
		}
	}
	var conn net.Conn
	var err error
	for attempt := range c.ConnectionAttempts {
		if attempt > 0 {
			c.debugf("%s; trying again", strings.TrimPrefix(err.Error(), "sshfwd: "))
			if err := pause(ctx, attemptPause); err != nil {
				return nil, err
			}
		}
		if conn, err = c.connect(ctx, depth); err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	a, err := c.auth()
	if err != nil {
		conn.Close()
		return nil, err
	}
	defer a.Close()
	via := "via proxy"
	if t, ok := conn.RemoteAddr().(*net.TCPAddr); ok && c.ProxyJump == "" && c.ProxyCommand == "" {
		via = "[" + t.IP.String() + "]:" + strconv.Itoa(t.Port)
	}
	s, err := sshfwd.NewClientConn(ctx, conn, c.addr(), c.clientConfig(a.methods))
	if err == nil {
		c.debugf("Authenticated to %s (%s) using %q.", c.HostName, via, a.used())
	}
	return s, err
}

// addr is the server's address as the handshake and its errors name it.
func (c *Config) addr() string { return net.JoinHostPort(c.HostName, strconv.Itoa(c.Port)) }

// pause waits for d, or returns ctx's error if it ends first.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// HostKeys returns the known_hosts checker c describes: the user's files,
// then the global ones, StrictHostKeyChecking and HashKnownHosts. BatchMode
// makes ask refuse, as ssh's does.
func (c *Config) HostKeys() *HostKeys {
	h := &HostKeys{
		Files:  append(append([]string(nil), c.UserKnownHostsFiles...), c.GlobalKnownHostsFiles...),
		Strict: c.StrictHostKeyChecking,
		Hash:   c.HashKnownHosts,
		Logf:   c.opts.Logf,
	}
	if !c.BatchMode {
		h.ConfirmCallback = c.opts.HostKeyConfirmCallback
	}
	return h
}

// knownName is the name the server's key is listed under: the
// HostKeyAlias, or the host name and port.
func (c *Config) knownName() string {
	if c.HostKeyAlias != "" {
		return net.JoinHostPort(c.HostKeyAlias, "22")
	}
	return c.addr()
}

// clientConfig returns the x/crypto configuration of the handshake.
func (c *Config) clientConfig(auth []ssh.AuthMethod) *ssh.ClientConfig {
	hk := c.HostKeys()
	name := c.knownName()
	algos := c.HostKeyAlgorithms
	if algos == nil {
		algos = hk.Algorithms(name)
	}
	return &ssh.ClientConfig{
		Config: ssh.Config{KeyExchanges: c.KexAlgorithms, Ciphers: c.Ciphers, MACs: c.MACs},
		User:   c.User,
		Auth:   auth,
		HostKeyCallback: func(_ string, remote net.Addr, key ssh.PublicKey) error {
			return hk.Check(name, remote, key)
		},
		HostKeyAlgorithms: algos,
		Timeout:           c.ConnectTimeout,
	}
}

// connect makes the connection the SSH handshake runs over: through the
// ProxyJump hosts, a ProxyCommand, or straight to HostName and Port.
// ProxyJump wins when both are set.
func (c *Config) connect(ctx context.Context, depth int) (net.Conn, error) {
	switch {
	case c.ProxyJump != "":
		c.debugf("Connecting to %s port %d through ProxyJump %s.", c.HostName, c.Port, c.ProxyJump)
		via, err := c.jump(ctx, depth)
		if err != nil {
			return nil, err
		}
		conn, err := via.DialContext(ctx, "tcp", c.addr())
		if err != nil {
			via.Close()
			return nil, err
		}
		return &jumpedConn{Conn: conn, via: via}, nil
	case c.ProxyCommand != "":
		return c.runProxy()
	}
	d := net.Dialer{Timeout: c.ConnectTimeout}
	conn, err := d.DialContext(ctx, c.AddressFamily, c.addr())
	if err != nil {
		return nil, c.connectError(err)
	}
	c.debugf("Connecting to %s [%s] port %d.", c.HostName, conn.RemoteAddr().(*net.TCPAddr).IP, c.Port)
	c.debugf("Connection established.")
	return conn, nil
}

// connectError words a failed connection as ssh does: "connect to host h
// port p: Connection refused", with the system's message capitalized as
// strerror's are, or "Could not resolve hostname h: ..." for a name that
// does not resolve.
func (c *Config) connectError(err error) error {
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return fmt.Errorf("sshfwd: Could not resolve hostname %s: %w", c.HostName, strerror{dns, capitalize(dns.Err)})
	}
	msg := err.Error()
	var errno syscall.Errno
	switch {
	case errors.As(err, &errno):
		msg = capitalize(errno.Error())
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		msg = "Connection timed out"
	}
	return fmt.Errorf("sshfwd: connect to host %s port %d: %w", c.HostName, c.Port, strerror{err, msg})
}

// strerror is an error shown as ssh shows it, which still unwraps to the
// error it words.
type strerror struct {
	err error
	msg string
}

func (e strerror) Error() string { return e.msg }
func (e strerror) Unwrap() error { return e.err }

// capitalize makes a Go error text look like strerror's: "connection
// refused" becomes "Connection refused".
func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// jump connects to the last ProxyJump host, through the ones before it,
// as ssh -J does: each host's own configuration applies, but not the
// command line's options, which ssh does not pass on either.
func (c *Config) jump(ctx context.Context, depth int) (*sshfwd.Session, error) {
	hops := strings.Split(c.ProxyJump, ",")
	last, err := ParseDestination(strings.TrimSpace(hops[len(hops)-1]))
	if err != nil {
		return nil, err
	}
	var overrides []string
	if len(hops) > 1 {
		overrides = []string{"ProxyJump=" + strings.Join(hops[:len(hops)-1], ",")}
	}
	hopOpts := *c.opts
	hopOpts.Overrides, hopOpts.IdentityFiles, hopOpts.ControlPath = nil, nil, ""
	hc, err := resolve(last, overrides, &hopOpts)
	if err != nil {
		return nil, err
	}
	return hc.dial(ctx, depth+1)
}

// jumpedConn is a connection through a jump host's Session, which it
// closes with it.
type jumpedConn struct {
	net.Conn
	via *sshfwd.Session
}

func (j *jumpedConn) Close() error {
	err := j.Conn.Close()
	j.via.Close()
	return err
}

// runProxy starts the ProxyCommand as ssh does, with /bin/sh -c and its
// % tokens expanded, and returns a connection over its stdin and stdout.
// Its stderr is this process's, as with ssh.
func (c *Config) runProxy() (net.Conn, error) {
	command, err := expandTokens(c.ProxyCommand, c.tokens())
	if err != nil {
		return nil, fmt.Errorf("sshfwd: ProxyCommand: %w", err)
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("sshfwd: ProxyCommand: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("sshfwd: ProxyCommand: %w", err)
	}
	c.debugf("Executing proxy command: exec %s", command)
	cmd := exec.Command("/bin/sh", "-c", "exec "+command)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, os.Stderr
	err = cmd.Start()
	// The child has its ends now; ours would keep the pipes open after it
	// exits.
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("sshfwd: ProxyCommand %q: %w", command, err)
	}
	return &proxyConn{cmd: cmd, r: outR, w: inW, addr: pipeAddr(command)}, nil
}

// proxyConn is a connection over a ProxyCommand's stdout and stdin. Pipes
// take deadlines, which the handshake needs.
type proxyConn struct {
	cmd  *exec.Cmd
	r    *os.File
	w    *os.File
	addr pipeAddr

	once sync.Once
	err  error // what the first Close returned
}

func (p *proxyConn) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p *proxyConn) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p *proxyConn) LocalAddr() net.Addr         { return p.addr }
func (p *proxyConn) RemoteAddr() net.Addr        { return p.addr }

func (p *proxyConn) SetDeadline(t time.Time) error {
	return errors.Join(p.r.SetReadDeadline(t), p.w.SetWriteDeadline(t))
}
func (p *proxyConn) SetReadDeadline(t time.Time) error  { return p.r.SetReadDeadline(t) }
func (p *proxyConn) SetWriteDeadline(t time.Time) error { return p.w.SetWriteDeadline(t) }

// Close closes the pipes and ends the command, which ssh also does not
// wait for, and reaps it.
func (p *proxyConn) Close() error {
	p.once.Do(func() {
		p.err = errors.Join(p.w.Close(), p.r.Close())
		p.cmd.Process.Kill()
		p.cmd.Wait()
	})
	return p.err
}

// pipeAddr names a ProxyCommand's end of the connection by its command.
type pipeAddr string

func (a pipeAddr) Network() string { return "pipe" }
func (a pipeAddr) String() string  { return string(a) }
