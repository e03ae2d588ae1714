package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sshfwd/sshfwd/bench"
)

// Two rounds of two benchmarks, in the format of go test -bench. Round by
// round sshfwd is 1.2× and 1.0× x/crypto, so 1.1× paired, while the
// medians of the two are 610 and 550, 1.11× apart.
const twoRounds = `
BenchmarkStream/cipher=aes128-gcm/server=sshd/client=sshfwd-2   	1	 100 ns/op	 720.00 MB/s	 1.50 cpu-ns/B
BenchmarkStream/cipher=aes128-gcm/server=sshd/client=xcrypto-2  	1	 100 ns/op	 600.00 MB/s	 1.50 cpu-ns/B
BenchmarkStream/cipher=aes128-gcm/server=sshd/client=xcrypto-2  	1	 100 ns/op	 500.00 MB/s	 1.25 cpu-ns/B
BenchmarkStream/cipher=aes128-gcm/server=sshd/client=sshfwd-2   	1	 100 ns/op	 500.00 MB/s	 1.00 cpu-ns/B
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
	// The ratio is the median of 1.2 and 1.0, not 610/550.
	assert.Equal(t, "| OpenForward vs x/crypto `Client.Dial`, via sshd, aes128-gcm | MB/s | 610 | 550 | 1.10× | ≥ 1× | yes |",
		row("OpenForward vs x/crypto `Client.Dial`, via sshd, aes128-gcm"))
	assert.Equal(t, "| CPU of this process per byte, OpenForward vs x/crypto `Client.Dial`, via sshd, aes128-gcm (lower is better) | cpu-ns/B | 1.25 | 1.38 | 0.90× | — |  |",
		row("CPU of this process per byte, OpenForward vs x/crypto `Client.Dial`, via sshd, aes128-gcm"))
	assert.Equal(t, "| heap per idle connection through ForwardLocal (KiB) | heap-KiB/conn | 8.25 | — | — | ≤ 32 | yes |",
		row("heap per idle connection"))
	// A comparison without samples says so rather than inventing a figure.
	assert.Equal(t, "| ForwardLocal vs `ssh -N -L`, one stream, aes128-gcm | MB/s | n/a | n/a | n/a | ≥ 1.3× |  |",
		row("ForwardLocal vs `ssh -N -L`, one stream, aes128-gcm"))
	assert.Contains(t, out.String(), "Idle connections held: 10000.")
}

func TestDetails(t *testing.T) {
	res, err := bench.ParseResults(strings.NewReader(twoRounds))
	require.NoError(t, err)
	var out strings.Builder
	details(&out, res)
	assert.Contains(t, out.String(), "| Stream/cipher=aes128-gcm/server=sshd/client=sshfwd | MB/s | 610 | 2 | 500 | 720 |")
	assert.NotContains(t, out.String(), "ns/op", "ns/op is not a figure of these benchmarks")
}
