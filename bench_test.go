package sshfwd_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/internal/peers"
)

// benchCiphers are the ciphers the benchmarks compare under.
var benchCiphers = []string{"aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com"}

// countAfterEOF reads everything until EOF and answers with how many bytes
// it read, so a writer knows its data arrived.
func countAfterEOF(c net.Conn) {
	n, err := io.Copy(io.Discard, c)
	if err != nil {
		return
	}
	binary.Write(c, binary.BigEndian, n)
}

// pump writes b.N chunks to c, sends EOF and waits for the byte count.
func pump(b *testing.B, c net.Conn) {
	chunk := make([]byte, 1<<20)
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	require.NoError(b, c.(interface{ CloseWrite() error }).CloseWrite())
	var n int64
	require.NoError(b, binary.Read(c, binary.BigEndian, &n))
	b.StopTimer()
	require.Equal(b, int64(b.N)*int64(len(chunk)), n)
}

// BenchmarkOpenForward compares a Channel from OpenForward with the conn of
// x/crypto's Client.Dial, through the same OpenSSH sshd with the same
// cipher: one stream, 1 MiB writes.
func BenchmarkOpenForward(b *testing.B) {
	peers.Require(b, peers.SSHDBin)
	d := peers.StartSSHD(b, peers.SSHDOptions{})
	sink := tcpServer(b, countAfterEOF)
	for _, cipher := range benchCiphers {
		cfg := d.ClientConfig()
		cfg.Ciphers = []string{cipher}
		b.Run("cipher="+cipher+"/impl=sshfwd", func(b *testing.B) {
			s := dial(b, d.Addr, cfg)
			ch, err := s.OpenForward(context.Background(), "127.0.0.1", sink.Port, "localhost", 1)
			require.NoError(b, err)
			defer ch.Close()
			pump(b, ch)
		})
		b.Run("cipher="+cipher+"/impl=xcrypto", func(b *testing.B) {
			client, err := ssh.Dial("tcp", d.Addr, cfg)
			require.NoError(b, err)
			defer client.Close()
			c, err := client.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(sink.Port)))
			require.NoError(b, err)
			defer c.Close()
			pump(b, c)
		})
	}
}

// BenchmarkChannelOpen measures opening and closing one channel, sshfwd
// against x/crypto, through OpenSSH sshd.
func BenchmarkChannelOpen(b *testing.B) {
	peers.Require(b, peers.SSHDBin)
	d := peers.StartSSHD(b, peers.SSHDOptions{})
	sink := tcpServer(b, echo)
	b.Run("impl=sshfwd", func(b *testing.B) {
		s := dial(b, d.Addr, d.ClientConfig())
		for range b.N {
			ch, err := s.OpenForward(context.Background(), "127.0.0.1", sink.Port, "localhost", 1)
			require.NoError(b, err)
			ch.Close()
		}
	})
	b.Run("impl=xcrypto", func(b *testing.B) {
		client, err := ssh.Dial("tcp", d.Addr, d.ClientConfig())
		require.NoError(b, err)
		defer client.Close()
		for range b.N {
			c, err := client.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(sink.Port)))
			require.NoError(b, err)
			c.Close()
		}
	})
}
