package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sshfwd/sshfwd/sshconfig"
)

func tcp(host string, port int) endpoint { return endpoint{Host: host, Port: port} }
func unix(path string) endpoint          { return endpoint{Path: path} }

func TestParseForward(t *testing.T) {
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
		{'L', "8080:/run/app.sock", forward{Listen: tcp("localhost", 8080), Connect: unix("/run/app.sock")}},
		{'L', "0.0.0.0:8080:/run/app.sock", forward{Listen: tcp("0.0.0.0", 8080), Connect: unix("/run/app.sock")}},
		{'L', "/tmp/l.sock:db:5432", forward{Listen: unix("/tmp/l.sock"), Connect: tcp("db", 5432)}},
		{'L', "/tmp/l.sock:/run/r.sock", forward{Listen: unix("/tmp/l.sock"), Connect: unix("/run/r.sock")}},
		{'R', "8080:localhost:80", forward{Listen: tcp("localhost", 8080), Connect: tcp("localhost", 80)}},
		{'R', "0:localhost:80", forward{Listen: tcp("localhost", 0), Connect: tcp("localhost", 80)}},
		{'R', "*:2222:10.0.0.1:22", forward{Listen: tcp("", 2222), Connect: tcp("10.0.0.1", 22)}},
		{'R', "8080:/run/local.sock", forward{Listen: tcp("localhost", 8080), Connect: unix("/run/local.sock")}},
		{'R', "/tmp/remote.sock:localhost:80", forward{Listen: unix("/tmp/remote.sock"), Connect: tcp("localhost", 80)}},
		{'R', "1080", forward{Listen: tcp("localhost", 1080), SOCKS: true}},
		{'R', "0", forward{Listen: tcp("localhost", 0), SOCKS: true}},
		{'R', "[::]:1080", forward{Listen: tcp("::", 1080), SOCKS: true}},
		{'R', "*:1080", forward{Listen: tcp("", 1080), SOCKS: true}},
		{'D', "1080", forward{Listen: tcp("localhost", 1080), SOCKS: true}},
		{'D', "0.0.0.0:1080", forward{Listen: tcp("0.0.0.0", 1080), SOCKS: true}},
		{'D', "[::1]:1080", forward{Listen: tcp("::1", 1080), SOCKS: true}},
	} {
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
		{'R', ""},
		{'R', "x"},
		{'R', "/tmp/only.sock"},
		{'R', "8080:host"},
		{'R', "70000"},
		{'D', "a:b:1080"},
		{'D', "0"},
		{'D', "/tmp/s.sock"},
		{'D', "host:"},
	} {
		_, err := parseForward(tc.kind, tc.spec)
		assert.Error(t, err, "-%c %q", tc.kind, tc.spec)
	}
}

func TestParseArgs(t *testing.T) {
	o, err := parseArgs([]string{
		"-N", "-L", "8080:web:80", "-L9090:/run/s.sock", "-NR", "0:localhost:22", "-D", "1080",
		"-i", "/k1", "-o", "IdentityFile=/k2", "-p", "2222", "-l", "alice",
		"-o", "userknownhostsfile /tmp/kh", "-o", "StrictHostKeyChecking = accept-new",
		"-o", `ServerAliveCountMax="5"`, "-J", "bob@bastion:2200,ssh://[::1]",
		"-F", "/etc/sshfwd.conf", "-S", "/tmp/cm.sock",
		"bob@example.com", "-o", "Port=1", "-T",
	})
	require.NoError(t, err)
	assert.Equal(t, "bob@example.com", o.destination)
	assert.Equal(t, []string{"/k1"}, o.identityFiles)
	assert.Equal(t, []string{"IdentityFile=/k2", "Port=2222", "User=alice", "userknownhostsfile=/tmp/kh",
		"StrictHostKeyChecking=accept-new", "ServerAliveCountMax=5", "ProxyJump=bob@bastion:2200,ssh://[::1]", "Port=1"},
		o.overrides, "in the order given: the first value wins in sshconfig, as in ssh")
	assert.Equal(t, "/etc/sshfwd.conf", o.configFile)
	assert.Equal(t, "/tmp/cm.sock", o.controlPath)
	assert.Len(t, o.local, 2)
	assert.Equal(t, unix("/run/s.sock"), o.local[1].Connect)
	assert.Len(t, o.remote, 1)
	assert.Len(t, o.dynamic, 1)

	o, err = parseArgs([]string{"-o", "StrictHostKeyChecking=off", "--", "ssh://carol@[2001:db8::2]:2022"})
	require.NoError(t, err)
	assert.Equal(t, "ssh://carol@[2001:db8::2]:2022", o.destination)

	c, err := sshconfig.Resolve(o.destination, &sshconfig.Options{ConfigFile: "none", Overrides: o.overrides})
	require.NoError(t, err, "what parseArgs gathers, sshconfig takes")
	assert.Equal(t, sshconfig.StrictNo, c.StrictHostKeyChecking)
	assert.Equal(t, 2022, c.Port)

	_, err = parseArgs([]string{"-h"})
	assert.ErrorIs(t, err, errHelp)
}

func TestParseArgsErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "no destination"},
		{[]string{"-N"}, "no destination"},
		{[]string{"host", "uptime"}, "runs no remote command"},
		{[]string{"-x", "host"}, "unknown option -x"},
		{[]string{"-f", "host"}, "unknown option -f"},
		{[]string{"host", "-L"}, "-L needs an argument"},
		{[]string{"-o", "Port", "host"}, "no value for Port"},
		{[]string{"-o", "=yes", "host"}, "want Key=Value"},
		{[]string{"-p", "ssh", "host"}, "bad port"},
		{[]string{"-o", "User=a\x00b", "host"}, "NUL byte"},
		{[]string{"-L", "8080", "host"}, "-L 8080"},
		{[]string{"-J", "a@", "host"}, "(in -J a@)"},
		{[]string{"-J", "ok,b:0", "host"}, "bad port"},
		{[]string{"@host"}, "bad user"},
		{[]string{"user@"}, "empty host"},
		{[]string{"ho st"}, "bad host"},
		{[]string{"ssh://host:99999"}, "bad port"},
	} {
		_, err := parseArgs(tc.args)
		if assert.Error(t, err, "%q", tc.args) {
			assert.Contains(t, err.Error(), tc.want, "%q", tc.args)
			assert.True(t, strings.HasPrefix(err.Error(), "sshfwd: "), "%q: %v", tc.args, err)
		}
	}
}

// FuzzParseArgs feeds arbitrary command lines to the parser: it must never
// panic, and what it accepts must be usable.
func FuzzParseArgs(f *testing.F) {
	for _, seed := range [][2]string{
		{"-L", "8080:example.com:80"},
		{"-L", "[::1]:8080:[2001:db8::1]:80"},
		{"-L", "/tmp/l.sock:/run/r.sock"},
		{"-R", "0:localhost:22"},
		{"-R", "*:1080"},
		{"-R", "/tmp/r.sock:host:1"},
		{"-D", "[::]:1080"},
		{"-J", "bob@bastion:2200,ssh://[::1]"},
		{"-o", "ServerAliveInterval=1m30s"},
		{"-o", `StrictHostKeyChecking "accept-new"`},
		{"-o", "Port = 22"},
		{"-NL", "1:a:2"},
		{"-L", "[::1"},
		{"-R", ":::"},
	} {
		f.Add(seed[0], seed[1], "user@host")
	}
	f.Add("-p", "22", "ssh://u@[::1]:22")
	f.Fuzz(func(t *testing.T, opt, value, dest string) {
		o, err := parseArgs([]string{opt, value, dest})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "sshfwd: ") {
				t.Fatalf("error without prefix: %v", err)
			}
			return
		}
		if _, err := sshconfig.ParseDestination(o.destination); err != nil {
			t.Fatalf("accepted %q with destination %q: %v", []string{opt, value, dest}, o.destination, err)
		}
		for _, fs := range [][]forward{o.local, o.remote, o.dynamic} {
			for _, f := range fs {
				checkEndpoint(t, f.Listen, true)
				if !f.SOCKS {
					checkEndpoint(t, f.Connect, false)
				}
			}
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
