package sshfwd

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Addr is an end point given by host name, which net.TCPAddr cannot hold:
// SSH forwards name hosts that only the server resolves. Channels report a
// *net.TCPAddr when the host is an IP address and an *Addr otherwise.
type Addr struct {
	Net  string // "tcp"
	Host string
	Port int
}

// Network returns a.Net.
func (a *Addr) Network() string { return a.Net }

// String returns host:port.
func (a *Addr) String() string { return net.JoinHostPort(a.Host, strconv.Itoa(a.Port)) }

// tcpAddr returns the address of host and port as a channel reports it.
func tcpAddr(host string, port int) net.Addr {
	if ip, err := netip.ParseAddr(host); err == nil {
		return net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port)))
	}
	return &Addr{Net: "tcp", Host: host, Port: port}
}

func unixAddr(path string) net.Addr { return &net.UnixAddr{Name: path, Net: "unix"} }

// badAddress combines what the checks found wrong into one error wrapping
// ErrBadAddress, or returns nil when every check passed.
func badAddress(checks ...error) error {
	var found []string
	for _, err := range checks {
		if err != nil {
			found = append(found, err.Error())
		}
	}
	if len(found) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrBadAddress, strings.Join(found, "; "))
}

// checkHost rejects what cannot be a host in an SSH request.
func checkHost(what, host string) error {
	if host == "" {
		return fmt.Errorf("empty %s", what)
	}
	return checkString(what, host)
}

// checkString rejects strings that C peers would cut short at a NUL.
func checkString(what, s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%s %q contains a NUL byte", what, s)
	}
	return nil
}

// checkPort rejects ports outside min..65535.
func checkPort(what string, port, min int) error {
	if port < min || port > 65535 {
		return fmt.Errorf("%s %d outside %d..65535", what, port, min)
	}
	return nil
}

// splitHostPort splits a "host:port" address with a numeric port.
func splitHostPort(addr string) (string, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%w: %v", ErrBadAddress, err)
	}
	port, err := strconv.Atoi(ps)
	if err != nil {
		return "", 0, fmt.Errorf("%w: port %q in %q is not a number", ErrBadAddress, ps, addr)
	}
	return host, port, nil
}
