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
	case g.atLeast == (v >= g.x):
		return "yes"
	default:
		return "**no**"
	}
}

// A row compares the median of one benchmark's figure with that of a
// reference benchmark in the same unit; ref is empty for a figure that
// stands alone. The names are those of bench's benchmarks.
type row struct {
	what      string
	unit      string
	name, ref string
	goal      *goal
}

func atLeast(x float64) *goal { return &goal{atLeast: true, x: x} }
func atMost(x float64) *goal  { return &goal{x: x} }

func rows() []row {
	var rs []row
	// One row per cipher for each pairing; %s is the cipher.
	for _, p := range []struct {
		what, name, ref string
		goal            *goal
	}{
		{"ForwardLocal vs `ssh -N -L`, one stream, %s",
			"BenchmarkLocalForward/cipher=%s/impl=sshfwd", "BenchmarkLocalForward/cipher=%s/impl=openssh", atLeast(1.3)},
		{"OpenForward vs x/crypto `Client.Dial`, via sshd, %s",
			"BenchmarkStream/cipher=%s/server=sshd/client=sshfwd", "BenchmarkStream/cipher=%s/server=sshd/client=xcrypto", atLeast(1.0)},
		{"io.Copy from TCP into OpenForward vs into x/crypto `Client.Dial`, via sshd, %s",
			"BenchmarkCopy/cipher=%s/client=sshfwd", "BenchmarkCopy/cipher=%s/client=xcrypto", atLeast(1.0)},
		{"sshtest vs OpenSSH sshd as the server, OpenForward, %s",
			"BenchmarkStream/cipher=%s/server=sshtest/client=sshfwd", "BenchmarkStream/cipher=%s/server=sshd/client=sshfwd", atLeast(1.0)},
	} {
		for _, c := range []string{"aes128-gcm", "chacha20-poly1305"} {
			rs = append(rs, row{
				what: fmt.Sprintf(p.what, c),
				unit: "MB/s",
				name: fmt.Sprintf(p.name, c),
				ref:  fmt.Sprintf(p.ref, c),
				goal: p.goal,
			})
		}
	}
	for _, c := range []string{"aes128-gcm", "chacha20-poly1305"} {
		rs = append(rs,
			row{
				what: fmt.Sprintf("CPU of this process per byte, OpenForward vs x/crypto `Client.Dial`, via sshd, %s (lower is better)", c),
				unit: "cpu-ns/B",
				name: fmt.Sprintf("BenchmarkStream/cipher=%s/server=sshd/client=sshfwd", c),
				ref:  fmt.Sprintf("BenchmarkStream/cipher=%s/server=sshd/client=xcrypto", c),
			},
			row{
				what: fmt.Sprintf("CPU of this process per byte, io.Copy into OpenForward vs into `Client.Dial`, %s (lower is better)", c),
				unit: "cpu-ns/B",
				name: fmt.Sprintf("BenchmarkCopy/cipher=%s/client=sshfwd", c),
				ref:  fmt.Sprintf("BenchmarkCopy/cipher=%s/client=xcrypto", c),
			})
	}
	for _, server := range []string{"sshd", "sshtest"} {
		concurrent := func(n, client string) string {
			return "BenchmarkConcurrent/server=" + server + "/streams=" + n + "/client=" + client
		}
		rs = append(rs,
			row{
				what: "64 streams vs 1 on one connection to " + server + ", aggregate",
				unit: "MB/s", name: concurrent("64", "sshfwd"), ref: concurrent("1", "sshfwd"),
			},
			row{
				what: "1,000 streams vs 1 on one connection to " + server + ", aggregate",
				unit: "MB/s", name: concurrent("1000", "sshfwd"), ref: concurrent("1", "sshfwd"),
				goal: atLeast(0.8),
			},
			row{
				what: "x/crypto for reference: 1,000 streams vs 1 to " + server + ", aggregate",
				unit: "MB/s", name: concurrent("1000", "xcrypto"), ref: concurrent("1", "xcrypto"),
			},
			row{
				what: "1,000 streams to " + server + ", OpenForward vs x/crypto `Client.Dial`, aggregate",
				unit: "MB/s", name: concurrent("1000", "sshfwd"), ref: concurrent("1000", "xcrypto"),
			},
		)
		for _, v := range []struct{ n, client, label string }{
			{"64", "sshfwd", "64 streams"},
			{"1000", "sshfwd", "1,000 streams"},
			{"1000", "xcrypto", "x/crypto for reference: 1,000 streams"},
		} {
			rs = append(rs,
				row{what: v.label + " to " + server + ": Jain's fairness index (1 = even)", unit: "jain", name: concurrent(v.n, v.client)},
				row{what: v.label + " to " + server + ": least bytes of a stream ÷ median", unit: "min/median", name: concurrent(v.n, v.client)},
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
	fmt.Fprintln(w, "| measurement | unit | sshfwd | compared with | ratio | target | met |")
	fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | :---: | :---: |")
	for _, r := range rows() {
		v := bench.Median(res.Samples(r.name, r.unit))
		figure, ref, ratio, target := v, "—", "—", r.goal.String()
		if r.ref != "" {
			rv := bench.Median(res.Samples(r.ref, r.unit))
			figure = bench.Ratio(res.Samples(r.name, r.unit), res.Samples(r.ref, r.unit))
			ref, ratio = format(rv), format(figure)
			if !math.IsNaN(figure) {
				ratio += "×"
			}
			if r.goal != nil {
				target += "×"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n",
			r.what, r.unit, format(v), ref, ratio, target, r.goal.met(figure))
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
