package sshtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd"
	"github.com/sshfwd/sshfwd/internal/wire"
)

// forwardKey names a forward the way its cancel request does: the address
// as the client requested it (a socket path cleaned) and the port the
// server bound (0 for Unix sockets).
type forwardKey struct {
	network string // "tcp" or "unix"
	addr    string
	port    int
}

// forward is the listeners of one tcpip-forward or streamlocal-forward.
type forward struct {
	srv       *Server
	listeners []net.Listener
	unixPath  string // a streamlocal forward's socket, registered in srv.unixPaths
}

// Close stops listening. A streamlocal forward's socket file goes before
// its path is free for other connections again, so that closing it cannot
// remove a socket another connection bound at the same path.
func (f *forward) Close() error {
	if f.unixPath == "" {
		closeAll(f.listeners)
		return nil
	}
	f.srv.unixMu.Lock()
	defer f.srv.unixMu.Unlock()
	closeAll(f.listeners)
	delete(f.srv.unixPaths, f.unixPath)
	return nil
}

// privilegedPorts is IPPORT_RESERVED: the ports below it are for root.
const privilegedPorts = 1024

// tcpipForward answers a tcpip-forward request (RFC 4254 7.1) and returns
// the reply: the bound port when the client asked for port 0.
func (c *Conn) tcpipForward(payload []byte) (target string, reply []byte, err error) {
	var msg wire.TCPIPForwardMsg
	if err := wire.Parse(wire.TCPIPForward, payload, &msg); err != nil {
		return "", nil, fmt.Errorf("sshtest: %w", err)
	}
	target = joinHostPort(msg.Addr, msg.Port)
	cfg := c.srv.Config
	switch {
	case msg.Port > 65535:
		return target, nil, fmt.Errorf("sshtest: port %d outside 0..65535", msg.Port)
	case msg.Port != 0 && msg.Port < privilegedPorts && !cfg.PermitPrivilegedPorts:
		return target, nil, fmt.Errorf("%w: listening on privileged port %d", ErrNotPermitted, msg.Port)
	}
	if err := c.forwardRoom(); err != nil {
		return target, nil, err
	}
	ls, err := c.listenTCP(msg.Addr, int(msg.Port))
	if err != nil {
		return target, nil, err
	}
	bound := ls[0].Addr().(*net.TCPAddr).Port
	open := func(ctx context.Context, nc net.Conn) (io.ReadWriteCloser, error) {
		origin := nc.RemoteAddr().(*net.TCPAddr)
		return sshfwd.OpenReverseForward(ctx, c.sconn, msg.Addr, bound, origin.IP.String(), origin.Port)
	}
	f := &forward{srv: c.srv, listeners: ls}
	if err := c.addForward(forwardKey{"tcp", msg.Addr, bound}, f, wire.ForwardedTCPIP, joinHostPort(msg.Addr, uint32(bound)), open); err != nil {
		return target, nil, err
	}
	if msg.Port == 0 {
		return target, ssh.Marshal(&wire.TCPIPForwardReply{Port: uint32(bound)}), nil
	}
	return target, nil, nil
}

// bindHosts returns the hosts a tcpip-forward for host binds, as sshd's
// GatewayPorts decides: without it, loopback in both families whatever the
// client asks for; with it, what the client asks for, "" and "*" being
// every interface and "localhost" loopback.
func (s *Server) bindHosts(host string) []string {
	switch {
	case !s.Config.GatewayPorts || host == "localhost":
		return []string{"127.0.0.1", "::1"}
	case host == "*":
		return []string{""}
	}
	return []string{host}
}

