package bench_test

import (
	"context"
	"flag"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/bench"
	"github.com/sshfwd/sshfwd/internal/peers"
)

// The sizes of the benchmarks; bench/run makes them smaller with -quick.
var (
	streamBytes = flag.Int64("sshfwd.stream", 512<<20, "bytes per stream in BenchmarkLocalForward and BenchmarkStream")
	warmup      = flag.Duration("sshfwd.warmup", time.Second, "how long BenchmarkConcurrent lets the streams run before it measures")
	window      = flag.Duration("sshfwd.window", 3*time.Second, "how long BenchmarkConcurrent measures")
	idleConns   = flag.Int("sshfwd.idle", 10000, "idle connections BenchmarkIdleHeap holds open")
	slowBytes   = flag.Int64("sshfwd.slow", 128<<20, "bytes of the stream in BenchmarkSlowLink")
	linkDelay   = flag.Duration("sshfwd.delay", 25*time.Millisecond, "how long BenchmarkSlowLink's link holds bytes each way")
	reverse     = flag.Bool("sshfwd.reverse", false, "run what each benchmark compares in the opposite order (bench/run does so every other round)")
)

// inOrder returns xs, or xs backwards with -sshfwd.reverse: whichever runs
// first in a round may find the machine in another state than whichever
// runs second, and alternating the order cancels that out.
func inOrder[T any](xs []T) []T {
	if !*reverse {
		return xs
	}
	r := slices.Clone(xs)
	slices.Reverse(r)
	return r
}

// ciphers are the ciphers throughput is compared under, by the short names
// the benchmark names use.
var ciphers = []struct{ short, name string }{
	{"aes128-gcm", "aes128-gcm@openssh.com"},
	{"chacha20-poly1305", "chacha20-poly1305@openssh.com"},
}

// An opener opens forwarded streams to ports of 127.0.0.1 on one SSH
// connection, and closes the connection.
type opener struct {
	open  func(port int) (net.Conn, error)
	close func()
}

// The two clients compared: sshfwd's OpenForward and x/crypto's Client.Dial.
// Each connects to the SSH server at addr; a cleanup closes the connection.
var clients = map[string]func(b testing.TB, addr string, cfg *ssh.ClientConfig) opener{
	"sshfwd": func(b testing.TB, addr string, cfg *ssh.ClientConfig) opener {
		s := dial(b, addr, cfg)
		return opener{
			open: func(port int) (net.Conn, error) {
				return s.OpenForward(context.Background(), "127.0.0.1", port, "127.0.0.1", 0)
			},
			close: func() { s.Close() },
		}
	},
	"xcrypto": func(b testing.TB, addr string, cfg *ssh.ClientConfig) opener {
		c := dialXCrypto(b, addr, cfg)
		return opener{
			open: func(port int) (net.Conn, error) {
				return c.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			},
			close: func() { c.Close() },
		}
	},
}

// streams sends b.N streams of *streamBytes to a Sink, one at a time, each
// on a conn from open, and reports MB/s and, with cpu, the CPU time per byte
// (cpu-ns/B) that cpu counts.
func streams(b *testing.B, cpu func(testing.TB) time.Duration, open func() (net.Conn, error)) {
	stream(b, *streamBytes, cpu, bench.Blast, open)
}

// stream is streams of n bytes each with send, Blast or Pour, for the way
// bytes are sent.
func stream(b *testing.B, n int64, cpu func(testing.TB) time.Duration, send func(net.Conn, int64) error, open func() (net.Conn, error)) {
	var used time.Duration
	b.SetBytes(n)
	b.ResetTimer()
	if cpu != nil {
		used = cpu(b)
	}
	for range b.N {
		c, err := open()
		require.NoError(b, err)
		err = send(c, n)
		c.Close()
		require.NoError(b, err)
	}
	b.StopTimer()
	if cpu != nil {
		used = cpu(b) - used
		b.ReportMetric(float64(used.Nanoseconds())/float64(int64(b.N)*n), "cpu-ns/B")
	}
}

// dialer returns a func that connects to addr.
func dialer(addr string) func() (net.Conn, error) {
	return func() (net.Conn, error) { return net.Dial("tcp", addr) }
}

