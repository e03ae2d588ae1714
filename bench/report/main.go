// Command report turns the output of sshfwd's benchmarks (package bench),
// any number of go test -bench runs one after the other, into markdown: a
// table of the project's performance targets with the median of every
// figure, sshfwd next to what it is compared with and the median of their
// ratios round by round, and a table of every median with its spread. bench/run feeds it.
//
// Usage:
//
//	report < bench-output.txt
package main

import (
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/sshfwd/sshfwd/bench"
)

// A goal is a performance target: a bound on the ratio of a row or, for a
// row without a reference, on its value.
type goal struct {
	atLeast bool // the figure must be at least x, else at most x
	x       float64
}

func (g *goal) String() string {
	if g == nil {
		return "—"
	}
	if g.atLeast {
		return fmt.Sprintf("≥ %g", g.x)
	}
	return fmt.Sprintf("≤ %g", g.x)
}

func (g *goal) met(v float64) string {
	switch {
	case g == nil || math.IsNaN(v):
		return ""
	case g.atLeast && v >= g.x, !g.atLeast && v <= g.x:
		return "yes"
	default:
		return "**no**"
	}
}

// A row compares the median of one benchmark's figure with that of a
// reference benchmark in the same unit; ref is empty for a figure that
// stands alone. The names are those of bench's benchmarks. A row has a goal
// that sshfwd can meet, or a bound that says what limits its figure, or
// neither when it is there for information.
type row struct {
	what      string
	unit      string
	name, ref string
	goal      *goal
	bound     *bound
}

// A bound is what limits a figure, when that is not sshfwd but what it is
// built on or runs against, and another row of the same run that shows it.
type bound struct {
	by       string
	evidence row
}

// figure returns r's figure in res: the paired ratio for a row with a
// reference, the median otherwise.
func (r row) figure(res bench.Results) float64 {
	if r.ref == "" {
		return bench.Median(res.Samples(r.name, r.unit))
	}
	return bench.Ratio(res.Samples(r.name, r.unit), res.Samples(r.ref, r.unit))
}

// verdict fills the last column of r's line: whether its goal is met and,
// when it is not or there is none, what bounds the figure, with the
// evidence's figure.
func (r row) verdict(res bench.Results, v float64) string {
	met := r.goal.met(v)
	if r.bound == nil || met == "yes" || math.IsNaN(v) {
		return met
	}
	e := r.bound.evidence
	fig := format(e.figure(res))
	if e.ref != "" && fig != "n/a" {
		fig += "×"
	}
	why := fmt.Sprintf("bounded by %s: %s, %s", r.bound.by, e.what, fig)
	if r.goal != nil {
		return "no, " + why
	}
	return why
}

func atLeast(x float64) *goal { return &goal{atLeast: true, x: x} }
func atMost(x float64) *goal  { return &goal{x: x} }

