package sshtest

import (
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
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
	var limit syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &limit))
	fds, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)

	// Room for one connection's two ends and the client end of another:
	// the listing counted its own descriptor, closed since.
	tight := limit
	tight.Cur = uint64(len(fds)) + 2
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &tight))
	restore := sync.OnceFunc(func() { require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &limit)) })
	t.Cleanup(restore)
	var conns []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			break
		}
		conns = append(conns, c)
		t.Cleanup(func() { c.Close() })
	}
	assert.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return failed
	}, 5*time.Second, 5*time.Millisecond, "accepting never failed")
	restore()
	require.NotEmpty(t, conns)

	// The last connection waited in the listen queue: it is served now.
	last := conns[len(conns)-1]
	require.NoError(t, last.SetDeadline(time.Now().Add(10*time.Second)))
	sconn, chans, reqs, err := ssh.NewClientConn(last, srv.Addr(), srv.ClientConfig())
	require.NoError(t, err, "the server stopped serving after running out of descriptors")
	ssh.NewClient(sconn, chans, reqs).Close()
	stillServes(t, srv)
}
