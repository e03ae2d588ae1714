package wire

// Session channel requests (RFC 4254 6) and OpenSSH's agent forwarding
// (OpenSSH PROTOCOL.agent), as sshtest serves them.
const (
	Shell        = "shell"
	PtyReq       = "pty-req"
	WindowChange = "window-change"
	Subsystem    = "subsystem"
	ExitSignal   = "exit-signal"
	AuthAgentReq = "auth-agent-req@openssh.com"
	AuthAgent    = "auth-agent@openssh.com"
)

// PtyReqMsg is the payload of the pty-req channel request (RFC 4254 6.2):
// the terminal's name and size, in characters and in pixels, and its
// encoded modes.
type PtyReqMsg struct {
	Term    string
	Columns uint32
	Rows    uint32
	Width   uint32
	Height  uint32
	Modes   string
}

// WindowChangeMsg is the payload of the window-change channel request
// (RFC 4254 6.7).
type WindowChangeMsg struct {
	Columns uint32
	Rows    uint32
	Width   uint32
	Height  uint32
}

// SubsystemMsg is the payload of the subsystem channel request (RFC 4254
// 6.5).
type SubsystemMsg struct {
	Name string
}

// ExitSignalMsg is the payload of the exit-signal channel request (RFC 4254
// 6.10).
type ExitSignalMsg struct {
	Signal     string
	CoreDumped bool
	Message    string
	Lang       string
}