// BenchmarkLocalForward compares ForwardLocal with OpenSSH's ssh -N -L, each
// in a process of its own: the same sshd, the same cipher, and one stream of
// *streamBytes written into the local port by this process and counted by a
// Sink of this process, so that writer and sink cost both sides the same.
// Besides MB/s it reports the CPU time per byte of the forwarding process
// alone (cpu-ns/B), which does not depend on who wins the two cores; sshfwd
// on one thread (oneCPU) runs alongside for reference.
func BenchmarkLocalForward(b *testing.B) {
	peers.Require(b, peers.SSHDBin, peers.SSHBin)
	d := startSSHD(b)
	sink := newSink(b)
	for _, c := range ciphers {
		for _, impl := range inOrder(slices.Concat(forwarders, []forwarderImpl{oneCPU})) {
			b.Run("cipher="+c.short+"/impl="+impl.name, func(b *testing.B) {
				f := impl.start(b, d, d.Addr, c.name, sink.Addr().String())
				streams(b, f.cpu, dialer(f.addr))
			})
		}
	}
}

// BenchmarkStream sends one stream of *streamBytes on a forwarded channel
// to a Sink: an OpenForward Channel against the conn of x/crypto's
// Client.Dial through sshd, and the same OpenForward client with sshtest as
// the server (in a process of its own, as sshd is) against sshd. The CPU
// time per byte is this process's: the client's work, and the writer's and
// the Sink's, which are the same whatever the client.
func BenchmarkStream(b *testing.B) {
	d := startSSHD(b)
	testAddr, testConfig := startSSHTest(b)
	port := newSink(b).Addr().Port
	variants := []struct {
		server, client string
		addr           string
		config         *ssh.ClientConfig
	}{
		{"sshd", "sshfwd", d.Addr, d.ClientConfig()},
		{"sshd", "xcrypto", d.Addr, d.ClientConfig()},
		{"sshtest", "sshfwd", testAddr, testConfig},
	}
	for _, c := range ciphers {
		for _, v := range inOrder(variants) {
			b.Run("cipher="+c.short+"/server="+v.server+"/client="+v.client, func(b *testing.B) {
				o := clients[v.client](b, v.addr, withCipher(v.config, c.name))
				streams(b, cpuTime, func() (net.Conn, error) { return o.open(port) })
			})
		}
	}
}

// BenchmarkCopy is BenchmarkStream through sshd the way a forwarder moves a
// stream, with io.Copy from a loopback TCP connection into the forwarded
// conn (bench.Pour): the Channel's ReadFrom against the buffer io.Copy
// needs for x/crypto's conn.
func BenchmarkCopy(b *testing.B) {
	d := startSSHD(b)
	port := newSink(b).Addr().Port
	for _, c := range ciphers {
		for _, client := range inOrder([]string{"sshfwd", "xcrypto"}) {
			b.Run("cipher="+c.short+"/client="+client, func(b *testing.B) {
				o := clients[client](b, d.Addr, withCipher(d.ClientConfig(), c.name))
				stream(b, *streamBytes, cpuTime, bench.Pour, func() (net.Conn, error) { return o.open(port) })
			})
		}
	}
}

// BenchmarkConcurrent floods 1, 64 and 1,000 streams on one connection at
// once and measures, over *window after *warmup, the aggregate rate at which
// a Sink receives (MB/s) and how evenly the streams share it: Jain's index
// of the bytes each stream delivered, and the least a stream delivered over
// the median. It does so with sshd and with sshtest (in a process of its
// own) as the server, and x/crypto's Client.Dial is measured alongside with
// 1 and 1,000 streams, to tell a server's limits from sshfwd's.
func BenchmarkConcurrent(b *testing.B) {
	raiseFDLimit(b, 4096)
	d := startSSHD(b)
	testAddr, testConfig := startSSHTest(b)
	servers := []struct {
		name   string
		addr   string
		config *ssh.ClientConfig
	}{{"sshd", d.Addr, d.ClientConfig()}, {"sshtest", testAddr, testConfig}}
	variants := []struct {
		streams int
		client  string
	}{{1, "sshfwd"}, {1, "xcrypto"}, {64, "sshfwd"}, {1000, "sshfwd"}, {1000, "xcrypto"}}
	for _, srv := range servers {
		cfg := withCipher(srv.config, ciphers[0].name)
		for _, v := range inOrder(variants) {
			b.Run(fmt.Sprintf("server=%s/streams=%d/client=%s", srv.name, v.streams, v.client), func(b *testing.B) {
				for range b.N {
					sink, err := bench.NewSink()
					require.NoError(b, err)
					flood(b, clients[v.client](b, srv.addr, cfg), sink, v.streams)
					sink.Close()
				}
			})
		}
	}
}

