package sshfwd

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
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

// cookieLen is the length of the cookies sshfwd makes up: 128 bits, as xauth
// generates and OpenSSH sends.
const cookieLen = 16

// setupTimeout bounds how long a forwarded X client may take to send its
// connection setup, and how long the local display may take to accept it.
const setupTimeout = 10 * time.Second

// X11Request is what an x11-req (RFC 4254 6.3.1) asks of the server: to
// set up a display for a remote session, whose X clients the server sends
// back on x11 channels. The zero value asks for any number of X clients on
// screen 0, authorized by a fresh MIT-MAGIC-COOKIE-1 cookie.
type X11Request struct {
	SingleConnection bool   // forward the first X client only
	AuthProtocol     string // "" means MIT-MAGIC-COOKIE-1
	AuthCookie       string // "" means a fresh random 128-bit cookie, hex
	ScreenNumber     int    // the screen in the DISPLAY the server sets
}

// RequestX11 asks the server to forward X11 connections of the remote
// session sess, which must belong to this Session's client
// (ssh_channel_request_x11 in libssh). It returns the request as sent, with
// the defaults filled in: a fresh cookie from crypto/rand as 32 lowercase
// hex digits, so that two requests never share one. A protocol name with
// spaces or control characters, a cookie that is not an even number of hex
// digits and a negative screen are errors, and nothing is sent.
//
// Call it before starting the remote command; the X clients it runs arrive
// through AcceptX11, carrying the cookie in their connection setup. A
// refusal by the server wraps ErrRequestDenied, and x11 channels it sends
// anyway are refused. RequestX11 blocks until the server answers or the
// connection ends; RequestX11Context bounds the wait.
func (s *Session) RequestX11(sess *ssh.Session, req X11Request) (X11Request, error) {
	return s.RequestX11Context(context.Background(), sess, req)
}

// RequestX11Context is RequestX11 with ctx bounding the wait for the
// server's answer. A request given up on counts as refused: x11 channels
// the server sends for it are refused.
func (s *Session) RequestX11Context(ctx context.Context, sess *ssh.Session, req X11Request) (X11Request, error) {
	req, err := s.requestX11(ctx, sess, req, nil)
	if err != nil {
		return req, wrap("RequestX11", err)
	}
	return req, nil
}

// requestX11 sends an x11-req on sess, for AcceptX11 when f is nil and for
// the ForwardX11 f otherwise, and waits for the answer until ctx ends.
func (s *Session) requestX11(ctx context.Context, sess *ssh.Session, req X11Request, f *x11Forward) (X11Request, error) {
	if sess == nil {
		return req, errors.New("sshfwd: nil ssh.Session")
	}
	if req.AuthProtocol == "" {
		req.AuthProtocol = mitMagicCookie
	}
	if req.AuthCookie == "" {
		req.AuthCookie = hex.EncodeToString(randomCookie(cookieLen))
	}
	if err := checkX11Request(req); err != nil {
		return req, err
	}
	// Registered before the request goes, so that an x11 channel racing
	// ahead of the answer finds its taker.
	s.mu.Lock()
	if f == nil {
		s.x11Asked++
	} else {
		s.x11Forwards = append(s.x11Forwards, f)
	}
	s.mu.Unlock()
	payload := ssh.Marshal(&wire.X11ReqMsg{
		SingleConnection: req.SingleConnection,
		AuthProtocol:     req.AuthProtocol,
		AuthCookie:       req.AuthCookie,
		ScreenNumber:     uint32(req.ScreenNumber),
	})
	_, err := s.await(ctx, func() (bool, []byte, error) {
		ok, err := sess.SendRequest(wire.X11Req, true, payload)
		return ok, nil, err
	}, nil)
	if f == nil {
		s.answeredX11(err == nil)
	} else if err != nil {
		s.dropX11(f)
	}
	return req, err
}

