// Command googlefetch is the direct-forwarding program of the libssh
// tutorial (chapter 7, direct_forwarding) in Go: it opens a direct-tcpip
// channel to www.google.com:80 through an SSH server, as if from
// localhost:5555, sends a GET and prints the page.
//
// With no -ssh flag it runs offline: it starts the embedded sshtest server
// and a local HTTP server that stands in for Google, and fetches from that.
//
//	go run ./examples/googlefetch
//	go run ./examples/googlefetch -ssh me@host:22 -i ~/.ssh/id_ed25519
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/sshfwd/sshfwd"
	"github.com/sshfwd/sshfwd/examples/internal/exampleflag"
	"github.com/sshfwd/sshfwd/sshtest"
)

func main() {
	os.Exit(exampleflag.Status("googlefetch", run(os.Args[1:], os.Stdout), os.Stderr))
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("googlefetch", flag.ContinueOnError)
	server := exampleflag.AddServer(fs)
	target := fs.String("target", "www.google.com:80", "host:port the server connects to (with -ssh)")
	if err := exampleflag.Parse(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var s *sshfwd.Session
	var err error
	// vhost is the Host the request names: the target's, or Google's when
	// a local server stands in for it.
	vhost, _, _ := net.SplitHostPort(*target)
	if server.Name() == "" {
		var stop func()
		s, *target, stop, err = offline(ctx, out)
		if err != nil {
			return err
		}
		defer stop()
	} else if s, err = server.Dial(ctx); err != nil {
		return err
	}
	defer s.Close()
	return fetch(ctx, s, *target, vhost, out)
}

// offline starts an embedded SSH server and a local web server standing in
// for Google, and returns a Session to the first and the address of the second.
func offline(ctx context.Context, out io.Writer) (*sshfwd.Session, string, func(), error) {
	web := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<html><body><h1>Hello from a stand-in for %s</h1></body></html>\n", r.Host)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", nil, err
	}
	go web.Serve(ln)
	srv := sshtest.NewServer(nil)
	fmt.Fprintf(out, "# no -ssh given: started an embedded SSH server on %s\n", srv.Addr())
	fmt.Fprintf(out, "# and a web server on %s standing in for www.google.com:80\n", ln.Addr())
	stop := func() {
		srv.Close()
		web.Close()
	}
	s, err := sshfwd.Dial(ctx, "tcp", srv.Addr(), srv.ClientConfig())
	if err != nil {
		stop()
		return nil, "", nil, err
	}
	return s, ln.Addr().String(), stop, nil
}

// fetch is the tutorial's direct_forwarding: open the channel, write the
// request, read the answer.
func fetch(ctx context.Context, s *sshfwd.Session, target, vhost string, out io.Writer) error {
	host, portStr, err := net.SplitHostPort(target)
	if err != nil {
		return err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("bad port in -target %q", target)
	}
	ch, err := s.OpenForward(ctx, host, port, "localhost", 5555)
	if err != nil {
		return err
	}
	defer ch.Close()
	fmt.Fprintf(out, "# opened a direct-tcpip channel to %s from localhost:5555\n", target)
	if dl, ok := ctx.Deadline(); ok {
		ch.SetDeadline(dl)
	}
	get := "GET / HTTP/1.1\r\nHost: " + vhost + "\r\nConnection: close\r\n\r\n"
	if _, err := io.WriteString(ch, get); err != nil {
		return err
	}
	fmt.Fprintf(out, "# sent GET / for %s; the response follows\n", vhost)
	_, err = io.Copy(out, ch)
	return err
}
