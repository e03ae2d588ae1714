package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sshfwd/sshfwd/bench"
)

// Two rounds of some benchmarks, in the format of go test -bench. Round by
// round sshfwd is 1.2× and 1.0× x/crypto, so 1.1× paired, while the
// medians of the two are 610 and 550, 1.11× apart.
const twoRounds = `
BenchmarkStream/cipher=aes128-gcm/server=sshd/client=sshfwd-2   	1	 100 ns/op	 720.00 MB/s	 1.50 cpu-ns/B
BenchmarkStream/cipher=aes128-gcm/server=sshd/client=xcrypto-2  	1	 100 ns/op	 600.00 MB/s	 1.50 cpu-ns/B
BenchmarkCopy/cipher=aes128-gcm/client=sshfwd-2   	1	 100 ns/op	 460.00 MB/s	 1.50 cpu-ns/B
BenchmarkCopy/cipher=aes128-gcm/client=xcrypto-2   	1	 100 ns/op	 400.00 MB/s	 1.50 cpu-ns/B
BenchmarkRequestResponse/via=local/impl=sshfwd-2 	 5000	 200000 ns/op	 180.0 p50-us	 400.0 p99-us	 5000 rt/s
BenchmarkRequestResponse/via=local/impl=openssh-2 	 5000	 250000 ns/op	 200.0 p50-us	 500.0 p99-us	 4000 rt/s
BenchmarkLocalForward/cipher=chacha20-poly1305/impl=sshfwd-2 	 1	 100 ns/op	 200.00 MB/s	 3.00 cpu-ns/B
BenchmarkLocalForward/cipher=chacha20-poly1305/impl=openssh-2 	 1	 100 ns/op	 400.00 MB/s	 1.50 cpu-ns/B
BenchmarkStream/cipher=aes128-gcm/server=sshd/client=xcrypto-2  	1	 100 ns/op	 500.00 MB/s	 1.25 cpu-ns/B
BenchmarkStream/cipher=aes128-gcm/server=sshd/client=sshfwd-2   	1	 100 ns/op	 500.00 MB/s	 1.00 cpu-ns/B
BenchmarkConnRate/via=local/impl=sshfwd-2 	 5000	 1 ns/op	 2000 conns/s	 150.0 cpu-us/conn
BenchmarkConnRate/via=local/impl=openssh-2 	 5000	 1 ns/op	 2500 conns/s	 100.0 cpu-us/conn
BenchmarkConnRate/via=local/impl=xcrypto-2 	 5000	 1 ns/op	 2000 conns/s	 180.0 cpu-us/conn
BenchmarkIdleHeap-2	1	 0 ns/op	 10000 conns	 8.25 heap-KiB/conn
`

func TestSummary(t *testing.T) {
	res, err := bench.ParseResults(strings.NewReader(twoRounds))
	require.NoError(t, err)
	var out strings.Builder
	summary(&out, res)
	lines := strings.Split(out.String(), "\n")

	row := func(prefix string) string {
		for _, l := range lines {
			if strings.HasPrefix(l, "| "+prefix) {
				return l
			}
		}
		t.Fatalf("no row %q in\n%s", prefix, out.String())
		return ""
	}
	// The ratio is the median of 1.2 and 1.0, not 610/550; what bounds it
	// comes with the figure that shows it.
	assert.Equal(t, "| OpenForward vs x/crypto `Client.Dial`, via sshd, aes128-gcm | MB/s | 610 | 550 | 1.10× | — | "+
		"bounded by the copy Write makes so that write deadlines work: with io.Copy, which needs none, 1.15× |",
		row("OpenForward vs x/crypto `Client.Dial`, via sshd, aes128-gcm"))
	assert.Equal(t, "| CPU of this process per byte, OpenForward vs x/crypto `Client.Dial`, via sshd, aes128-gcm (lower is better) | cpu-ns/B | 1.25 | 1.38 | 0.90× | — |  |",
		row("CPU of this process per byte, OpenForward vs x/crypto `Client.Dial`, via sshd, aes128-gcm"))
	assert.Equal(t, "| heap per idle connection through ForwardLocal (KiB) | heap-KiB/conn | 8.25 | — | — | ≤ 32 | yes |",
		row("heap per idle connection"))
	assert.Equal(t, "| request/response, 64 B each way on one connection, ForwardLocal vs `ssh -L`: round trips/s | rt/s | 5000 | 4000 | 1.25× | ≥ 1× | yes |",
		row("request/response, 64 B each way on one connection, ForwardLocal"))
	assert.Equal(t, "| request/response, ForwardLocal vs `ssh -L`: median round trip (µs, lower is better) | p50-us | 180 | 200 | 0.90× | ≤ 1× | yes |",
		row("request/response, ForwardLocal vs `ssh -L`: median"))
	assert.Equal(t, "| ForwardLocal vs `ssh -N -L`, one stream, chacha20-poly1305 | MB/s | 200 | 400 | 0.50× | — | "+
		"bounded by x/crypto's ChaCha20, which has no amd64 assembly: CPU per byte vs ssh's, 2.00× |",
		row("ForwardLocal vs `ssh -N -L`, one stream, chacha20-poly1305"))
	// A goal not met says what bounds the figure, with the evidence.
	assert.Equal(t, "| short connections, 16 clients each connecting, 64 B each way, closing, ForwardLocal vs `ssh -L`: connections/s | conns/s | 2000 | 2500 | 0.80× | ≥ 1× | "+
		"no, bounded by "+xcryptoBy+": x/crypto's own Client.Dial, to a port, 0.80× |",
		row("short connections, 16 clients each connecting, 64 B each way, closing, ForwardLocal"))
	// A comparison without samples says so rather than inventing a figure.
	assert.Equal(t, "| short connections, 16 clients each connecting, 64 B each way, closing, ServeSOCKS vs `ssh -D`: connections/s | conns/s | n/a | n/a | n/a | ≥ 1× |  |",
		row("short connections, 16 clients each connecting, 64 B each way, closing, ServeSOCKS"))
	assert.Equal(t, "| ForwardLocal vs `ssh -N -L`, one stream, aes128-gcm | MB/s | n/a | n/a | n/a | — |  |",
		row("ForwardLocal vs `ssh -N -L`, one stream, aes128-gcm"))
	// A bound is met on the bound itself.
	assert.Equal(t, "| CPU of this process per byte, io.Copy into OpenForward vs into `Client.Dial`, aes128-gcm (lower is better) | cpu-ns/B | 1.50 | 1.50 | 1.00× | ≤ 1× | yes |",
		row("CPU of this process per byte, io.Copy into OpenForward"))
	assert.Contains(t, out.String(), "Idle connections held: 10000.")
	assert.NotContains(t, out.String(), "**no**")
}

func TestDetails(t *testing.T) {
	res, err := bench.ParseResults(strings.NewReader(twoRounds))
	require.NoError(t, err)
	var out strings.Builder
	details(&out, res)
	assert.Contains(t, out.String(), "| Stream/cipher=aes128-gcm/server=sshd/client=sshfwd | MB/s | 610 | 2 | 500 | 720 |")
	assert.Contains(t, out.String(), "| RequestResponse/via=local/impl=sshfwd | p99-us | 400 | 1 | 400 | 400 |")
	assert.NotContains(t, out.String(), "ns/op", "ns/op is not a figure of these benchmarks")
}
