package socks

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"unicode/utf8"
)

// maxString bounds the NUL-terminated strings of SOCKS4 and SOCKS4a (USERID
// and the host name), as SOCKS5's length byte bounds its names: a client that
// never sends the NUL cannot make the server read forever.
const maxString = 255

// SOCKS5 authentication methods (RFC 1928 section 3).
const (
	methodNoAuth       = 0x00
	methodNoAcceptable = 0xFF
)

// SOCKS5 address types (RFC 1928 section 5).
const (
	atypIPv4   = 0x01
	atypDomain = 0x03
	atypIPv6   = 0x04
)

// ReadRequest reads a client's handshake from r and returns its request.
// For SOCKS5 it first answers the method negotiation on w: "no
// authentication required" when the client offers it, else 0xFF, after which
// it returns an error wrapping ErrNoAcceptableMethod. Nothing else is written;
// the caller writes the reply with WriteReply.
//
// ReadRequest reads exactly the bytes of the handshake, never ahead, so what
// the client sends next is still in r. It does not resolve names and applies
// no policy: unsupported commands (BIND, UDP ASSOCIATE) are returned for the
// caller to refuse with CommandNotSupported.
//
// A handshake that breaks the protocol gives a *RequestError, which tells
// whether and how the client should be answered. A stream that ends or fails
// early gives an error wrapping the reader's (io.EOF when it ended before the
// first byte, io.ErrUnexpectedEOF when it ended inside the handshake).
func ReadRequest(r io.Reader, w io.Writer) (*Request, error) {
	rd := &reader{r: r}
	version, err := rd.byte()
	if err != nil {
		return nil, err
	}
	switch version {
	case Version4:
		return readRequest4(rd)
	case Version5:
		if err := negotiate5(rd, w); err != nil {
			return nil, err
		}
		return readRequest5(rd)
	}
	return nil, &RequestError{Err: fmt.Errorf("%w 0x%02x", ErrVersion, version)}
}

// readRequest4 reads the rest of a SOCKS4 request, whose version byte was
// read:
//
//	CD (1) DSTPORT (2) DSTIP (4) USERID NUL
//
// SOCKS4a marks a request that names its host with DSTIP 0.0.0.x, x not
// zero; the host name follows USERID:
//
//	... USERID NUL HOST NUL
func readRequest4(rd *reader) (*Request, error) {
	var fixed [7]byte
	if err := rd.full(fixed[:]); err != nil {
		return nil, err
	}
	req := &Request{
		Version: Version4,
		Command: Command(fixed[0]),
		Port:    int(binary.BigEndian.Uint16(fixed[1:3])),
	}
	user, err := rd.cstring("userid")
	if err != nil {
		return nil, err
	}
	req.UserID = user
	ip := [4]byte(fixed[3:7])
	if ip[0] == 0 && ip[1] == 0 && ip[2] == 0 && ip[3] != 0 {
		host, err := rd.cstring("host name")
		if err != nil {
			return nil, err
		}
		if err := checkName(Version4, host); err != nil {
			return nil, err
		}
		req.Host = host
	} else {
		req.Host = netip.AddrFrom4(ip).String()
	}
	return req, nil
}

// negotiate5 reads a SOCKS5 method offer, whose version byte was read, and
// answers it (RFC 1928 section 3):
//
//	client: NMETHODS (1) METHODS (NMETHODS)
//	server: VER (1) METHOD (1)
func negotiate5(rd *reader, w io.Writer) error {
	n, err := rd.byte()
	if err != nil {
		return err
	}
	methods := make([]byte, n)
	if err := rd.full(methods); err != nil {
		return err
	}
	choice := byte(methodNoAcceptable)
	for _, m := range methods {
		if m == methodNoAuth {
			choice = methodNoAuth
			break
		}
	}
	if _, err := w.Write([]byte{Version5, choice}); err != nil {
		return fmt.Errorf("sshfwd: socks: writing method selection: %w", err)
	}
	if choice == methodNoAcceptable {
		return &RequestError{Err: fmt.Errorf("%w: client offered %x", ErrNoAcceptableMethod, methods)}
	}
	return nil
}