func rows() []row {
	rs := feltRows()
	// One row per cipher for each pairing; %s is the cipher.
	for _, p := range []struct {
		what, name, ref string
		goal            *goal
		bound           func(cipher string) *bound
	}{
		{"ForwardLocal vs `ssh -N -L`, one stream, %s", localForward("%s", "sshfwd"), localForward("%s", "openssh"), nil, cipherBound},
		{"OpenForward vs x/crypto `Client.Dial`, via sshd, %s", stream("%s", "sshd", "sshfwd"), stream("%s", "sshd", "xcrypto"), nil, writeBound},
		{"io.Copy from TCP into OpenForward vs into x/crypto `Client.Dial`, via sshd, %s",
			copyBench("%s", "sshfwd"), copyBench("%s", "xcrypto"), atLeast(1.0), copyBound},
		{"sshtest vs OpenSSH sshd as the server, OpenForward, %s", stream("%s", "sshtest", "sshfwd"), stream("%s", "sshd", "sshfwd"), atLeast(1.0), serverBound},
	} {
		for _, c := range cipherNames {
			r := row{
				what: fmt.Sprintf(p.what, c),
				unit: "MB/s",
				name: fmt.Sprintf(p.name, c),
				ref:  fmt.Sprintf(p.ref, c),
				goal: p.goal,
			}
			if p.bound != nil {
				r.bound = p.bound(c)
			}
			rs = append(rs, r)
		}
	}
	for _, c := range cipherNames {
		copied := copyCPU(c, fmt.Sprintf("CPU of this process per byte, io.Copy into OpenForward vs into `Client.Dial`, %s (lower is better)", c), atMost(1.0))
		if c == "chacha20-poly1305" {
			// The copy io.Copy saves is a small part of what ChaCha20
			// costs in x/crypto; with AES-GCM it shows.
			copied.bound = &bound{by: chachaBy, evidence: copyCPU("aes128-gcm", "with aes128-gcm", nil)}
		}
		rs = append(rs,
			row{
				what: fmt.Sprintf("CPU of this process per byte, OpenForward vs x/crypto `Client.Dial`, via sshd, %s (lower is better)", c),
				unit: "cpu-ns/B",
				name: stream(c, "sshd", "sshfwd"),
				ref:  stream(c, "sshd", "xcrypto"),
			},
			copied)
	}
	for _, server := range []string{"sshd", "sshtest"} {
		many := row{
			what: "1,000 streams vs 1 on one connection to " + server + ", aggregate",
			unit: "MB/s", name: concurrent(server, "1000", "sshfwd"), ref: concurrent(server, "1", "sshfwd"),
			goal: atLeast(0.8),
		}
		xcrypto := row{
			what: "x/crypto for reference: 1,000 streams vs 1 to " + server + ", aggregate",
			unit: "MB/s", name: concurrent(server, "1000", "xcrypto"), ref: concurrent(server, "1", "xcrypto"),
		}
		if server == "sshd" {
			evidence := xcrypto
			evidence.what = "x/crypto's own client"
			many.goal, many.bound = nil, &bound{by: "sshd, whose main loop visits every channel on each pass", evidence: evidence}
		}
		rs = append(rs,
			row{
				what: "64 streams vs 1 on one connection to " + server + ", aggregate",
				unit: "MB/s", name: concurrent(server, "64", "sshfwd"), ref: concurrent(server, "1", "sshfwd"),
			},
			many,
			xcrypto,
			row{
				what: "1,000 streams to " + server + ", OpenForward vs x/crypto `Client.Dial`, aggregate",
				unit: "MB/s", name: concurrent(server, "1000", "sshfwd"), ref: concurrent(server, "1000", "xcrypto"),
			},
		)
		for _, v := range []struct{ n, client, label string }{
			{"64", "sshfwd", "64 streams"},
			{"1000", "sshfwd", "1,000 streams"},
			{"1000", "xcrypto", "x/crypto for reference: 1,000 streams"},
		} {
			rs = append(rs,
				row{what: v.label + " to " + server + ": Jain's fairness index (1 = even)", unit: "jain", name: concurrent(server, v.n, v.client)},
				row{what: v.label + " to " + server + ": least bytes of a stream ÷ median", unit: "min/median", name: concurrent(server, v.n, v.client)},
			)
		}
	}
	for _, server := range []string{"sshd", "sshtest"} {
		for _, stat := range []string{"mean", "p50", "p99"} {
			rs = append(rs, row{
				what: "channel open " + stat + " via " + server + ", OpenForward vs `Client.Dial` (µs, lower is better)",
				unit: stat + "-us",
				name: "BenchmarkChannelOpen/server=" + server + "/client=sshfwd",
				ref:  "BenchmarkChannelOpen/server=" + server + "/client=xcrypto",
			})
		}
	}
	return append(rs,
		row{what: "heap per idle connection through ForwardLocal (KiB)", unit: "heap-KiB/conn", name: "BenchmarkIdleHeap", goal: atMost(32)},
		row{what: "goroutine stacks per idle connection (KiB, for information)", unit: "stack-KiB/conn", name: "BenchmarkIdleHeap"},
		row{what: "goroutines per idle connection", unit: "goroutines/conn", name: "BenchmarkIdleHeap"},
	)
}

