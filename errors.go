package sshfwd

import (
	"errors"
	"fmt"
	"net"
	"strings"
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

// prefix opens every error of this module's own, once.
const prefix = "sshfwd: "

// wrapped is an error with context in front, saying "sshfwd:" once however
// deep the wrapping: the errors of this module all begin with it, so the
// wrapped message is given without its own, and so are the lines of errors
// joined with errors.Join.
type wrapped struct {
	context string
	err     error
}

func (e *wrapped) Error() string {
	msg := strings.ReplaceAll(e.err.Error(), "\n"+prefix, "\n")
	return prefix + e.context + ": " + strings.TrimPrefix(msg, prefix)
}

func (e *wrapped) Unwrap() error { return e.err }

// unprefixed is err's message without the "sshfwd: " it begins with, for
// a log line that says it once, or not at all.
func unprefixed(err error) string {
	return strings.TrimPrefix(err.Error(), prefix)
}

// wrap puts context in front of err, which errors.Is and errors.As still
// reach.
func wrap(context string, err error) error {
	return &wrapped{context: context, err: err}
}

// wrapf is wrap with a formatted context.
func wrapf(err error, format string, args ...any) error {
	return wrap(fmt.Sprintf(format, args...), err)
}
