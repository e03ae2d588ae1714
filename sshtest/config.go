package sshtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Config configures a Server. The zero value is a server on 127.0.0.1 with
// fresh keys that permits every forward on loopback and applies sshd's
// limits.
//
// A limit left at zero takes its default, which is sshd's where sshd has
// one; a negative limit turns it off.
type Config struct {
	// Addr is the address to listen on; "" means "127.0.0.1:0".
	Addr string

	// HostKey is the server's host key; nil means a generated ed25519 key.
	HostKey ssh.Signer

	// ServerVersion is the identification line the server sends, which
	// must begin with "SSH-2.0-"; "" means x/crypto's ("SSH-2.0-Go").
	// libssh's ssh_channel_open_forward_unix refuses to run unless it
	// contains "OpenSSH", so tests of libssh programs may set it to
	// something like "SSH-2.0-OpenSSH_9.9 sshtest".
	ServerVersion string

	// ClientKey is the key that ClientConfig authenticates with; nil means
	// a generated ed25519 key. The server accepts it for any user.
	ClientKey ssh.Signer

	// User is the user name in ClientConfig; "" means "sshtest".
	User string

	// AuthorizedKeys are more public keys accepted for any user.
	AuthorizedKeys []ssh.PublicKey

	// UserKeys maps user names to the public keys accepted for that user
	// alone, as each user's authorized_keys file does for sshd.
	UserKeys map[string][]ssh.PublicKey

	// TrustedUserCAKeys are certificate authorities (OpenSSH's
	// TrustedUserCAKeys): a user certificate one of them signed is
	// accepted if it is valid now and names the user among its
	// principals.
	TrustedUserCAKeys []ssh.PublicKey

	// Passwords maps user names to passwords. Password authentication is
	// offered only when it is not empty.
	Passwords map[string]string

	// KeyboardInteractive maps user names to the questions that
	// keyboard-interactive authentication (RFC 4256) asks them, all in one
	// round, and the answers it expects. It is offered only when the map
	// is not empty.
	KeyboardInteractive map[string][]Question

	// SSHConfig holds the algorithms (ciphers, key exchanges, MACs) of both
	// the server and ClientConfig.
	SSHConfig ssh.Config

	// The Permit callbacks below may be called from several goroutines at
	// once, each with the metadata of the connection that asks.

	// PermitOpenCallback decides whether a direct-tcpip channel may connect
	// (OpenSSH's PermitOpen); nil permits all. It is called after the
	// requested host is resolved, for each address in turn, and the server
	// connects to exactly the req.Addr it permitted, so a policy written on
	// req.Addr cannot be bypassed by another spelling of the same address.
	PermitOpenCallback func(meta ssh.ConnMetadata, req OpenRequest) bool

	// PermitOpenUnixCallback decides whether a
	// direct-streamlocal@openssh.com channel may connect to the socket at
	// path; nil permits all. The path is absolute and cleaned
	// (filepath.Clean) before the callback sees it; relative paths are
	// refused first.
	PermitOpenUnixCallback func(meta ssh.ConnMetadata, path string) bool

	// PermitListenCallback decides whether a tcpip-forward request may
	// listen (OpenSSH's PermitListen); nil permits all. It is called for
	// each address the server is about to bind, after GatewayPorts
	// applied.
	PermitListenCallback func(meta ssh.ConnMetadata, req ListenRequest) bool

	// PermitListenUnixCallback decides whether a
	// streamlocal-forward@openssh.com request may listen on path, absolute
	// and cleaned as for PermitOpenUnixCallback; nil permits all.
	PermitListenUnixCallback func(meta ssh.ConnMetadata, path string) bool

	// GatewayPorts lets tcpip-forward requests bind the address the client
	// asks for, "" and "*" meaning every interface and "localhost" both
	// 127.0.0.1 and ::1 (OpenSSH's GatewayPorts clientspecified). When
	// false, as with OpenSSH's GatewayPorts no, every forward binds
	// 127.0.0.1 and ::1, whatever address the client asks for.
	GatewayPorts bool

	// PermitPrivilegedPorts lets tcpip-forward requests listen on ports
	// below 1024; sshd lets only root do that.
	PermitPrivilegedPorts bool

	// StreamLocalBindUnlink lets a streamlocal-forward request replace a
	// stale socket at its path (OpenSSH's StreamLocalBindUnlink). A socket
	// is stale when it refuses connections; a live one, and a path that is
	// any connection's forward, are never taken over.
	StreamLocalBindUnlink bool

	// DisableX11 refuses x11-req, as OpenSSH's X11Forwarding no does.
	DisableX11 bool

	// DisableExec refuses exec and shell requests, so that clients can
	// run no command; without it a client can run commands that reach
	// what the Permit callbacks deny.
	DisableExec bool

	// DisableAgentForwarding refuses auth-agent-req@openssh.com, as
	// OpenSSH's AllowAgentForwarding no does.
	DisableAgentForwarding bool

	// Subsystems maps subsystem names to their handlers; nil means
	// {"sftp": ServeSFTP}. An empty map refuses every subsystem.
	Subsystems map[string]SubsystemHandler

	// LoginGraceTime is how long a connection may take to authenticate
	// before the server closes it; 0 means 2 minutes.
	LoginGraceTime time.Duration

	// MaxStartups bounds the connections that have not authenticated yet;
	// the zero value means sshd's 10:30:100.
	MaxStartups Startups

	// MaxSessions bounds the session channels open at once on a
	// connection; 0 means 10.
	MaxSessions int

	// MaxChannels bounds the channels open at once on a connection, in
	// both directions; 0 means 256. Each can hold x/crypto's 2 MiB
	// receive window of data, so this bounds a connection's buffers too.
	MaxChannels int

	// MaxForwards bounds the tcpip-forward and streamlocal-forward
	// listeners a connection has at once; 0 means 64.
	MaxForwards int

	// AcceptEnv lists the patterns ('*' and '?' wildcards) of the
	// environment variables that env requests may set (OpenSSH's
	// AcceptEnv); nil means "LANG" and "LC_*", an empty slice none.
	AcceptEnv []string

	// MaxEnv bounds the variables env requests set in one session; 0
	// means 16.
	MaxEnv int

	// MaxEnvSize bounds each variable an env request sets, NAME=value,
	// in bytes; 0 means 4096.
	MaxEnvSize int

	// WrapConn, if not nil, wraps each accepted connection before the
	// server speaks SSH on it, to add latency or cap bandwidth (see Delay
	// and Throttle) or to watch the bytes. Closing what it returns must
	// close the connection it was given.
	WrapConn func(net.Conn) net.Conn

	// EventCallback, if not nil, is called with each Event: connections,
	// authentication attempts, channel opens, requests, and every refusal.
	// Calls never overlap and come in the order the events happened; the
	// server waits for each, so the callback must not block for long, nor
	// call Server.Close, which waits for the server's goroutines.
	EventCallback func(Event)

	// Logf, if not nil, receives a line for each event and failure.
	Logf func(format string, args ...any)
}

