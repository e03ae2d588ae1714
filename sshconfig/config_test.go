package sshconfig

import (
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
)

// testOptions returns Options whose every path lies in fresh temporary
// directories, so that no real ~/.ssh or /etc/ssh is read, and no agent.
func testOptions(t testing.TB) *Options {
	t.Helper()
	t.Setenv("SSH_AUTH_SOCK", "")
	return &Options{Home: t.TempDir(), SystemDir: t.TempDir()}
}

// writeFile writes content to name, creating its directory.
func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(name), 0o700))
	require.NoError(t, os.WriteFile(name, []byte(content), 0o600))
	return name
}

// userConfig writes the user's ~/.ssh/config of opts.
func userConfig(t testing.TB, opts *Options, content string) string {
	t.Helper()
	return writeFile(t, filepath.Join(opts.Home, ".ssh", "config"), content)
}

func localUser(t testing.TB) string {
	t.Helper()
	u, err := user.Current()
	require.NoError(t, err)
	return u.Username
}

func TestResolveDefaults(t *testing.T) {
	opts := testOptions(t)
	c, err := Resolve("Example.COM", opts)
	require.NoError(t, err)
	assert.Equal(t, "example.com", c.Host, "ssh lowercases the host name")
	assert.Equal(t, "example.com", c.HostName)
	assert.Equal(t, 22, c.Port)
	assert.Equal(t, localUser(t), c.User)
	assert.Equal(t, []string{filepath.Join(opts.Home, ".ssh/known_hosts"), filepath.Join(opts.Home, ".ssh/known_hosts2")}, c.UserKnownHostsFiles)
	assert.Equal(t, []string{filepath.Join(opts.SystemDir, "ssh_known_hosts"), filepath.Join(opts.SystemDir, "ssh_known_hosts2")}, c.GlobalKnownHostsFiles)
	assert.Equal(t, StrictAsk, c.StrictHostKeyChecking)
	assert.Equal(t, 3, c.ServerAliveCountMax)
	assert.Equal(t, 1, c.ConnectionAttempts)
	assert.Equal(t, "tcp", c.AddressFamily)
	assert.True(t, c.PubkeyAuthentication)
	assert.Nil(t, c.HostKeyAlgorithms, "chosen from known_hosts when dialing")
	assert.Empty(t, c.IdentityFiles, "ssh's default files are looked for when dialing")
	assert.Empty(t, c.Ignored)
}

func TestResolveAlias(t *testing.T) {
	opts := testOptions(t)
	userConfig(t, opts, `# the lab
Host lab
    HostName 127.0.0.1
    Port 2222
    User alice
    IdentityFile ~/.ssh/lab_key
    IdentityFile "/keys/with space"
    ServerAliveInterval 15
    ServerAliveCountMax 5
    ConnectTimeout 1m
    ConnectionAttempts 3
    ControlPath ~/.ssh/cm-%r@%h:%p
    LocalForward 8080 web:80
    LocalForward 127.0.0.1:9090 /run/sock
    RemoteForward 0 localhost:22
    DynamicForward 1080
    ExitOnForwardFailure yes
    Compression yes
    AddressFamily inet

Host *
    User nobody
    Port 1
    IdentityFile ~/.ssh/other
    HashKnownHosts yes
    StrictHostKeyChecking accept-new
`)
	c, err := Resolve("lab", opts)
	require.NoError(t, err)
	assert.Equal(t, "lab", c.Host)
	assert.Equal(t, "127.0.0.1", c.HostName)
	assert.Equal(t, 2222, c.Port, "the first value wins")
	assert.Equal(t, "alice", c.User)
	ssh := filepath.Join(opts.Home, ".ssh")
	assert.Equal(t, []string{filepath.Join(ssh, "lab_key"), "/keys/with space", filepath.Join(ssh, "other")}, c.IdentityFiles, "IdentityFile adds up")
	assert.Equal(t, 15*time.Second, c.ServerAliveInterval)
	assert.Equal(t, 5, c.ServerAliveCountMax)
	assert.Equal(t, time.Minute, c.ConnectTimeout)
	assert.Equal(t, 3, c.ConnectionAttempts)
	assert.Equal(t, filepath.Join(ssh, "cm-alice@127.0.0.1:2222"), c.ControlPath)
	assert.Equal(t, []string{"8080:web:80", "127.0.0.1:9090:/run/sock"}, c.LocalForwards)
	assert.Equal(t, []string{"0:localhost:22"}, c.RemoteForwards)
	assert.Equal(t, []string{"1080"}, c.DynamicForwards)
	assert.True(t, c.ExitOnForwardFailure)
	assert.True(t, c.HashKnownHosts)
	assert.Equal(t, StrictAcceptNew, c.StrictHostKeyChecking)
	assert.Equal(t, "tcp4", c.AddressFamily)
	require.Len(t, c.Ignored, 1)
	assert.Equal(t, filepath.Join(ssh, "config")+":18: Compression yes", c.Ignored[0])

	other, err := Resolve("elsewhere", opts)
	require.NoError(t, err)
	assert.Equal(t, "elsewhere", other.HostName)
	assert.Equal(t, "nobody", other.User)
	assert.Equal(t, 1, other.Port)
}

func TestResolvePrecedence(t *testing.T) {
	opts := testOptions(t)
	userConfig(t, opts, "Host h\n  User fromfile\n  Port 2000\n  IdentityFile /file/key\n")
	writeFile(t, filepath.Join(opts.SystemDir, "ssh_config"), "Host *\n  User system\n  ServerAliveInterval 7\n")

	c, err := Resolve("bob@h", opts)
	require.NoError(t, err)
	assert.Equal(t, "bob", c.User, "the destination's user wins over the files")
	assert.Equal(t, 2000, c.Port)
	assert.Equal(t, 7*time.Second, c.ServerAliveInterval, "the system file is read after the user's")

	opts.Overrides = []string{"User=cli", "port 3000", `ServerAliveInterval = "0"`}
	opts.IdentityFiles = []string{"/cli/key"}
	c, err = Resolve("ssh://bob@h:4000", opts)
	require.NoError(t, err)
	assert.Equal(t, "cli", c.User, "-o wins over user@, as -l does in ssh")
	assert.Equal(t, 3000, c.Port)
	assert.Zero(t, c.ServerAliveInterval)
	assert.Equal(t, []string{"/cli/key", "/file/key"}, c.IdentityFiles, "-i comes first")

	opts.ConfigFile = "none"
	opts.Overrides = nil
	c, err = Resolve("h", opts)
	require.NoError(t, err)
	assert.Equal(t, 22, c.Port, "-F none reads no file")

	opts.ConfigFile = writeFile(t, filepath.Join(t.TempDir(), "cfg"), "Port 5000\n")
	c, err = Resolve("h", opts)
	require.NoError(t, err)
	assert.Equal(t, 5000, c.Port, "-F replaces both files")
	assert.Zero(t, c.ServerAliveInterval)
}

func TestResolveIncludeAndMatch(t *testing.T) {
	opts := testOptions(t)
	ssh := filepath.Join(opts.Home, ".ssh")
	writeFile(t, filepath.Join(ssh, "conf.d", "10-lab.conf"), "Host lab\n  HostName lab.internal\n")
	writeFile(t, filepath.Join(ssh, "conf.d", "20-any.conf"), "Port 2022\n")
	writeFile(t, filepath.Join(opts.SystemDir, "sys.conf"), "Host lab\n  ConnectionAttempts 4\n")
	writeFile(t, filepath.Join(opts.SystemDir, "ssh_config"), "Include sys.conf\n")
	me := localUser(t)
	userConfig(t, opts, `Include conf.d/*.conf
Match host lab.internal user `+me+`
  User matched
Match originalhost lab !user nobody
  IdentityFile ~/.ssh/by-match
Match exec "true"
  Port 1
Match localuser `+me+`
  ServerAliveInterval 9
Match !all
  ConnectTimeout 5
Host other
  Include ~/.ssh/missing-*.conf
`)
	c, err := Resolve("lab", opts)
	require.NoError(t, err)
	assert.Equal(t, "lab.internal", c.HostName, "from an Include relative to ~/.ssh")
	assert.Equal(t, 2022, c.Port, "Match exec does not apply")
	assert.Equal(t, "matched", c.User, "Match host sees the HostName set before it")
	assert.Equal(t, []string{filepath.Join(ssh, "by-match")}, c.IdentityFiles)
	assert.Equal(t, 9*time.Second, c.ServerAliveInterval)
	assert.Equal(t, 4, c.ConnectionAttempts, "the system file's Include is relative to the system directory")
	assert.Zero(t, c.ConnectTimeout, "Match !all never applies")
	require.Len(t, c.Ignored, 1)
	assert.Contains(t, c.Ignored[0], `Match exec true (the block is skipped)`)
}

