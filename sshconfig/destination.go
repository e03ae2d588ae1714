package sshconfig

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"unicode"
)

// Destination is where ssh is told to connect, as the command line or a
// ProxyJump entry gives it: a host or alias, and the user and port when the
// destination names them (empty and 0 when it does not).
type Destination struct {
	User string
	Host string // a host name, an address (IPv6 without brackets) or a Host alias
	Port int
}

// String returns d as ssh takes it: "user@host", with the ssh:// form when
// it names a port.
func (d Destination) String() string {
	var b strings.Builder
	if d.Port != 0 {
		b.WriteString("ssh://")
	}
	if d.User != "" {
		b.WriteString(d.User + "@")
	}
	if d.Port == 0 {
		b.WriteString(d.Host)
		return b.String()
	}
	b.WriteString(net.JoinHostPort(d.Host, strconv.Itoa(d.Port)))
	return b.String()
}

// ParseDestination parses a destination in the forms ssh accepts:
// "host", "user@host", "ssh://[user@]host[:port]", and also
// "[user@]host:port" and "[user@][v6addr]:port". A bare IPv6 address is a
// host. The user is everything before the last "@", so that a user name may
// itself hold one, as OpenSSH allows.
func ParseDestination(s string) (Destination, error) {
	var d Destination
	bad := func(why string) (Destination, error) {
		return Destination{}, fmt.Errorf("sshfwd: destination %q: %s", s, why)
	}
	if s == "" {
		return bad("empty")
	}
	rest, uri := strings.CutPrefix(s, "ssh://")
	if uri {
		rest = strings.TrimSuffix(rest, "/")
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		d.User, rest = rest[:i], rest[i+1:]
		if d.User == "" || strings.ContainsFunc(d.User, badRune) {
			return bad("bad user")
		}
	}
	host, port, err := splitHostPort(rest)
	if err != nil {
		return bad(err.Error())
	}
	if err := checkHostName(host); err != nil {
		return bad(err.Error())
	}
	d.Host, d.Port = host, port
	return d, nil
}

// splitHostPort splits "host", "host:port", "[host]" and "[host]:port"; a
// string with more than one colon and no brackets is an IPv6 address.
func splitHostPort(s string) (string, int, error) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", 0, errors.New("missing ]")
		}
		host, rest := s[1:end], s[end+1:]
		if rest == "" {
			return host, 0, nil
		}
		p, ok := strings.CutPrefix(rest, ":")
		if !ok {
			return "", 0, fmt.Errorf("unexpected %q after ]", rest)
		}
		port, err := parsePort(p)
		return host, port, err
	}
	if strings.Count(s, ":") != 1 {
		return s, 0, nil
	}
	host, p, _ := strings.Cut(s, ":")
	port, err := parsePort(p)
	return host, port, err
}

// parsePort parses a decimal TCP port, 1 to 65535.
func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || s[0] == '+' || s[0] == '-' || n < 1 || n > 65535 {
		return 0, fmt.Errorf("bad port %q", s)
	}
	return n, nil
}

// checkHostName rejects host names that no resolver or config file takes.
func checkHostName(h string) error {
	if h == "" {
		return errors.New("empty host")
	}
	if strings.ContainsAny(h, "@/[]") || strings.HasPrefix(h, "-") || strings.ContainsFunc(h, badRune) {
		return fmt.Errorf("bad host %q", h)
	}
	return nil
}

// badRune reports the runes no host or user name may hold: spaces and
// control characters, NUL among them.
func badRune(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }
