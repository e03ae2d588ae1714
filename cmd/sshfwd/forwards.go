package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd"
)

// forwarder sets the forwards up on a Supervisor and keeps the list of
// them, the command line's and those a master's clients add, so that a
// client can cancel any of them as ssh's master lets it.
type forwarder struct {
	sv      *sshfwd.Supervisor
	log     *logger
	ids     channelIDs
	gateway bool   // GatewayPorts: the default listen address is every address
	family  string // "tcp", "tcp4" or "tcp6", for the local listeners

	mu     sync.Mutex // guards active
	active []*active
}

// active is one forward set up.
type active struct {
	f       forward
	lns     []net.Listener // a local or dynamic forward's
	removes []func()
	port    int // a remote forward's port, as the server chose it when asked at run time
}

// find returns the forward set up as f, or nil.
func (fw *forwarder) find(f forward) *active {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	for _, a := range fw.active {
		if a.f == f {
			return a
		}
	}
	return nil
}

func (fw *forwarder) record(a *active) {
	fw.mu.Lock()
	fw.active = append(fw.active, a)
	fw.mu.Unlock()
}

// addLocal listens for a -L or -D forward and adds it to the Supervisor.
func (fw *forwarder) addLocal(f forward) error {
	lns, err := fw.listen(f.Listen)
	if err != nil {
		return err
	}
	fw.log.Debugf("Local connections to %s forwarded to remote address %s", describe(f.Listen), destination(f.to()))
	a := &active{f: f}
	for _, ln := range lns {
		cl := &countedListener{Listener: ln, fw: fw, f: f, id: fw.ids.take()}
		fw.log.Debugf("Local forwarding listening on %s.", describeAddr(ln.Addr()))
		var remove func()
		if f.SOCKS {
			remove, err = fw.sv.AddDynamicForward(sshfwd.DynamicForward{Listener: cl, OpenFailedCallback: fw.openFailed})
		} else {
			remove, err = fw.sv.AddLocalForward(sshfwd.LocalForward{Listener: cl, RemoteAddr: f.to(), OpenFailedCallback: fw.openFailed})
		}
		if err != nil {
			cl.Close()
			fw.drop(a)
			return err
		}
		a.lns, a.removes = append(a.lns, cl), append(a.removes, remove)
	}
	fw.record(a)
	return nil
}

// addRemote adds a -R forward to the Supervisor: asked of the server at
// once while connected, with ctx bounding the wait, and returning the port
// the server chose for port 0.
func (fw *forwarder) addRemote(ctx context.Context, f forward) (int, error) {
	fw.log.Debugf("Remote connections from %s forwarded to local address %s", describe(f.Listen), destination(f.to()))
	rf := sshfwd.RemoteForward{RemoteAddr: f.Listen.String(), LocalAddr: f.to(), ConnectFailedCallback: fw.connectFailed(f)}
	port, remove, err := fw.sv.AddRemoteForward(ctx, rf)
	if err != nil {
		return 0, err
	}
	fw.record(&active{f: f, removes: []func(){remove}, port: port})
	return port, nil
}

// connectFailed returns what logs, in ssh's words, a connection that a
// remote forward f could not make here.
func (fw *forwarder) connectFailed(f forward) func(error) {
	return func(err error) {
		if f.Connect.Path != "" {
			fw.log.Infof("connect to %s port -2 failed: %s", f.Connect.Path, strerror(err))
			return
		}
		fw.log.Infof("connect_to %s port %d: failed.", f.Connect.Host, f.Connect.Port)
		fw.log.Debugf("connect_to %s: %v", f.Connect, err)
	}
}

// destination names where a forward's connections go, as ssh's messages
// do: to, or socks:0 for a SOCKS proxy, whose to is "".
func destination(to string) string {
	if to == "" {
		return "socks:0"
	}
	return to
}

// cancel takes the forward set up as f down.
func (fw *forwarder) cancel(f forward) error {
	a := fw.find(f)
	if a == nil {
		return errors.New("port not forwarded")
	}
	fw.drop(a)
	return nil
}

// drop removes a from the Supervisor and closes its listeners.
func (fw *forwarder) drop(a *active) {
	fw.mu.Lock()
	for i, b := range fw.active {
		if b == a {
			fw.active = append(fw.active[:i], fw.active[i+1:]...)
			break
		}
	}
	fw.mu.Unlock()
	for _, remove := range a.removes {
		remove()
	}
	for _, ln := range a.lns {
		ln.Close()
	}
}

// closeAll closes every listener, once the Supervisor has stopped.
func (fw *forwarder) closeAll() {
	fw.mu.Lock()
	all := fw.active
	fw.active = nil
	fw.mu.Unlock()
	for _, a := range all {
		for _, ln := range a.lns {
			ln.Close()
		}
	}
}

