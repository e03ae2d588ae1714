package sshfwd_test

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd"
	"github.com/sshfwd/sshfwd/internal/peers"
	"github.com/sshfwd/sshfwd/internal/testnet"
	"github.com/sshfwd/sshfwd/sshtest"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(hostileEnv); spec != "" {
		os.Exit(runHostile(spec))
	}
	goleak.VerifyTestMain(m)
}

// testTimeout bounds every wait in these tests.
const testTimeout = 30 * time.Second

func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// newServer starts an sshtest server that the test closes when it ends.
func newServer(t testing.TB, cfg *sshtest.Config) *sshtest.Server {
	t.Helper()
	srv := sshtest.NewServer(cfg)
	t.Cleanup(func() { srv.Close() })
	return srv
}

// dial returns a Session to addr that the test closes when it ends.
func dial(t testing.TB, addr string, cfg *ssh.ClientConfig) *sshfwd.Session {
	t.Helper()
	s, err := sshfwd.Dial(testContext(t), "tcp", addr, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// startSSHD starts OpenSSH's sshd and returns a Session to it.
func startSSHD(t testing.TB, config ...string) (*peers.SSHD, *sshfwd.Session) {
	t.Helper()
	peers.Require(t, "/usr/sbin/sshd")
	d := peers.StartSSHD(t, peers.SSHDOptions{Config: config})
	return d, dial(t, d.Addr, d.ClientConfig())
}

// The loopback servers and checks shared with the other packages' tests.
var (
	serve        = testnet.Serve
	tcpServer    = testnet.TCPServer
	unixServer   = testnet.UnixServer
	hashAfterEOF = testnet.HashAfterEOF
	echo         = testnet.Echo
	roundTrip    = testnet.RoundTrip
	randomBytes  = testnet.RandomBytes
	tcpPair      = testnet.TCPPair
	runForward   = testnet.Background
)

// hashRoundTrip writes data to c, sends EOF, and checks that the answer is
// the sha256 of data: the half-close round trip.
func hashRoundTrip(t testing.TB, c net.Conn, data []byte) {
	t.Helper()
	require.NoError(t, roundTrip(c, data))
}

// isTimeout reports whether err is a deadline error in both of the ways
// callers check for one.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) && errors.As(err, &ne) && ne.Timeout()
}

// receive waits for the error a goroutine of the test sends on done,
// failing the test with what if none arrives in time.
func receive(t testing.TB, done <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(testTimeout):
		t.Fatal(what)
		return nil
	}
}