// listenTCP binds every host of bindHosts on port, or, for port 0, on the
// port the first one got, as sshd does. Each address is put to
// PermitListenCallback first. It fails only if no address could be bound:
// a host without IPv6 forwards on IPv4 alone.
func (c *Conn) listenTCP(host string, port int) ([]net.Listener, error) {
	var (
		ls       []net.Listener
		firstErr error
	)
	for _, h := range c.srv.bindHosts(host) {
		if len(ls) > 0 {
			port = ls[0].Addr().(*net.TCPAddr).Port
		}
		lc := net.ListenConfig{Control: c.permitListen(host, port)}
		// Plain TCP, as sshd's: Go would try MPTCP first and, refused by
		// the callback, ask it again for its fallback.
		lc.SetMultipathTCP(false)
		l, err := lc.Listen(c.ctx, listenNetwork(h), net.JoinHostPort(h, strconv.Itoa(port)))
		if err != nil {
			if denied, ok := policyError(err); ok {
				err = denied
			} else {
				err = fmt.Errorf("sshtest: %w", err)
			}
			c.logf("not listening on %s: %v", net.JoinHostPort(h, strconv.Itoa(port)), err)
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		ls = append(ls, l)
	}
	if len(ls) == 0 {
		return nil, firstErr
	}
	return ls, nil
}

// listenNetwork returns the network to listen on host with: an IP's own
// family, as sshd binds "0.0.0.0" for IPv4 alone where Go's "tcp" would
// take IPv6 too.
func listenNetwork(host string) string {
	ip, err := netip.ParseAddr(host)
	switch {
	case err != nil:
		return "tcp"
	case ip.Is4():
		return "tcp4"
	}
	return "tcp6"
}

// permitListen returns the listener's control function that puts each
// address to PermitListenCallback, or nil if there is no callback.
func (c *Conn) permitListen(host string, port int) func(network, address string, raw syscall.RawConn) error {
	permit := c.srv.Config.PermitListenCallback
	if permit == nil {
		return nil
	}
	return func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("sshtest: listener address %q: %w", address, err)
		}
		if !permit(c.sconn, ListenRequest{Host: host, Port: port, Addr: ap}) {
			return fmt.Errorf("%w: listening on %s (%v)", ErrNotPermitted, net.JoinHostPort(host, strconv.Itoa(port)), ap)
		}
		return nil
	}
}

// policyError returns the refusal of PermitListenCallback that err, from a
// listener whose control function refused, carries.
func policyError(err error) (error, bool) {
	var oe *net.OpError
	if errors.As(err, &oe) && errors.Is(oe.Err, ErrNotPermitted) {
		return oe.Err, true
	}
	return nil, false
}

// cancelTCPIPForward answers cancel-tcpip-forward (RFC 4254 7.1).
func (c *Conn) cancelTCPIPForward(payload []byte) (target string, err error) {
	var msg wire.TCPIPForwardMsg
	if err := wire.Parse(wire.CancelTCPIPForward, payload, &msg); err != nil {
		return "", fmt.Errorf("sshtest: %w", err)
	}
	target = joinHostPort(msg.Addr, msg.Port)
	return target, c.cancelForward(forwardKey{"tcp", msg.Addr, int(msg.Port)})
}

// streamLocalForward answers streamlocal-forward@openssh.com (OpenSSH
// PROTOCOL 2.4).
func (c *Conn) streamLocalForward(payload []byte) (target string, err error) {
	var msg wire.StreamLocalForwardMsg
	if err := wire.Parse(wire.StreamLocalForward, payload, &msg); err != nil {
		return "", fmt.Errorf("sshtest: %w", err)
	}
	path, err := cleanSocketPath(msg.SocketPath)
	if err != nil {
		return msg.SocketPath, err
	}
	if f := c.srv.Config.PermitListenUnixCallback; f != nil && !f(c.sconn, path) {
		return path, fmt.Errorf("%w: listening on %s", ErrNotPermitted, path)
	}
	if err := c.forwardRoom(); err != nil {
		return path, err
	}
	f, err := c.srv.listenUnix(c, path)
	if err != nil {
		return path, err
	}
	open := func(ctx context.Context, nc net.Conn) (io.ReadWriteCloser, error) {
		return sshfwd.OpenReverseForwardUnix(ctx, c.sconn, path)
	}
	return path, c.addForward(forwardKey{"unix", path, 0}, f, wire.ForwardedStreamLocal, path, open)
}

