package sshfwd

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/internal/relay"
	"github.com/sshfwd/sshfwd/internal/wire"
	"github.com/sshfwd/sshfwd/internal/x11"
)

// mitMagicCookie is the X authorization protocol every X server knows.
const mitMagicCookie = "MIT-MAGIC-COOKIE-1"

// setupTimeout bounds how long a forwarded X client may take to send its
// connection setup.
const setupTimeout = 10 * time.Second

// X11Request is what an x11-req (RFC 4254 6.3.1) asks of the server.
type X11Request struct {
	SingleConnection bool
	AuthProtocol     string // "" means MIT-MAGIC-COOKIE-1
	AuthCookie       string // "" means a fresh random 128-bit cookie, hex
	ScreenNumber     int
}

// RequestX11 asks the server to forward X11 connections of the remote
// session sess, which must belong to this Session's client
// (ssh_channel_request_x11 in libssh). It returns the request as sent, with
// the defaults filled in. Call it before starting the remote command; the X
// clients it runs arrive through AcceptX11.
func (s *Session) RequestX11(sess *ssh.Session, req X11Request) (X11Request, error) {
	if sess == nil {
		return req, fmt.Errorf("sshfwd: RequestX11: nil ssh.Session")
	}
	if req.AuthProtocol == "" {
		req.AuthProtocol = mitMagicCookie
	}
	if req.AuthCookie == "" {
		cookie := make([]byte, 16)
		rand.Read(cookie)
		req.AuthCookie = hex.EncodeToString(cookie)
	}
	if err := checkX11Request(req); err != nil {
		return req, fmt.Errorf("sshfwd: RequestX11: %w", err)
	}
	s.mu.Lock()
	s.x11Wanted = true
	s.mu.Unlock()
	ok, err := sess.SendRequest(wire.X11Req, true, ssh.Marshal(&wire.X11ReqMsg{
		SingleConnection: req.SingleConnection,
		AuthProtocol:     req.AuthProtocol,
		AuthCookie:       req.AuthCookie,
		ScreenNumber:     uint32(req.ScreenNumber),
	}))
	if err != nil {
		return req, fmt.Errorf("sshfwd: RequestX11: %w", err)
	}
	if !ok {
		return req, fmt.Errorf("sshfwd: RequestX11: %w", ErrRequestDenied)
	}
	return req, nil
}

func checkX11Request(req X11Request) error {
	if strings.ContainsFunc(req.AuthProtocol, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("auth protocol %q contains spaces or control characters", req.AuthProtocol)
	}
	if len(req.AuthCookie)%2 != 0 {
		return fmt.Errorf("auth cookie has odd length %d", len(req.AuthCookie))
	}
	if _, err := hex.DecodeString(req.AuthCookie); err != nil {
		return fmt.Errorf("auth cookie is not hex: %w", err)
	}
	if req.ScreenNumber < 0 || int64(req.ScreenNumber) > 1<<31 {
		return fmt.Errorf("screen number %d out of range", req.ScreenNumber)
	}
	return nil
}

// AcceptX11 waits for the next x11 channel the server opens after
// RequestX11 and returns it (ssh_channel_accept_x11 in libssh). Its
// RemoteAddr is the originator the server named. ctx replaces libssh's
// timeout. While ForwardX11 is active, x11 channels go to it instead.
func (s *Session) AcceptX11(ctx context.Context) (*Channel, error) {
	for {
		in, ok, err := s.x11Q.pop(ctx, s.done)
		if err != nil {
			return nil, fmt.Errorf("sshfwd: AcceptX11: %w", err)
		}
		if !ok {
			return nil, fmt.Errorf("sshfwd: AcceptX11: %w", ErrSessionClosed)
		}
		c, err := s.acceptIncoming(in)
		if err == nil {
			return c, nil
		}
		if isClosed(s.done) {
			return nil, fmt.Errorf("sshfwd: AcceptX11: %w", ErrSessionClosed)
		}
	}
}

// x11Forward is one ForwardX11 call: the fake cookie the server got and the
// display and real cookie it stands for.
type x11Forward struct {
	proto    string
	fake     []byte
	realName string
	realData []byte
	display  x11.Display
	single   bool
	used     bool // a connection arrived; guarded by Session.mu
}

// ForwardX11 does what ssh -X does for the remote session sess: it reads the
// cookie of display ("" means $DISPLAY) from $XAUTHORITY or ~/.Xauthority,
// asks the server for X11 forwarding with a fake cookie of the same length,
// and connects every X client the server forwards to the display, after
// checking the fake cookie and putting the real one in its place. X clients
// that present another cookie, or a malformed setup, are turned away and
// never reach the display.
//
// ForwardX11 returns once the server answered the request; forwarding lasts
// until ctx ends or the Session closes. Like ssh -X it accepts any number of
// X clients; ForwardX11Single accepts only the first. Displays are ":N", ":N.S",
// "unix:N", "host:N", "[::1]:N" or a socket path; local ones are reached
// through /tmp/.X11-unix/XN, the others on TCP port 6000+N. No xauth
// program is needed on this side.
func (s *Session) ForwardX11(ctx context.Context, sess *ssh.Session, display string) error {
	return s.forwardX11To(ctx, sess, display, false)
}