// cipherNames are the ciphers the benchmarks compare under.
var cipherNames = []string{"aes128-gcm", "chacha20-poly1305"}

// The names of bench's benchmarks, by their parameters.
func localForward(cipher, impl string) string {
	return "BenchmarkLocalForward/cipher=" + cipher + "/impl=" + impl
}

func stream(cipher, server, client string) string {
	return "BenchmarkStream/cipher=" + cipher + "/server=" + server + "/client=" + client
}

func copyBench(cipher, client string) string {
	return "BenchmarkCopy/cipher=" + cipher + "/client=" + client
}

func concurrent(server, streams, client string) string {
	return "BenchmarkConcurrent/server=" + server + "/streams=" + streams + "/client=" + client
}

// forwarderCPU is the row of the CPU time per byte of the forwarding
// process, ForwardLocal's against ssh -L's, described by what.
func forwarderCPU(cipher, what string) row {
	return row{what: what, unit: "cpu-ns/B", name: localForward(cipher, "sshfwd"), ref: localForward(cipher, "openssh")}
}

// chachaBy is what bounds ChaCha20 in sshfwd.
const chachaBy = "x/crypto's ChaCha20, which has no amd64 assembly"

// cipherBound is what bounds ForwardLocal's stream against ssh -L's: with
// AES-GCM, which x/crypto and OpenSSL both run in assembly, the two cores
// that the writer, the forwarder, sshd and the Sink share, so that CPU per
// byte is the comparison; with ChaCha20 the cipher.
func cipherBound(cipher string) *bound {
	by := "two cores shared with sshd, the writer and the Sink"
	if cipher == "chacha20-poly1305" {
		by = chachaBy
	}
	return &bound{by: by, evidence: forwarderCPU(cipher, "CPU per byte vs ssh's")}
}

// copyCPU is the row of this process's CPU per byte with io.Copy into
// OpenForward against into Client.Dial, described by what, with goal g.
func copyCPU(cipher, what string, g *goal) row {
	return row{what: what, unit: "cpu-ns/B", name: copyBench(cipher, "sshfwd"), ref: copyBench(cipher, "xcrypto"), goal: g}
}

// copyBound is what bounds io.Copy's stream against x/crypto's conn when it
// does not win: the two cores it shares with sshd, the source and the Sink,
// while its CPU per byte shows it does less work.
func copyBound(cipher string) *bound {
	return &bound{by: "two cores shared with sshd, the source and the Sink", evidence: copyCPU(cipher, "CPU per byte", nil)}
}

// writeBound is what bounds Write against x/crypto's conn: the copy into
// the send buffer that makes write deadlines work, which io.Copy avoids.
func writeBound(cipher string) *bound {
	return &bound{
		by: "the copy Write makes so that write deadlines work",
		evidence: row{
			what: "with io.Copy, which needs none",
			unit: "MB/s",
			name: "BenchmarkCopy/cipher=" + cipher + "/client=sshfwd",
			ref:  "BenchmarkCopy/cipher=" + cipher + "/client=xcrypto",
		},
	}
}

// serverBound is what bounds sshtest against sshd: with ChaCha20, the
// cipher, which x/crypto runs without assembly at both ends of sshtest's
// connections; else x/crypto's receive path on the server, which copies
// every packet into a new allocation. The client is the same against both,
// and its CPU per byte shows it does no more work against sshtest.
func serverBound(cipher string) *bound {
	if cipher == "chacha20-poly1305" {
		return &bound{by: chachaBy, evidence: row{
			what: "with aes128-gcm",
			unit: "MB/s",
			name: stream("aes128-gcm", "sshtest", "sshfwd"),
			ref:  stream("aes128-gcm", "sshd", "sshfwd"),
		}}
	}
	return &bound{
		by: "x/crypto's server, which allocates and copies every packet it receives",
		evidence: row{
			what: "the client's CPU per byte, sshtest vs sshd",
			unit: "cpu-ns/B",
			name: stream(cipher, "sshtest", "sshfwd"),
			ref:  stream(cipher, "sshd", "sshfwd"),
		},
	}
}

