package sshfwd

import (
	"errors"
	"net"
)

// Sentinel errors. Errors from the peer keep their own types: a refused
// channel wraps *ssh.OpenChannelError, reachable with errors.As.
var (
	// ErrClaimed is returned by New when another handler already claimed
	// one of the channel types a Session routes (for example after
	// ssh.Client.Listen was called on the same client).
	ErrClaimed = errors.New("sshfwd: channel type already claimed on this client")

	// ErrSessionClosed is returned by calls on a Session after Close, or
	// after its connection ended. It matches net.ErrClosed.
	ErrSessionClosed = closedError("sshfwd: session closed")

	// ErrWriteAfterEOF is returned by Write after CloseWrite.
	ErrWriteAfterEOF = errors.New("sshfwd: write after CloseWrite")

	// ErrRequestDenied is returned when the server answers a global or
	// channel request with failure.
	ErrRequestDenied = errors.New("sshfwd: request denied by peer")

	// ErrBadAddress is wrapped by every error about a host, port, path or
	// network that cannot be sent.
	ErrBadAddress = errors.New("sshfwd: bad address")
)

// closedError is an error that also matches net.ErrClosed.
type closedError string

func (e closedError) Error() string { return string(e) }

func (e closedError) Is(target error) bool { return target == net.ErrClosed }
