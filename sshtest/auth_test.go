package sshtest

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
)

// certificate returns the user certificate of key signed by ca for
// principals, valid from after to before.
func certificate(t testing.TB, ca, key ssh.Signer, principals []string, after, before time.Time) ssh.Signer {
	t.Helper()
	cert := &ssh.Certificate{
		Key:             key.PublicKey(),
		CertType:        ssh.UserCert,
		KeyId:           "sshtest",
		ValidPrincipals: principals,
		ValidAfter:      uint64(after.Unix()),
		ValidBefore:     uint64(before.Unix()),
	}
	require.NoError(t, cert.SignCert(rand.Reader, ca))
	signer, err := ssh.NewCertSigner(cert, key)
	require.NoError(t, err)
	return signer
}

// answers answers keyboard-interactive questions with the given answers,
// recording the prompts.
func answers(prompts *[]string, given ...string) ssh.AuthMethod {
	return ssh.KeyboardInteractive(func(name, instruction string, questions []string, echos []bool) ([]string, error) {
		*prompts = append(*prompts, questions...)
		return given, nil
	})
}

func TestAuth(t *testing.T) {
	extra := generateKey()
	alicesKey := generateKey()
	ca := generateKey()
	userKey := generateKey()
	now := time.Now()
	valid := func(principals ...string) ssh.Signer {
		return certificate(t, ca, userKey, principals, now.Add(-time.Hour), now.Add(time.Hour))
	}
	var prompts []string
	srv := newServer(t, &Config{
		User:              "alice",
		AuthorizedKeys:    []ssh.PublicKey{extra.PublicKey()},
		UserKeys:          map[string][]ssh.PublicKey{"alice": {alicesKey.PublicKey()}},
		TrustedUserCAKeys: []ssh.PublicKey{ca.PublicKey()},
		Passwords:         map[string]string{"bob": "secret"},
		KeyboardInteractive: map[string][]Question{"dave": {
			{Prompt: "Name of your first pet: ", Echo: true, Answer: "Rex"},
			{Prompt: "Code: ", Answer: "1234"},
		}},
	})
	noPasswords := newServer(t, nil)
	withAuth := func(s *Server, user string, auth ssh.AuthMethod) *ssh.ClientConfig {
		cc := s.ClientConfig()
		cc.User = user
		cc.Auth = []ssh.AuthMethod{auth}
		return cc
	}
	for _, tc := range []struct {
		name string
		srv  *Server
		cc   *ssh.ClientConfig
		ok   bool
	}{
		{"client key", srv, srv.ClientConfig(), true},
		{"client key, any user", srv, withAuth(srv, "root", ssh.PublicKeys(srv.ClientSigner())), true},
		{"authorized key", srv, withAuth(srv, "carol", ssh.PublicKeys(extra)), true},
		{"unknown key", srv, withAuth(srv, "alice", ssh.PublicKeys(generateKey())), false},
		{"user key", srv, withAuth(srv, "alice", ssh.PublicKeys(alicesKey)), true},
		{"user key of another user", srv, withAuth(srv, "bob", ssh.PublicKeys(alicesKey)), false},
		{"certificate", srv, withAuth(srv, "erin", ssh.PublicKeys(valid("frank", "erin"))), true},
		{"certificate for other principals", srv, withAuth(srv, "erin", ssh.PublicKeys(valid("frank"))), false},
		{"expired certificate", srv, withAuth(srv, "erin", ssh.PublicKeys(certificate(t, ca, userKey, []string{"erin"}, now.Add(-2*time.Hour), now.Add(-time.Hour)))), false},
		{"certificate of an unknown CA", srv, withAuth(srv, "erin", ssh.PublicKeys(certificate(t, generateKey(), userKey, []string{"erin"}, now.Add(-time.Hour), now.Add(time.Hour)))), false},
		{"certificate's key alone", srv, withAuth(srv, "erin", ssh.PublicKeys(userKey)), false},
		{"password", srv, withAuth(srv, "bob", ssh.Password("secret")), true},
		{"wrong password", srv, withAuth(srv, "bob", ssh.Password("guess")), false},
		{"password of another user", srv, withAuth(srv, "alice", ssh.Password("secret")), false},
		{"password auth not enabled", noPasswords, withAuth(noPasswords, "bob", ssh.Password("")), false},
		{"keyboard-interactive", srv, withAuth(srv, "dave", answers(&prompts, "Rex", "1234")), true},
		{"keyboard-interactive, a wrong answer", srv, withAuth(srv, "dave", answers(&prompts, "Rex", "4321")), false},
		{"keyboard-interactive, unknown user", srv, withAuth(srv, "mallory", answers(&prompts, "anything")), false},
		{"keyboard-interactive not enabled", noPasswords, withAuth(noPasswords, "dave", answers(&prompts, "Rex", "1234")), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, err := ssh.Dial("tcp", tc.srv.Addr(), tc.cc)
			if tc.ok {
				require.NoError(t, err)
				assert.Equal(t, tc.cc.User, client.User())
				client.Close()
			} else {
				require.Error(t, err)
				assert.Contains(t, err.Error(), "unable to authenticate")
			}
		})
	}
	assert.Equal(t, []string{
		"Name of your first pet: ", "Code: ",
		"Name of your first pet: ", "Code: ",
		"Password: ",
	}, prompts, "an unknown user is asked a question all the same")
}

// TestAuthEvents checks that every attempt is reported with its method
// and user, in order, a failure with its error.
func TestAuthEvents(t *testing.T) {
	cfg, ev := recordEvents(&Config{Passwords: map[string]string{"bob": "secret"}})
	srv := newServer(t, cfg)
	cc := srv.ClientConfig()
	cc.User = "bob"
	tries := []string{"guess", "secret"}
	cc.Auth = []ssh.AuthMethod{ssh.RetryableAuthMethod(ssh.PasswordCallback(func() (string, error) {
		p := tries[0]
		tries = tries[1:]
		return p, nil
	}), len(tries))}
	client, err := ssh.Dial("tcp", srv.Addr(), cc)
	require.NoError(t, err)
	defer client.Close()

	auths := ev.of(EventAuth, "")
	require.Len(t, auths, 3, "%v", auths)
	assert.Equal(t, "none", auths[0].Type)
	assert.Error(t, auths[0].Err)
	assert.Equal(t, "password", auths[1].Type)
	assert.Error(t, auths[1].Err)
	assert.Equal(t, "password", auths[2].Type)
	assert.NoError(t, auths[2].Err)
	for _, e := range auths {
		assert.Equal(t, "bob", e.User)
	}
}
