// Package sshfwd brings libssh's channel-forwarding API to Go, on top of
// golang.org/x/crypto/ssh: direct forwarding (ssh -L), reverse forwarding
// (ssh -R), Unix-socket forwarding (OpenSSH's streamlocal extensions) and
// X11 forwarding (ssh -X), for clients and for servers. Package sshtest
// beside it is an in-process SSH server for tests.
//
// A Session is the forwarding state of one SSH connection. Channels it opens
// or accepts are *Channel values: complete net.Conns with working deadlines
// and CloseWrite, which sends EOF while reading goes on. To honour a write
// deadline while x/crypto waits for the peer's window, Write copies into a
// send buffer, as a write to a TCP socket does; io.Copy avoids that copy
// through the Channel's ReadFrom and WriteTo.
//
//	s, err := sshfwd.Dial(ctx, "tcp", "example.com:22", config)
//	ch, err := s.OpenForward(ctx, "www.google.com", 80, "localhost", 5555)
//
// Every libssh call of the tutorial's chapter 7 has one Go twin:
//
//	libssh                                    sshfwd
//	ssh_new + ssh_connect + auth              Dial (or ssh.Dial, then New)
//	ssh_channel_open_forward                  Session.OpenForward
//	ssh_channel_open_forward_unix             Session.OpenForwardUnix
//	ssh_channel_listen_forward                Session.ListenForward
//	ssh_channel_accept_forward,
//	ssh_channel_open_forward_port             Session.AcceptForward
//	ssh_channel_cancel_forward                Session.CancelForward
//	ssh_channel_request_x11                   Session.RequestX11
//	ssh_channel_accept_x11                    Session.AcceptX11
//	ssh_channel_open_reverse_forward          OpenReverseForward
//	ssh_channel_open_x11                      OpenX11
//	ssh_channel_read / _write                 Channel.Read / Channel.Write
//	ssh_channel_send_eof / ssh_channel_free   Channel.CloseWrite / Channel.Close
//	timeout_ms arguments                      a context.Context
//	SSH_OK / SSH_ERROR / ssh_get_error        error; refusals wrap *ssh.OpenChannelError
//	ssh_options_parse_config                  sshconfig.Resolve
//	ssh_userauth_publickey_auto               sshconfig.Dial (agent, identity files, certificates)
//	ssh_session_is_known_server               sshconfig.HostKeys.Check
//	ssh_session_update_known_hosts            sshconfig.HostKeys (StrictAcceptNew, or StrictAsk)
//	ssh_userauth_kbdint                       sshconfig.Options.KeyboardInteractiveCallback
//
// Beyond libssh, the helpers do what OpenSSH's client does:
//
//	OpenSSH                                   sshfwd
//	ssh -L                                    Session.ForwardLocal, Session.ServeLocal
//	ssh -R                                    Session.ForwardRemote, Session.ServeRemote
//	ssh -R [addr:]port (SOCKS)                Session.ServeRemoteSOCKS
//	ssh -D                                    Session.ServeSOCKS, Session.ServeDynamic
//	ssh -J                                    Session.DialSSH
//	ssh -Y (trusted X11 forwarding)           Session.ForwardX11
//	ServerAliveInterval, ServerAliveCountMax  Session.KeepAlive
//	autossh                                   Supervisor
//
// The Serve variants take a bound on the connections forwarded at once.
// ForwardX11 is trusted forwarding, as ssh -Y: the server's X clients get
// the display's real cookie and with it every power of a local X client.
// DialContext, Listen and ListenContext give standard net types for tcp and
// unix. Package sshconfig connects as OpenSSH's client does: ssh_config,
// known_hosts, keys, agent, ProxyJump, ProxyCommand and ControlMaster.
//
// Every call that waits on the server takes a context.Context, or has a
// twin that does (RequestX11Context, ListenContext). Whatever a server
// sends, a Session keeps its memory, goroutines and waits bounded: see
// SECURITY.md for each bound.
//
// A Session claims the incoming channel types forwarded-tcpip,
// forwarded-streamlocal@openssh.com and x11 on its client and routes each
// channel to the Listener or AcceptForward queue it belongs to; channels for
// forwards nobody asked for are refused. Queues are bounded, so a listener
// that is never accepted on cannot stall the connection. Closing a Session
// closes its Channels and waits for every goroutine it started.
package sshfwd