func TestResolveErrors(t *testing.T) {
	for _, tc := range []struct {
		config, want string
	}{
		{"Bogus yes\n", ":1: Bad configuration option: Bogus"},
		{"# comment\nPort 0\n", ":2: \"0\": want a number from 1 to 65535"},
		{"BatchMode maybe\n", `:1: "maybe": want yes or no`},
		{"StrictHostKeyChecking sometimes\n", ":1: StrictHostKeyChecking"},
		{"ServerAliveInterval 1x\n", ":1: bad time unit"},
		{"Ciphers rot13\n", `:1: ciphers: "rot13" is not supported`},
		{"AddressFamily ipx\n", ":1: want any, inet or inet6"},
		{"Match\n", "Match without criteria"},
		{"Match user\n", "Match user needs a pattern list"},
		{"Match colour blue\n", `unsupported Match criterion "colour"`},
		{"Include /nonexistent/a /nonexistent/[\n", "Include"},
		{"ControlPath /tmp/%z\n", "unknown token %z"},
		{"HostName bad/host\n", "HostName"},
		{"Include\n", "Include without a file"},
	} {
		opts := testOptions(t)
		userConfig(t, opts, tc.config)
		_, err := Resolve("h", opts)
		if assert.Error(t, err, tc.config) {
			assert.Contains(t, err.Error(), tc.want, tc.config)
			assert.Equal(t, 1, strings.Count(err.Error(), "sshfwd:"), err.Error())
		}
	}
	opts := testOptions(t)
	userConfig(t, opts, "Include config\n")
	_, err := Resolve("h", opts)
	assert.ErrorContains(t, err, "Include nested too deep")

	opts = testOptions(t)
	userConfig(t, opts, "IgnoreUnknown Bog*,Other\nBogus yes\nUseKeychain yes\n")
	c, err := Resolve("h", opts)
	require.NoError(t, err, "IgnoreUnknown covers the lines after it")
	assert.Len(t, c.Ignored, 1, "UseKeychain is known to ssh, and reported")

	for _, o := range []string{"", "=x", "Port", "Host=x", "Include /x"} {
		_, err := Resolve("h", &Options{Home: t.TempDir(), SystemDir: t.TempDir(), Overrides: []string{o}})
		assert.Error(t, err, "%q", o)
	}
}

func TestResolveAlgorithms(t *testing.T) {
	supported := ssh.SupportedAlgorithms()
	for _, tc := range []struct {
		line string
		get  func(*Config) []string
		want []string
	}{
		{"Ciphers aes128-ctr,aes256-ctr", func(c *Config) []string { return c.Ciphers }, []string{"aes128-ctr", "aes256-ctr"}},
		{"Ciphers -aes*", func(c *Config) []string { return c.Ciphers }, without(supported.Ciphers, "aes*")},
		{"MACs ^hmac-sha2-256", func(c *Config) []string { return c.MACs }, append([]string{"hmac-sha2-256"}, without(supported.MACs, "hmac-sha2-256")...)},
		{"HostKeyAlgorithms ssh-ed25519", func(c *Config) []string { return c.HostKeyAlgorithms }, []string{"ssh-ed25519"}},
		{"HostKeyAlgorithms +ssh-rsa", func(c *Config) []string { return c.HostKeyAlgorithms }, append(HostKeyAlgorithms(), "ssh-rsa")},
		{"KexAlgorithms curve25519-sha256", func(c *Config) []string { return c.KexAlgorithms }, []string{"curve25519-sha256"}},
	} {
		opts := testOptions(t)
		opts.Overrides = []string{tc.line}
		c, err := Resolve("h", opts)
		require.NoError(t, err, tc.line)
		assert.Equal(t, tc.want, tc.get(c), tc.line)
	}
}