// listenUnix listens on path for c unless the path is taken: by a forward
// of any connection, or by a socket that accepts connections. A stale
// socket, one that refuses them, is removed first when
// StreamLocalBindUnlink allows.
func (s *Server) listenUnix(c *Conn, path string) (*forward, error) {
	s.unixMu.Lock()
	defer s.unixMu.Unlock()
	if owner, ok := s.unixPaths[path]; ok {
		return nil, fmt.Errorf("sshtest: %s is forwarded already, for %s: %w", path, owner.RemoteAddr(), syscall.EADDRINUSE)
	}
	if s.Config.StreamLocalBindUnlink {
		if err := removeStaleSocket(path); err != nil {
			return nil, err
		}
	}
	// A Unix listener removes its socket file when closed.
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	s.unixPaths[path] = c
	return &forward{srv: s, listeners: []net.Listener{l}, unixPath: path}, nil
}

// staleProbeTimeout bounds the connection attempt that tells a stale
// socket from a live one.
const staleProbeTimeout = time.Second

// removeStaleSocket removes the socket at path if it refuses connections.
// A live socket, a socket that cannot be probed and anything that is not a
// socket are left for listening to fail on.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Type() != os.ModeSocket {
		return nil
	}
	probe, err := net.DialTimeout("unix", path, staleProbeTimeout)
	if err == nil {
		probe.Close()
		return fmt.Errorf("sshtest: %s is a live socket: %w", path, syscall.EADDRINUSE)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("sshtest: remove stale socket: %w", err)
	}
	return nil
}

// cancelStreamLocalForward answers cancel-streamlocal-forward@openssh.com.
func (c *Conn) cancelStreamLocalForward(payload []byte) (target string, err error) {
	var msg wire.StreamLocalForwardMsg
	if err := wire.Parse(wire.CancelStreamLocalForward, payload, &msg); err != nil {
		return "", fmt.Errorf("sshtest: %w", err)
	}
	path, err := cleanSocketPath(msg.SocketPath)
	if err != nil {
		return msg.SocketPath, err
	}
	return path, c.cancelForward(forwardKey{"unix", path, 0})
}

// forwardRoom reports whether the connection may have one more forward.
func (c *Conn) forwardRoom() error {
	limit := c.srv.Config.MaxForwards
	c.mu.Lock()
	defer c.mu.Unlock()
	if !fits(len(c.forwards), limit) {
		return fmt.Errorf("%w: MaxForwards %d forwards", ErrLimit, limit)
	}
	return nil
}

// addForward records f under key, to be closed by a cancel or when the
// connection ends, and starts forwarding what its listeners accept as
// channels of type typ naming target. It closes f and fails if the
// connection has ended or key is taken.
func (c *Conn) addForward(key forwardKey, f *forward, typ, target string, open opener) error {
	c.mu.Lock()
	_, taken := c.forwards[key]
	if c.ended || taken {
		c.mu.Unlock()
		f.Close()
		return fmt.Errorf("sshtest: %s %s is forwarded already", key.network, target)
	}
	c.forwards[key] = f
	c.held[f] = struct{}{}
	c.mu.Unlock()
	for _, l := range f.listeners {
		c.srv.spawn(func() { c.acceptForwarded(c.ctx, l, typ, target, open) })
	}
	return nil
}

// cancelForward closes the forward under key.
func (c *Conn) cancelForward(key forwardKey) error {
	c.mu.Lock()
	f, ok := c.forwards[key]
	if ok {
		delete(c.forwards, key)
		delete(c.held, f)
	}
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("sshtest: no forward of %s %s port %d to cancel", key.network, key.addr, key.port)
	}
	return f.Close()
}

func closeAll(ls []net.Listener) {
	for _, l := range ls {
		l.Close()
	}
}
