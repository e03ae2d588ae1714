package main

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"
)

// endpoint is one end of a forward: a TCP host and port, or a Unix socket
// path.
type endpoint struct {
	Host string // a bind address ("" for every address) or a host name
	Port int
	Path string // a Unix socket path, instead of Host and Port
}

// String returns host:port or the path.
func (e endpoint) String() string {
	if e.Path != "" {
		return e.Path
	}
	return net.JoinHostPort(e.Host, strconv.Itoa(e.Port))
}

// forward is one -L, -R or -D.
type forward struct {
	Kind    byte // 'L', 'R' or 'D'
	Listen  endpoint
	Connect endpoint // zero for -D and remote SOCKS
	SOCKS   bool     // -D, or -R with no destination
}

// to returns where f's connections go, host:port or a socket path, and ""
// for a SOCKS proxy, as the Supervisor's forwards name it.
func (f forward) to() string {
	if f.SOCKS {
		return ""
	}
	return f.Connect.String()
}

// defaultBind is the listen address of a forward that names none: loopback,
// as OpenSSH's GatewayPorts no has it, or every address with -g.
const defaultBind = "localhost"

// specError is a forward spec that does not parse. It reads as ssh's
// one line about it; why says more, for -v.
type specError struct {
	kind byte // 'L', 'R', 'D', or 'W' for -W
	spec string
	why  error
}

func (e *specError) Error() string {
	name := map[byte]string{'L': "local", 'R': "remote", 'D': "dynamic", 'W': "stdio"}[e.kind]
	return fmt.Sprintf("Bad %s forwarding specification '%s'", name, printable(e.spec))
}

// printable escapes s as a Go string literal when it holds control
// characters, so that a message quoting what was typed stays one line.
func printable(s string) string {
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

func (e *specError) Unwrap() error { return e.why }

// field is one colon-separated part of a forward spec.
type field struct {
	text string
	path bool // holds a "/": a Unix socket path, as for ssh
}

// splitFields splits a forward spec at colons. A field in square brackets
// is an IPv6 address and may hold colons; the brackets are removed. No
// field may hold a space or a control character.
func splitFields(spec string) ([]field, error) {
	var fs []field
	for rest := spec; ; {
		var f field
		if strings.HasPrefix(rest, "[") {
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return nil, errors.New("missing ]")
			}
			f.text, rest = rest[1:end], rest[end+1:]
			if rest != "" && rest[0] != ':' {
				return nil, fmt.Errorf("unexpected %q after ]", rest)
			}
		} else {
			end := strings.IndexByte(rest, ':')
			if end < 0 {
				end = len(rest)
			}
			f.text, rest = rest[:end], rest[end:]
			f.path = strings.Contains(f.text, "/")
		}
		if strings.ContainsFunc(f.text, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) {
			return nil, fmt.Errorf("%q contains a space or control character", f.text)
		}
		fs = append(fs, f)
		if rest == "" {
			return fs, nil
		}
		rest = rest[1:]
	}
}

// parseForward parses the argument of -L, -R or -D as OpenSSH does. A
// relative socket path on this side is taken from the working directory
// and made absolute, so that it stays the same path whatever the process
// does later; one on the server's side must be absolute.
func parseForward(kind byte, spec string) (forward, error) {
	f, err := parseSpec(kind, spec)
	if err == nil {
		here, there := &f.Listen, &f.Connect
		if kind == 'R' {
			here, there = there, here
		}
		if here.Path != "" {
			here.Path, err = filepath.Abs(here.Path)
		}
		if err == nil && there.Path != "" && !strings.HasPrefix(there.Path, "/") {
			err = fmt.Errorf("socket path %s on the server is not absolute", there.Path)
		}
	}
	return f, wrapSpec(kind, spec, err)
}

