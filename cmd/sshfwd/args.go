package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/sshfwd/sshfwd/sshconfig"
)

// options is what the command line asks for. The options that ssh_config
// also has (-o, and -p, -l, -J, -4, -6, -A, -C, -g) are handed to
// sshconfig as overrides, in the order given, so that the first value
// wins as in ssh.
type options struct {
	destination   string
	configFile    string    // -F; "" for the usual files
	controlPath   string    // -S
	overrides     []string  // ssh_config options
	identityFiles []string  // -i
	forwards      []forward // -L, -R and -D, in the order given
	stdio         *endpoint // -W
	verbose       int       // how many -v
	quiet         bool      // -q
	background    bool      // -f
	printConfig   bool      // -G
	master        bool      // -M
	control       string    // -O
	logFile       string    // -E
	version       bool      // -V
	help          bool      // -h
}

// usageError is a command line sshfwd cannot take: ssh's one line about
// it, followed by the synopsis when show is set, as ssh does for options
// it does not know.
type usageError struct {
	msg      string
	synopsis bool
}

func (e *usageError) Error() string { return e.msg }

// controlCommands are the -O commands sshfwd sends a master.
var controlCommands = []string{"check", "forward", "cancel", "exit"}

// parseArgs parses the command line as ssh does: single-letter options,
// which may be grouped (-NfL spec) and take their value attached or as the
// next argument, before or after the destination. -V and -h need no
// destination.
func parseArgs(args []string) (*options, error) {
	o := &options{}
	var dest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			dest = append(dest, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			dest = append(dest, a)
			continue
		}
		for j := 1; j < len(a); j++ {
			letter := a[j]
			hasArg, known := takesArg(letter)
			if !known {
				return nil, &usageError{"unknown option -- " + printable(string([]byte{letter})), true}
			}
			if !hasArg {
				o.setSwitch(letter)
				continue
			}
			value := a[j+1:]
			if value == "" {
				if i+1 == len(args) {
					return nil, &usageError{"option requires an argument -- " + string(letter), true}
				}
				i++
				value = args[i]
			}
			if err := o.set(letter, value); err != nil {
				return nil, err
			}
			break
		}
	}
	if o.version || o.help {
		return o, nil
	}
	switch len(dest) {
	case 0:
		return nil, &usageError{"sshfwd: no destination given", true}
	case 1:
	default:
		return nil, &usageError{fmt.Sprintf("sshfwd: unexpected %q after the destination: sshfwd runs no remote command", dest[1]), false}
	}
	if _, err := sshconfig.ParseDestination(dest[0]); err != nil {
		return nil, &usageError{err.Error(), false}
	}
	o.destination = dest[0]
	return o, nil
}

// setSwitch applies an option without an argument.
func (o *options) setSwitch(letter byte) {
	switch letter {
	case '4':
		o.overrides = append(o.overrides, "AddressFamily=inet")
	case '6':
		o.overrides = append(o.overrides, "AddressFamily=inet6")
	case 'A':
		o.overrides = append(o.overrides, "ForwardAgent=yes")
	case 'C':
		o.overrides = append(o.overrides, "Compression=yes")
	case 'g':
		o.overrides = append(o.overrides, "GatewayPorts=yes")
	case 'f':
		o.background = true
	case 'G':
		o.printConfig = true
	case 'h':
		o.help = true
	case 'M':
		o.master = true
	case 'q':
		o.quiet = true
	case 'V':
		o.version = true
	case 'v':
		o.verbose++
	}
	// -N, -n and -T ask for what sshfwd always does.
}

// set applies option -letter with its value.
func (o *options) set(letter byte, value string) error {
	switch letter {
	case 'L', 'R', 'D':
		f, err := parseForward(letter, value)
		if err != nil {
			return &usageError{err.Error(), false}
		}
		o.forwards = append(o.forwards, f)
	case 'W':
		e, err := parseStdio(value)
		if err != nil {
			return &usageError{err.Error(), false}
		}
		o.stdio = &e
	case 'J':
		for _, hop := range strings.Split(value, ",") {
			if _, err := sshconfig.ParseDestination(hop); err != nil {
				return &usageError{"Invalid -J argument", false}
			}
		}
		o.overrides = append(o.overrides, "ProxyJump="+value)
	case 'i':
		o.identityFiles = append(o.identityFiles, value)
	case 'p':
		if _, err := parsePort(value, 1); err != nil {
			return &usageError{fmt.Sprintf("Bad port '%s'", printable(value)), false}
		}
		o.overrides = append(o.overrides, "Port="+value)
	case 'l':
		o.overrides = append(o.overrides, "User="+value)
	case 'o':
		key, v, err := splitOption(value)
		if err != nil {
			return &usageError{fmt.Sprintf("sshfwd: -o %s: %v", printable(value), err), false}
		}
		o.overrides = append(o.overrides, key+"="+v)
	case 'F':
		o.configFile = value
	case 'S':
		o.controlPath = value
	case 'E':
		o.logFile = value
	case 'O':
		if !slices.Contains(controlCommands, value) {
			return &usageError{"Invalid multiplex command.", false}
		}
		o.control = value
	}
	return nil
}

// splitOption splits an -o argument, "Key=Value", "Key Value" or
// "Key = Value", the value optionally in double quotes.
func splitOption(s string) (key, value string, err error) {
	s = strings.TrimSpace(s)
	end := strings.IndexAny(s, "= \t")
	if end < 0 {
		end = len(s)
	}
	if end == 0 {
		return "", "", errors.New("want Keyword=value")
	}
	key, value = s[:end], strings.TrimSpace(s[end:])
	value = strings.TrimSpace(strings.TrimPrefix(value, "="))
	if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
		value = value[1 : len(value)-1]
	}
	if value == "" {
		return "", "", fmt.Errorf("no value for %s", printable(key))
	}
	if strings.ContainsRune(value, 0) {
		return "", "", errors.New("NUL byte in value")
	}
	return key, value, nil
}

// parseStdio parses the argument of -W: host:port, or a socket path on the
// server, which must be absolute.
func parseStdio(spec string) (endpoint, error) {
	fs, err := splitFields(spec)
	if err == nil && len(fs) == 1 && fs[0].path {
		if !strings.HasPrefix(fs[0].text, "/") {
			err = fmt.Errorf("socket path %s on the server is not absolute", fs[0].text)
		}
		return endpoint{Path: fs[0].text}, wrapSpec('W', spec, err)
	}
	var e endpoint
	if err == nil && len(fs) != 2 {
		err = errors.New("want host:port")
	}
	if err == nil {
		e, err = parseEndpoint(fs, false, 1)
	}
	return e, wrapSpec('W', spec, err)
}

// wrapSpec makes err, if not nil, the specError of spec.
func wrapSpec(kind byte, spec string, err error) error {
	if err == nil {
		return nil
	}
	return &specError{kind, spec, err}
}
