package sshconfig

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Options says where the client configuration comes from and how to ask
// the user for what it does not hold. The zero value reads the user's and
// the system's files, uses the agent of SSH_AUTH_SOCK and never prompts.
type Options struct {
	// ConfigFile is the file to read instead of ~/.ssh/config and the
	// system's ssh_config, as ssh -F gives it; "none" reads no file.
	ConfigFile string

	// Overrides are options as ssh -o takes them, "Keyword=value" or
	// "Keyword value"; they come before every file, so they win (OpenSSH
	// keeps the first value it obtains for an option).
	Overrides []string

	// IdentityFiles are keys given as ssh -i gives them, tried before
	// those of the files.
	IdentityFiles []string

	// ControlPath, as ssh -S gives it, wins over the files' ControlPath.
	ControlPath string

	// Home is the directory ~ stands for; "" means the user's home
	// directory. Tests set it so that no real ~/.ssh is read.
	Home string

	// SystemDir holds the system-wide files ssh_config and
	// ssh_known_hosts; "" means /etc/ssh.
	SystemDir string

	// PassphraseCallback, if not nil, is asked for the passphrase of a
	// protected key file when the server would accept the key, as ssh
	// asks "Enter passphrase for key": up to NumberOfPasswordPrompts
	// times. Without it, or with BatchMode yes, protected keys are only
	// used through the agent.
	PassphraseCallback func(file string) ([]byte, error)

	// PasswordCallback, if not nil, answers password authentication for
	// user at host ("user@host's password:"). BatchMode yes never calls it.
	PasswordCallback func(user, host string) (string, error)

	// KeyboardInteractiveCallback, if not nil, answers keyboard-interactive
	// authentication: each question with echo telling whether the answer
	// may be shown. BatchMode yes never calls it.
	KeyboardInteractiveCallback func(name, instruction string, questions []string, echos []bool) ([]string, error)

	// HostKeyConfirmCallback, if not nil, is asked about a host whose key
	// is not known when StrictHostKeyChecking is ask (OpenSSH's default):
	// message holds ssh's question with the key's fingerprint. Without it,
	// or with BatchMode yes, ask refuses unknown hosts as yes does.
	HostKeyConfirmCallback func(message string) (bool, error)

	// Logf, if not nil, receives the warnings ssh prints: a host key
	// added to known_hosts, an identity file that cannot be used.
	Logf func(format string, args ...any)

	// Debugf, if not nil, receives what ssh -v tells of connecting: the
	// address connected to, a failed attempt before the next, the
	// ProxyJump host or ProxyCommand gone through, the ControlMaster
	// ridden, and the authentication method that logged in.
	Debugf func(format string, args ...any)
}

// Strict is the value of StrictHostKeyChecking: what to do with a host
// whose key no known_hosts file lists.
type Strict int

// The values of StrictHostKeyChecking.
const (
	// StrictAsk asks HostKeyConfirmCallback, and refuses without one.
	StrictAsk Strict = iota
	// StrictYes refuses hosts that are not listed and keys that changed.
	StrictYes
	// StrictAcceptNew adds the keys of hosts not listed yet, and refuses
	// keys that changed.
	StrictAcceptNew
	// StrictNo adds new keys as StrictAcceptNew does and lets changed
	// keys through with a warning.
	StrictNo
)

// ParseStrict parses StrictHostKeyChecking's value as OpenSSH does: yes,
// ask, accept-new, and no or off, in any case.
func ParseStrict(v string) (Strict, error) {
	switch strings.ToLower(v) {
	case "ask":
		return StrictAsk, nil
	case "yes", "true":
		return StrictYes, nil
	case "accept-new":
		return StrictAcceptNew, nil
	case "no", "off", "false":
		return StrictNo, nil
	}
	return 0, fmt.Errorf("StrictHostKeyChecking %q: want yes, ask, accept-new or no", v)
}

