package sshtest

import (
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
)

// TestAcceptOutOfDescriptors runs the server out of descriptors, as a
// flood of connections would: accepting fails, and once descriptors are
// free again the server goes on serving instead of having stopped.
func TestAcceptOutOfDescriptors(t *testing.T) {
	var (
		mu     sync.Mutex // guards failed
		failed bool
	)
	srv := newServer(t, &Config{Logf: func(format string, args ...any) {
		if strings.HasPrefix(format, "sshtest: accept:") {
			mu.Lock()
			failed = true
			mu.Unlock()
		}
	}})
	acceptFailed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return failed
	}
	var limit syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &limit))
	fds, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	tight := limit
	tight.Cur = uint64(len(fds)) + 16
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &tight))
	restore := sync.OnceFunc(func() { require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &limit)) })
	t.Cleanup(restore)

	// Every free descriptor is taken but one, which the test's connection
	// takes, so that the server has none left to accept it with.
	var filler []*os.File
	fill := func() {
		for {
			f, err := os.Open(os.DevNull)
			if err != nil {
				return
			}
			filler = append(filler, f)
		}
	}
	var conns []net.Conn
	for range 5 {
		fill()
		require.NotEmpty(t, filler)
		filler[len(filler)-1].Close()
		filler = filler[:len(filler)-1]
		c, err := net.Dial("tcp", srv.Addr())
		require.NoError(t, err)
		conns = append(conns, c)
		t.Cleanup(func() { c.Close() })
		// Another test's descriptor freed meanwhile lets the server
		// accept; then the next round takes that one too.
		deadline := time.Now().Add(time.Second)
		for !acceptFailed() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if acceptFailed() {
			break
		}
	}
	for _, f := range filler {
		f.Close()
	}
	restore()
	require.True(t, acceptFailed(), "accepting never failed")

	// The connection waited in the listen queue: it is served now.
	last := conns[len(conns)-1]
	require.NoError(t, last.SetDeadline(time.Now().Add(10*time.Second)))
	sconn, chans, reqs, err := ssh.NewClientConn(last, srv.Addr(), srv.ClientConfig())
	require.NoError(t, err, "the server stopped serving after running out of descriptors")
	ssh.NewClient(sconn, chans, reqs).Close()
	stillServes(t, srv)
}
