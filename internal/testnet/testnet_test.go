package testnet

import (
	"net"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRoundTrip(t *testing.T) {
	for _, serve := range []func(testing.TB, func(net.Conn)) (string, string){
		func(t testing.TB, h func(net.Conn)) (string, string) { return "tcp", TCPServer(t, h).String() },
		func(t testing.TB, h func(net.Conn)) (string, string) { return "unix", UnixServer(t, h) },
	} {
		network, addr := serve(t, HashAfterEOF)
		c, err := net.Dial(network, addr)
		require.NoError(t, err)
		assert.NoError(t, RoundTrip(c, RandomBytes(t, 1<<20)))
		c.Close()

		// An echo answers with the data itself, not its hash: RoundTrip
		// must notice.
		network, addr = serve(t, Echo)
		c, err = net.Dial(network, addr)
		require.NoError(t, err)
		assert.ErrorContains(t, RoundTrip(c, []byte("x")), "want sha256")
		c.Close()
	}
}

func TestKeyFile(t *testing.T) {
	file, signer := KeyFile(t, t.TempDir())
	pem, err := os.ReadFile(file)
	require.NoError(t, err)
	parsed, err := ssh.ParsePrivateKey(pem)
	require.NoError(t, err)
	assert.Equal(t, signer.PublicKey().Marshal(), parsed.PublicKey().Marshal())
}