// Config is the client configuration for one destination, resolved from
// the options, the destination and the files as ssh -G resolves it: the
// first value obtained for an option wins, and the lists (IdentityFile,
// CertificateFile and the forwards) add up. Paths are expanded (~ and %
// tokens).
type Config struct {
	Host     string // the name given, which Host patterns match
	HostName string // the name or address to connect to
	Port     int
	User     string

	IdentityFiles    []string
	CertificateFiles []string
	IdentitiesOnly   bool
	IdentityAgent    string // the agent's socket; "" for none

	ProxyJump    string // "" for none
	ProxyCommand string // "" for none; the % tokens are expanded when it runs

	UserKnownHostsFiles   []string
	GlobalKnownHostsFiles []string
	StrictHostKeyChecking Strict
	HashKnownHosts        bool
	HostKeyAlias          string

	ServerAliveInterval time.Duration // 0: off
	ServerAliveCountMax int
	ConnectTimeout      time.Duration // 0: the system's
	ConnectionAttempts  int
	BatchMode           bool
	AddressFamily       string // "tcp", "tcp4" or "tcp6", as net.Dial names them

	Ciphers           []string // nil: x/crypto's defaults
	KexAlgorithms     []string
	MACs              []string
	HostKeyAlgorithms []string // nil: chosen from known_hosts, in OpenSSH's order

	PubkeyAuthentication         bool
	KbdInteractiveAuthentication bool
	PasswordAuthentication       bool
	NumberOfPasswordPrompts      int

	ControlPath string // "" for none

	// The forwards, each in the form of the command line (-L, -R, -D):
	// "LocalForward 8080 web:80" is "8080:web:80".
	LocalForwards        []string
	RemoteForwards       []string
	DynamicForwards      []string
	ExitOnForwardFailure bool
	GatewayPorts         bool
	ForwardAgent         bool
	ForwardX11           bool
	ForwardX11Trusted    bool

	// Ignored lists the options that ssh knows and sshfwd does not act
	// on, as "file:line: Keyword value", for the user to be told.
	Ignored []string

	home      string
	localUser string
	opts      *Options
	keys      *keyCache // the identities, read once for every Dial
}

// multiple are the options whose every value counts, in order.
var multiple = map[string]bool{
	"identityfile":    true,
	"certificatefile": true,
	"localforward":    true,
	"remoteforward":   true,
	"dynamicforward":  true,
}

// keywords are the options Config carries, as ssh_config(5) spells them.
// Host, Match and Include shape the reading itself; IgnoreUnknown is
// applied as the files are read.
var keywords = []string{
	"AddressFamily", "BatchMode", "CertificateFile", "ChallengeResponseAuthentication", "Ciphers",
	"ConnectionAttempts", "ConnectTimeout", "ControlPath", "DynamicForward", "ExitOnForwardFailure",
	"ForwardAgent", "ForwardX11", "ForwardX11Trusted", "GatewayPorts", "GlobalKnownHostsFile",
	"HashKnownHosts", "HostKeyAlgorithms", "HostKeyAlias", "HostName", "IdentitiesOnly", "IdentityAgent",
	"IdentityFile", "IgnoreUnknown", "KbdInteractiveAuthentication", "KexAlgorithms", "LocalForward",
	"MACs", "NumberOfPasswordPrompts", "PasswordAuthentication", "Port", "ProxyCommand", "ProxyJump",
	"PubkeyAuthentication", "RemoteForward", "ServerAliveCountMax", "ServerAliveInterval",
	"StrictHostKeyChecking", "User", "UserKnownHostsFile",
}

// actedOn holds keywords in lower case, as the reader looks them up.
var actedOn = func() map[string]bool {
	m := map[string]bool{}
	for _, k := range keywords {
		m[strings.ToLower(k)] = true
	}
	return m
}()

// Keywords returns the ssh_config options that Resolve reads into Config,
// as ssh_config(5) spells them. ssh's other options are accepted and
// listed in Config.Ignored.
func Keywords() []string { return slices.Clone(keywords) }