func flood(b *testing.B, o opener, sink *bench.Sink, n int) {
	conns := make([]net.Conn, n)
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(n, 32) {
		wg.Go(func() {
			for i := range next {
				conns[i], errs[i] = o.open(sink.Addr().Port)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		require.NoError(b, err)
	}
	waitFor(b, peers.StartTimeout, "the server connects every stream to the sink", func() bool { return len(sink.Counts()) == n })

	b.ResetTimer()
	for _, c := range conns {
		wg.Go(func() { bench.Flood(c) })
	}
	time.Sleep(*warmup)
	before, start := sink.Counts(), time.Now()
	time.Sleep(*window)
	after, elapsed := sink.Counts(), time.Since(start)
	b.StopTimer()
	o.close()
	wg.Wait()

	moved := make([]float64, n)
	var total float64
	for i := range moved {
		moved[i] = float64(after[i] - before[i])
		total += moved[i]
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(total/elapsed.Seconds()/1e6, "MB/s")
	b.ReportMetric(bench.Jain(moved), "jain")
	b.ReportMetric(slices.Min(moved)/bench.Median(moved), "min/median")
}

// BenchmarkChannelOpen measures opening a direct-tcpip channel, which the
// server confirms once it has connected to a Sink, and closing it: ns/op
// for the pair, the mean and percentiles in µs for the open alone. It does
// so through sshd and through sshtest: sshd sets no TCP_NODELAY on a
// connection without a session, so a confirmation that follows an
// unacknowledged packet can wait for the client's delayed ACK (40 ms on
// Linux). How often that happens depends on the client's timing; it shows
// in sshd's mean and p99.
func BenchmarkChannelOpen(b *testing.B) {
	d := startSSHD(b)
	testAddr, testConfig := startSSHTest(b)
	port := newSink(b).Addr().Port
	servers := []struct {
		name   string
		addr   string
		config *ssh.ClientConfig
	}{{"sshd", d.Addr, d.ClientConfig()}, {"sshtest", testAddr, testConfig}}
	for _, srv := range servers {
		for _, client := range inOrder([]string{"sshfwd", "xcrypto"}) {
			b.Run("server="+srv.name+"/client="+client, func(b *testing.B) {
				o := clients[client](b, srv.addr, srv.config)
				took := make([]float64, b.N)
				var total float64
				b.ResetTimer()
				for i := range b.N {
					start := time.Now()
					c, err := o.open(port)
					took[i] = float64(time.Since(start).Nanoseconds()) / 1e3
					total += took[i]
					require.NoError(b, err)
					c.Close()
				}
				b.StopTimer()
				b.ReportMetric(total/float64(b.N), "mean-us")
				reportLatency(b, took)
			})
		}
	}
}

// BenchmarkIdleHeap holds *idleConns connections open through ForwardLocal
// to sshd, each idle after a byte each way and back, and reports what they
// cost this process per connection: heap in use (HeapInuse after collecting
// garbage) and, for information, goroutine stacks and goroutines. The
// clients, the target (a Greeter) and sshd run in processes of their own,
// so this process holds only the forwarding; the same connections made
// directly from the clients to the target, measured here the same way, are
// the baseline subtracted (about nothing, by construction).
func BenchmarkIdleHeap(b *testing.B) {
	n := *idleConns
	raiseFDLimit(b, uint64(n+1024))
	d := startSSHD(b)
	_, target := startChild(b, "greeter")
	visitor, _ := startChild(b, "visitor")
	local := forwardLocal(b, dial(b, d.Addr, d.ClientConfig()), target)
	hold := func(addr string) bench.Mem {
		before := bench.ReadMem()
		visitor.ask(b, fmt.Sprintf("visit %s %d", addr, n), 5*time.Minute)
		cost := bench.ReadMem().Sub(before)
		visitor.ask(b, "close", time.Minute)
		return cost
	}

	b.ResetTimer()
	for range b.N {
		direct := hold(target)
		forwarded := hold(local)
		cost := forwarded.Sub(direct)
		b.ReportMetric(float64(cost.Heap)/float64(n)/1024, "heap-KiB/conn")
		b.ReportMetric(float64(cost.Stack)/float64(n)/1024, "stack-KiB/conn")
		b.ReportMetric(float64(cost.Goroutines)/float64(n), "goroutines/conn")
		b.ReportMetric(float64(direct.Heap)/float64(n)/1024, "direct-heap-KiB/conn")
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(n), "conns")
}