// ForwardX11Single is ForwardX11 with the x11-req's single-connection flag
// set: the server forwards one X client only, and so does the Session.
func (s *Session) ForwardX11Single(ctx context.Context, sess *ssh.Session, display string) error {
	return s.forwardX11To(ctx, sess, display, true)
}

func (s *Session) forwardX11To(ctx context.Context, sess *ssh.Session, display string, single bool) error {
	if display == "" {
		display = os.Getenv("DISPLAY")
		if display == "" {
			return fmt.Errorf("sshfwd: ForwardX11: no display given and $DISPLAY is empty")
		}
	}
	d, err := x11.ParseDisplay(display)
	if err != nil {
		return fmt.Errorf("sshfwd: ForwardX11: %w", err)
	}
	f := &x11Forward{display: d, single: single, realName: mitMagicCookie}
	if entry, ok := lookupCookie(d); ok {
		f.realName, f.realData = entry.Name, entry.Data
	}
	f.proto = f.realName
	f.fake = make([]byte, max(len(f.realData), 16))
	rand.Read(f.fake)

	s.mu.Lock()
	s.x11Forwards = append(s.x11Forwards, f)
	s.mu.Unlock()
	drop := func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for i, g := range s.x11Forwards {
			if g == f {
				s.x11Forwards = append(s.x11Forwards[:i], s.x11Forwards[i+1:]...)
				return
			}
		}
	}
	_, err = s.RequestX11(sess, X11Request{
		SingleConnection: single,
		AuthProtocol:     f.proto,
		AuthCookie:       hex.EncodeToString(f.fake),
		ScreenNumber:     d.Screen,
	})
	if err != nil {
		drop()
		return fmt.Errorf("sshfwd: ForwardX11: %w", err)
	}
	stop := context.AfterFunc(ctx, drop)
	if !s.spawn(func() {
		select {
		case <-s.done:
			stop()
			drop()
		case <-ctx.Done():
		}
	}) {
		stop()
		drop()
		return fmt.Errorf("sshfwd: ForwardX11: %w", ErrSessionClosed)
	}
	return nil
}

// lookupCookie finds the display's cookie in the user's Xauthority file.
func lookupCookie(d x11.Display) (x11.AuthEntry, bool) {
	path := x11.AuthorityPath()
	if path == "" {
		return x11.AuthEntry{}, false
	}
	file, err := os.Open(path)
	if err != nil {
		return x11.AuthEntry{}, false
	}
	defer file.Close()
	entries, err := x11.ReadAuthority(bufio.NewReader(file))
	if err != nil {
		return x11.AuthEntry{}, false
	}
	hostname, _ := os.Hostname()
	return x11.FindAuth(entries, d, hostname)
}

// hasX11Forwards reports whether ForwardX11 takes x11 channels.
func (s *Session) hasX11Forwards() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.x11Forwards) > 0
}

// forwardX11 serves one x11 channel for ForwardX11: accept it, read the
// X client's setup, find whose fake cookie it carries, put the real one in
// its place and connect it to that display.
func (s *Session) forwardX11(in incoming) {
	ch, reqs, err := in.nc.Accept()
	if err != nil {
		return
	}
	c, err := s.adopt(ch, reqs, in.local, in.remote)
	if err != nil {
		return
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(setupTimeout))
	setup, err := x11.ReadSetup(c)
	if err != nil {
		return
	}
	c.SetReadDeadline(time.Time{})
	f := s.claimX11(setup)
	if f == nil {
		c.SetWriteDeadline(time.Now().Add(setupTimeout))
		c.Write(x11.RefuseReply(setup.ByteOrder, setup.Major, setup.Minor, "sshfwd: wrong X11 authorization"))
		return
	}
	dctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	display, err := f.display.Dial(dctx)
	cancel()
	if err != nil {
		c.Write(x11.RefuseReply(setup.ByteOrder, setup.Major, setup.Minor, "sshfwd: cannot reach display: "+err.Error()))
		return
	}
	if _, err := display.Write(setup.WithAuth(f.realName, f.realData).Marshal()); err != nil {
		display.Close()
		return
	}
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		// The display may never notice that the SSH side died.
		select {
		case <-s.done:
			display.Close()
		case <-finished:
		}
	}()
	relay.Relay(c, display)
}

// claimX11 returns the ForwardX11 whose protocol and fake cookie setup
// carries, comparing cookies in constant time, or nil.
func (s *Session) claimX11(setup x11.Setup) *x11Forward {
	s.mu.Lock()
	defer s.mu.Unlock()
	var found *x11Forward
	for _, f := range s.x11Forwards {
		if subtle.ConstantTimeCompare(setup.AuthData, f.fake) == 1 && setup.AuthName == f.proto {
			found = f
		}
	}
	if found == nil || (found.single && found.used) {
		return nil
	}
	found.used = true
	return found
}