// known are the other options of OpenSSH's ssh_config(5) (9.x, with
// Debian's GSSAPI additions and the deprecated names ssh still accepts):
// accepted and reported in Config.Ignored, as sshfwd does not act on them.
var known = strings.Fields(strings.ToLower(`
	AddKeysToAgent BindAddress BindInterface CanonicalDomains CanonicalizeFallbackLocal
	CanonicalizeHostname CanonicalizeMaxDots CanonicalizePermittedCNAMEs CASignatureAlgorithms
	ChannelTimeout CheckHostIP ClearAllForwardings Compression ControlMaster ControlPersist
	EnableEscapeCommandline EnableSSHKeysign EscapeChar FingerprintHash ForkAfterAuthentication
	ForwardX11Timeout GSSAPIAuthentication GSSAPIDelegateCredentials GSSAPIKeyExchange
	GSSAPIClientIdentity GSSAPIServerIdentity GSSAPIRenewalForcesRekey GSSAPITrustDns
	GSSAPIKexAlgorithms HostbasedAcceptedAlgorithms HostbasedAuthentication HostbasedKeyTypes
	IPQoS KbdInteractiveDevices KnownHostsCommand LocalCommand LogLevel LogVerbose
	NoHostAuthenticationForLocalhost ObscureKeystrokeTiming PermitLocalCommand PermitRemoteOpen
	PKCS11Provider PreferredAuthentications ProxyUseFdpass PubkeyAcceptedAlgorithms
	PubkeyAcceptedKeyTypes RekeyLimit RemoteCommand RequestTTY RequiredRSASize RevokedHostKeys
	SecurityKeyProvider SendEnv SessionType SetEnv StdinNull StreamLocalBindMask
	StreamLocalBindUnlink SyslogFacility Tag TCPKeepAlive Tunnel TunnelDevice UpdateHostKeys
	UseKeychain VerifyHostKeyDNS VisualHostKey XAuthLocation Protocol Cipher UseRoaming
	RSAAuthentication RhostsRSAAuthentication CompressionLevel UsePrivilegedPort
`))

// setting is one value of an option and where it came from.
type setting struct {
	value string
	where string // "file:line", or "command line"
}

// Resolve reads the client configuration for destination, as ssh -G
// would print it, without connecting. A file that does not parse, an
// option ssh does not know (unless IgnoreUnknown names it) and a value
// that does not parse are errors that name the file and line.
func Resolve(destination string, opts *Options) (*Config, error) {
	d, err := ParseDestination(destination)
	if err != nil {
		return nil, err
	}
	return resolve(d, nil, opts)
}

// resolve reads the configuration for d; overrides come after opts's and
// before the files (a ProxyJump hop's user and port, for instance).
func resolve(d Destination, overrides []string, opts *Options) (*Config, error) {
	if opts == nil {
		opts = &Options{}
	}
	c := &Config{Host: strings.ToLower(d.Host), opts: opts, keys: &keyCache{}}
	if err := c.setEnvironment(); err != nil {
		return nil, err
	}
	r := &reader{c: c, vals: map[string][]setting{}}
	for _, o := range append(slices.Clone(opts.Overrides), overrides...) {
		key, value, err := splitOverride(o)
		if err != nil {
			return nil, err
		}
		if err := r.set(key, value, "command line"); err != nil {
			return nil, err
		}
	}
	if d.User != "" {
		r.set("User", d.User, "destination")
	}
	if d.Port != 0 {
		r.set("Port", strconv.Itoa(d.Port), "destination")
	}
	switch opts.ConfigFile {
	case "none":
	case "":
		if err := r.readFile(filepath.Join(c.home, ".ssh", "config"), false, 0); err != nil {
			return nil, err
		}
		if err := r.readFile(filepath.Join(c.systemDir(), "ssh_config"), true, 0); err != nil {
			return nil, err
		}
	default:
		if err := r.readFile(opts.ConfigFile, false, 0); err != nil {
			return nil, err
		}
	}
	if err := c.apply(r.vals); err != nil {
		return nil, err
	}
	return c, nil
}

// setEnvironment fills in what the expansions need: the home directory
// and the local user.
func (c *Config) setEnvironment() error {
	c.home = c.opts.Home
	if c.home == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return fmt.Errorf("sshfwd: %w", err)
		}
		c.home = home
	}
	u, err := user.Current()
	if err != nil {
		return fmt.Errorf("sshfwd: local user: %w", err)
	}
	c.localUser = u.Username
	return nil
}

