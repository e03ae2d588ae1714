package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sshfwd/sshfwd/sshconfig"
)

func tcp(host string, port int) endpoint { return endpoint{Host: host, Port: port} }
func sock(path string) endpoint          { return endpoint{Path: path} }

func TestParseForward(t *testing.T) {
	wd, err := os.Getwd()
	require.NoError(t, err)
	for _, tc := range []struct {
		kind byte
		spec string
		want forward
	}{
		{'L', "8080:example.com:80", forward{Listen: tcp("localhost", 8080), Connect: tcp("example.com", 80)}},
		{'L', "127.0.0.2:8080:example.com:80", forward{Listen: tcp("127.0.0.2", 8080), Connect: tcp("example.com", 80)}},
		{'L', "*:8080:example.com:80", forward{Listen: tcp("", 8080), Connect: tcp("example.com", 80)}},
		{'L', ":8080:example.com:80", forward{Listen: tcp("", 8080), Connect: tcp("example.com", 80)}},
		{'L', "[::1]:8080:[2001:db8::1]:80", forward{Listen: tcp("::1", 8080), Connect: tcp("2001:db8::1", 80)}},
		{'L', "8080:[::1]:80", forward{Listen: tcp("localhost", 8080), Connect: tcp("::1", 80)}},
		{'L', "8080:/run/app.sock", forward{Listen: tcp("localhost", 8080), Connect: sock("/run/app.sock")}},
		{'L', "0.0.0.0:8080:/run/app.sock", forward{Listen: tcp("0.0.0.0", 8080), Connect: sock("/run/app.sock")}},
		{'L', "/tmp/l.sock:db:5432", forward{Listen: sock("/tmp/l.sock"), Connect: tcp("db", 5432)}},
		{'L', "/tmp/l.sock:/run/r.sock", forward{Listen: sock("/tmp/l.sock"), Connect: sock("/run/r.sock")}},
		{'L', "rel/l.sock:db:5432", forward{Listen: sock(filepath.Join(wd, "rel/l.sock")), Connect: tcp("db", 5432)}},
		{'L', "./l.sock:/run/r.sock", forward{Listen: sock(filepath.Join(wd, "l.sock")), Connect: sock("/run/r.sock")}},
		{'R', "8080:localhost:80", forward{Listen: tcp("localhost", 8080), Connect: tcp("localhost", 80)}},
		{'R', "0:localhost:80", forward{Listen: tcp("localhost", 0), Connect: tcp("localhost", 80)}},
		{'R', "*:2222:10.0.0.1:22", forward{Listen: tcp("", 2222), Connect: tcp("10.0.0.1", 22)}},
		{'R', "8080:/run/local.sock", forward{Listen: tcp("localhost", 8080), Connect: sock("/run/local.sock")}},
		{'R', "8080:rel/local.sock", forward{Listen: tcp("localhost", 8080), Connect: sock(filepath.Join(wd, "rel/local.sock"))}},
		{'R', "/tmp/remote.sock:localhost:80", forward{Listen: sock("/tmp/remote.sock"), Connect: tcp("localhost", 80)}},
		{'R', "1080", forward{Listen: tcp("localhost", 1080), SOCKS: true}},
		{'R', "0", forward{Listen: tcp("localhost", 0), SOCKS: true}},
		{'R', "[::]:1080", forward{Listen: tcp("::", 1080), SOCKS: true}},
		{'R', "*:1080", forward{Listen: tcp("", 1080), SOCKS: true}},
		{'D', "1080", forward{Listen: tcp("localhost", 1080), SOCKS: true}},
		{'D', "0.0.0.0:1080", forward{Listen: tcp("0.0.0.0", 1080), SOCKS: true}},
		{'D', "[::1]:1080", forward{Listen: tcp("::1", 1080), SOCKS: true}},
	} {
		tc.want.Kind = tc.kind
		got, err := parseForward(tc.kind, tc.spec)
		if assert.NoError(t, err, "-%c %s", tc.kind, tc.spec) {
			assert.Equal(t, tc.want, got, "-%c %s", tc.kind, tc.spec)
		}
	}
}