// listen opens the listeners of a local listen address: a Unix socket, the
// address given, every address for "" (or with GatewayPorts), and for the
// default the loopback addresses of the address family, the IPv6 one only
// where it works, as ssh does.
func (fw *forwarder) listen(e endpoint) ([]net.Listener, error) {
	if e.Path != "" {
		ln, err := net.Listen("unix", e.Path)
		if err != nil {
			return nil, err
		}
		return []net.Listener{ln}, nil
	}
	host, port := e.Host, strconv.Itoa(e.Port)
	if host == defaultBind && fw.gateway {
		host = ""
	}
	if host != defaultBind {
		ln, err := net.Listen(fw.family, net.JoinHostPort(host, port))
		if err != nil {
			return nil, err
		}
		return []net.Listener{ln}, nil
	}
	loopback := map[string][]string{"tcp": {"127.0.0.1", "::1"}, "tcp4": {"127.0.0.1"}, "tcp6": {"::1"}}[fw.family]
	var lns []net.Listener
	for i, ip := range loopback {
		ln, err := net.Listen(fw.family, net.JoinHostPort(ip, port))
		if err != nil {
			if i == 0 {
				return nil, err
			}
			continue
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// describe names a listen address as ssh's messages do: LOCALHOST for the
// default one, * for every address.
func describe(e endpoint) string {
	switch {
	case e.Path != "":
		return e.Path
	case e.Host == defaultBind:
		return "LOCALHOST:" + strconv.Itoa(e.Port)
	case e.Host == "":
		return "*:" + strconv.Itoa(e.Port)
	}
	return e.String()
}

// describeAddr names a listener's address as ssh's "listening on" does.
func describeAddr(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return fmt.Sprintf("%s port %d", t.IP, t.Port)
	}
	return "path " + a.String()
}

// openFailed logs a forwarded connection whose channel the server did not
// open, in ssh's words when the server refused it.
func (fw *forwarder) openFailed(c net.Conn, err error) {
	id := -1
	if cc, ok := c.(*countedConn); ok {
		id = cc.id
	}
	var oce *ssh.OpenChannelError
	if !errors.As(err, &oce) {
		fw.log.Debugf("channel %d: open failed: %v", id, err)
		return
	}
	if oce.Message == "" {
		fw.log.Infof("channel %d: open failed: %s", id, oce.Reason)
		return
	}
	fw.log.Infof("channel %d: open failed: %s: %s", id, oce.Reason, oce.Message)
}

// channelIDs numbers the listeners and forwarded connections as ssh
// numbers its channels, which its messages name: each takes the lowest
// number free.
type channelIDs struct {
	mu   sync.Mutex // guards used
	used []bool
}

func (c *channelIDs) take() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, u := range c.used {
		if !u {
			c.used[i] = true
			return i
		}
	}
	c.used = append(c.used, true)
	return len(c.used) - 1
}

// free gives n back and returns how many numbers are still taken.
func (c *channelIDs) free(n int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.used[n] = false
	taken := 0
	for _, u := range c.used {
		if u {
			taken++
		}
	}
	return taken
}

// countedListener is a forward's listener, which holds a channel number
// and gives one to every connection it accepts, and logs them with -v.
type countedListener struct {
	net.Listener
	fw   *forwarder
	f    forward
	id   int
	once sync.Once
}

func (l *countedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	cc := &countedConn{Conn: c, fw: l.fw, id: l.fw.ids.take(), kind: "direct-tcpip"}
	if l.f.SOCKS {
		cc.kind = "dynamic-tcpip"
		l.fw.log.Debugf("Connection to %s forwarding to socks port 0 requested.", describe(l.f.Listen))
	} else {
		l.fw.log.Debugf("Connection to %s forwarding to %s requested.", describe(l.f.Listen), l.f.Connect)
	}
	l.fw.log.Debugf("channel %d: new [%s]", cc.id, cc.kind)
	return cc, nil
}

// SetDeadline interrupts Accept, as the Supervisor needs.
func (l *countedListener) SetDeadline(t time.Time) error {
	return l.Listener.(interface{ SetDeadline(time.Time) error }).SetDeadline(t)
}

func (l *countedListener) Close() error {
	l.once.Do(func() { l.fw.ids.free(l.id) })
	return l.Listener.Close()
}

// countedConn is a forwarded connection with its channel number.
type countedConn struct {
	net.Conn
	fw   *forwarder
	id   int
	kind string
	once sync.Once
}

// CloseWrite passes a half-close on, as the relay needs.
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("sshfwd: %T cannot half-close", c.Conn)
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		n := c.fw.ids.free(c.id)
		c.fw.log.Debug2f("channel %d: free: %s, nchannels %d", c.id, c.kind, n)
	})
	return c.Conn.Close()
}

// errNotConnected refuses a remote forward asked for during an outage,
// when there is no server to ask.
var errNotConnected = errors.New("not connected to the server at the moment")
