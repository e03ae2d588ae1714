package bench_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/net/proxy"

	"github.com/sshfwd/sshfwd/bench"
	"github.com/sshfwd/sshfwd/internal/peers"
	"github.com/sshfwd/sshfwd/internal/testnet"
	"github.com/sshfwd/sshfwd/sshtest"
)

// The benchmarks here measure what users of a tunnel feel: how long a
// request takes, how fast short connections go through, how soon a test
// has a server, what a long link allows. Each forwarder runs in a process
// of its own (see forwarders) with aes128-gcm, the cipher OpenSSH prefers
// where the CPU has AES instructions; this process is the clients and the
// echo server behind the tunnel, the same for both sides.

// modes are the two ways a forwarder is used: a forwarded port (ssh -L,
// ForwardLocal) and a SOCKS proxy (ssh -D, ServeSOCKS), whose client asks
// for the echo server with SOCKS5 before each connection. With the two
// forwarders compared come references (see oneCPU and xcrypto).
var modes = []struct {
	name       string
	socks      bool
	forwarders []forwarderImpl
}{
	{"local", false, slices.Concat(forwarders, []forwarderImpl{oneCPU, xcrypto})},
	{"socks", true, slices.Concat(forwarders, []forwarderImpl{oneCPU})},
}

// target returns what a forwarder in this mode forwards to: echo, or
// nothing for a SOCKS proxy.
func target(socks bool, echo string) string {
	if socks {
		return ""
	}
	return echo
}

// connector returns how to reach echo through f: f's port, or a SOCKS5
// CONNECT to echo through f.
func connector(b testing.TB, f forwarder, socks bool, echo string) func() (net.Conn, error) {
	b.Helper()
	if !socks {
		return dialer(f.addr)
	}
	d, err := proxy.SOCKS5("tcp", f.addr, nil, proxy.Direct)
	require.NoError(b, err)
	return func() (net.Conn, error) { return d.Dial("tcp", echo) }
}

// newEcho starts a server that echoes every connection; a cleanup closes
// it.
func newEcho(b testing.TB) *net.TCPAddr {
	b.Helper()
	s, err := bench.Serve(testnet.Echo)
	require.NoError(b, err)
	b.Cleanup(func() { s.Close() })
	return s.Addr()
}

// reportRate reports how many of the b.N operations were done per second,
// in unit, and the CPU time the forwarder spent on each in microseconds, in
// cpuUnit: the forwarder's own cost, which does not depend on who wins the
// two cores.
func reportRate(b *testing.B, cpu time.Duration, unit, cpuUnit string) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit)
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), cpuUnit)
}

// reportLatency reports the median and the 99th percentile of samples in
// microseconds.
func reportLatency(b *testing.B, us []float64) {
	b.ReportMetric(bench.Percentile(us, 50), "p50-us")
	b.ReportMetric(bench.Percentile(us, 99), "p99-us")
}

// micros returns the time since start in microseconds.
func micros(start time.Time) float64 {
	return float64(time.Since(start).Nanoseconds()) / 1e3
}

// BenchmarkRequestResponse sends b.N requests of bench.PingSize bytes, one
// at a time, over one connection through a forwarder to an echo server,
// and reads each echo before the next request: ForwardLocal against ssh -L
// and ServeSOCKS against ssh -D, through the same sshd. It reports round
// trips per second (rt/s), the forwarder's CPU time per round trip
// (cpu-us/rt) and the median and 99th percentile of a round trip.
func BenchmarkRequestResponse(b *testing.B) {
	peers.Require(b, peers.SSHDBin, peers.SSHBin)
	d := startSSHD(b)
	echo := newEcho(b).String()
	for _, m := range modes {
		for _, impl := range inOrder(m.forwarders) {
			b.Run("via="+m.name+"/impl="+impl.name, func(b *testing.B) {
				f := impl.start(b, d, d.Addr, ciphers[0].name, target(m.socks, echo))
				c, err := connector(b, f, m.socks, echo)()
				require.NoError(b, err)
				defer c.Close()
				require.NoError(b, bench.Ping(c), "the first round trip, which waits for the channel")
				took := make([]float64, b.N)
				b.ResetTimer()
				cpu := f.cpu(b)
				for i := range b.N {
					start := time.Now()
					if err := bench.Ping(c); err != nil {
						b.Fatal(err)
					}
					took[i] = micros(start)
				}
				b.StopTimer()
				reportRate(b, f.cpu(b)-cpu, "rt/s", "cpu-us/rt")
				reportLatency(b, took)
			})
		}
	}
}

// connClients is how many clients of BenchmarkConnRate connect at once.
const connClients = 16

