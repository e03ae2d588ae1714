// Package x11 holds the parsers that sshfwd's X11 forwarding (the
// equivalent of ssh -X) needs: the DISPLAY variable, the binary Xauthority
// file that libXau reads and xauth writes, and the connection setup that an
// X client sends first, whose authorization sshfwd has to check and replace.
// Every function returns an error, never panics, on malformed input.
package x11

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// BaseTCPPort is the TCP port of display number 0; display N listens on
// BaseTCPPort+N.
const BaseTCPPort = 6000

// MaxDisplayNumber is the highest display number ParseDisplay accepts, the
// one whose TCP port is still a valid port.
const MaxDisplayNumber = 65535 - BaseTCPPort

// maxScreen bounds the screen number: X servers have a handful of screens,
// and a bound keeps the value in every int.
const maxScreen = 65535

// unixSocketDir is where X servers on Unix put the socket of each display,
// named X<number>.
const unixSocketDir = "/tmp/.X11-unix"

// Display is a parsed DISPLAY value.
type Display struct {
	// Host is the host part before the colon: "" and "unix" mean the local
	// Unix socket; anything else is reached over TCP. An IPv6 address is
	// kept without brackets.
	Host string
	// Number is the display number, between 0 and MaxDisplayNumber.
	Number int
	// Screen is the screen number after the dot, 0 when absent.
	Screen int
	// Path is set only for a DISPLAY that is a socket path (it starts with
	// '/'): it is the path of the socket to connect to.
	Path string
}

// ParseDisplay parses a DISPLAY value the way Xlib and OpenSSH read it.
//
// It accepts ":N", "unix:N", "host:N", "[IPv6]:N", a bare IPv6 address as
// in "::1:N", OpenSSH's "::N" for the local socket, each optionally followed
// by ".S", and a socket path such as XQuartz's
// "/private/tmp/com.apple.launchd.X/org.xquartz:0". In the path form the
// socket file itself is named with the ":N" suffix (that is how launchd
// creates it and how OpenSSH and libxcb connect to it), so Path keeps the
// ":N" and only a trailing ".S" is taken off as the screen.
func ParseDisplay(s string) (Display, error) {
	if s == "" {
		return Display{}, fmt.Errorf("sshfwd: x11: empty DISPLAY")
	}
	if strings.IndexByte(s, 0) >= 0 {
		return Display{}, fmt.Errorf("sshfwd: x11: DISPLAY %q contains a NUL byte", s)
	}
	colon := strings.LastIndexByte(s, ':')
	if colon < 0 {
		return Display{}, fmt.Errorf("sshfwd: x11: DISPLAY %q has no ':' before the display number", s)
	}
	host, rest := s[:colon], s[colon+1:]
	numStr, screenStr, hasScreen := strings.Cut(rest, ".")
	num, err := parseDecimal(numStr, MaxDisplayNumber)
	if err != nil {
		return Display{}, fmt.Errorf("sshfwd: x11: DISPLAY %q: display number: %v", s, err)
	}
	d := Display{Number: num}
	if hasScreen {
		d.Screen, err = parseDecimal(screenStr, maxScreen)
		if err != nil {
			return Display{}, fmt.Errorf("sshfwd: x11: DISPLAY %q: screen number: %v", s, err)
		}
	}

	if strings.HasPrefix(s, "/") {
		d.Path = s
		if hasScreen {
			d.Path = s[:colon+1+len(numStr)]
		}
		return d, nil
	}

	switch {
	case host == "" || host == ":":
		// OpenSSH reads "::N" as the local socket, like ":N".
	case host == "unix":
		d.Host = host
	case strings.HasPrefix(host, "["):
		if !strings.HasSuffix(host, "]") {
			return Display{}, fmt.Errorf("sshfwd: x11: DISPLAY %q: unterminated '[' in host", s)
		}
		inner := host[1 : len(host)-1]
		if !isIPv6(inner) {
			return Display{}, fmt.Errorf("sshfwd: x11: DISPLAY %q: %q is not an IPv6 address", s, inner)
		}
		d.Host = inner
	case strings.Contains(host, ":"):
		if !isIPv6(host) {
			return Display{}, fmt.Errorf("sshfwd: x11: DISPLAY %q: %q is not an IPv6 address", s, host)
		}
		d.Host = host
	default:
		if !isHostname(host) {
			return Display{}, fmt.Errorf("sshfwd: x11: DISPLAY %q: %q is not a host name or address", s, host)
		}
		d.Host = host
	}
	return d, nil
}

// parseDecimal accepts only ASCII digits, unlike strconv.Atoi, because a
// sign or a space in a DISPLAY is junk that Xlib would reject too.
func parseDecimal(s string, max int) (int, error) {
	if s == "" {
		return 0, fmt.Errorf("missing")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%q is not a decimal number", s)
		}
	}
	// Leading zeros are legal, so the length alone cannot bound the value;
	// ParseUint with a bit size does, without overflow.
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n > uint64(max) {
		return 0, fmt.Errorf("%q is above %d", s, max)
	}
	return int(n), nil
}

// isIPv6 accepts an IPv6 address with an optional zone, which a link-local
// DISPLAY host needs; the zone is held to interface-name characters because
// netip would let brackets and colons through, which String could not quote.
func isIPv6(s string) bool {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() {
		return false
	}
	return a.Zone() == "" || isHostname(a.Zone())
}

// isHostname keeps to the characters of DNS names and IPv4 literals so that
// nothing a shell, a path or an address parser would treat specially gets
// through to the dialer.
func isHostname(s string) bool {
	if len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-' || c == '.' || c == '_':
		default:
			return false
		}
	}
	return s != "" && s[0] != '-' && s[0] != '.'
}

// IsLocal reports whether the display is reached through a Unix socket on
// this machine rather than over TCP.
func (d Display) IsLocal() bool {
	return d.Path != "" || d.Host == "" || d.Host == "unix"
}

// Network returns the network and address to dial for the display, in the
// form net.Dial takes. Linux's abstract socket "@/tmp/.X11-unix/XN" is not
// tried: every X server that listens there also listens on the file.
func (d Display) Network() (network, address string) {
	switch {
	case d.Path != "":
		return "unix", d.Path
	case d.IsLocal():
		return "unix", unixSocketDir + "/X" + strconv.Itoa(d.Number)
	default:
		return "tcp", net.JoinHostPort(d.Host, strconv.Itoa(BaseTCPPort+d.Number))
	}
}

// Dial connects to the display's X server.
func (d Display) Dial(ctx context.Context) (net.Conn, error) {
	// A Display built by hand rather than by ParseDisplay could name a port
	// outside the valid range, which the dialer would report less clearly.
	if d.Number < 0 || d.Number > MaxDisplayNumber {
		return nil, fmt.Errorf("sshfwd: x11: display number %d out of range 0..%d", d.Number, MaxDisplayNumber)
	}
	network, address := d.Network()
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("sshfwd: x11: connect to display %s: %w", d, err)
	}
	return conn, nil
}

// String returns the canonical DISPLAY form, which ParseDisplay reads back
// to the same Display: the screen is always written, except for a socket
// path with screen 0, because libxcb refuses a ".0" suffix on a path.
func (d Display) String() string {
	num := strconv.Itoa(d.Number)
	screen := "." + strconv.Itoa(d.Screen)
	switch {
	case d.Path != "":
		if d.Screen == 0 {
			return d.Path
		}
		return d.Path + screen
	case strings.Contains(d.Host, ":"):
		return "[" + d.Host + "]:" + num + screen
	default:
		return d.Host + ":" + num + screen
	}
}