func (c *Config) systemDir() string {
	if c.opts.SystemDir != "" {
		return c.opts.SystemDir
	}
	return "/etc/ssh"
}

// splitOverride splits an option as ssh -o takes it: "Key=Value",
// "Key Value" or "Key = Value", the value optionally in double quotes.
func splitOverride(s string) (key, value string, err error) {
	s = strings.TrimSpace(s)
	end := strings.IndexAny(s, "= \t")
	if end <= 0 {
		return "", "", fmt.Errorf("sshfwd: option %q: want Keyword=value", s)
	}
	key, value = s[:end], strings.TrimSpace(s[end:])
	value = strings.TrimSpace(strings.TrimPrefix(value, "="))
	if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
		value = value[1 : len(value)-1]
	}
	if value == "" {
		return "", "", fmt.Errorf("sshfwd: option %q: no value", s)
	}
	switch strings.ToLower(key) {
	case "host", "match", "include":
		return "", "", fmt.Errorf("sshfwd: option %q: %s is for files only", s, key)
	}
	return key, value, nil
}

// apply turns the settings read into c's fields, with OpenSSH's defaults
// for those no one gave.
func (c *Config) apply(vals map[string][]setting) error {
	p := &parser{vals: vals}
	c.HostName = c.Host
	if v, ok := p.first("hostname"); ok {
		h, err := expandTokens(v.value, map[byte]string{'h': c.Host})
		if err == nil {
			err = checkHostName(h)
		}
		if err != nil {
			return fmt.Errorf("sshfwd: %s: HostName: %w", v.where, err)
		}
		c.HostName = strings.ToLower(h)
	}
	c.Port = p.int("port", 22, 1, 65535)
	c.User = p.string("user", c.localUser)
	if strings.ContainsFunc(c.User, badRune) || c.User == "" {
		return fmt.Errorf("sshfwd: bad user %q", c.User)
	}
	c.IdentitiesOnly = p.flag("identitiesonly", false)
	c.HostKeyAlias = p.string("hostkeyalias", "")
	c.StrictHostKeyChecking = StrictAsk
	if v, ok := p.first("stricthostkeychecking"); ok {
		s, err := ParseStrict(v.value)
		if err != nil {
			p.fail(v, err)
		}
		c.StrictHostKeyChecking = s
	}
	c.HashKnownHosts = p.flag("hashknownhosts", false)
	c.ServerAliveInterval = p.duration("serveraliveinterval")
	c.ServerAliveCountMax = p.int("serveralivecountmax", 3, 1, 1<<20)
	c.ConnectTimeout = p.duration("connecttimeout")
	c.ConnectionAttempts = p.int("connectionattempts", 1, 1, 1<<10)
	c.BatchMode = p.flag("batchmode", false)
	c.AddressFamily = "tcp"
	if v, ok := p.first("addressfamily"); ok {
		switch strings.ToLower(v.value) {
		case "any":
		case "inet":
			c.AddressFamily = "tcp4"
		case "inet6":
			c.AddressFamily = "tcp6"
		default:
			p.fail(v, errors.New("want any, inet or inet6"))
		}
	}
	// The insecure algorithms x/crypto implements may be named, as
	// +ssh-rsa names SHA-1 RSA in ssh; the defaults hold only the others.
	supported, insecure := ssh.SupportedAlgorithms(), ssh.InsecureAlgorithms()
	c.Ciphers = p.algorithms("ciphers", supported.Ciphers, slices.Concat(supported.Ciphers, insecure.Ciphers))
	c.KexAlgorithms = p.algorithms("kexalgorithms", supported.KeyExchanges, slices.Concat(supported.KeyExchanges, insecure.KeyExchanges))
	c.MACs = p.algorithms("macs", supported.MACs, slices.Concat(supported.MACs, insecure.MACs))
	c.HostKeyAlgorithms = p.algorithms("hostkeyalgorithms", openSSHHostKeyOrder, slices.Concat(supported.HostKeys, insecure.HostKeys))
	c.PubkeyAuthentication = p.flag("pubkeyauthentication", true)
	c.KbdInteractiveAuthentication = p.flag("kbdinteractiveauthentication", p.flag("challengeresponseauthentication", true))
	c.PasswordAuthentication = p.flag("passwordauthentication", true)
	c.NumberOfPasswordPrompts = p.int("numberofpasswordprompts", 3, 1, 1<<10)
	for _, f := range []struct {
		key string
		dst *[]string
	}{{"localforward", &c.LocalForwards}, {"remoteforward", &c.RemoteForwards}, {"dynamicforward", &c.DynamicForwards}} {
		for _, v := range p.vals[f.key] {
			*f.dst = append(*f.dst, strings.Join(strings.Fields(v.value), ":"))
		}
	}
	c.ExitOnForwardFailure = p.flag("exitonforwardfailure", false)
	c.GatewayPorts = p.flag("gatewayports", false)
	c.ForwardAgent = p.flag("forwardagent", false)
	c.ForwardX11 = p.flag("forwardx11", false)
	c.ForwardX11Trusted = p.flag("forwardx11trusted", false)
	if p.err != nil {
		return p.err
	}
	return c.applyPaths(p)
}