func TestParseForwardErrors(t *testing.T) {
	for _, tc := range []struct {
		kind byte
		spec string
	}{
		{'L', ""},
		{'L', "8080"},
		{'L', "8080:host"},
		{'L', "0:host:80"},
		{'L', "8080:host:0"},
		{'L', "70000:host:80"},
		{'L', "-1:host:80"},
		{'L', "+80:host:80"},
		{'L', "x:host:80"},
		{'L', "8080::80"},
		{'L', "a:b:c:d:e"},
		{'L', "[::1:8080:host:80"},
		{'L', "[::1]x:8080:host:80"},
		{'L', "8080:ho st:80"},
		{'L', "8080:ho\x00st:80"},
		{'L', "/a.sock"},
		{'L', "8080:host:/x"},
		{'L', "8080:rel/remote.sock"},
		{'R', ""},
		{'R', "x"},
		{'R', "/tmp/only.sock"},
		{'R', "rel/remote.sock:host:80"},
		{'R', "8080:host"},
		{'R', "70000"},
		{'D', "a:b:1080"},
		{'D', "0"},
		{'D', "/tmp/s.sock"},
		{'D', "host:"},
	} {
		_, err := parseForward(tc.kind, tc.spec)
		var se *specError
		if assert.ErrorAs(t, err, &se, "-%c %q", tc.kind, tc.spec) {
			name := map[byte]string{'L': "local", 'R': "remote", 'D': "dynamic"}[tc.kind]
			assert.Equal(t, "Bad "+name+" forwarding specification '"+printable(tc.spec)+"'", err.Error(), "ssh's words")
			assert.NotNil(t, errors.Unwrap(err), "the reason stays reachable")
		}
	}
}

func TestParseStdio(t *testing.T) {
	for spec, want := range map[string]endpoint{
		"host:22":           tcp("host", 22),
		"[2001:db8::1]:22":  tcp("2001:db8::1", 22),
		"/run/ssh.sock":     sock("/run/ssh.sock"),
		"inner.example:443": tcp("inner.example", 443),
	} {
		got, err := parseStdio(spec)
		if assert.NoError(t, err, spec) {
			assert.Equal(t, want, got, spec)
		}
	}
	for _, bad := range []string{"foo", "h:0", "h:x", "a:b:c", "rel/s.sock", ":22", "[::1"} {
		_, err := parseStdio(bad)
		assert.EqualError(t, err, "Bad stdio forwarding specification '"+bad+"'")
	}
}

func TestParseArgs(t *testing.T) {
	o, err := parseArgs([]string{
		"-N", "-L", "8080:web:80", "-L9090:/run/s.sock", "-NR", "0:localhost:22", "-D", "1080",
		"-i", "/k1", "-o", "IdentityFile=/k2", "-p", "2222", "-l", "alice",
		"-o", "userknownhostsfile /tmp/kh", "-o", "StrictHostKeyChecking = accept-new",
		"-o", `ServerAliveCountMax="5"`, "-J", "bob@bastion:2200,ssh://[::1]",
		"-F", "/etc/sshfwd.conf", "-S", "/tmp/cm.sock", "-4gACnTqvvfM", "-E", "/tmp/log",
		"bob@example.com", "-o", "Port=1", "-6", "-T",
	})
	require.NoError(t, err)
	assert.Equal(t, "bob@example.com", o.destination)
	assert.Equal(t, []string{"/k1"}, o.identityFiles)
	assert.Equal(t, []string{"IdentityFile=/k2", "Port=2222", "User=alice", "userknownhostsfile=/tmp/kh",
		"StrictHostKeyChecking=accept-new", "ServerAliveCountMax=5", "ProxyJump=bob@bastion:2200,ssh://[::1]",
		"AddressFamily=inet", "GatewayPorts=yes", "ForwardAgent=yes", "Compression=yes", "Port=1", "AddressFamily=inet6"},
		o.overrides, "in the order given: the first value wins in sshconfig, as in ssh")
	assert.Equal(t, "/etc/sshfwd.conf", o.configFile)
	assert.Equal(t, "/tmp/cm.sock", o.controlPath)
	assert.Equal(t, "/tmp/log", o.logFile)
	assert.Equal(t, 2, o.verbose)
	assert.True(t, o.quiet)
	assert.True(t, o.background)
	assert.True(t, o.master)
	require.Len(t, o.forwards, 4)
	assert.Equal(t, []byte{'L', 'L', 'R', 'D'}, []byte{o.forwards[0].Kind, o.forwards[1].Kind, o.forwards[2].Kind, o.forwards[3].Kind})
	assert.Equal(t, sock("/run/s.sock"), o.forwards[1].Connect)

	o, err = parseArgs([]string{"-o", "StrictHostKeyChecking=off", "-W", "inner:22", "-O", "check", "-G", "--", "ssh://carol@[2001:db8::2]:2022"})
	require.NoError(t, err)
	assert.Equal(t, "ssh://carol@[2001:db8::2]:2022", o.destination)
	assert.Equal(t, &endpoint{Host: "inner", Port: 22}, o.stdio)
	assert.Equal(t, "check", o.control)
	assert.True(t, o.printConfig)

	c, err := sshconfig.Resolve(o.destination, &sshconfig.Options{ConfigFile: "none", Overrides: o.overrides})
	require.NoError(t, err, "what parseArgs gathers, sshconfig takes")
	assert.Equal(t, sshconfig.StrictNo, c.StrictHostKeyChecking)
	assert.Equal(t, 2022, c.Port)

	for _, args := range [][]string{{"-h"}, {"-V"}, {"-h", "-x"}} {
		o, err := parseArgs(args)
		if args[len(args)-1] == "-x" {
			assert.Error(t, err, "an unknown option is refused before -h is seen to")
			continue
		}
		require.NoError(t, err, "%q needs no destination", args)
		assert.True(t, o.help || o.version)
	}
}