// without returns the names in list other than name, and those beginning
// with name when it ends with "*".
func without(list []string, name string) []string {
	var out []string
	for _, a := range list {
		if prefix, ok := strings.CutSuffix(name, "*"); !ok && a != name || ok && !strings.HasPrefix(a, prefix) {
			out = append(out, a)
		}
	}
	return out
}

func TestParseTime(t *testing.T) {
	for in, want := range map[string]time.Duration{"0": 0, "30": 30 * time.Second, "1m30s": 90 * time.Second, "2H": 2 * time.Hour, "1w1d": 8 * 24 * time.Hour} {
		got, err := ParseTime(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "m", "1x", "-1", "99999999999", "4000w"} {
		_, err := ParseTime(in)
		assert.Error(t, err, in)
	}
}

func TestParseStrict(t *testing.T) {
	for in, want := range map[string]Strict{"yes": StrictYes, "ASK": StrictAsk, "Accept-New": StrictAcceptNew, "no": StrictNo, "off": StrictNo} {
		got, err := ParseStrict(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	_, err := ParseStrict("maybe")
	assert.Error(t, err)
}

func TestExpandTokens(t *testing.T) {
	tokens := map[byte]string{'h': "host", 'p': "22"}
	for in, want := range map[string]string{"": "", "plain": "plain", "%h:%p": "host:22", "100%%": "100%", "%%h": "%h"} {
		got, err := expandTokens(in, tokens)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"%", "a%", "%x", "%h%"} {
		_, err := expandTokens(in, tokens)
		assert.Error(t, err, in)
	}
}

// FuzzExpandTokens checks that expansion never panics, and that a string
// that expands holds no % it did not put there.
func FuzzExpandTokens(f *testing.F) {
	for _, s := range []string{"%h", "%%", "%", "a%pb", "%%%h%%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := expandTokens(s, map[byte]string{'h': "H", 'p': "P"})
		if err == nil {
			assert.Equal(t, strings.Count(s, "%%"), strings.Count(out, "%"), "%q -> %q", s, out)
		}
	})
}

// FuzzResolve feeds arbitrary configuration files to Resolve: each must
// give a Config or an error, never a panic or a hang.
func FuzzResolve(f *testing.F) {
	for _, s := range []string{
		"Host lab\n  HostName 127.0.0.1\n  Port 2222\n",
		"Match host x user y\n  User z\n",
		"Include nothing\n",
		"Host=\"a b\" c\nPort=22 # c\n",
		"LocalForward 1 h:2\nRemoteForward 3\n",
		"Match !all\n",
	} {
		f.Add(s)
	}
	home, sys := f.TempDir(), f.TempDir()
	f.Fuzz(func(t *testing.T, config string) {
		file := filepath.Join(t.TempDir(), "config")
		require.NoError(t, os.WriteFile(file, []byte(config), 0o600))
		c, err := Resolve("lab", &Options{ConfigFile: file, Home: home, SystemDir: sys})
		if err == nil {
			assert.NotEmpty(t, c.HostName)
			assert.NotZero(t, c.Port)
		}
	})
}

func TestKeywords(t *testing.T) {
	kw := Keywords()
	assert.True(t, slices.IsSortedFunc(kw, func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) }), "in ssh_config(5)'s order: %v", kw)
	assert.Len(t, actedOn, len(kw), "no keyword twice")
	for _, k := range kw {
		assert.False(t, slices.Contains(known, strings.ToLower(k)), "%s is both read and ignored", k)
	}
	c, err := Resolve("host", &Options{ConfigFile: "none", Overrides: []string{"hostname=example.com", "Compression=yes"}})
	require.NoError(t, err)
	assert.Equal(t, "example.com", c.HostName, "keywords are matched in any case")
	assert.Equal(t, []string{"command line: Compression yes"}, c.Ignored)
	kw[0] = "changed"
	assert.Equal(t, "AddressFamily", Keywords()[0], "the caller gets a copy")
}
