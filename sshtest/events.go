package sshtest

import (
	"errors"
	"fmt"
	"strings"
)

// Errors that refusals wrap, so that tests can tell a policy from a limit
// with errors.Is on Event.Err.
var (
	// ErrNotPermitted is wrapped by refusals that a Permit callback or a
	// Disable setting decided.
	ErrNotPermitted = errors.New("sshtest: not permitted")

	// ErrLimit is wrapped by refusals and disconnections that a limit
	// (LoginGraceTime, MaxStartups, MaxSessions...) decided.
	ErrLimit = errors.New("sshtest: limit reached")
)

// EventKind says what an Event reports.
type EventKind int

// The kinds of Event.
const (
	// EventConnect: a TCP connection was accepted. Err is set if
	// MaxStartups dropped it.
	EventConnect EventKind = iota + 1

	// EventAuth: an authentication attempt. Type is the method ("none",
	// "publickey", "password", "keyboard-interactive"), User the user
	// name the client gave; Err is nil if the attempt succeeded.
	EventAuth

	// EventChannelOpen: a channel open. Type is the channel type, Target
	// the host:port or socket path it names, Origin the originator's
	// host:port; ByServer is true for the channels the server opens to the
	// client (forwarded-tcpip, forwarded-streamlocal@openssh.com, x11,
	// auth-agent@openssh.com).
	EventChannelOpen

	// EventGlobalRequest: a global request. Type is its name, Target the
	// address or socket path of a forward or its cancel.
	EventGlobalRequest

	// EventSessionRequest: a request on a session channel. Type is its
	// name; Target is the command of exec, the subsystem of subsystem,
	// the variable's name of env and the terminal of pty-req.
	EventSessionRequest

	// EventDisconnect: a connection MaxStartups let in ended. Err says
	// why when the server ended it before authentication (LoginGraceTime,
	// or the handshake failing).
	EventDisconnect
)

var eventKindNames = map[EventKind]string{
	EventConnect:        "connect",
	EventAuth:           "auth",
	EventChannelOpen:    "channel-open",
	EventGlobalRequest:  "global-request",
	EventSessionRequest: "session-request",
	EventDisconnect:     "disconnect",
}

func (k EventKind) String() string {
	if name, ok := eventKindNames[k]; ok {
		return name
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is something a client did to the Server, or the Server's answer.
// A refusal is an Event whose Err is set.
type Event struct {
	Kind     EventKind
	Conn     *Conn  // the connection it happened on
	User     string // the user name the client gave, once it gave one
	Type     string
	Target   string
	Origin   string
	ByServer bool
	Err      error
}

// String describes the event on one line, for logs and test failures.
func (e Event) String() string {
	var b strings.Builder
	if e.Conn != nil {
		fmt.Fprintf(&b, "%s ", e.Conn.RemoteAddr())
	}
	b.WriteString(e.Kind.String())
	if e.ByServer {
		b.WriteString(" by server")
	}
	for _, f := range []struct{ name, value string }{
		{"user", e.User}, {"type", e.Type}, {"target", e.Target}, {"origin", e.Origin},
	} {
		if f.value != "" {
			fmt.Fprintf(&b, " %s=%q", f.name, f.value)
		}
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

// emit reports e to EventCallback and Logf, one event at a time.
func (s *Server) emit(e Event) {
	s.eventMu.Lock()
	defer s.eventMu.Unlock()
	if s.Config.EventCallback != nil {
		s.Config.EventCallback(e)
	}
	s.logf("sshtest: %v", e)
}
