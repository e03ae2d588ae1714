package sshconfig_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/sshfwd/sshfwd/sshconfig"
	"github.com/sshfwd/sshfwd/sshtest"
)

// exampleFiles writes what ~/.ssh would hold for srv: a key it accepts, a
// known_hosts file listing it and an ssh_config naming it "lab". It
// returns the config file.
func exampleFiles(dir string, srv *sshtest.Server, key ed25519.PrivateKey) string {
	block, _ := ssh.MarshalPrivateKey(key, "")
	keyFile := filepath.Join(dir, "id_ed25519")
	os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600)
	known := filepath.Join(dir, "known_hosts")
	os.WriteFile(known, []byte(knownhosts.Line([]string{knownhosts.Normalize(srv.Addr())}, srv.HostKey())+"\n"), 0o600)
	host, port, _ := net.SplitHostPort(srv.Addr())
	config := filepath.Join(dir, "config")
	os.WriteFile(config, []byte(fmt.Sprintf(`Host lab
    HostName %s
    Port %s
    User alice
    IdentityFile %s
    IdentityAgent none
    UserKnownHostsFile %s
    GlobalKnownHostsFile none
`, host, port, keyFile, known)), 0o600)
	return config
}

func ExampleDial() {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	authorized, _ := ssh.NewPublicKey(pub)
	srv := sshtest.NewServer(&sshtest.Config{AuthorizedKeys: []ssh.PublicKey{authorized}})
	defer srv.Close()
	dir, _ := os.MkdirTemp("", "sshconfig-example")
	defer os.RemoveAll(dir)
	config := exampleFiles(dir, srv, key)
	ctx := context.Background()

	// Without ConfigFile, Dial reads ~/.ssh/config and /etc/ssh/ssh_config.
	s, err := sshconfig.Dial(ctx, "lab", &sshconfig.Options{ConfigFile: config})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	fmt.Println("logged in as", s.Client().User())
	// Output: logged in as alice
}

func ExampleResolve() {
	dir, _ := os.MkdirTemp("", "sshconfig-example")
	defer os.RemoveAll(dir)
	config := filepath.Join(dir, "config")
	os.WriteFile(config, []byte("Host lab\n  HostName 10.0.0.7\n  User alice\n  ProxyJump bastion\n  Compression yes\n"), 0o600)

	c, err := sshconfig.Resolve("lab", &sshconfig.Options{ConfigFile: config, Overrides: []string{"Port=2222"}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(c.User, c.HostName, c.Port, c.ProxyJump)
	fmt.Println("not acted on:", len(c.Ignored))
	// Output:
	// alice 10.0.0.7 2222 bastion
	// not acted on: 1
}
