package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/sshfwd/sshfwd/sshconfig"
)

// flagSpec is one option of the command line: its letter, the name of its
// argument ("" for a switch) and what it does, as -h and the README's
// table say it.
type flagSpec struct {
	letter byte
	arg    string
	means  string
}

// flagSpecs are the options sshfwd takes, in the order of ssh(1)'s manual
// page: digits, then letters with capitals first.
var flagSpecs = []flagSpec{
	{'4', "", "Use IPv4 addresses only (AddressFamily inet), for the connection and for local listeners."},
	{'6', "", "Use IPv6 addresses only (AddressFamily inet6), for the connection and for local listeners."},
	{'A', "", "Forward the agent (ForwardAgent yes): accepted; sshfwd opens no session, as ssh -N, so there is none to forward it on."},
	{'C', "", "Compress (Compression yes): accepted and a no-op, as golang.org/x/crypto/ssh has no compression; -v says so."},
	{'D', "[bind_address:]port", "Local SOCKS4 and SOCKS5 proxy whose connections leave through the server (dynamic forward)."},
	{'E', "log_file", "Append log lines to log_file instead of writing them to stderr."},
	{'F', "configfile", "Read configfile instead of ~/.ssh/config and /etc/ssh/ssh_config; none reads no file."},
	{'f', "", "Go to the background once the connection and every forward are up."},
	{'G', "", "Print the configuration resolved for destination, as ssh -G does, and exit."},
	{'g', "", "Let other hosts connect to local forwards (GatewayPorts yes): they listen on every address."},
	{'h', "", "Print this help and exit."},
	{'i', "identity_file", "Offer this private key first (IdentityFile); may be given more than once."},
	{'J', "destination", "Connect through these jump hosts, separated by commas (ProxyJump); none for none."},
	{'L', "address", "Local forward: [bind_address:]port:host:hostport, [bind_address:]port:remote_socket, local_socket:host:hostport or local_socket:remote_socket."},
	{'l', "login_name", "Log in as login_name (User)."},
	{'M', "", "Be a ControlMaster: answer ssh -O and sshfwd -O (check, forward, cancel, exit) on the -S socket (ControlPath)."},
	{'N', "", "Run no remote command: accepted; sshfwd never runs one."},
	{'n', "", "Read stdin from /dev/null: accepted; only -W reads stdin."},
	{'O', "ctl_cmd", "Ask the master on the -S socket (ControlPath): check, forward (the -L, -R and -D given), cancel (them) or exit."},
	{'o', "option", "Any ssh_config option, as Keyword=value; those sshfwd acts on follow, the others are accepted and -v lists them."},
	{'p', "port", "Connect to this port (Port)."},
	{'q', "", "Quiet: no warnings, diagnostics or errors past those of the command line."},
	{'R', "address", "Remote forward: [bind_address:]port:host:hostport, [bind_address:]port:local_socket, remote_socket:host:hostport, remote_socket:local_socket, or [bind_address:]port for a SOCKS proxy on the server's side; port 0 lets the server choose, and the port is printed."},
	{'S', "ctl_path", "The ControlMaster socket (ControlPath): ride the OpenSSH or sshfwd master there; with -M, listen there; with -O, ask it; none for none."},
	{'T', "", "Allocate no terminal: accepted; sshfwd never asks for one."},
	{'V', "", "Print the version and exit."},
	{'v', "", "Verbose: the connection, the authentication method, every forward set up, each forwarded connection and the options not acted on; -vv adds each connection's end."},
	{'W', "host:port", "Forward stdin and stdout to host:port (or a socket path) through the server, as ssh's ProxyCommand does; exit when that connection ends."},
}

