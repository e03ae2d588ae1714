package sshtest_test

import (
	"fmt"
	"io"
	"log"
	"net"

	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/sshtest"
)

func ExampleNewServer() {
	srv := sshtest.NewServer(nil)
	defer srv.Close()

	client, err := ssh.Dial("tcp", srv.Addr(), srv.ClientConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		log.Fatal(err)
	}
	defer sess.Close()
	out, err := sess.Output("echo hello from sshtest")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(out))
	// Output: hello from sshtest
}

// This example forwards a connection through the server to a local
// listener, as ssh -L does, and is refused a destination that a callback
// forbids. The callback decides on the address the server is about to
// connect to, so another spelling of a forbidden address is refused too.
func ExampleConfig_permitOpen() {
	greeter, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer greeter.Close()
	go func() {
		c, err := greeter.Accept()
		if err != nil {
			return
		}
		io.WriteString(c, "hello through the tunnel")
		c.Close()
	}()

	srv := sshtest.NewServer(&sshtest.Config{
		PermitOpenCallback: func(_ ssh.ConnMetadata, req sshtest.OpenRequest) bool {
			return req.Addr.String() == greeter.Addr().String()
		},
	})
	defer srv.Close()
	client, err := ssh.Dial("tcp", srv.Addr(), srv.ClientConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	conn, err := client.Dial("tcp", greeter.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	msg, err := io.ReadAll(conn)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(msg))

	_, err = client.Dial("tcp", "[::ffff:127.0.0.1]:1")
	fmt.Println(err)
	// Output:
	// hello through the tunnel
	// ssh: rejected: administratively prohibited ("sshtest: not permitted: opening [::ffff:127.0.0.1]:1 (127.0.0.1:1)")
}

// This example asks the server to listen on a port of its choosing and
// forward connections back to the client, as ssh -R 0 does.
func ExampleServer_reverseForward() {
	srv := sshtest.NewServer(nil)
	defer srv.Close()
	client, err := ssh.Dial("tcp", srv.Addr(), srv.ClientConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	l, err := client.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		io.WriteString(c, "hello from the client side")
		c.Close()
	}()

	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	msg, err := io.ReadAll(conn)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(msg))
	// Output: hello from the client side
}