// parseSpec parses spec into a forward, its paths as given.
func parseSpec(kind byte, spec string) (forward, error) {
	fs, err := splitFields(spec)
	if err != nil {
		return forward{}, err
	}
	var listen, connect []field
	if kind == 'D' {
		if len(fs) > 2 || fs[0].path {
			return forward{}, errors.New("want [bind_address:]port")
		}
		listen = fs
	} else {
		listen, connect, err = splitForward(kind, fs)
		if err != nil {
			return forward{}, err
		}
	}
	f := forward{Kind: kind}
	minPort := 1
	if kind == 'R' {
		minPort = 0
	}
	if f.Listen, err = parseEndpoint(listen, true, minPort); err != nil {
		return forward{}, fmt.Errorf("listen address: %w", err)
	}
	if f.SOCKS = connect == nil; f.SOCKS {
		return f, nil
	}
	if f.Connect, err = parseEndpoint(connect, false, 1); err != nil {
		return forward{}, fmt.Errorf("destination: %w", err)
	}
	return f, nil
}

// splitForward divides the fields of -L or -R into the listen side and the
// connect side, by count and by which are paths; connect is nil for a
// remote SOCKS forward.
func splitForward(kind byte, fs []field) (listen, connect []field, err error) {
	switch n := len(fs); {
	case n == 1 && kind == 'R' && !fs[0].path:
		return fs, nil, nil
	case n == 2 && fs[1].path:
		return fs[:1], fs[1:], nil // port:path or path:path
	case n == 2 && kind == 'R' && !fs[0].path:
		return fs, nil, nil // bind:port, remote SOCKS
	case n == 3 && fs[0].path:
		return fs[:1], fs[1:], nil // path:host:port
	case n == 3 && fs[2].path:
		return fs[:2], fs[2:], nil // bind:port:path
	case n == 3:
		return fs[:1], fs[1:], nil // port:host:port
	case n == 4:
		return fs[:2], fs[2:], nil // bind:port:host:port
	}
	if kind == 'R' {
		return nil, nil, errors.New("want [bind_address:]port[:host:hostport], [bind_address:]port:local_socket or remote_socket:host:hostport")
	}
	return nil, nil, errors.New("want [bind_address:]port:host:hostport, [bind_address:]port:remote_socket or local_socket:host:hostport")
}

// parseEndpoint turns one or two fields into an endpoint: a path, a port,
// or a host (bind address, for a listen side) and a port. A listen side
// without an address gets defaultBind; "" and "*" mean every address.
func parseEndpoint(fs []field, listen bool, minPort int) (endpoint, error) {
	if len(fs) == 1 && fs[0].path {
		return endpoint{Path: fs[0].text}, nil
	}
	var e endpoint
	portField := fs[len(fs)-1]
	if portField.path {
		return e, fmt.Errorf("%q is not a port", portField.text)
	}
	port, err := parsePort(portField.text, minPort)
	if err != nil {
		return e, err
	}
	e.Port = port
	switch {
	case len(fs) == 1 && listen:
		e.Host = defaultBind
	case len(fs) == 1:
		return e, errors.New("no host")
	case fs[0].path:
		return e, fmt.Errorf("%q is not a host", fs[0].text)
	case listen && (fs[0].text == "" || fs[0].text == "*"):
		e.Host = ""
	default:
		if err := checkHost(fs[0].text); err != nil {
			return e, err
		}
		e.Host = fs[0].text
	}
	return e, nil
}

// checkHost rejects host names that no resolver takes.
func checkHost(h string) error {
	if h == "" {
		return errors.New("empty host")
	}
	if strings.ContainsFunc(h, func(r rune) bool { return r == 0 || r == '@' || r == '/' || r == '[' || r == ']' || unicode.IsSpace(r) }) {
		return fmt.Errorf("bad host %q", h)
	}
	return nil
}

// parsePort parses a decimal port in min..65535.
func parsePort(s string, min int) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || s[0] == '+' || s[0] == '-' || n < min || n > 65535 {
		return 0, fmt.Errorf("bad port %q", s)
	}
	return n, nil
}