// applyPaths sets the options that name files and commands, which the %
// tokens of the fields set before may appear in.
func (c *Config) applyPaths(p *parser) error {
	var err error
	path := func(v setting) string {
		out, e := c.expandPath(v.value)
		if e != nil && err == nil {
			err = fmt.Errorf("sshfwd: %s: %w", v.where, e)
		}
		return out
	}
	none := func(key string) (setting, bool) {
		v, ok := p.first(key)
		return v, ok && !strings.EqualFold(v.value, "none")
	}
	for _, f := range c.opts.IdentityFiles {
		c.IdentityFiles = append(c.IdentityFiles, path(setting{f, "-i"}))
	}
	for _, v := range p.vals["identityfile"] {
		c.IdentityFiles = append(c.IdentityFiles, path(v))
	}
	for _, v := range p.vals["certificatefile"] {
		c.CertificateFiles = append(c.CertificateFiles, path(v))
	}
	c.IdentityAgent = os.Getenv("SSH_AUTH_SOCK")
	if v, ok := p.first("identityagent"); ok {
		switch {
		case strings.EqualFold(v.value, "none"):
			c.IdentityAgent = ""
		case v.value == "SSH_AUTH_SOCK":
		case strings.HasPrefix(v.value, "$"):
			c.IdentityAgent = os.Getenv(v.value[1:])
		default:
			c.IdentityAgent = path(v)
		}
	}
	if v, ok := none("proxyjump"); ok {
		c.ProxyJump = v.value
	}
	if v, ok := none("proxycommand"); ok {
		c.ProxyCommand = v.value
	}
	c.UserKnownHostsFiles = c.fileList(p, "userknownhostsfile", "~/.ssh/known_hosts ~/.ssh/known_hosts2", path)
	sys := c.systemDir()
	c.GlobalKnownHostsFiles = c.fileList(p, "globalknownhostsfile",
		filepath.Join(sys, "ssh_known_hosts")+" "+filepath.Join(sys, "ssh_known_hosts2"), path)
	if c.opts.ControlPath != "" {
		c.ControlPath = path(setting{c.opts.ControlPath, "-S"})
	} else if v, ok := none("controlpath"); ok {
		c.ControlPath = path(v)
	}
	if strings.EqualFold(c.ControlPath, "none") {
		c.ControlPath = ""
	}
	return err
}

// fileList returns the files of a known_hosts option, its default when
// not given; "none" means no file.
func (c *Config) fileList(p *parser, key, def string, path func(setting) string) []string {
	v, ok := p.first(key)
	if !ok {
		v = setting{def, "default"}
	}
	var files []string
	for _, f := range strings.Fields(v.value) {
		if !strings.EqualFold(f, "none") {
			files = append(files, path(setting{f, v.where}))
		}
	}
	return files
}

// parser reads typed values out of the settings, keeping the first error.
type parser struct {
	vals map[string][]setting
	err  error
}

