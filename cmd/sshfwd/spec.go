package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/sshfwd/sshfwd/internal/sshconfig"
)

// usage is printed for -h and after a command-line error.
const usage = `usage: sshfwd [-NT] [-D [bind_address:]port] [-i identity_file] [-J destination]
              [-L address] [-l login_name] [-o option] [-p port] [-R address]
              destination

  -L [bind_address:]port:host:hostport   -L [bind_address:]port:remote_socket
  -L local_socket:host:hostport          -L local_socket:remote_socket
  -R [bind_address:]port:host:hostport   -R [bind_address:]port:local_socket
  -R remote_socket:host:hostport         -R remote_socket:local_socket
  -R [bind_address:]port                 (remote SOCKS proxy)
  -D [bind_address:]port                 (local SOCKS proxy)
  -o UserKnownHostsFile, StrictHostKeyChecking (yes, accept-new, no),
     ServerAliveInterval, ServerAliveCountMax, ExitOnForwardFailure,
     Port, User, IdentityFile
destination is [user@]host or ssh://[user@]host[:port]. The connection is
redialed whenever it is lost; -N is implied.`

// errHelp is returned by parseArgs for -h.
var errHelp = errors.New("sshfwd: help requested")

// options is what the command line asks for. Like OpenSSH, the first value
// given for an option is the one used; -i and IdentityFile add up.
type options struct {
	user          string // "" when not given
	host          string
	port          int // 0 when not given
	identityFiles []string
	jumps         []sshconfig.Target
	local         []forward // -L
	remote        []forward // -R
	dynamic       []forward // -D

	knownHosts           string // "" when not given
	strict               sshconfig.StrictHostKeyChecking
	aliveInterval        time.Duration // 0: not given; negative: off
	aliveCountMax        int           // 0: not given
	exitOnForwardFailure bool

	given map[string]bool // lower-case names of the options given so far
}

// first reports whether the option named key is given for the first time,
// and notes it.
func (o *options) first(key string) bool {
	key = strings.ToLower(key)
	if o.given[key] {
		return false
	}
	if o.given == nil {
		o.given = make(map[string]bool)
	}
	o.given[key] = true
	return true
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
			case 'L', 'R', 'D', 'J', 'i', 'p', 'l', 'o':
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
	if err := o.setDestination(dest[0]); err != nil {
		return nil, err
	}
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
		if o.first("ProxyJump") {
			o.jumps, err = parseJumps(value)
		}
	case 'i':
		err = o.setOption("IdentityFile", value)
	case 'p':
		err = o.setOption("Port", value)
	case 'l':
		err = o.setOption("User", value)
	case 'o':
		var key, v string
		if key, v, err = splitOption(value); err == nil {
			err = o.setOption(key, v)
		}
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
	return key, value, nil
}

// setOption applies a configuration option, named in any case as OpenSSH
// allows.
func (o *options) setOption(key, value string) error {
	if strings.ContainsRune(value, 0) {
		return errors.New("NUL byte in value")
	}
	name := strings.ToLower(key)
	if name == "identityfile" {
		o.identityFiles = append(o.identityFiles, expandHome(value))
		return nil
	}
	first := o.first(name)
	var err error
	switch name {
	case "userknownhostsfile":
		if first {
			o.knownHosts = expandHome(value)
		}
	case "stricthostkeychecking":
		var v sshconfig.StrictHostKeyChecking
		if v, err = sshconfig.ParseStrictHostKeyChecking(value); err == nil && first {
			o.strict = v
		}
	case "serveraliveinterval":
		var d time.Duration
		if d, err = parseTime(value); err == nil && first {
			o.aliveInterval = d
			if d == 0 {
				o.aliveInterval = -1
			}
		}
	case "serveralivecountmax":
		var n int
		if n, err = strconv.Atoi(value); err == nil && n < 1 {
			err = errors.New("must be at least 1")
		}
		if err == nil && first {
			o.aliveCountMax = n
		}
	case "exitonforwardfailure":
		var v bool
		if v, err = parseYesNo(value); err == nil && first {
			o.exitOnForwardFailure = v
		}
	case "port":
		var p int
		if p, err = parsePort(value, 1); err == nil && first {
			o.port = p
		}
	case "user":
		if first {
			o.user = value
		}
	default:
		return fmt.Errorf("unsupported option %q (supported: UserKnownHostsFile, StrictHostKeyChecking, ServerAliveInterval, ServerAliveCountMax, ExitOnForwardFailure, Port, User, IdentityFile)", key)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}

// setDestination parses [user@]host or ssh://[user@]host[:port]; a user
// or port given there counts only if no option gave one.
func (o *options) setDestination(dest string) error {
	rest, uri := strings.CutPrefix(dest, "ssh://")
	var user, port string
	host := rest
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		user, host = rest[:i], rest[i+1:]
		if user == "" {
			return fmt.Errorf("sshfwd: empty user in destination %q", dest)
		}
	}
	if h, p, err := net.SplitHostPort(host); uri && err == nil {
		host, port = h, p
	} else if len(host) > 2 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	if err := checkHost(host); err != nil {
		return fmt.Errorf("sshfwd: destination %q: %w", dest, err)
	}
	o.host = host
	if user != "" && o.first("user") {
		o.user = user
	}
	if port != "" {
		p, err := parsePort(port, 1)
		if err != nil {
			return fmt.Errorf("sshfwd: destination %q: %w", dest, err)
		}
		if o.first("port") {
			o.port = p
		}
	}
	return nil
}

// parseJumps parses -J's comma-separated [user@]host[:port] list, each also
// allowed as ssh://[user@]host[:port].
func parseJumps(s string) ([]sshconfig.Target, error) {
	var jumps []sshconfig.Target
	for _, hop := range strings.Split(s, ",") {
		t, err := sshconfig.ParseTarget(strings.TrimPrefix(hop, "ssh://"))
		if err != nil {
			return nil, err
		}
		jumps = append(jumps, t)
	}
	return jumps, nil
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

// parseYesNo parses OpenSSH's flag values.
func parseYesNo(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "yes", "true":
		return true, nil
	case "no", "false":
		return false, nil
	}
	return false, fmt.Errorf("%q: want yes or no", s)
}

// parseTime parses an OpenSSH time value: a number of seconds, or numbers
// each followed by a unit, s, m, h, d or w in either case ("1m30s").
func parseTime(s string) (time.Duration, error) {
	units := map[byte]time.Duration{'s': time.Second, 'm': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour, 'w': 7 * 24 * time.Hour}
	const limit = 1 << 31 * time.Second // OpenSSH's times are ints of seconds
	if s == "" {
		return 0, errors.New("empty time")
	}
	var total time.Duration
	for rest := s; rest != ""; {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 || i > 10 {
			return 0, fmt.Errorf("bad time %q", s)
		}
		n, _ := strconv.Atoi(rest[:i])
		unit, rest2 := time.Second, rest[i:]
		if rest2 != "" {
			u, ok := units[rest2[0]|0x20]
			if !ok {
				return 0, fmt.Errorf("bad time unit in %q", s)
			}
			unit, rest2 = u, rest2[1:]
		}
		if time.Duration(n) >= limit/unit {
			return 0, fmt.Errorf("time %q too large", s)
		}
		total += time.Duration(n) * unit
		if total >= limit {
			return 0, fmt.Errorf("time %q too large", s)
		}
		rest = rest2
	}
	return total, nil
}

// expandHome replaces a leading ~/ with the home directory, as OpenSSH does
// for file options.
func expandHome(p string) string {
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, rest)
		}
	}
	return p
}
