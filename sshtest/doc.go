// Package sshtest provides an in-process SSH server for tests, in the manner
// of net/http/httptest: NewServer starts a server on a loopback port, and
// ClientConfig returns a ready client configuration for it, with the host key
// pinned.
//
// The server speaks enough SSH for the tests of SSH clients and tunnels,
// with the OpenSSH client as well as with x/crypto/ssh clients:
//
//   - direct-tcpip and direct-streamlocal@openssh.com channels (ssh -L):
//     the server connects and relays, passing half-closes on;
//   - tcpip-forward and streamlocal-forward@openssh.com requests and their
//     cancels (ssh -R): the server listens and opens forwarded-tcpip or
//     forwarded-streamlocal@openssh.com channels back for each connection;
//   - session channels: exec runs the command with /bin/sh -c and shell
//     runs /bin/sh, with the channel as standard input and output and
//     extended data as standard error, or on a pseudo-terminal after a
//     pty-req (ssh -t; window-change resizes it); env requests set
//     variables that AcceptEnv allows; exit-status (or exit-signal) is sent
//     when the command ends. On Unix the command gets a process group of its
//     own, killed when the channel or the connection closes.
//   - subsystem requests, served by the handlers of Config.Subsystems; the
//     default serves "sftp" with github.com/pkg/sftp (ServeSFTP);
//   - x11-req on a session (ssh -X), as sshd with X11UseLocalhost yes
//     answers it: a display from :10 up on loopback, the client's cookie in
//     an Xauthority file of the session's own, DISPLAY and XAUTHORITY set
//     for its command, and an x11 channel to the client for each X client;
//   - auth-agent-req@openssh.com (ssh -A): a socket named by SSH_AUTH_SOCK
//     in the command's environment, each connection to which reaches the
//     client's agent.
//
// Clients authenticate with public keys (the client key and AuthorizedKeys
// for any user, UserKeys per user), user certificates signed by one of
// TrustedUserCAKeys, passwords, or keyboard-interactive questions.
//
// # Safe by default
//
// The server applies sshd's limits by default, each of which Config can
// change: for the numbers, 0 takes the default and a negative value turns
// the limit off; NoStartupsLimit turns MaxStartups off, and an empty
// AcceptEnv accepts no variable.
//
//	Config field            default      OpenSSH (sshd_config)
//	LoginGraceTime          2m           LoginGraceTime 120
//	MaxStartups             10:30:100    MaxStartups 10:30:100
//	MaxSessions             10           MaxSessions 10
//	MaxChannels             256          none (sshd's hard limit: 16384)
//	MaxForwards             64           none
//	AcceptEnv               LANG LC_*    AcceptEnv LANG LC_* (Debian's sshd_config)
//	MaxEnv                  16           none (sshd ignores env past 128 variables)
//	MaxEnvSize              4096 bytes   none
//	PermitPrivilegedPorts   false        none (only root may listen below 1024)
//	StreamLocalBindUnlink   false        StreamLocalBindUnlink no
//	GatewayPorts            false        GatewayPorts no (true: clientspecified)
//	DisableExec             false        none (ForceCommand comes closest)
//	DisableX11              false        X11Forwarding yes
//	DisableAgentForwarding  false        AllowAgentForwarding yes
//	PermitOpenCallback      permit all   PermitOpen any
//	PermitListenCallback    permit all   PermitListen any
//
// Over a limit, a channel open is refused with ResourceShortage and a
// request with failure, and the connection goes on working; a connection
// over MaxStartups is told "Exceeded MaxStartups" and closed, as sshd does,
// and one that has not authenticated within LoginGraceTime is closed.
//
// The Permit callbacks get the connection's metadata (user, addresses) with
// the request. PermitOpenCallback is asked about the address the server is
// about to connect to, after the host is resolved, so a rule on 127.0.0.1:P
// also refuses "localhost", "::ffff:127.0.0.1" and "0.0.0.0" for port P.
// Socket paths must be absolute and are cleaned before any callback sees
// them, so "/tmp/allowed/../x.sock" is "/tmp/x.sock". A streamlocal-forward
// never takes over a path another forward holds or a socket that accepts
// connections.
//
// # For tests
//
// Beyond what httptest offers (CloseClientConnections), Conn.Freeze stops a
// connection dead with its TCP connection left open, as a broken network
// would, so that keep-alive and reconnect logic can be tested; Resume lets
// it carry on. Config.WrapConn with Delay and Throttle gives every
// connection latency and a bandwidth cap, to test on a slow link. Events
// (Config.EventCallback) report in order every connection, authentication,
// channel open, request and refusal, so that a test can assert what its
// program asked the server for.
package sshtest