// answeredX11 records the answer to a RequestX11. Once no request is
// granted or pending and no ForwardX11 is active, x11 channels are not
// wanted: those waiting for AcceptX11 are refused, as are later ones.
func (s *Session) answeredX11(granted bool) {
	s.mu.Lock()
	s.x11Asked--
	s.x11Granted = s.x11Granted || granted
	unwanted := !s.x11WantedLocked()
	s.mu.Unlock()
	if unwanted {
		s.x11Q.remove(func(incoming) bool { return true }, "sshfwd: X11 forwarding was refused")
	}
}

// x11Wanted reports whether x11 channels are expected: a RequestX11 was
// granted or awaits its answer, or a ForwardX11 is active.
func (s *Session) x11Wanted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.x11WantedLocked()
}

func (s *Session) x11WantedLocked() bool {
	return s.x11Granted || s.x11Asked > 0 || len(s.x11Forwards) > 0
}

// randomCookie returns n bytes from crypto/rand, which cannot fail since
// Go 1.24: it crashes the program rather than return predictable bytes.
func randomCookie(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// checkX11Request rejects what the server would either refuse or, worse,
// pass to xauth on its command line.
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
	if req.ScreenNumber < 0 || int64(req.ScreenNumber) > math.MaxUint32 {
		return fmt.Errorf("screen number %d out of range 0..%d", req.ScreenNumber, uint32(math.MaxUint32))
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
			return nil, wrap("AcceptX11", err)
		}
		if !ok {
			return nil, wrap("AcceptX11", ErrSessionClosed)
		}
		c, err := s.acceptIncoming(in)
		if err == nil {
			return c, nil
		}
		if s.over() {
			return nil, wrap("AcceptX11", ErrSessionClosed)
		}
	}
}

// x11Forward is one ForwardX11 call: the fake cookie the server got and the
// display and real authorization it stands for.
type x11Forward struct {
	ctx      context.Context // done when the forwarding ends
	proto    string          // the protocol sent to the server
	fake     []byte          // the cookie sent to the server
	realName string          // the display's protocol, "" if it has no entry
	realData []byte
	display  x11.Display
	single   bool
	used     bool // an X client was let through; guarded by Session.mu
}

// ForwardX11 does what ssh -Y does (ssh -X with ForwardX11Trusted yes,
// Debian's default) for the remote session sess: it reads the authorization
// of display ("" means $DISPLAY) from $XAUTHORITY or ~/.Xauthority, asks the
// server for X11 forwarding with a fake cookie of the same protocol and
// length, and connects every X client the server forwards to the display,
// after checking the fake cookie and putting the real one in its place.
//
// The forwarding is trusted: the X clients get the display's own cookie, so
// they have every power a local X client has — reading every keystroke and
// the contents of every window, injecting input. The server, and anyone who
// controls it, receives the fake cookie and can therefore act as such a
// client. Forward X11 only to servers as trusted as the local display; no
// untrusted (X SECURITY extension) mode is offered.
//
// X clients that present another cookie get the X server's refusal; those
// that send a malformed or oversized setup, or none within 10 seconds, are
// disconnected. Neither reaches the display. At most 16 X clients are in
// setup at once: beyond that, the server's x11 channels are refused with
// ResourceShortage. When the Xauthority file has no entry for the display,
// X clients reach it without authorization, for X servers that admit by
// host.
//
// ForwardX11 returns once the server answered the request, or ctx ended
// first; a refusal wraps ErrRequestDenied. Forwarding lasts until ctx ends
// or the Session closes, which also closes the X connections in flight.
// Like ssh -X it accepts any number of X clients; ForwardX11Single accepts
// only the first. Displays are ":N", ":N.S", "unix:N", "host:N", "[::1]:N"
// or a socket path; local ones are reached through /tmp/.X11-unix/XN, the
// others on TCP port 6000+N. No xauth program is needed on this side.
func (s *Session) ForwardX11(ctx context.Context, sess *ssh.Session, display string) error {
	if err := s.forwardX11To(ctx, sess, display, false); err != nil {
		return wrap("ForwardX11", err)
	}
	return nil
}

