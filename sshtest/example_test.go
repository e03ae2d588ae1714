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
// forbids.
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
		PermitOpenCallback: func(host string, port int) bool { return host == "127.0.0.1" },
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

	_, err = client.Dial("tcp", "example.com:80")
	fmt.Println(err)
	// Output:
	// hello through the tunnel
	// ssh: rejected: administratively prohibited ("sshtest: opening example.com:80 is not permitted")
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
