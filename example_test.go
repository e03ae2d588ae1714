package sshfwd_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"time"

	"golang.org/x/net/proxy"

	"github.com/sshfwd/sshfwd"
	"github.com/sshfwd/sshfwd/sshtest"
)

// The libssh tutorial's direct_forwarding: open a channel through the
// server to a web server and fetch a page.
func ExampleSession_OpenForward() {
	srv := sshtest.NewServer(nil)
	defer srv.Close()
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "Hello through SSH")
	}))
	defer web.Close()
	host, port := splitHostPort(web.Listener.Addr().String())

	ctx := context.Background()
	s, err := sshfwd.Dial(ctx, "tcp", srv.Addr(), srv.ClientConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	ch, err := s.OpenForward(ctx, host, port, "localhost", 5555)
	if err != nil {
		log.Fatal(err)
	}
	defer ch.Close()
	io.WriteString(ch, "GET / HTTP/1.1\r\nHost: www.google.com\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(ch), nil)
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status)
	fmt.Println(string(body))
	// Output:
	// 200 OK
	// Hello through SSH
}

// DialContext plugs the tunnel into anything that dials, here net/http.
func ExampleSession_DialContext() {
	srv := sshtest.NewServer(nil)
	defer srv.Close()
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "you asked for %s", r.URL.Path)
	}))
	defer web.Close()

	s, err := sshfwd.Dial(context.Background(), "tcp", srv.Addr(), srv.ClientConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	transport := &http.Transport{DialContext: s.DialContext}
	defer transport.CloseIdleConnections()
	resp, err := (&http.Client{Transport: transport}).Get(web.URL + "/tunnel")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(string(body))
	// Output: you asked for /tunnel
}

// The libssh tutorial's web_server: the server listens, each connection
// comes back as a channel.
func ExampleSession_ListenForward() {
	srv := sshtest.NewServer(nil)
	defer srv.Close()
	ctx := context.Background()
	s, err := sshfwd.Dial(ctx, "tcp", srv.Addr(), srv.ClientConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	port, err := s.ListenForward(ctx, "localhost", 0)
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		ch, _, err := s.AcceptForward(ctx)
		if err != nil {
			return
		}
		defer ch.Close()
		io.WriteString(ch, "hello from the client side\n")
		ch.CloseWrite()
	}()

	// Someone connects to the server's port.
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	msg, _ := io.ReadAll(c)
	fmt.Print(string(msg))
	// Output: hello from the client side
}

// Listen gives a net.Listener for a port on the server, so a Go HTTP server
// can serve through the tunnel.
func ExampleSession_Listen() {
	srv := sshtest.NewServer(nil)
	defer srv.Close()
	s, err := sshfwd.Dial(context.Background(), "tcp", srv.Addr(), srv.ClientConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	ln, err := s.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	web := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "served from behind the tunnel")
	})}
	go web.Serve(ln)
	defer web.Close()

	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(string(body))
	// Output: served from behind the tunnel
}

func splitHostPort(addr string) (string, int) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		log.Fatal(err)
	}
	port, err := strconv.Atoi(ps)
	if err != nil {
		log.Fatal(err)
	}
	return host, port
}

// ForwardLocal is ssh -L: connections to a local listener are forwarded
// through the server.
func ExampleSession_ForwardLocal() {
	srv := sshtest.NewServer(nil)
	defer srv.Close()
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "reached through -L")
	}))
	defer web.Close()
	s, err := sshfwd.Dial(context.Background(), "tcp", srv.Addr(), srv.ClientConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ForwardLocal(ctx, ln, web.Listener.Addr().String()) }()

	transport := &http.Transport{DisableKeepAlives: true}
	resp, err := (&http.Client{Transport: transport}).Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(string(body))
	stop()
	fmt.Println(<-done)
	// Output:
	// reached through -L
	// context canceled
}

// ForwardRemote is ssh -R: the server listens, and connections to it reach
// a local address.
func ExampleSession_ForwardRemote() {
	srv := sshtest.NewServer(nil)
	defer srv.Close()
	local, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer local.Close()
	go func() {
		c, err := local.Accept()
		if err != nil {
			return
		}
		io.WriteString(c, "hello from behind the client\n")
		c.Close()
	}()
	s, err := sshfwd.Dial(context.Background(), "tcp", srv.Addr(), srv.ClientConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	remote, err := net.Listen("tcp", "127.0.0.1:0") // pick a free port for the server
	if err != nil {
		log.Fatal(err)
	}
	remoteAddr := remote.Addr().String()
	remote.Close()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ForwardRemote(ctx, remoteAddr, local.Addr().String()) }()

	var c net.Conn
	for c == nil { // until the server listens
		time.Sleep(10 * time.Millisecond)
		c, _ = net.Dial("tcp", remoteAddr)
	}
	msg, _ := io.ReadAll(c)
	c.Close()
	fmt.Print(string(msg))
	stop()
	fmt.Println(<-done)
	// Output:
	// hello from behind the client
	// context canceled
}

// ListenContext bounds the wait for the server's answer, which a server
// that never answers would otherwise make last as long as the connection.
func ExampleSession_ListenContext() {
	srv := sshtest.NewServer(nil)
	defer srv.Close()
	s, err := sshfwd.Dial(context.Background(), "tcp", srv.Addr(), srv.ClientConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ln, err := s.ListenContext(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	fmt.Println(ln.Addr().(*net.TCPAddr).Port > 0)
	// Output:
	// true
}

// DialSSH is ssh -J: a Session to a second server, reached through the
// first.
func ExampleSession_DialSSH() {
	bastion := sshtest.NewServer(nil)
	defer bastion.Close()
	inner := sshtest.NewServer(nil)
	defer inner.Close()

	ctx := context.Background()
	jump, err := sshfwd.Dial(ctx, "tcp", bastion.Addr(), bastion.ClientConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer jump.Close()
	s, err := jump.DialSSH(ctx, inner.Addr(), inner.ClientConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	sess, err := s.Client().NewSession()
	if err != nil {
		log.Fatal(err)
	}
	out, err := sess.Output("echo inside")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(out))
	// Output: inside
}

// ServeSOCKS is ssh -D: a local SOCKS server whose connections the SSH
// server makes. Here golang.org/x/net/proxy is the SOCKS5 client.
func ExampleSession_ServeSOCKS() {
	srv := sshtest.NewServer(nil)
	defer srv.Close()
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "reached through -D")
	}))
	defer web.Close()
	s, err := sshfwd.Dial(context.Background(), "tcp", srv.Addr(), srv.ClientConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeSOCKS(ctx, ln) }()

	socks, err := proxy.SOCKS5("tcp", ln.Addr().String(), nil, proxy.Direct)
	if err != nil {
		log.Fatal(err)
	}
	transport := &http.Transport{DialContext: socks.(proxy.ContextDialer).DialContext, DisableKeepAlives: true}
	resp, err := (&http.Client{Transport: transport}).Get(web.URL)
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(string(body))
	stop()
	fmt.Println(<-done)
	// Output:
	// reached through -D
	// context canceled
}