func (p *parser) first(key string) (setting, bool) {
	vs := p.vals[key]
	if len(vs) == 0 {
		return setting{}, false
	}
	return vs[0], true
}

func (p *parser) fail(v setting, err error) {
	if p.err == nil {
		p.err = fmt.Errorf("sshfwd: %s: %w", v.where, err)
	}
}

func (p *parser) string(key, def string) string {
	if v, ok := p.first(key); ok {
		return v.value
	}
	return def
}

func (p *parser) flag(key string, def bool) bool {
	v, ok := p.first(key)
	if !ok {
		return def
	}
	switch strings.ToLower(v.value) {
	case "yes", "true":
		return true
	case "no", "false":
		return false
	}
	p.fail(v, fmt.Errorf("%q: want yes or no", v.value))
	return def
}

func (p *parser) int(key string, def, lo, hi int) int {
	v, ok := p.first(key)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v.value)
	if err != nil || n < lo || n > hi {
		p.fail(v, fmt.Errorf("%q: want a number from %d to %d", v.value, lo, hi))
		return def
	}
	return n
}

func (p *parser) duration(key string) time.Duration {
	v, ok := p.first(key)
	if !ok || strings.EqualFold(v.value, "none") {
		return 0
	}
	d, err := ParseTime(v.value)
	if err != nil {
		p.fail(v, err)
	}
	return d
}

// algorithms reads an algorithm list option: a list replaces def, and a
// list beginning with +, - or ^ appends to it, removes from it (patterns
// allowed) or puts first, as ssh_config(5) describes. Names x/crypto does
// not implement are an error, as ssh's unknown names are. It returns nil
// when the option is not given.
func (p *parser) algorithms(key string, def, supported []string) []string {
	v, ok := p.first(key)
	if !ok {
		return nil
	}
	list := v.value
	op := byte(0)
	if list != "" && strings.IndexByte("+-^", list[0]) >= 0 {
		op, list = list[0], list[1:]
	}
	names := strings.Split(list, ",")
	if op == '-' {
		var out []string
		for _, a := range def {
			if !matchList(a, names) {
				out = append(out, a)
			}
		}
		return out
	}
	for _, n := range names {
		if !slices.Contains(supported, n) {
			p.fail(v, fmt.Errorf("%s: %q is not supported", key, n))
			return nil
		}
	}
	switch op {
	case '+':
		return append(slices.Clone(def), slices.DeleteFunc(names, func(n string) bool { return slices.Contains(def, n) })...)
	case '^':
		return append(names, slices.DeleteFunc(slices.Clone(def), func(n string) bool { return slices.Contains(names, n) })...)
	}
	return names
}

// ParseTime parses an OpenSSH time value: a number of seconds, or numbers
// each followed by a unit, s, m, h, d or w in either case ("1m30s").
func ParseTime(s string) (time.Duration, error) {
	units := map[byte]time.Duration{'s': time.Second, 'm': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour, 'w': 7 * 24 * time.Hour}
	const limit = 1 << 31 * time.Second // OpenSSH's times are ints of seconds
	if s == "" {
		return 0, errors.New("empty time")
	}
	var total time.Duration
	for rest := s; rest != ""; {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 || i > 10 {
			return 0, fmt.Errorf("bad time %q", s)
		}
		n, _ := strconv.Atoi(rest[:i])
		unit, next := time.Second, rest[i:]
		if next != "" {
			u, ok := units[next[0]|0x20]
			if !ok {
				return 0, fmt.Errorf("bad time unit in %q", s)
			}
			unit, next = u, next[1:]
		}
		if time.Duration(n) >= limit/unit {
			return 0, fmt.Errorf("time %q too large", s)
		}
		total += time.Duration(n) * unit
		if total >= limit {
			return 0, fmt.Errorf("time %q too large", s)
		}
		rest = next
	}
	return total, nil
}

// fileExists reports whether name can be stat'ed; errors other than "does
// not exist" count as existing, so that reading it reports them.
func fileExists(name string) bool {
	_, err := os.Stat(name)
	return !errors.Is(err, fs.ErrNotExist)
}