// Question is one prompt of keyboard-interactive authentication and the
// answer it expects.
type Question struct {
	Prompt string
	Echo   bool // whether the client shows the answer as it is typed
	Answer string
}

// OpenRequest is what PermitOpenCallback decides on.
type OpenRequest struct {
	// Host and Port are the destination as the client sent it.
	Host string
	Port int

	// Addr is the address the server connects to if permitted: Host
	// resolved, an IPv4-mapped IPv6 address unmapped, and an unspecified
	// address (0.0.0.0, ::) replaced by the loopback address that
	// connecting to it reaches on Linux and the BSDs.
	Addr netip.AddrPort
}

// ListenRequest is what PermitListenCallback decides on.
type ListenRequest struct {
	// Host and Port are the address to listen on as the client sent it;
	// port 0 asks for any free port.
	Host string
	Port int

	// Addr is the address the server is about to bind, after
	// GatewayPorts applied; an unspecified IP means every interface, and
	// port 0 a port of the system's choosing.
	Addr netip.AddrPort
}

// A SubsystemHandler serves a subsystem request (RFC 4254 6.5) on a session
// channel: it reads the client's input from ch and writes its output to ch
// (and ch.Stderr()). ctx is done when the channel or the connection closes,
// and the handler must return then. When it returns, the server sends
// exit-status 0, or 1 if it returned an error, and closes the channel.
type SubsystemHandler func(ctx context.Context, meta ssh.ConnMetadata, ch ssh.Channel) error

// Startups is MaxStartups: sshd's random early drop of connections that
// have not authenticated yet. With Start of them pending, a new connection
// is dropped with probability Rate/100; the probability grows linearly to 1
// at Full. As a flag.Value it reads and writes OpenSSH's "start:rate:full"
// or "full" forms, and "none" for no limit.
type Startups struct {
	Start int
	Rate  int // percent, 1..100
	Full  int
}

// The defaults of the limits, sshd's where it has one.
const (
	DefaultLoginGraceTime = 2 * time.Minute
	DefaultMaxSessions    = 10
	DefaultMaxChannels    = 256
	DefaultMaxForwards    = 64
	DefaultMaxEnv         = 16
	DefaultMaxEnvSize     = 4096
)

// DefaultMaxStartups is sshd's MaxStartups, 10:30:100.
var DefaultMaxStartups = Startups{Start: 10, Rate: 30, Full: 100}

// DefaultAcceptEnv is the AcceptEnv list of Debian's and Red Hat's
// sshd_config: the locale.
var DefaultAcceptEnv = []string{"LANG", "LC_*"}

