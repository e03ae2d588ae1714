// Package sshconfig connects the way OpenSSH's ssh does, for programs that
// use sshfwd: it takes a destination as ssh takes it ("host", an alias of
// ~/.ssh/config, "user@host:port", "ssh://user@host:port"), reads the
// client configuration (ssh_config with Host and Match blocks and Include),
// checks host keys against the known_hosts files (hashed entries,
// @cert-authority and @revoked lines), logs in in ssh's order (the agent,
// identity files with their certificates, passphrases, keyboard-interactive
// and password through callbacks), goes through ProxyJump hosts or a
// ProxyCommand, and rides a running OpenSSH ControlMaster when ControlPath
// names one. Through a master, remote forwards are asked of the master
// itself (PROTOCOL.mux's MUX_C_OPEN_FWD), since it does not relay the answer
// to a client's tcpip-forward.
//
//	s, err := sshconfig.Dial(ctx, "lab", nil)
//
// It is libssh's ssh_options_parse_config, ssh_userauth_publickey_auto,
// ssh_session_is_known_server, ssh_session_update_known_hosts and
// ssh_userauth_kbdint. Every path it reads can be moved (Options.Home,
// Options.SystemDir, Options.ConfigFile), so tests never touch the user's
// files.
package sshconfig
