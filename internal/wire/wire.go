// Package wire holds the SSH payloads of RFC 4254 sections 6 and 7 and of
// OpenSSH's PROTOCOL file (streamlocal, keepalive) that sshfwd and sshtest
// exchange. Every type marshals with ssh.Marshal; every Parse function checks
// the whole payload and returns an error, never panics, on malformed input.
package wire

import (
	"fmt"

	"golang.org/x/crypto/ssh"
)

// Channel types and global request names.
const (
	DirectTCPIP              = "direct-tcpip"
	ForwardedTCPIP           = "forwarded-tcpip"
	DirectStreamLocal        = "direct-streamlocal@openssh.com"
	ForwardedStreamLocal     = "forwarded-streamlocal@openssh.com"
	X11                      = "x11"
	Session                  = "session"
	TCPIPForward             = "tcpip-forward"
	CancelTCPIPForward       = "cancel-tcpip-forward"
	StreamLocalForward       = "streamlocal-forward@openssh.com"
	CancelStreamLocalForward = "cancel-streamlocal-forward@openssh.com"
	X11Req                   = "x11-req"
	Exec                     = "exec"
	Env                      = "env"
	ExitStatus               = "exit-status"
	KeepAlive                = "keepalive@openssh.com"
)

// TCPIP is the extra data of a direct-tcpip (RFC 4254 7.2) or forwarded-tcpip
// channel open: the address to connect to (or that was connected) and the
// originator of the connection.
type TCPIP struct {
	Host       string
	Port       uint32
	OriginHost string
	OriginPort uint32
}

// DirectStreamLocalMsg is the extra data of direct-streamlocal@openssh.com
// (OpenSSH PROTOCOL 2.4).
type DirectStreamLocalMsg struct {
	SocketPath string
	Reserved0  string
	Reserved1  uint32
}

// ForwardedStreamLocalMsg is the extra data of
// forwarded-streamlocal@openssh.com (OpenSSH PROTOCOL 2.4).
type ForwardedStreamLocalMsg struct {
	SocketPath string
	Reserved0  string
}

// TCPIPForwardMsg is the payload of tcpip-forward and cancel-tcpip-forward
// (RFC 4254 7.1).
type TCPIPForwardMsg struct {
	Addr string
	Port uint32
}

// TCPIPForwardReply is the reply to a tcpip-forward request for port 0.
type TCPIPForwardReply struct {
	Port uint32
}

// StreamLocalForwardMsg is the payload of streamlocal-forward@openssh.com
// and its cancel.
type StreamLocalForwardMsg struct {
	SocketPath string
}

// X11ReqMsg is the payload of the x11-req channel request (RFC 4254 6.3.1).
type X11ReqMsg struct {
	SingleConnection bool
	AuthProtocol     string
	AuthCookie       string
	ScreenNumber     uint32
}

// X11OpenMsg is the extra data of an x11 channel open (RFC 4254 6.3.2).
type X11OpenMsg struct {
	OriginAddr string
	OriginPort uint32
}

// ExecMsg is the payload of the exec channel request (RFC 4254 6.5).
type ExecMsg struct {
	Command string
}

// EnvMsg is the payload of the env channel request (RFC 4254 6.4).
type EnvMsg struct {
	Name  string
	Value string
}

// ExitStatusMsg is the payload of the exit-status channel request (RFC 4254 6.10).
type ExitStatusMsg struct {
	Status uint32
}

// Parse decodes payload into msg, a pointer to one of this package's
// types, naming what failed to parse in the error.
func Parse(what string, payload []byte, msg any) error {
	if err := ssh.Unmarshal(payload, msg); err != nil {
		return fmt.Errorf("malformed %s payload: %w", what, err)
	}
	return nil
}
