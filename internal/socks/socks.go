// Package socks speaks the server side of the SOCKS protocols that ssh -D
// accepts: SOCKS4, its 4a extension for host names, and SOCKS5 (RFC 1928)
// without authentication. It reads a client's request and writes replies;
// what to connect to, and whether to, is left to the caller.
//
// ReadRequest consumes exactly the bytes of the handshake and nothing after
// them, so the stream can be relayed as it is once the reply is written. It
// never resolves a host name: a name arrives as the client sent it, and an IP
// address as its text form.
package socks

import (
	"errors"
	"fmt"
)

// Protocol versions, as the first byte of a request carries them.
const (
	Version4 = 4 // SOCKS4 and SOCKS4a
	Version5 = 5 // RFC 1928
)

// Command is what a client asks the server to do (SOCKS4 CD, RFC 1928 CMD).
type Command byte

// Commands defined by the protocols. SOCKS4 has only the first two.
const (
	Connect      Command = 0x01
	Bind         Command = 0x02
	UDPAssociate Command = 0x03
)

func (c Command) String() string {
	switch c {
	case Connect:
		return "CONNECT"
	case Bind:
		return "BIND"
	case UDPAssociate:
		return "UDP ASSOCIATE"
	}
	return fmt.Sprintf("command 0x%02x", byte(c))
}

// Request is what a client asked for, once the handshake is read.
type Request struct {
	// Version is Version4 (for SOCKS4a too) or Version5: the version the
	// reply must be written in.
	Version int
	// Command is the command as sent, which may be one the caller does not
	// serve: it answers those with CommandNotSupported.
	Command Command
	// Host is an IPv4 or IPv6 address in text form, or a host name exactly
	// as the client sent it (SOCKS4a, or SOCKS5 address type 0x03), left for
	// the far end to resolve.
	Host string
	// Port is the destination port, 0..65535.
	Port int
	// UserID is the SOCKS4 USERID field; SOCKS5 without authentication has
	// no user.
	UserID string
}

// Reply is a SOCKS5 reply code (RFC 1928 section 6). A SOCKS4 reply has
// only "granted" and "rejected": Succeeded is sent as granted (0x5A) and
// every other code as rejected (0x5B).
type Reply byte

// Reply codes of RFC 1928 section 6.
const (
	Succeeded               Reply = 0x00
	GeneralFailure          Reply = 0x01
	NotAllowed              Reply = 0x02 // connection not allowed by ruleset
	NetworkUnreachable      Reply = 0x03
	HostUnreachable         Reply = 0x04
	ConnectionRefused       Reply = 0x05
	TTLExpired              Reply = 0x06
	CommandNotSupported     Reply = 0x07
	AddressTypeNotSupported Reply = 0x08
)

// SOCKS4 reply codes (the CD field of a reply).
const (
	Granted4  = 0x5A
	Rejected4 = 0x5B
)

func (r Reply) String() string {
	switch r {
	case Succeeded:
		return "succeeded"
	case GeneralFailure:
		return "general SOCKS server failure"
	case NotAllowed:
		return "connection not allowed by ruleset"
	case NetworkUnreachable:
		return "network unreachable"
	case HostUnreachable:
		return "host unreachable"
	case ConnectionRefused:
		return "connection refused"
	case TTLExpired:
		return "TTL expired"
	case CommandNotSupported:
		return "command not supported"
	case AddressTypeNotSupported:
		return "address type not supported"
	}
	return fmt.Sprintf("reply 0x%02x", byte(r))
}

// Errors wrapped by the errors of ReadRequest, for errors.Is.
var (
	// ErrVersion means the first byte is neither 4 nor 5: the client
	// speaks something else and cannot be answered.
	ErrVersion = errors.New("sshfwd: socks: unsupported protocol version")

	// ErrNoAcceptableMethod means a SOCKS5 client did not offer "no
	// authentication required"; ReadRequest has answered 0xFF, after which
	// RFC 1928 has the client close the connection.
	ErrNoAcceptableMethod = errors.New("sshfwd: socks: no acceptable authentication method")

	// ErrMalformed means the handshake broke the protocol.
	ErrMalformed = errors.New("sshfwd: socks: malformed request")
)

// RequestError is a request that ReadRequest read but cannot return. When
// Version is not zero the client waits for an answer, and should get Reply,
// written with WriteReply in that version, before the connection is closed.
type RequestError struct {
	Version int
	Reply   Reply
	Err     error // ErrMalformed, ErrVersion or ErrNoAcceptableMethod, wrapped with details
}

func (e *RequestError) Error() string { return e.Err.Error() }

func (e *RequestError) Unwrap() error { return e.Err }