// NoStartupsLimit is the Startups value that never drops a connection.
var NoStartupsLimit = Startups{Start: -1}

// String returns s in OpenSSH's form.
func (s Startups) String() string {
	if s.Start < 0 {
		return "none"
	}
	return fmt.Sprintf("%d:%d:%d", s.Start, s.Rate, s.Full)
}

// Set parses OpenSSH's "start:rate:full" or "full", or "none".
func (s *Startups) Set(v string) error {
	if v == "none" {
		*s = NoStartupsLimit
		return nil
	}
	fields := strings.Split(v, ":")
	if len(fields) != 1 && len(fields) != 3 {
		return fmt.Errorf("sshtest: MaxStartups %q is neither start:rate:full nor a number", v)
	}
	var n [3]int
	for i, f := range fields {
		x, err := strconv.Atoi(f)
		if err != nil || x < 0 {
			return fmt.Errorf("sshtest: MaxStartups %q: %q is not a count", v, f)
		}
		n[i] = x
	}
	parsed := Startups{Start: n[0], Rate: 100, Full: n[0]}
	if len(fields) == 3 {
		parsed = Startups{Start: n[0], Rate: n[1], Full: n[2]}
	}
	if err := parsed.check(); err != nil {
		return fmt.Errorf("sshtest: MaxStartups %q: %w", v, err)
	}
	*s = parsed
	return nil
}

// check reports what makes s unusable, as sshd refuses it.
func (s Startups) check() error {
	switch {
	case s.Start < 0:
		return nil
	case s.Start == 0:
		return errors.New("start must be at least 1")
	case s.Rate < 1 || s.Rate > 100:
		return fmt.Errorf("rate %d outside 1..100", s.Rate)
	case s.Full < s.Start:
		return fmt.Errorf("full %d below start %d", s.Full, s.Start)
	}
	return nil
}

// drop decides whether a new connection is dropped while pending others
// wait to authenticate, given a number r drawn uniformly from 0..99. It
// reckons the probability in whole percent, as sshd does.
func (s Startups) drop(pending, r int) bool {
	switch {
	case s.Start < 0 || pending < s.Start:
		return false
	case pending >= s.Full || s.Rate == 100:
		return true
	}
	p := s.Rate + (100-s.Rate)*(pending-s.Start)/(s.Full-s.Start)
	return r < p
}

// maxVersionLength is the longest identification line RFC 4253 4.2
// allows, less its CR LF.
const maxVersionLength = 253

// Check reports what in c would make NewServer panic: a ServerVersion
// that is not an RFC 4253 identification line beginning with "SSH-2.0-",
// or a MaxStartups that sshd would refuse.
func (c *Config) Check() error {
	v := c.ServerVersion
	switch {
	case v == "":
	case !strings.HasPrefix(v, "SSH-2.0-"):
		return fmt.Errorf("sshtest: ServerVersion %q does not begin with SSH-2.0-", v)
	case len(v) > maxVersionLength || strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r > '~' }):
		return fmt.Errorf("sshtest: ServerVersion %q is not up to %d printable ASCII characters", v, maxVersionLength)
	}
	if c.MaxStartups != (Startups{}) {
		if err := c.MaxStartups.check(); err != nil {
			return fmt.Errorf("sshtest: MaxStartups %v: %w", c.MaxStartups, err)
		}
	}
	return nil
}

// withDefaults returns c with every unset key, user and limit filled in.
// It panics on what Check reports, as NewServer does when it cannot
// listen.
func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:0"
	}
	if c.User == "" {
		c.User = "sshtest"
	}
	if c.HostKey == nil {
		c.HostKey = generateKey()
	}
	if c.ClientKey == nil {
		c.ClientKey = generateKey()
	}
	if err := c.Check(); err != nil {
		panic(err.Error())
	}
	if c.Subsystems == nil {
		c.Subsystems = map[string]SubsystemHandler{"sftp": ServeSFTP}
	}
	if c.AcceptEnv == nil {
		c.AcceptEnv = slices.Clone(DefaultAcceptEnv)
	}
	if c.MaxStartups == (Startups{}) {
		c.MaxStartups = DefaultMaxStartups
	}
	setDefault(&c.LoginGraceTime, DefaultLoginGraceTime)
	setDefault(&c.MaxSessions, DefaultMaxSessions)
	setDefault(&c.MaxChannels, DefaultMaxChannels)
	setDefault(&c.MaxForwards, DefaultMaxForwards)
	setDefault(&c.MaxEnv, DefaultMaxEnv)
	setDefault(&c.MaxEnvSize, DefaultMaxEnvSize)
	return c
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

// fits reports whether one more of something fits beside the n there are
// under limit, a negative limit meaning none.
func fits(n, limit int) bool {
	return limit < 0 || n < limit
}
