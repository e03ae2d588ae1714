package sshconfig

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// expandTokens replaces OpenSSH's % tokens in s with their values from
// tokens, keyed by the letter after the %; "%%" is a percent sign. A token
// tokens does not hold, or a lone % at the end, is an error, as it is for
// ssh, so that a typo does not quietly connect somewhere else. Its errors
// have no "sshfwd:" prefix: callers say where the string came from.
func expandTokens(s string, tokens map[byte]string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 == len(s) {
			return "", fmt.Errorf("%q ends with a lone %%", s)
		}
		i++
		if s[i] == '%' {
			b.WriteByte('%')
			continue
		}
		v, ok := tokens[s[i]]
		if !ok {
			return "", fmt.Errorf("unknown token %%%c in %q", s[i], s)
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

// tokens returns the values of the % tokens for c, as ssh_config(5)
// describes them: %h host name, %p port, %r remote user, %n the name given
// on the command line, %u local user, %l local host name (%L its first
// label), %d home directory, %i user id, %C a hash of %l%h%p%r, %k the host
// key alias (or the name given).
func (c *Config) tokens() map[byte]string {
	port := fmt.Sprint(c.Port)
	local, _ := os.Hostname()
	short, _, _ := strings.Cut(local, ".")
	alias := c.HostKeyAlias
	if alias == "" {
		alias = c.Host
	}
	sum := sha1.Sum([]byte(local + c.HostName + port + c.User))
	return map[byte]string{
		'h': c.HostName,
		'p': port,
		'r': c.User,
		'n': c.Host,
		'u': c.localUser,
		'l': local,
		'L': short,
		'd': c.home,
		'i': fmt.Sprint(os.Getuid()),
		'C': hex.EncodeToString(sum[:]),
		'k': alias,
	}
}

// expandPath expands a leading ~ (the home directory c was resolved with)
// and the % tokens of a file name option, as ssh does for IdentityFile,
// CertificateFile, ControlPath, IdentityAgent and the known_hosts files.
func (c *Config) expandPath(p string) (string, error) {
	if p == "~" {
		return c.home, nil
	}
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		p = filepath.Join(c.home, rest)
	}
	return expandTokens(p, c.tokens())
}