// ForwardX11Single is ForwardX11 with the x11-req's single-connection flag
// set: the server forwards one X client only, and so does the Session, which
// refuses any further one the server sends.
func (s *Session) ForwardX11Single(ctx context.Context, sess *ssh.Session, display string) error {
	if err := s.forwardX11To(ctx, sess, display, true); err != nil {
		return wrap("ForwardX11Single", err)
	}
	return nil
}

func (s *Session) forwardX11To(ctx context.Context, sess *ssh.Session, display string, single bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if display == "" {
		display = os.Getenv("DISPLAY")
		if display == "" {
			return errors.New("sshfwd: no display given and $DISPLAY is empty")
		}
	}
	d, err := x11.ParseDisplay(display)
	if err != nil {
		return err
	}
	entry, err := lookupAuth(d)
	if err != nil {
		return err
	}
	proto, fakeLen := entry.Name, len(entry.Data)
	if proto == "" {
		proto = mitMagicCookie
	}
	if fakeLen == 0 {
		fakeLen = cookieLen
	}
	fctx, cancel := context.WithCancel(ctx)
	f := &x11Forward{
		ctx:      fctx,
		proto:    proto,
		fake:     randomCookie(fakeLen),
		realName: entry.Name,
		realData: entry.Data,
		display:  d,
		single:   single,
	}
	_, err = s.requestX11(ctx, sess, X11Request{
		SingleConnection: single,
		AuthProtocol:     f.proto,
		AuthCookie:       hex.EncodeToString(f.fake),
		ScreenNumber:     d.Screen,
	}, f)
	if err != nil {
		cancel()
		return err
	}
	if !s.spawn(func() {
		select {
		case <-s.done:
		case <-fctx.Done():
		}
		cancel()
		s.dropX11(f)
	}) {
		cancel()
		s.dropX11(f)
		return ErrSessionClosed
	}
	return nil
}

// dropX11 ends a ForwardX11. X clients that arrive after that are refused,
// unless another ForwardX11 is active or a RequestX11 was granted, whose
// AcceptX11 then gets them.
func (s *Session) dropX11(f *x11Forward) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, g := range s.x11Forwards {
		if g == f {
			s.x11Forwards = append(s.x11Forwards[:i], s.x11Forwards[i+1:]...)
			return
		}
	}
}

// lookupAuth finds the display's entry in the user's Xauthority file, the
// one an X client on this machine would send. A missing file, like a file
// without an entry, means no authorization; a file that cannot be read is
// an error, since forwarding without its cookie would only fail later and
// less clearly.
func lookupAuth(d x11.Display) (x11.AuthEntry, error) {
	path := x11.AuthorityPath()
	if path == "" {
		return x11.AuthEntry{}, nil
	}
	file, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return x11.AuthEntry{}, nil
	}
	if err != nil {
		return x11.AuthEntry{}, err
	}
	defer file.Close()
	entries, err := x11.ReadAuthority(file)
	if err != nil {
		return x11.AuthEntry{}, wrap(path, err)
	}
	hostname, _ := os.Hostname()
	entry, _ := x11.FindAuth(entries, d, hostname)
	return entry, nil
}

// maxX11Setups bounds the x11 channels of ForwardX11 that are still reading
// their X client's setup. An X client sends its setup at once, so more than
// a few at a time means a server opening channels it does not fill.
const maxX11Setups = 16

// x11Route is where an x11 channel goes.
type x11Route int

const (
	x11Queued    x11Route = iota // to AcceptX11: no ForwardX11 is active
	x11Forwarded                 // to ForwardX11, holding a setup slot
	x11Busy                      // nowhere: every setup slot is taken
)

// takeX11Setup decides where an x11 channel goes, and takes a setup slot
// for it when that is ForwardX11; putX11Setup gives the slot back.
func (s *Session) takeX11Setup() x11Route {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case len(s.x11Forwards) == 0:
		return x11Queued
	case s.x11Setups >= maxX11Setups:
		return x11Busy
	}
	s.x11Setups++
	return x11Forwarded
}

