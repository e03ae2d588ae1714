package sshtest

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/sshfwd/sshfwd"
	"github.com/sshfwd/sshfwd/internal/wire"
	"github.com/sshfwd/sshfwd/internal/x11"
)

// The display numbers sshtest hands out, as sshd does: from
// X11DisplayOffset's default upwards, trying at most MAX_DISPLAYS of them.
const (
	firstX11Display = 10
	maxX11Displays  = 1000
)

// x11SocketDir is where local X servers put their sockets, named X<number>,
// and where X clients look for them.
const x11SocketDir = "/tmp/.X11-unix"

// loopback4 is 127.0.0.1 as an Xauthority FamilyInternet address holds it.
const loopback4 = "\x7f\x00\x00\x01"

// x11Display is the display an x11-req set up for a session: listeners
// that turn each X client's connection into an x11 channel to the client,
// and the Xauthority file that lets the session's commands in.
type x11Display struct {
	c         *Conn
	number    int
	single    bool           // single_connection: forward the first X client only
	dir       string         // temporary directory of the Xauthority file
	listeners []net.Listener // TCP on loopback, and the Unix socket if it could be had
	closeOnce sync.Once

	mu    sync.Mutex // guards taken
	taken bool       // an X client was forwarded
}

// x11Request answers x11-req (RFC 4254 6.3.1) like sshd with
// X11UseLocalhost yes: it picks the first free display from :10 up, listens
// on its TCP port on loopback (and on its Unix socket when that is free),
// records the client's protocol and cookie in an Xauthority file of the
// session's own, and points DISPLAY and XAUTHORITY of the session's command
// at them. Each X client that connects is forwarded to the client on an x11
// channel. The display goes away when the session channel or the
// connection closes. Like sshd, it refuses a second x11-req, one after the
// command started, and a cookie that is not hex.
func (s *session) x11Request(payload []byte) error {
	var msg wire.X11ReqMsg
	if err := wire.Parse(wire.X11Req, payload, &msg); err != nil {
		return fmt.Errorf("sshtest: %w", err)
	}
	cookie, err := s.checkX11Request(msg)
	if err != nil {
		return err
	}
	d, err := openX11Display(s.c, msg.SingleConnection)
	if err != nil {
		return err
	}
	if err := d.writeAuthority(msg.AuthProtocol, cookie); err != nil {
		d.close()
		return err
	}
	s.display = d
	s.env = append(s.env,
		fmt.Sprintf("DISPLAY=localhost:%d.%d", d.number, msg.ScreenNumber),
		"XAUTHORITY="+d.authorityPath())
	s.c.logf("X11 display :%d set up", d.number)
	s.c.srv.spawn(func() { d.serve(s.ctx) })
	return nil
}

// checkX11Request decides whether the session may have the display msg
// asks for, and returns the cookie's bytes. The checks of protocol and
// cookie keep out what would corrupt the Xauthority file that sshd has
// xauth write.
func (s *session) checkX11Request(msg wire.X11ReqMsg) ([]byte, error) {
	switch {
	case s.c.srv.Config.DisableX11:
		return nil, fmt.Errorf("%w: X11 forwarding (DisableX11)", ErrNotPermitted)
	case s.started:
		return nil, s.checkNotStarted()
	case s.display != nil:
		return nil, fmt.Errorf("sshtest: display :%d is set up already", s.display.number)
	case msg.AuthProtocol == "" || strings.ContainsFunc(msg.AuthProtocol, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return nil, fmt.Errorf("sshtest: bad X11 authorization protocol %q", msg.AuthProtocol)
	}
	cookie, err := hex.DecodeString(msg.AuthCookie)
	if err != nil || len(cookie) == 0 {
		return nil, fmt.Errorf("sshtest: X11 cookie %q is not hex", msg.AuthCookie)
	}
	return cookie, nil
}

// openX11Display sets up the first display number that is free.
func openX11Display(c *Conn, single bool) (*x11Display, error) {
	dir, err := os.MkdirTemp("", "sshtest-x11-")
	if err != nil {
		return nil, fmt.Errorf("sshtest: X11 authority directory: %w", err)
	}
	for n := firstX11Display; n < firstX11Display+maxX11Displays; n++ {
		ls, err := listenX11(n)
		if err == nil {
			return &x11Display{c: c, number: n, single: single, dir: dir, listeners: ls}, nil
		}
	}
	os.RemoveAll(dir)
	return nil, fmt.Errorf("sshtest: no free X11 display in :%d..:%d", firstX11Display, firstX11Display+maxX11Displays-1)
}

// listenX11 listens for display n: on TCP port 6000+n of 127.0.0.1 and,
// as sshd does, of ::1, and on the display's Unix socket, which X clients
// given ":n" use. A display another X server holds is left alone: its lock
// file, or any of its addresses being in use, makes listenX11 fail. An
// address that cannot be had for other reasons (no IPv6, no socket
// directory) is done without, except 127.0.0.1, the one DISPLAY names.
func listenX11(n int) ([]net.Listener, error) {
	if _, err := os.Lstat(fmt.Sprintf("/tmp/.X%d-lock", n)); err == nil {
		return nil, fmt.Errorf("sshtest: display :%d has a lock file", n)
	}
	port := strconv.Itoa(x11.BaseTCPPort + n)
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		return nil, err
	}
	ls := []net.Listener{l}
	for _, a := range []struct{ network, address string }{
		{"tcp", net.JoinHostPort("::1", port)},
		{"unix", filepath.Join(x11SocketDir, "X"+strconv.Itoa(n))},
	} {
		l, err := net.Listen(a.network, a.address)
		if err == nil {
			ls = append(ls, l)
			continue
		}
		if errors.Is(err, syscall.EADDRINUSE) {
			closeAll(ls)
			return nil, err
		}
	}
	return ls, nil
}

