// Command webserver is the reverse-forwarding program of the libssh
// tutorial (chapter 7, web_server) in Go: it asks the SSH server to listen
// on port 8080, accepts each connection made to it as a channel, and answers
// "GET /" with a Hello-World page.
//
// With no -ssh flag it runs offline: it starts the embedded sshtest server,
// plays the browser once itself through the forwarded port, prints what it
// got, and exits. With -ssh it serves through the real server until
// interrupted.
//
//	go run ./examples/webserver
//	go run ./examples/webserver -ssh me@host:22 -i ~/.ssh/id_ed25519 -port 8080
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"time"

	"github.com/sshfwd/sshfwd"
	"github.com/sshfwd/sshfwd/examples/internal/exampleflag"
	"github.com/sshfwd/sshfwd/sshtest"
)

// helloWorld is the tutorial's answer, byte for byte.
const helloWorld = "HTTP/1.1 200 OK\n" +
	"Content-Type: text/html\n" +
	"Content-Length: 113\n" +
	"\n" +
	"<html>\n" +
	"  <head>\n" +
	"    <title>Hello, World!</title>\n" +
	"  </head>\n" +
	"  <body>\n" +
	"    <h1>Hello, World!</h1>\n" +
	"  </body>\n" +
	"</html>\n"

// acceptTimeout is the tutorial's 60000 ms passed to ssh_channel_accept_forward.
const acceptTimeout = 60 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	os.Exit(exampleflag.Status("webserver", err, os.Stderr))
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("webserver", flag.ContinueOnError)
	server := exampleflag.AddServer(fs)
	port := fs.Int("port", -1, "port the server listens on (default 8080 with -ssh, any free port offline)")
	if err := exampleflag.Parse(fs, args); err != nil {
		return err
	}
	if server.Name() == "" {
		if *port < 0 {
			*port = 0
		}
		return offline(ctx, *port, out)
	}
	if *port < 0 {
		*port = 8080
	}
	s, err := server.Dial(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	bound, err := s.ListenForward(ctx, "", *port)
	if err != nil {
		return fmt.Errorf("opening remote port: %w", err)
	}
	fmt.Fprintf(out, "listening on port %d of %s; interrupt to stop\n", bound, server.Name())
	for {
		if err := serveOne(ctx, s, out); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// offline runs the whole loop against the embedded server: listen, fetch
// the page through the forwarded port, print it.
func offline(ctx context.Context, port int, out io.Writer) error {
	srv := sshtest.NewServer(nil)
	defer srv.Close()
	fmt.Fprintf(out, "# no -ssh given: started an embedded SSH server on %s\n", srv.Addr())
	s, err := sshfwd.Dial(ctx, "tcp", srv.Addr(), srv.ClientConfig())
	if err != nil {
		return err
	}
	defer s.Close()
	bound, err := s.ListenForward(ctx, "", port)
	if err != nil {
		return fmt.Errorf("opening remote port: %w", err)
	}
	fmt.Fprintf(out, "# the server listens on 127.0.0.1:%d and forwards connections to us\n", bound)

	served := make(chan error, 1)
	go func() { served <- serveOne(ctx, s, out) }()

	url := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(bound)) + "/"
	fmt.Fprintf(out, "# playing the browser: GET %s\n", url)
	resp, err := fetch(ctx, url)
	if err != nil {
		s.Close()
		<-served
		return err
	}
	if err := <-served; err != nil {
		return err
	}
	fmt.Fprint(out, resp)
	return nil
}

// serveOne is the tutorial's web_server for one connection: accept it,
// read until a request starting with "GET /" arrives, answer, close.
func serveOne(ctx context.Context, s *sshfwd.Session, out io.Writer) error {
	actx, cancel := context.WithTimeout(ctx, acceptTimeout)
	defer cancel()
	ch, port, err := s.AcceptForward(actx)
	if err != nil {
		return fmt.Errorf("waiting for incoming connection: %w", err)
	}
	defer ch.Close()
	ch.SetReadDeadline(time.Now().Add(acceptTimeout))
	var request []byte
	buf := make([]byte, 256)
	for !bytes.HasPrefix(request, []byte("GET /")) {
		n, err := ch.Read(buf)
		request = append(request, buf[:n]...)
		if err != nil {
			return fmt.Errorf("reading incoming data: %w", err)
		}
		if len(request) >= 5 && !bytes.HasPrefix(request, []byte("GET /")) {
			request = request[:0]
		}
	}
	if _, err := io.WriteString(ch, helloWorld); err != nil {
		return fmt.Errorf("sending answer: %w", err)
	}
	fmt.Fprintf(out, "Sent answer to %s on port %d\n", ch.RemoteAddr(), port)
	return ch.CloseWrite()
}

// fetch is the browser: a plain HTTP GET whose raw response it returns.
func fetch(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return "", err
	}
	return fmt.Sprintf("%s %s\nContent-Type: %s\nContent-Length: %d\n\n%s", resp.Proto, resp.Status, resp.Header.Get("Content-Type"), resp.ContentLength, body), nil
}
