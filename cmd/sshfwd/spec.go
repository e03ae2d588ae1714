package main

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"unicode"

	"github.com/sshfwd/sshfwd/sshconfig"
)

// usage is printed for -h and after a command-line error.
const usage = `usage: sshfwd [-NT] [-D [bind_address:]port] [-F configfile] [-i identity_file]
              [-J destination] [-L address] [-l login_name] [-o option] [-p port]
              [-R address] [-S ctl_path] destination

  -L [bind_address:]port:host:hostport   -L [bind_address:]port:remote_socket
  -L local_socket:host:hostport          -L local_socket:remote_socket
  -R [bind_address:]port:host:hostport   -R [bind_address:]port:local_socket
  -R remote_socket:host:hostport         -R remote_socket:local_socket
  -R [bind_address:]port                 (remote SOCKS proxy)
  -D [bind_address:]port                 (local SOCKS proxy)
  -o any ssh_config option, e.g. StrictHostKeyChecking=accept-new
destination is [user@]host[:port], ssh://[user@]host[:port] or a Host of
~/.ssh/config, which is read as ssh reads it (-F replaces it). The
connection is redialed whenever it is lost; -N is implied.`

// errHelp is returned by parseArgs for -h.
var errHelp = errors.New("sshfwd: help requested")

// options is what the command line asks for. The options that ssh_config
// also has (-o, and -p, -l, -J, -i) are handed to sshconfig, which gives the
// first value precedence as ssh does.
type options struct {
	destination   string
	configFile    string    // -F; "" for the usual files
	controlPath   string    // -S
	overrides     []string  // -o, -p, -l and -J, as ssh_config options
	identityFiles []string  // -i
	local         []forward // -L
	remote        []forward // -R
	dynamic       []forward // -D
}

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
	Listen  endpoint
	Connect endpoint // zero for -D and remote SOCKS
	SOCKS   bool     // -D, or -R with no destination
}

// defaultBind is the listen address of a forward that names none: loopback,
// as OpenSSH's GatewayPorts no has it.
const defaultBind = "localhost"

// parseArgs parses the command line as ssh does: single-letter options,
// which may be grouped (-NL spec) and take their value attached or as the
// next argument, before or after the destination.
func parseArgs(args []string) (*options, error) {
	o := &options{}
	var dest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			dest = append(dest, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			dest = append(dest, a)
			continue
		}
		for j := 1; j < len(a); j++ {
			letter := a[j]
			switch letter {
			case 'N', 'T':
				continue
			case 'h':
				return nil, errHelp
			case 'L', 'R', 'D', 'J', 'i', 'p', 'l', 'o', 'F', 'S':
			default:
				return nil, fmt.Errorf("sshfwd: unknown option -%c", letter)
			}
			value := a[j+1:]
			if value == "" {
				if i+1 == len(args) {
					return nil, fmt.Errorf("sshfwd: option -%c needs an argument", letter)
				}
				i++
				value = args[i]
			}
			if err := o.set(letter, value); err != nil {
				return nil, err
			}
			break
		}
	}
	switch len(dest) {
	case 0:
		return nil, errors.New("sshfwd: no destination given")
	case 1:
	default:
		return nil, fmt.Errorf("sshfwd: unexpected %q after the destination: sshfwd runs no remote command", dest[1])
	}
	if _, err := sshconfig.ParseDestination(dest[0]); err != nil {
		return nil, err
	}
	o.destination = dest[0]
	return o, nil
}

// set applies option -letter with its value.
func (o *options) set(letter byte, value string) error {
	var err error
	switch letter {
	case 'L', 'R', 'D':
		var f forward
		if f, err = parseForward(letter, value); err == nil {
			switch letter {
			case 'L':
				o.local = append(o.local, f)
			case 'R':
				o.remote = append(o.remote, f)
			case 'D':
				o.dynamic = append(o.dynamic, f)
			}
		}
	case 'J':
		for _, hop := range strings.Split(value, ",") {
			if _, err := sshconfig.ParseDestination(hop); err != nil {
				return fmt.Errorf("%w (in -J %s)", err, value)
			}
		}
		o.overrides = append(o.overrides, "ProxyJump="+value)
	case 'i':
		o.identityFiles = append(o.identityFiles, value)
	case 'p':
		if _, err = parsePort(value, 1); err == nil {
			o.overrides = append(o.overrides, "Port="+value)
		}
	case 'l':
		o.overrides = append(o.overrides, "User="+value)
	case 'o':
		var key, v string
		if key, v, err = splitOption(value); err == nil {
			o.overrides = append(o.overrides, key+"="+v)
		}
	case 'F':
		o.configFile = value
	case 'S':
		o.controlPath = value
	}
	if err != nil {
		return fmt.Errorf("sshfwd: -%c %s: %w", letter, value, err)
	}
	return nil
}

// splitOption splits an -o argument, "Key=Value", "Key Value" or
// "Key = Value", the value optionally in double quotes.
func splitOption(s string) (key, value string, err error) {
	s = strings.TrimSpace(s)
	end := strings.IndexFunc(s, func(r rune) bool { return r == '=' || unicode.IsSpace(r) })
	if end < 0 {
		end = len(s)
	}
	if end == 0 {
		return "", "", errors.New("want Key=Value")
	}
	key, value = s[:end], strings.TrimSpace(s[end:])
	value = strings.TrimSpace(strings.TrimPrefix(value, "="))
	if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
		value = value[1 : len(value)-1]
	}
	if value == "" {
		return "", "", fmt.Errorf("no value for %s", key)
	}
	if strings.ContainsRune(value, 0) {
		return "", "", errors.New("NUL byte in value")
	}
	return key, value, nil
}

// field is one colon-separated part of a forward spec.
type field struct {
	text string
	path bool // begins with "/": a Unix socket path
}

// splitFields splits a forward spec at colons. A field in square brackets
// is an IPv6 address and may hold colons; the brackets are removed.
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
			f.path = strings.HasPrefix(f.text, "/")
		}
		fs = append(fs, f)
		if rest == "" {
			return fs, nil
		}
		rest = rest[1:]
	}
}

// parseForward parses the argument of -L, -R or -D as OpenSSH does.
func parseForward(kind byte, spec string) (forward, error) {
	fs, err := splitFields(spec)
	if err != nil {
		return forward{}, err
	}
	for _, f := range fs {
		if strings.ContainsFunc(f.text, func(r rune) bool { return r == 0 || unicode.IsSpace(r) }) {
			return forward{}, fmt.Errorf("%q contains a space or control character", f.text)
		}
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
	var f forward
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
	if strings.ContainsFunc(h, func(r rune) bool { return r == 0 || r == '@' || r == '/' || unicode.IsSpace(r) }) {
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
