package sshtest

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/internal/wire"
)

func FuzzStartupsSet(f *testing.F) {
	for _, s := range []string{"10:30:100", "5", "none", "0", "1:1:1", "10:101:100", "10:30:5", "::", "-1:30:100", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var s Startups
		if err := s.Set(in); err != nil {
			if !strings.HasPrefix(err.Error(), "sshtest: ") {
				t.Errorf("error %q does not say sshtest", err)
			}
			return
		}
		if err := s.check(); err != nil {
			t.Fatalf("Set(%q) accepted %v: %v", in, s, err)
		}
		var again Startups
		if err := again.Set(s.String()); err != nil || again != s {
			t.Fatalf("Set(%q) = %v; Set(String()) = %v, %v", in, s, again, err)
		}
	})
}

// patternRegexp is matchPattern's meaning written as a regular expression,
// to check one against the other.
func patternRegexp(pattern string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString(`(?s)\A`)
	for _, r := range pattern {
		switch r {
		case '*':
			b.WriteString(`.*`)
		case '?':
			b.WriteString(`.`)
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString(`\z`)
	return regexp.MustCompile(b.String())
}

func FuzzMatchPattern(f *testing.F) {
	for _, seed := range [][2]string{
		{"LC_*", "LC_ALL"}, {"LANG", "LANG"}, {"LANG", "LANGUAGE"}, {"*a", "*ba"}, {"a*b*c", "aXbYbc"},
		{"?", ""}, {"**", ""}, {"*?*", "x"}, {"a?c", "abc"}, {"", ""}, {"*", "anything at all"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, pattern, s string) {
		got := matchPattern(pattern, s)
		// '?' is a byte to matchPattern and a rune to regexp: they agree
		// on ASCII.
		if !isASCII(pattern) || !isASCII(s) || len(pattern) > 1000 {
			return
		}
		if want := patternRegexp(pattern).MatchString(s); got != want {
			t.Fatalf("matchPattern(%q, %q) = %v, want %v", pattern, s, got, want)
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func FuzzCleanSocketPath(f *testing.F) {
	for _, p := range []string{"/tmp/x.sock", "/tmp/allowed/../x.sock", "x.sock", "", "/", "//a//b/./c/..", "/a\x00b", "/..", "../../etc"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		clean, err := cleanSocketPath(p)
		if err != nil {
			return
		}
		switch {
		case !filepath.IsAbs(clean), filepath.Clean(clean) != clean, strings.ContainsRune(clean, 0):
			t.Fatalf("cleanSocketPath(%q) = %q", p, clean)
		case strings.Contains(clean+"/", "/../"):
			t.Fatalf("cleanSocketPath(%q) = %q climbs up", p, clean)
		}
	})
}

// FuzzPeerInput sends what a client may send after logging in: global
// requests, channel opens and session requests, of any type, with any
// payload. Whatever it is, the server answers and goes on serving. The
// server can run nothing and touch no file, so that fuzzing does no harm.
func FuzzPeerInput(f *testing.F) {
	dir := shortTempDir(f)
	inDir := func(_ ssh.ConnMetadata, path string) bool { return strings.HasPrefix(path, dir+"/") }
	srv := newServer(f, &Config{
		DisableExec:              true,
		DisableX11:               true,
		DisableAgentForwarding:   true,
		Subsystems:               map[string]SubsystemHandler{},
		PermitOpenCallback:       func(_ ssh.ConnMetadata, req OpenRequest) bool { return req.Addr.Addr().IsLoopback() },
		PermitOpenUnixCallback:   inDir,
		PermitListenUnixCallback: inDir,
	})
	client := dial(f, srv)
	sock := dir + "/s.sock"
	for _, seed := range []struct {
		kind    uint8
		typ     string
		payload []byte
	}{
		{0, wire.TCPIPForward, ssh.Marshal(&wire.TCPIPForwardMsg{Addr: "127.0.0.1"})},
		{0, wire.TCPIPForward, ssh.Marshal(&wire.TCPIPForwardMsg{Addr: "localhost", Port: 70000})},
		{0, wire.CancelTCPIPForward, ssh.Marshal(&wire.TCPIPForwardMsg{Addr: "127.0.0.1", Port: 1})},
		{0, wire.StreamLocalForward, ssh.Marshal(&wire.StreamLocalForwardMsg{SocketPath: sock})},
		{0, wire.CancelStreamLocalForward, ssh.Marshal(&wire.StreamLocalForwardMsg{SocketPath: sock})},
		{0, wire.StreamLocalForward, []byte{0, 0, 0, 200, '/'}},
		{0, wire.KeepAlive, nil},
		{1, wire.DirectTCPIP, ssh.Marshal(&wire.TCPIP{Host: "127.0.0.1", Port: 1, OriginHost: "127.0.0.1", OriginPort: 2})},
		{1, wire.DirectTCPIP, []byte{0, 0, 0, 1}},
		{1, wire.DirectStreamLocal, ssh.Marshal(&wire.DirectStreamLocalMsg{SocketPath: sock})},
		{1, wire.DirectStreamLocal, ssh.Marshal(&wire.DirectStreamLocalMsg{SocketPath: "relative"})},
		{1, wire.Session, nil},
		{1, "x11", nil},
		{2, wire.Env, ssh.Marshal(&wire.EnvMsg{Name: "LANG", Value: "C"})},
		{2, wire.Env, ssh.Marshal(&wire.EnvMsg{Name: "LC_ALL", Value: strings.Repeat("x", 5000)})},
		{2, wire.PtyReq, ssh.Marshal(&wire.PtyReqMsg{Term: "xterm", Columns: 80, Rows: 24})},
		{2, wire.PtyReq, ssh.Marshal(&wire.PtyReqMsg{Term: "xterm", Columns: 1 << 31, Rows: 24})},
		{2, wire.WindowChange, ssh.Marshal(&wire.WindowChangeMsg{Columns: 100, Rows: 30})},
		{2, wire.Subsystem, ssh.Marshal(&wire.SubsystemMsg{Name: "sftp"})},
		{2, wire.Exec, ssh.Marshal(&wire.ExecMsg{Command: "true"})},
		{2, wire.Shell, nil},
		{2, wire.X11Req, ssh.Marshal(&wire.X11ReqMsg{AuthProtocol: "MIT-MAGIC-COOKIE-1", AuthCookie: "00"})},
		{2, wire.AuthAgentReq, nil},
		{2, "signal", []byte{0, 0, 0, 3, 'I', 'N', 'T'}},
	} {
		f.Add(seed.kind, seed.typ, seed.payload)
	}
	f.Fuzz(func(t *testing.T, kind uint8, typ string, payload []byte) {
		switch kind % 3 {
		case 0:
			if _, _, err := client.SendRequest(typ, true, payload); err != nil {
				t.Fatalf("global request %q: %v", typ, err)
			}
		case 1:
			ch, reqs, err := client.OpenChannel(typ, payload)
			if err == nil {
				go ssh.DiscardRequests(reqs)
				ch.Close()
			}
		case 2:
			ch, reqs, err := client.OpenChannel(wire.Session, nil)
			if err != nil {
				t.Fatalf("session: %v", err)
			}
			go ssh.DiscardRequests(reqs)
			_, err = ch.SendRequest(typ, true, payload)
			ch.Close()
			if err != nil {
				t.Fatalf("session request %q: %v", typ, err)
			}
		}
		// Whatever came before, the connection answers.
		answered := make(chan error, 1)
		go func() {
			_, _, err := client.SendRequest(wire.KeepAlive, true, nil)
			answered <- err
		}()
		select {
		case err := <-answered:
			if err != nil {
				t.Fatalf("the connection ended: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the server stopped answering")
		}
	})
}