func (d *x11Display) authorityPath() string { return filepath.Join(d.dir, "Xauthority") }

// writeAuthority writes the session's Xauthority file with the entries
// xauth would add for the display: under this host's name, which X clients
// use for the Unix socket and for localhost, and under 127.0.0.1.
func (d *x11Display) writeAuthority(proto string, cookie []byte) error {
	number := strconv.Itoa(d.number)
	var entries []x11.AuthEntry
	if host, err := os.Hostname(); err == nil {
		entries = append(entries, x11.AuthEntry{Family: x11.FamilyLocal, Address: host, Number: number, Name: proto, Data: cookie})
	}
	entries = append(entries, x11.AuthEntry{Family: x11.FamilyInternet, Address: loopback4, Number: number, Name: proto, Data: cookie})
	f, err := os.OpenFile(d.authorityPath(), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("sshtest: X11 authority file: %w", err)
	}
	err = x11.WriteAuthority(f, entries)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("sshtest: X11 authority file: %w", cerr)
	}
	return err
}

// serve accepts X clients until ctx, the session's, is done, and then
// takes the display down.
func (d *x11Display) serve(ctx context.Context) {
	for _, l := range d.listeners {
		d.c.srv.spawn(func() { d.accept(ctx, l) })
	}
	<-ctx.Done()
	d.close()
}

// close stops listening and removes the Xauthority file; a Unix listener
// removes its socket file itself.
func (d *x11Display) close() {
	d.closeOnce.Do(func() {
		closeAll(d.listeners)
		os.RemoveAll(d.dir)
	})
}

// accept forwards each X client that connects to l until l is closed.
func (d *x11Display) accept(ctx context.Context, l net.Listener) {
	for {
		nc, err := l.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				d.c.logf("accept on X11 display :%d: %v", d.number, err)
			}
			return
		}
		if d.single && !d.take() {
			nc.Close()
			continue
		}
		if d.single {
			closeAll(d.listeners)
		}
		d.c.srv.spawn(func() { d.c.forwardToClient(ctx, nc, wire.X11, fmt.Sprintf(":%d", d.number), d.open) })
	}
}

// take claims the display's only connection; it reports false if another
// X client claimed it first, through another listener.
func (d *x11Display) take() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.taken {
		return false
	}
	d.taken = true
	return true
}

// open opens an x11 channel to the client for the X client nc, naming it
// as the originator.
func (d *x11Display) open(ctx context.Context, nc net.Conn) (io.ReadWriteCloser, error) {
	// X clients on the Unix socket have no address; sshd names its X11
	// connections by IP, and loopback is where these come from.
	host, port := "127.0.0.1", 0
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		host, port = a.IP.String(), a.Port
	}
	return sshfwd.OpenX11(ctx, d.c.sconn, host, port)
}
