// Package bench is sshfwd's performance suite: the benchmarks in its test
// files, the servers and statistics they share, and the parser behind the
// report command.
//
// Every benchmark puts sshfwd next to what it should match or beat, in the
// same run and against the same peer, all on the loopback interface. First
// what users of a tunnel feel, through the same sshd with aes128-gcm:
//
//   - BenchmarkRequestResponse: 64-byte requests, one at a time on one
//     connection to an echo server, through ForwardLocal against ssh -L and
//     through ServeSOCKS against ssh -D (a SOCKS5 client from
//     golang.org/x/net/proxy): round trips per second, median and 99th
//     percentile;
//   - BenchmarkConnRate: short connections through the same pairs, 16
//     clients at once each connecting, sending 64 bytes, reading the echo
//     and closing: connections per second, median and 99th percentile;
//   - BenchmarkFirstRoundTrip: what a test waits for its first forwarded
//     round trip, sshtest.NewServer against starting sshd (keys generated),
//     then Dial and OpenForward;
//   - BenchmarkSlowLink: one stream through ForwardLocal against ssh -L over
//     a Delay, a proxy that holds bytes 25 ms each way in front of sshd,
//     each against the bound both share, a 2 MiB window per round trip.
//
// Every forwarder runs in a process of its own, and each of these reports
// the CPU time that process spent per round trip, connection or byte, read
// from /proc/PID/stat: the comparison that does not depend on who wins the
// two cores. References run alongside to tell where a difference comes
// from: sshfwd with GOMAXPROCS=1, on one thread as ssh is, without the Go
// scheduler's hand-offs between threads, and x/crypto's own Client.Dial
// with the same relay, which shows what any forwarder built on x/crypto
// costs.
//
// Then bulk transfer and scale:
//
//   - BenchmarkLocalForward: ForwardLocal against OpenSSH's ssh -N -L, one
//     stream through the local port to a Sink, both through the same sshd
//     with the same cipher, in throughput and in CPU time per byte of the
//     forwarding process alone;
//   - BenchmarkStream: an OpenForward Channel against x/crypto's Client.Dial
//     through sshd, in throughput and in CPU time per byte, and sshtest
//     against sshd as the server of the same OpenForward client;
//   - BenchmarkCopy: the same comparison through sshd, with the stream moved
//     as a forwarder moves it, io.Copy from a loopback TCP connection;
//   - BenchmarkConcurrent: 1, 64 and 1,000 streams on one connection to sshd
//     and to sshtest: the aggregate rate and how evenly the streams share
//     it, with x/crypto's Client.Dial alongside to tell a server's limits
//     from sshfwd's;
//   - BenchmarkChannelOpen: channel-open latency percentiles, OpenForward
//     against Client.Dial, through sshd and through sshtest;
//   - BenchmarkIdleHeap: the heap each idle connection through ForwardLocal
//     costs, with 10,000 of them open.
//
// Servers, clients and targets that must not be counted in the process a
// benchmark measures run in processes of their own: sshd and ssh, and the
// test binary itself started again in a role (an sshtest server, the target
// and the clients of BenchmarkIdleHeap, and ForwardLocal or ServeSOCKS
// wherever they are compared with ssh -L or ssh -D, so that each forwarder
// is a process and its CPU time is read from /proc/PID/stat alike).
//
// They need OpenSSH's sshd and ssh and skip without them. bench/run runs
// them all several times, interleaved, what each compares in one order in
// odd rounds and in the other (-sshfwd.reverse) in even ones, and prints a
// markdown table of medians and ratios made by bench/report:
//
//	bench/run          # about 25 minutes on two cores
//	bench/run -quick   # a smoke run of a minute or two
//
// One benchmark alone, with a CPU profile of this process, one of the
// sshtest process, and one of the forwarding process of ForwardLocal:
//
//	go test ./bench -run '^$' -bench 'Stream/cipher=aes128-gcm/server=sshd' -benchtime 1x -cpuprofile cpu.prof
//	SSHFWD_BENCH_ROLE_CPUPROFILE=$PWD/sshtest.prof go test ./bench -run '^$' -bench 'Stream/cipher=aes128-gcm/server=sshtest' -benchtime 1x
//	SSHFWD_BENCH_ROLE_CPUPROFILE=$PWD/fwd.prof go test ./bench -run '^$' -bench 'ConnRate/via=local/impl=sshfwd' -benchtime 5000x
package bench