// readRequest5 reads a SOCKS5 request (RFC 1928 section 4):
//
//	VER (1) CMD (1) RSV (1) ATYP (1) DST.ADDR (variable) DST.PORT (2)
func readRequest5(rd *reader) (*Request, error) {
	var head [4]byte
	if err := rd.full(head[:]); err != nil {
		return nil, err
	}
	if head[0] != Version5 {
		return nil, malformed(Version5, "request version 0x%02x after SOCKS5 negotiation", head[0])
	}
	if head[2] != 0 {
		return nil, malformed(Version5, "reserved byte 0x%02x is not zero", head[2])
	}
	req := &Request{Version: Version5, Command: Command(head[1])}
	switch head[3] {
	case atypIPv4:
		var ip [4]byte
		if err := rd.full(ip[:]); err != nil {
			return nil, err
		}
		req.Host = netip.AddrFrom4(ip).String()
	case atypIPv6:
		var ip [16]byte
		if err := rd.full(ip[:]); err != nil {
			return nil, err
		}
		req.Host = netip.AddrFrom16(ip).String()
	case atypDomain:
		n, err := rd.byte()
		if err != nil {
			return nil, err
		}
		name := make([]byte, n)
		if err := rd.full(name); err != nil {
			return nil, err
		}
		if err := checkName(Version5, string(name)); err != nil {
			return nil, err
		}
		req.Host = string(name)
	default:
		return nil, &RequestError{
			Version: Version5,
			Reply:   AddressTypeNotSupported,
			Err:     fmt.Errorf("%w: address type 0x%02x", ErrMalformed, head[3]),
		}
	}
	var port [2]byte
	if err := rd.full(port[:]); err != nil {
		return nil, err
	}
	req.Port = int(binary.BigEndian.Uint16(port[:]))
	return req, nil
}

// checkName rejects host names that no resolver would accept and that could
// mislead whoever logs them: empty names, names that are not UTF-8, and names
// with spaces or control characters (NUL among them).
func checkName(version int, name string) error {
	if name == "" {
		return malformed(version, "empty host name")
	}
	if !utf8.ValidString(name) {
		return malformed(version, "host name %q is not UTF-8", name)
	}
	for _, c := range []byte(name) {
		if c <= ' ' || c == 0x7F {
			return malformed(version, "host name %q contains byte 0x%02x", name, c)
		}
	}
	return nil
}

// malformed returns the error for a request that breaks the protocol after
// its version is known, so that the client gets a general failure.
func malformed(version int, format string, args ...any) *RequestError {
	return &RequestError{
		Version: version,
		Reply:   GeneralFailure,
		Err:     fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...)),
	}
}

// reader reads the handshake in exact amounts, never ahead: no buffering, so
// the bytes after the handshake stay in the underlying reader.
type reader struct {
	r   io.Reader
	n   int // bytes read so far
	one [1]byte
	str [maxString + 1]byte // room for the longest NUL-terminated string and its NUL
}

// full fills p.
func (rd *reader) full(p []byte) error {
	n, err := io.ReadFull(rd.r, p)
	rd.n += n
	if err == nil {
		return nil
	}
	if err == io.EOF && rd.n > 0 {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("sshfwd: socks: reading request: %w", err)
}

func (rd *reader) byte() (byte, error) {
	err := rd.full(rd.one[:])
	return rd.one[0], err
}

// cstring reads a NUL-terminated string of at most maxString bytes, one
// byte at a time since the NUL could be anywhere.
func (rd *reader) cstring(what string) (string, error) {
	for i := range rd.str {
		c, err := rd.byte()
		if err != nil {
			return "", err
		}
		if c == 0 {
			return string(rd.str[:i]), nil
		}
		rd.str[i] = c
	}
	return "", malformed(Version4, "%s longer than %d bytes", what, maxString)
}