// BenchmarkConnRate makes b.N short connections through a forwarder to an
// echo server, connClients at a time: each client connects, sends
// bench.PingSize bytes, reads the echo and closes, over and over. It
// compares ForwardLocal with ssh -L and ServeSOCKS with ssh -D, through the
// same sshd, and reports connections per second (conns/s), the forwarder's
// CPU time per connection (cpu-us/conn) and the median and 99th percentile
// of a connection's life.
func BenchmarkConnRate(b *testing.B) {
	peers.Require(b, peers.SSHDBin, peers.SSHBin)
	d := startSSHD(b)
	echo := newEcho(b).String()
	for _, m := range modes {
		for _, impl := range inOrder(m.forwarders) {
			b.Run("via="+m.name+"/impl="+impl.name, func(b *testing.B) {
				f := impl.start(b, d, d.Addr, ciphers[0].name, target(m.socks, echo))
				connect := connector(b, f, m.socks, echo)
				visit := func() error {
					c, err := connect()
					if err != nil {
						return err
					}
					defer c.Close()
					return bench.Ping(c)
				}
				// A connection per client first, not counted: what a
				// forwarder sets up once (threads, buffers, stacks) is
				// not what a connection costs.
				var wg sync.WaitGroup
				warm := make([]error, connClients)
				for i := range warm {
					wg.Go(func() { warm[i] = visit() })
				}
				wg.Wait()
				require.NoError(b, errors.Join(warm...))
				took := make([]float64, b.N)
				errs := make([]error, b.N)
				var next atomic.Int64
				b.ResetTimer()
				cpu := f.cpu(b)
				for range connClients {
					wg.Go(func() {
						for i := int(next.Add(1) - 1); i < b.N; i = int(next.Add(1) - 1) {
							start := time.Now()
							errs[i] = visit()
							took[i] = micros(start)
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				require.NoError(b, errors.Join(errs...))
				reportRate(b, f.cpu(b)-cpu, "conns/s", "cpu-us/conn")
				reportLatency(b, took)
			})
		}
	}
}

// BenchmarkFirstRoundTrip measures what a test pays for a server before its
// first forwarded byte comes back: starting the server, connecting with
// sshfwd.Dial, OpenForward to an echo server and one round trip of
// bench.PingSize bytes. With sshtest that is sshtest.NewServer in this
// process; with sshd it is what peers.StartSSHD does, keys generated,
// config written and the server started and answering. It reports the
// median (p50-ms) and the mean (mean-ms) in milliseconds; closing
// everything afterwards is not counted.
func BenchmarkFirstRoundTrip(b *testing.B) {
	port := newEcho(b).Port
	servers := []struct {
		name  string
		start func(b testing.TB) (addr string, cfg *ssh.ClientConfig, stop func())
	}{
		{"sshtest", func(testing.TB) (string, *ssh.ClientConfig, func()) {
			s := sshtest.NewServer(nil)
			return s.Addr(), s.ClientConfig(), func() { s.Close() }
		}},
		{"sshd", func(b testing.TB) (string, *ssh.ClientConfig, func()) {
			d := startSSHD(b)
			return d.Addr, d.ClientConfig(), d.Stop
		}},
	}
	for _, srv := range inOrder(servers) {
		b.Run("server="+srv.name, func(b *testing.B) {
			took := make([]float64, b.N)
			var total float64
			b.ResetTimer()
			for i := range b.N {
				start := time.Now()
				addr, cfg, stop := srv.start(b)
				s := dial(b, addr, cfg)
				ch, err := s.OpenForward(context.Background(), "127.0.0.1", port, "127.0.0.1", 0)
				require.NoError(b, err)
				err = bench.Ping(ch)
				took[i] = float64(time.Since(start).Nanoseconds()) / 1e6
				total += took[i]
				require.NoError(b, err)
				ch.Close()
				s.Close()
				stop()
			}
			b.StopTimer()
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(bench.Percentile(took, 50), "p50-ms")
			b.ReportMetric(total/float64(b.N), "mean-ms")
		})
	}
}

// sshWindow is the channel window that OpenSSH's sshd grants a direct-tcpip
// channel, and x/crypto's client a channel it opens: no more than this is in
// flight on a stream, so a stream moves at most a window per round trip.
const sshWindow = 2 << 20

// BenchmarkSlowLink sends one stream of *slowBytes through a forwarder to a
// Sink, as BenchmarkLocalForward does, with a Delay between the forwarder
// and sshd that holds bytes for *linkDelay each way: ForwardLocal against
// ssh -L on a long link. Besides MB/s it reports the share of the bound both
// share, a window per round trip (of-bound). A stream's time includes
// opening its channel and the Sink's answer, a round trip each.
func BenchmarkSlowLink(b *testing.B) {
	peers.Require(b, peers.SSHDBin, peers.SSHBin)
	d := startSSHD(b)
	sink := newSink(b)
	link, err := bench.NewDelay(d.Addr, *linkDelay)
	require.NoError(b, err)
	b.Cleanup(func() { link.Close() })
	bound := sshWindow / (2 * *linkDelay).Seconds()
	for _, impl := range inOrder(forwarders) {
		b.Run("impl="+impl.name, func(b *testing.B) {
			f := impl.start(b, d, link.Addr().String(), ciphers[0].name, sink.Addr().String())
			stream(b, *slowBytes, nil, bench.Blast, dialer(f.addr))
			rate := float64(int64(b.N)**slowBytes) / b.Elapsed().Seconds()
			b.ReportMetric(rate/bound, "of-bound")
		})
	}
}