func (s *Session) putX11Setup() {
	s.mu.Lock()
	s.x11Setups--
	s.mu.Unlock()
}

// x11SetupLimit returns the length of the longest setup an active
// ForwardX11 could accept: one carrying its protocol name and fake cookie.
// A longer setup cannot carry either, so it is not read.
func (s *Session) x11SetupLimit() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	limit := 0
	for _, f := range s.x11Forwards {
		limit = max(limit, x11.Setup{AuthName: f.proto, AuthData: f.fake}.Len())
	}
	return limit
}

// forwardX11 serves one x11 channel for ForwardX11, holding a setup slot:
// accept it, read the X client's setup, find whose fake cookie it carries,
// put the real one in its place and connect it to that display. The slot is
// given back once the setup was passed on or refused.
func (s *Session) forwardX11(in incoming) {
	f, c, display := s.setUpX11(in)
	s.putX11Setup()
	if display == nil {
		return
	}
	defer c.Close()
	// The display may never notice that the forwarding ended, so the end
	// of f.ctx closes both sides rather than waiting for them.
	relayed := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-f.ctx.Done():
			c.Close()
			display.Close()
		case <-relayed:
		}
	}()
	relay.Relay(c, display)
	close(relayed)
	<-watched
}

// setUpX11 accepts an x11 channel and passes its X client's setup, with the
// real cookie, to the display of the ForwardX11 whose fake cookie it
// carries. It returns nil for the display, and nothing open, when the setup
// was refused or failed.
func (s *Session) setUpX11(in incoming) (*x11Forward, *Channel, net.Conn) {
	c, err := s.acceptIncoming(in)
	if err != nil {
		return nil, nil, nil
	}
	c.SetReadDeadline(time.Now().Add(setupTimeout))
	setup, err := x11.ReadSetupLimit(c, s.x11SetupLimit())
	if err != nil {
		c.Close()
		return nil, nil, nil
	}
	c.SetReadDeadline(time.Time{})
	f, why := s.claimX11(setup)
	if f == nil {
		refuseX11(c, setup, why)
		c.Close()
		return nil, nil, nil
	}
	dctx, cancel := context.WithTimeout(f.ctx, setupTimeout)
	display, err := f.display.Dial(dctx)
	cancel()
	if err != nil {
		refuseX11(c, setup, "sshfwd: cannot connect to the local X display")
		c.Close()
		return nil, nil, nil
	}
	display.SetWriteDeadline(time.Now().Add(setupTimeout))
	if _, err := display.Write(setup.WithAuth(f.realName, f.realData).Marshal()); err != nil {
		display.Close()
		c.Close()
		return nil, nil, nil
	}
	display.SetWriteDeadline(time.Time{})
	return f, c, display
}

// refuseX11 answers an X client's setup with the X server's Failed reply,
// so that the client reports why instead of a bare disconnection.
func refuseX11(c *Channel, setup x11.Setup, reason string) {
	c.SetWriteDeadline(time.Now().Add(setupTimeout))
	if _, err := c.Write(x11.RefuseReply(setup.ByteOrder, setup.Major, setup.Minor, reason)); err == nil {
		c.CloseWrite()
	}
}

// claimX11 returns the active ForwardX11 whose protocol and fake cookie
// setup carries, comparing cookies in constant time, or nil and the reason
// to give the X client.
func (s *Session) claimX11(setup x11.Setup) (*x11Forward, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.x11Forwards {
		if subtle.ConstantTimeCompare(setup.AuthData, f.fake) != 1 || setup.AuthName != f.proto || f.ctx.Err() != nil {
			continue
		}
		if f.single && f.used {
			return nil, "sshfwd: X11 forwarding was for a single connection"
		}
		f.used = true
		return f, ""
	}
	return nil, "sshfwd: wrong X11 authorization"
}