// feltRows are the rows of what users of a tunnel feel, all through the
// same sshd with aes128-gcm: request latency, short connections, a test's
// first round trip, a long link, and what forwarding costs in CPU.
func feltRows() []row {
	var rs []row
	cr := func(via, impl string) string { return "BenchmarkConnRate/via=" + via + "/impl=" + impl }
	rr := func(via, impl string) string { return "BenchmarkRequestResponse/via=" + via + "/impl=" + impl }
	// What bounds round trips and short connections shows in x/crypto's own
	// client with the same relay, which forwards to a port only.
	plainXCrypto := func(bench func(via, impl string) string, unit string) *bound {
		return &bound{by: xcryptoBy, evidence: row{what: "x/crypto's own Client.Dial, to a port", unit: unit, name: bench("local", "xcrypto"), ref: bench("local", "openssh")}}
	}
	for _, m := range []struct{ via, what, peer string }{
		{"local", "ForwardLocal", "`ssh -L`"},
		{"socks", "ServeSOCKS", "`ssh -D`"},
	} {
		vs := m.what + " vs " + m.peer
		rs = append(rs,
			row{what: "request/response, 64 B each way on one connection, " + vs + ": round trips/s",
				unit: "rt/s", name: rr(m.via, "sshfwd"), ref: rr(m.via, "openssh"), goal: atLeast(1.0), bound: plainXCrypto(rr, "rt/s")},
			row{what: "request/response, " + vs + ": median round trip (µs, lower is better)",
				unit: "p50-us", name: rr(m.via, "sshfwd"), ref: rr(m.via, "openssh"), goal: atMost(1.0), bound: plainXCrypto(rr, "p50-us")},
			row{what: "request/response, " + vs + ": 99th percentile round trip (µs, lower is better)",
				unit: "p99-us", name: rr(m.via, "sshfwd"), ref: rr(m.via, "openssh"), goal: atMost(1.0), bound: plainXCrypto(rr, "p99-us")},
			row{what: "request/response, " + vs + ": CPU of the forwarding process per round trip (µs, lower is better)",
				unit: "cpu-us/rt", name: rr(m.via, "sshfwd"), ref: rr(m.via, "openssh"), bound: plainXCrypto(rr, "cpu-us/rt")},
			row{what: "short connections, 16 clients each connecting, 64 B each way, closing, " + vs + ": connections/s",
				unit: "conns/s", name: cr(m.via, "sshfwd"), ref: cr(m.via, "openssh"), goal: atLeast(1.0), bound: plainXCrypto(cr, "conns/s")},
			row{what: "short connections, " + vs + ": median connection (µs, lower is better)",
				unit: "p50-us", name: cr(m.via, "sshfwd"), ref: cr(m.via, "openssh"), goal: atMost(1.0), bound: plainXCrypto(cr, "p50-us")},
			row{what: "short connections, " + vs + ": 99th percentile connection (µs, lower is better)",
				unit: "p99-us", name: cr(m.via, "sshfwd"), ref: cr(m.via, "openssh"), goal: atMost(1.0), bound: plainXCrypto(cr, "p99-us")},
			row{what: "short connections, " + vs + ": CPU of the forwarding process per connection (µs, lower is better)",
				unit: "cpu-us/conn", name: cr(m.via, "sshfwd"), ref: cr(m.via, "openssh"), bound: plainXCrypto(cr, "cpu-us/conn")},
		)
	}
	first := func(server string) string { return "BenchmarkFirstRoundTrip/server=" + server }
	slow := func(impl string) string { return "BenchmarkSlowLink/impl=" + impl }
	return append(rs,
		row{what: "a test's first forwarded round trip, server started + Dial + OpenForward: `sshtest.NewServer` vs starting sshd (ms, lower is better)",
			unit: "p50-ms", name: first("sshtest"), ref: first("sshd"), goal: atMost(0.1)},
		row{what: "a long link, 25 ms each way, one stream: ForwardLocal vs `ssh -L`",
			unit: "MB/s", name: slow("sshfwd"), ref: slow("openssh"), goal: atLeast(0.95)},
		row{what: "a long link: ForwardLocal's share of the bound both share, a 2 MiB window per 50 ms round trip (41.9 MB/s)",
			unit: "of-bound", name: slow("sshfwd")},
		row{what: "a long link: `ssh -L`'s share of that bound",
			unit: "of-bound", name: slow("openssh")},
		row{what: cpuWhat + "aes128-gcm (lower is better)", unit: "cpu-ns/B",
			name: localForward("aes128-gcm", "sshfwd"), ref: localForward("aes128-gcm", "openssh"), goal: atMost(1.0),
			bound: &bound{by: schedulerBy, evidence: oneThreadCPU("aes128-gcm")}},
		row{what: cpuWhat + "chacha20-poly1305 (lower is better)", unit: "cpu-ns/B",
			name: localForward("chacha20-poly1305", "sshfwd"), ref: localForward("chacha20-poly1305", "openssh"),
			bound: &bound{by: chachaBy, evidence: forwarderCPU("aes128-gcm", "with aes128-gcm")}},
	)
}

