package bench_test

import (
	"io"
	"math"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sshfwd/sshfwd/bench"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		xs   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		assert.Equal(t, tc.want, bench.Median(tc.xs), "%v", tc.xs)
	}
	assert.True(t, math.IsNaN(bench.Median(nil)))
}

func TestRatio(t *testing.T) {
	// Round by round, the first is twice the second, though the rounds
	// differ more than that: the paired ratio sees 2, the medians 1.
	assert.Equal(t, 2.0, bench.Ratio([]float64{2, 20, 200}, []float64{1, 10, 100}))
	// Unpaired (a round is missing), it is the ratio of the medians.
	assert.Equal(t, 10.0/55, bench.Ratio([]float64{2, 10, 200}, []float64{10, 100}))
	assert.Equal(t, 0.5, bench.Ratio([]float64{1, 3}, []float64{2, 6}))
	assert.True(t, math.IsNaN(bench.Ratio(nil, []float64{1})))
	assert.True(t, math.IsNaN(bench.Ratio(nil, nil)))
}

func TestPercentile(t *testing.T) {
	xs := make([]float64, 100)
	for i := range xs {
		xs[i] = float64(100 - i)
	}
	assert.Equal(t, 50.0, bench.Percentile(xs, 50))
	assert.Equal(t, 99.0, bench.Percentile(xs, 99))
	assert.Equal(t, 100.0, bench.Percentile(xs, 100))
	assert.Equal(t, 7.0, bench.Percentile([]float64{7}, 99))
	assert.True(t, math.IsNaN(bench.Percentile(nil, 50)))
}

func TestJain(t *testing.T) {
	assert.InDelta(t, 1, bench.Jain([]float64{5, 5, 5, 5}), 1e-12)
	assert.InDelta(t, 0.25, bench.Jain([]float64{8, 0, 0, 0}), 1e-12)
	assert.True(t, math.IsNaN(bench.Jain([]float64{0, 0})))
}

func TestParseResults(t *testing.T) {
	out := `goos: linux
BenchmarkStream/cipher=aes128-gcm/server=sshd/client=sshfwd-2 	       1	 1518061941 ns/op	 353.66 MB/s
--- SKIP: BenchmarkIdleHeap
BenchmarkConcurrent/streams=1000/client=sshfwd-2 	 1	 298.7 MB/s	 0.8362 jain	 0.875 min/median
BenchmarkStream/cipher=aes128-gcm/server=sshd/client=sshfwd-2 	       1	 1418061941 ns/op	 373.66 MB/s
BenchmarkIdleHeap 	 1	 10000 conns	 8.243 heap-KiB/conn
PASS
`
	res, err := bench.ParseResults(strings.NewReader(out))
	require.NoError(t, err)
	assert.Equal(t, []float64{353.66, 373.66}, res.Samples("BenchmarkStream/cipher=aes128-gcm/server=sshd/client=sshfwd", "MB/s"))
	assert.Equal(t, []float64{0.8362}, res.Samples("BenchmarkConcurrent/streams=1000/client=sshfwd", "jain"))
	assert.Equal(t, []float64{8.243}, res.Samples("BenchmarkIdleHeap", "heap-KiB/conn"))
	assert.Len(t, res, 3)

	_, err = bench.ParseResults(strings.NewReader("PASS\n"))
	assert.ErrorIs(t, err, bench.ErrNoResults)
}

// TestSinkBlast checks the pieces the throughput benchmarks rely on: Blast
// gets the Sink's count back only if every byte arrived, and Counts follows
// each connection.
func TestSinkBlast(t *testing.T) {
	sink := newSink(t)
	for _, n := range []int64{0, 1, bench.ChunkSize + 7} {
		c, err := net.Dial("tcp", sink.Addr().String())
		require.NoError(t, err)
		assert.NoError(t, bench.Blast(c, n))
		c.Close()
	}
	assert.Equal(t, []int64{0, 1, bench.ChunkSize + 7}, sink.Counts())
}

// TestGreeterVisit checks the exchange that leaves an idle connection
// behind in BenchmarkIdleHeap.
func TestGreeterVisit(t *testing.T) {
	g, err := bench.NewGreeter()
	require.NoError(t, err)
	defer g.Close()
	c, err := net.Dial("tcp", g.Addr().String())
	require.NoError(t, err)
	require.NoError(t, bench.Visit(c))
	assert.Equal(t, 1, g.Open())
	c.Close()
}

// TestDelay checks the long link of BenchmarkSlowLink: a round trip through
// a Delay to an echo server takes at least twice its delay, and EOF comes
// through.
func TestDelay(t *testing.T) {
	const d = 20 * time.Millisecond
	link, err := bench.NewDelay(newEcho(t).String(), d)
	require.NoError(t, err)
	defer link.Close()
	c, err := net.Dial("tcp", link.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	start := time.Now()
	require.NoError(t, bench.Ping(c))
	assert.GreaterOrEqual(t, time.Since(start), 2*d)
	require.NoError(t, c.(*net.TCPConn).CloseWrite())
	n, err := c.Read(make([]byte, 1))
	assert.Equal(t, 0, n)
	assert.Equal(t, io.EOF, err)
}

// TestProcCPU checks that procCPU reads what getrusage says of this
// process, to its 10 ms ticks.
func TestProcCPU(t *testing.T) {
	for start := time.Now(); time.Since(start) < 50*time.Millisecond; {
	}
	assert.InDelta(t, cpuTime(t).Seconds(), procCPU(t, os.Getpid()).Seconds(), 0.02)
}