func TestParseArgsErrors(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		want     string
		synopsis bool
	}{
		{nil, "sshfwd: no destination given", true},
		{[]string{"-N"}, "sshfwd: no destination given", true},
		{[]string{"-x", "host"}, "unknown option -- x", true},
		{[]string{"-Nz", "host"}, "unknown option -- z", true},
		{[]string{"host", "-L"}, "option requires an argument -- L", true},
		{[]string{"host", "uptime"}, `sshfwd: unexpected "uptime" after the destination: sshfwd runs no remote command`, false},
		{[]string{"-L", "8080", "host"}, "Bad local forwarding specification '8080'", false},
		{[]string{"-R", "x", "host"}, "Bad remote forwarding specification 'x'", false},
		{[]string{"-D", "a:b:c", "host"}, "Bad dynamic forwarding specification 'a:b:c'", false},
		{[]string{"-W", "foo", "host"}, "Bad stdio forwarding specification 'foo'", false},
		{[]string{"-p", "0", "host"}, "Bad port '0'", false},
		{[]string{"-p", "ssh", "host"}, "Bad port 'ssh'", false},
		{[]string{"-J", "a@", "host"}, "Invalid -J argument", false},
		{[]string{"-J", "ok,b:0", "host"}, "Invalid -J argument", false},
		{[]string{"-O", "bogus", "host"}, "Invalid multiplex command.", false},
		{[]string{"-o", "Port", "host"}, "sshfwd: -o Port: no value for Port", false},
		{[]string{"-o", "=yes", "host"}, "sshfwd: -o =yes: want Keyword=value", false},
		{[]string{"-o", "User=a\x00b", "host"}, `sshfwd: -o User=a\x00b: NUL byte in value`, false},
		{[]string{"@host"}, `sshfwd: destination "@host": bad user`, false},
		{[]string{"user@"}, `sshfwd: destination "user@": empty host`, false},
	} {
		_, err := parseArgs(tc.args)
		var ue *usageError
		if assert.ErrorAs(t, err, &ue, "%q", tc.args) {
			assert.Equal(t, tc.want, ue.msg, "%q", tc.args)
			assert.Equal(t, tc.synopsis, ue.synopsis, "%q", tc.args)
		}
	}
}

// TestBadCommandLinesSayOneLine runs command lines that ssh refuses with
// one line, and checks sshfwd says that line and nothing else.
func TestBadCommandLinesSayOneLine(t *testing.T) {
	for _, args := range [][]string{
		{"-L", "8080", "host"},
		{"-L", "rel/remote.sock:host", "host"},
		{"-R", "x", "host"},
		{"-D", "a:b:c", "host"},
		{"-W", "h:0", "host"},
		{"-p", "0", "host"},
		{"-J", "a@", "host"},
		{"-O", "stop", "host"},
		{"host", "uptime"},
	} {
		out, errs, code := runToEnd(t, args...)
		assert.Equal(t, exitFailure, code, "%q", args)
		assert.Empty(t, out, "%q", args)
		assert.Equal(t, 1, strings.Count(errs, "\n"), "%q: one line, no usage:\n%s", args, errs)
		assert.LessOrEqual(t, strings.Count(errs, "sshfwd:"), 1, "%q", args)
	}
	_, errs, code := runToEnd(t, "-Z", "host")
	assert.Equal(t, exitFailure, code)
	assert.Equal(t, "unknown option -- Z\n"+synopsis()+"\n", errs, "an unknown option is followed by the synopsis, as ssh's")
}