// oneCPU is the name of sshfwd's forwarder on one thread (GOMAXPROCS=1).
const oneCPU = "sshfwd-gomaxprocs1"

// What bounds the rows of what users feel.
const (
	schedulerBy = "Go's scheduler, which hands goroutines between threads"
	xcryptoBy   = "x/crypto and Go's scheduler: a system call per packet sent, two goroutine hand-offs, often between threads, per packet received"
)

// oneThreadCPU is the row of the CPU per byte of sshfwd's forwarder on one
// thread against ssh -L's.
func oneThreadCPU(cipher string) row {
	r := forwarderCPU(cipher, "the same on one thread (GOMAXPROCS=1)")
	r.name = localForward(cipher, oneCPU)
	return r
}

// cpuWhat begins the rows of the forwarding process's CPU per byte.
const cpuWhat = "CPU of the forwarding process per byte, ForwardLocal vs `ssh -N -L`, one stream, "

func main() {
	res, err := bench.ParseResults(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
	summary(os.Stdout, res)
	fmt.Println()
	details(os.Stdout, res)
}

// summary prints the table of targets. A ratio is the median of the ratios
// of the rounds (bench.Ratio), so it need not be the quotient of the two
// medians shown next to it.
func summary(w io.Writer, res bench.Results) {
	fmt.Fprintln(w, "| measurement | unit | sshfwd | compared with | ratio | target | met, or what bounds it |")
	fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | :---: | --- |")
	for _, r := range rows() {
		v, figure := bench.Median(res.Samples(r.name, r.unit)), r.figure(res)
		ref, ratio, target := "—", "—", r.goal.String()
		if r.ref != "" {
			ref, ratio = format(bench.Median(res.Samples(r.ref, r.unit))), format(figure)
			if !math.IsNaN(figure) {
				ratio += "×"
			}
			if r.goal != nil {
				target += "×"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n",
			r.what, r.unit, format(v), ref, ratio, target, r.verdict(res, figure))
	}
	if n := bench.Median(res.Samples("BenchmarkIdleHeap", "conns")); !math.IsNaN(n) {
		fmt.Fprintf(w, "\nIdle connections held: %.0f.\n", n)
	}
}

// details lists the median of every figure of every benchmark, with the
// number of runs and their range, so that noise shows.
func details(w io.Writer, res bench.Results) {
	fmt.Fprintln(w, "| benchmark | unit | median | runs | min | max |")
	fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | ---: |")
	for _, name := range slices.Sorted(maps.Keys(res)) {
		for _, unit := range slices.Sorted(maps.Keys(res[name])) {
			xs := res[name][unit]
			if unit == "ns/op" {
				continue
			}
			fmt.Fprintf(w, "| %s | %s | %s | %d | %s | %s |\n", strings.TrimPrefix(name, "Benchmark"), unit,
				format(bench.Median(xs)), len(xs), format(slices.Min(xs)), format(slices.Max(xs)))
		}
	}
}

// format prints three significant digits, or "n/a" for a missing figure.
func format(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "n/a"
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}
