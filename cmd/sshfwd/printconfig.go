package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/sshfwd/sshfwd/sshconfig"
)

// printConfig prints the configuration resolved for the destination as
// ssh -G does, one lower-case keyword and its value a line, for the
// options sshfwd acts on: those of cfg, and forwards, the command line's
// and the files'.
func printConfig(w io.Writer, cfg *sshconfig.Config, forwards []forward) {
	p := func(key string, value any) { fmt.Fprintf(w, "%s %v\n", key, value) }
	yesNo := func(b bool) string { return map[bool]string{true: "yes", false: "no"}[b] }
	seconds := func(d time.Duration) string {
		if d == 0 {
			return "none"
		}
		return strconv.Itoa(int(d / time.Second))
	}
	orNone := func(s string) string {
		if s == "" {
			return "none"
		}
		return s
	}
	p("host", cfg.Host)
	p("user", cfg.User)
	p("hostname", cfg.HostName)
	p("port", cfg.Port)
	p("addressfamily", map[string]string{"tcp": "any", "tcp4": "inet", "tcp6": "inet6"}[cfg.AddressFamily])
	p("batchmode", yesNo(cfg.BatchMode))
	p("exitonforwardfailure", yesNo(cfg.ExitOnForwardFailure))
	p("forwardagent", yesNo(cfg.ForwardAgent))
	p("forwardx11", yesNo(cfg.ForwardX11))
	p("forwardx11trusted", yesNo(cfg.ForwardX11Trusted))
	p("gatewayports", yesNo(cfg.GatewayPorts))
	p("hashknownhosts", yesNo(cfg.HashKnownHosts))
	p("identitiesonly", yesNo(cfg.IdentitiesOnly))
	p("kbdinteractiveauthentication", yesNo(cfg.KbdInteractiveAuthentication))
	p("passwordauthentication", yesNo(cfg.PasswordAuthentication))
	p("pubkeyauthentication", yesNo(cfg.PubkeyAuthentication))
	p("stricthostkeychecking", map[sshconfig.Strict]string{
		sshconfig.StrictAsk: "ask", sshconfig.StrictYes: "true", sshconfig.StrictAcceptNew: "accept-new", sshconfig.StrictNo: "false",
	}[cfg.StrictHostKeyChecking])
	p("connectionattempts", cfg.ConnectionAttempts)
	p("connecttimeout", seconds(cfg.ConnectTimeout))
	p("numberofpasswordprompts", cfg.NumberOfPasswordPrompts)
	p("serveralivecountmax", cfg.ServerAliveCountMax)
	p("serveraliveinterval", seconds(cfg.ServerAliveInterval))
	for _, l := range []struct {
		key  string
		list []string
	}{{"ciphers", cfg.Ciphers}, {"kexalgorithms", cfg.KexAlgorithms}, {"macs", cfg.MACs}, {"hostkeyalgorithms", cfg.HostKeyAlgorithms}} {
		if l.list != nil {
			p(l.key, strings.Join(l.list, ","))
		}
	}
	if cfg.ControlPath != "" {
		p("controlpath", cfg.ControlPath)
	}
	if cfg.HostKeyAlias != "" {
		p("hostkeyalias", cfg.HostKeyAlias)
	}
	p("identityagent", orNone(cfg.IdentityAgent))
	for _, f := range forwards {
		p(map[byte]string{'L': "localforward", 'R': "remoteforward", 'D': "dynamicforward"}[f.Kind], forwardConfig(f))
	}
	ids := cfg.IdentityFiles
	if len(ids) == 0 {
		ids = cfg.DefaultIdentityFiles()
	}
	for _, f := range ids {
		p("identityfile", f)
	}
	for _, f := range cfg.CertificateFiles {
		p("certificatefile", f)
	}
	p("globalknownhostsfile", orNone(strings.Join(cfg.GlobalKnownHostsFiles, " ")))
	p("userknownhostsfile", orNone(strings.Join(cfg.UserKnownHostsFiles, " ")))
	switch {
	case cfg.ProxyJump != "":
		p("proxyjump", cfg.ProxyJump)
	case cfg.ProxyCommand != "":
		p("proxycommand", cfg.ProxyCommand)
	}
}

// forwardConfig writes f as ssh -G does: the listen side, then the
// destination, host names in brackets.
func forwardConfig(f forward) string {
	side := func(e endpoint, listen bool) string {
		switch {
		case e.Path != "":
			return e.Path
		case listen && e.Host == defaultBind:
			return strconv.Itoa(e.Port)
		case listen && e.Host == "":
			return "[*]:" + strconv.Itoa(e.Port)
		}
		return "[" + e.Host + "]:" + strconv.Itoa(e.Port)
	}
	s := side(f.Listen, true)
	switch {
	case f.Kind == 'D':
		return s
	case f.SOCKS:
		return s + " [socks]:0"
	}
	return s + " " + side(f.Connect, false)
}
