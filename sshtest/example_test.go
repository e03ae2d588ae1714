package sshtest_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd"
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

// greeter serves "hello" to each connection until the example ends.
func greeter() net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "hello")
			c.Close()
		}
	}()
	return l
}

// fetch reads what comes through the local forward on l, trying again
// while the forward is being set up again.
func fetch(l net.Listener) string {
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", l.Addr().String())
		if err == nil {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			msg, _ := io.ReadAll(c)
			c.Close()
			if len(msg) > 0 || time.Now().After(deadline) {
				return string(msg)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// This example tests a client's reconnect logic, here sshfwd's Supervisor
// keeping an ssh -L forward up: the server drops every connection, as a
// restart would, then the network goes silent, which only keep-alives can
// notice, and each time the forward comes back.
func ExampleServer_CloseClientConnections() {
	srv := sshtest.NewServer(nil)
	defer srv.Close()
	svc := greeter()
	defer svc.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()

	sv := &sshfwd.Supervisor{
		Dial: func(ctx context.Context) (*sshfwd.Session, error) {
			return sshfwd.Dial(ctx, "tcp", srv.Addr(), srv.ClientConfig())
		},
		LocalForwards:     []sshfwd.LocalForward{{Listener: ln, RemoteAddr: svc.Addr().String()}},
		KeepAliveInterval: 100 * time.Millisecond,
		KeepAliveCountMax: 2,
		MinBackoff:        10 * time.Millisecond,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sv.Run(ctx) }()
	fmt.Println(fetch(ln))

	srv.CloseClientConnections() // the server restarts
	fmt.Println(fetch(ln))

	for _, c := range srv.Conns() {
		c.Freeze() // the network goes silent: keep-alives must notice
	}
	fmt.Println(fetch(ln))

	cancel()
	<-done
	// Output:
	// hello
	// hello
	// hello
}

// This example puts the server behind a slow link, 100 ms of round trip and
// 256 KiB/s each way, to see how a tunnel behaves on it.
func ExampleThrottle() {
	srv := sshtest.NewServer(&sshtest.Config{
		WrapConn: func(c net.Conn) net.Conn {
			return sshtest.Throttle(sshtest.Delay(c, 50*time.Millisecond), 256<<10)
		},
	})
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
	start := time.Now()
	out, err := sess.Output("head -c 131072 /dev/zero")
	if err != nil {
		log.Fatal(err)
	}
	took := time.Since(start)
	fmt.Printf("%d KiB in at least half a second: %v\n", len(out)>>10, took >= 500*time.Millisecond)
	// Output: 128 KiB in at least half a second: true
}