// optionMeanings says what each ssh_config option sshfwd reads does, as
// ssh_config(5) says it, with what sshfwd does differently.
var optionMeanings = map[string]string{
	"AddressFamily":                   "any, inet or inet6: the address family to connect with.",
	"BatchMode":                       "yes: never ask for a passphrase, a password or about an unknown host key.",
	"CertificateFile":                 "A certificate to offer with the identity it certifies.",
	"ChallengeResponseAuthentication": "The former name of KbdInteractiveAuthentication.",
	"Ciphers":                         "The ciphers to offer, in order; a list beginning with +, - or ^ edits the default one.",
	"ConnectionAttempts":              "How many times to try connecting, a second apart, before giving up.",
	"ConnectTimeout":                  "Seconds to wait for the connection and the SSH handshake.",
	"ControlPath":                     "The ControlMaster socket to ride, or to listen on with -M; none for none.",
	"DynamicForward":                  "A -D forward: [bind_address:]port.",
	"ExitOnForwardFailure":            "yes: exit when a forward cannot be set up.",
	"ForwardAgent":                    "Read; no effect, as sshfwd opens no session (ssh -N).",
	"ForwardX11":                      "Read; no effect, as sshfwd opens no session (ssh -N).",
	"ForwardX11Trusted":               "Read; no effect, as sshfwd opens no session (ssh -N).",
	"GatewayPorts":                    "yes: local forwards listen on every address.",
	"GlobalKnownHostsFile":            "The system's known_hosts files; none for none.",
	"HashKnownHosts":                  "yes: hash the names of the hosts added to known_hosts.",
	"HostKeyAlgorithms":               "The host key algorithms to accept, in order.",
	"HostKeyAlias":                    "The name to look the host key up under in known_hosts.",
	"HostName":                        "The real host name or address to connect to; %h is the name given.",
	"IdentitiesOnly":                  "yes: offer only the identity files' keys, not every key of the agent.",
	"IdentityAgent":                   "The agent's socket: SSH_AUTH_SOCK unless given; none for none.",
	"IdentityFile":                    "A private key to offer; ~/.ssh/id_* when none is given.",
	"IgnoreUnknown":                   "Patterns of unknown options to ignore rather than refuse.",
	"KbdInteractiveAuthentication":    "yes: log in with keyboard-interactive, asking on the terminal.",
	"KexAlgorithms":                   "The key exchange algorithms to offer, in order.",
	"LocalForward":                    "A -L forward: [bind_address:]port host:hostport, or with socket paths.",
	"MACs":                            "The MAC algorithms to offer, in order.",
	"NumberOfPasswordPrompts":         "How many times to ask for a password or a passphrase.",
	"PasswordAuthentication":          "yes: log in with a password, asking on the terminal.",
	"Port":                            "The port to connect to.",
	"ProxyCommand":                    "A command whose stdin and stdout carry the connection; %h and %p are the host and the port.",
	"ProxyJump":                       "Jump hosts to connect through, as -J.",
	"PubkeyAuthentication":            "yes: log in with keys, the agent's and the identity files'.",
	"RemoteForward":                   "A -R forward: [bind_address:]port host:hostport, or with socket paths.",
	"ServerAliveCountMax":             "How many keepalives may go unanswered before the connection is taken for lost.",
	"ServerAliveInterval":             "Seconds between keepalives; sshfwd sends one every 30 s when it is not given.",
	"StrictHostKeyChecking":           "yes, accept-new, no or ask: what to do with a host key known_hosts does not list.",
	"User":                            "The user to log in as.",
	"UserKnownHostsFile":              "The user's known_hosts files; ~/.ssh/known_hosts by default.",
}

// takesArg reports whether option letter takes an argument, and whether
// sshfwd knows it at all.
func takesArg(letter byte) (arg, known bool) {
	for _, f := range flagSpecs {
		if f.letter == letter {
			return f.arg != "", true
		}
	}
	return false, false
}

// helpRow is one row of the option table that -h prints and the README
// shows: the option as written, and what it does.
type helpRow struct {
	option string
	means  string
}

// helpRows returns the table of the options: the flags, then the ssh_config
// options sshfwd acts on, as -o takes them.
func helpRows() []helpRow {
	var rows []helpRow
	for _, f := range flagSpecs {
		rows = append(rows, helpRow{strings.TrimSpace("-" + string(f.letter) + " " + f.arg), f.means})
	}
	for _, k := range sshconfig.Keywords() {
		rows = append(rows, helpRow{"-o " + k, optionMeanings[k]})
	}
	return rows
}

// synopsis is the usage line ssh prints for a command line it cannot
// take, in the same form.
func synopsis() string {
	var switches []byte
	var withArgs []string
	for _, f := range flagSpecs {
		if f.arg == "" {
			switches = append(switches, f.letter)
		} else {
			withArgs = append(withArgs, fmt.Sprintf("[-%c %s]", f.letter, f.arg))
		}
	}
	slices.SortStableFunc(switches, func(a, b byte) int {
		return strings.Compare(strings.ToLower(string(a)), strings.ToLower(string(b)))
	})
	var b strings.Builder
	line := "usage: sshfwd [-" + string(switches) + "]"
	for _, w := range append(withArgs, "destination") {
		if len(line)+1+len(w) > 78 {
			b.WriteString(line + "\n")
			line = strings.Repeat(" ", len("usage: sshfwd"))
		}
		line += " " + w
	}
	b.WriteString(line)
	return b.String()
}

// help is what -h prints: the synopsis, what the destination may be, and
// the table of the options.
func help() string {
	var b strings.Builder
	b.WriteString(synopsis())
	b.WriteString(`

sshfwd keeps the forwards of an ssh -N command line up, reconnecting
whenever the connection is lost. destination is [user@]host[:port],
ssh://[user@]host[:port] or a Host of the configuration, which is read as
ssh reads it.

`)
	for _, r := range helpRows() {
		b.WriteString("  " + r.option + "\n")
		b.WriteString(wrap(r.means, "        ", 78))
	}
	return b.String()
}

// wrap breaks s into lines of at most width columns, each beginning with
// indent.
func wrap(s, indent string, width int) string {
	var b strings.Builder
	line := indent
	for _, w := range strings.Fields(s) {
		if line != indent && len(line)+1+len(w) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if line != indent {
			line += " "
		}
		line += w
	}
	b.WriteString(line + "\n")
	return b.String()
}