// FuzzParseArgs feeds arbitrary command lines to the parser: it must never
// panic, what it refuses it says in one line, and what it accepts must be
// usable.
func FuzzParseArgs(f *testing.F) {
	for _, seed := range [][2]string{
		{"-L", "8080:example.com:80"},
		{"-L", "[::1]:8080:[2001:db8::1]:80"},
		{"-L", "/tmp/l.sock:/run/r.sock"},
		{"-L", "rel/l.sock:host:1"},
		{"-R", "0:localhost:22"},
		{"-R", "*:1080"},
		{"-R", "/tmp/r.sock:host:1"},
		{"-D", "[::]:1080"},
		{"-W", "host:22"},
		{"-J", "bob@bastion:2200,ssh://[::1]"},
		{"-J", "none"},
		{"-O", "forward"},
		{"-o", "ServerAliveInterval=1m30s"},
		{"-o", `StrictHostKeyChecking "accept-new"`},
		{"-o", "Port = 22"},
		{"-NL", "1:a:2"},
		{"-vvv4gfM", "-L"},
		{"-L", "[::1"},
		{"-R", ":::"},
	} {
		f.Add(seed[0], seed[1], "user@host")
	}
	f.Add("-p", "22", "ssh://u@[::1]:22")
	f.Fuzz(func(t *testing.T, opt, value, dest string) {
		o, err := parseArgs([]string{opt, value, dest})
		if err != nil {
			var ue *usageError
			if !errors.As(err, &ue) || strings.Contains(ue.msg, "\n") {
				t.Fatalf("not one line: %q", err)
			}
			return
		}
		if o.help || o.version {
			return
		}
		if _, err := sshconfig.ParseDestination(o.destination); err != nil {
			t.Fatalf("accepted %q with destination %q: %v", []string{opt, value, dest}, o.destination, err)
		}
		for _, f := range o.forwards {
			checkEndpoint(t, f.Listen, true)
			if !f.SOCKS {
				checkEndpoint(t, f.Connect, false)
			}
			back, err := fromMux(toMux(f))
			if err != nil || back != f {
				t.Fatalf("%+v comes back from the mux protocol as %+v, %v", f, back, err)
			}
		}
		if o.stdio != nil {
			checkEndpoint(t, *o.stdio, false)
		}
	})
}

// checkEndpoint fails t if e could not be used.
func checkEndpoint(t *testing.T, e endpoint, listen bool) {
	t.Helper()
	switch {
	case e.Path != "":
		if !strings.HasPrefix(e.Path, "/") || strings.ContainsAny(e.Path, "\x00:") || e.Host != "" || e.Port != 0 {
			t.Fatalf("bad path endpoint %+v", e)
		}
	case e.Port < 0 || e.Port > 65535 || (!listen && e.Port == 0):
		t.Fatalf("bad port in %+v", e)
	case !listen && e.Host == "":
		t.Fatalf("no host in %+v", e)
	case strings.ContainsAny(e.Host, "\x00 \t\n/"):
		t.Fatalf("bad host in %+v", e)
	}
}

func TestMuxForwardsRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		kind byte
		spec string
	}{
		{'L', "8080:web:80"}, {'L', "*:8080:web:80"}, {'L', "127.0.0.2:8080:[::1]:80"}, {'L', "/tmp/l.sock:/run/r.sock"},
		{'L', "[::1]:8080:/run/r.sock"}, {'R', "0:localhost:22"}, {'R', "1080"}, {'R', "*:0"}, {'R', "/tmp/r.sock:web:80"},
		{'R', "8080:/tmp/l.sock"}, {'D', "1080"}, {'D', "*:1080"}, {'D', "[::1]:1080"},
	} {
		f, err := parseForward(tc.kind, tc.spec)
		require.NoError(t, err)
		back, err := fromMux(toMux(f))
		require.NoError(t, err, "-%c %s", tc.kind, tc.spec)
		assert.Equal(t, f, back, "-%c %s", tc.kind, tc.spec)
	}
	assert.Equal(t, "socks", toMux(forward{Kind: 'R', Listen: tcp("localhost", 1080), SOCKS: true}).ConnectHost,
		"a remote SOCKS forward names a destination, which OpenSSH's master wants")
}
