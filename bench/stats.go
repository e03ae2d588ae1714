package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Median returns the median of xs, the mean of the middle two for an even
// count, or NaN for none.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Sorted(slices.Values(xs))
	mid := len(s) / 2
	if len(s)%2 == 1 {
		return s[mid]
	}
	return (s[mid-1] + s[mid]) / 2
}

// Ratio compares samples xs with reference samples ref. When both have the
// same number of samples, sample i of each taken in the same round, it is
// the median of the per-round ratios xs[i]/ref[i], so that how busy the
// machine was in a round cancels out; otherwise it is the ratio of the
// medians. It returns NaN when either has no samples.
func Ratio(xs, ref []float64) float64 {
	if len(xs) == 0 || len(xs) != len(ref) {
		return Median(xs) / Median(ref)
	}
	ratios := make([]float64, len(xs))
	for i := range xs {
		ratios[i] = xs[i] / ref[i]
	}
	return Median(ratios)
}

// Percentile returns the p-th percentile (0 < p <= 100) of xs by the
// nearest-rank method: the smallest sample that at least p percent of the
// samples do not exceed. It returns NaN for no samples.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Sorted(slices.Values(xs))
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

// Jain returns Jain's fairness index of xs, (Σx)² / (n·Σx²): 1 when every
// share is equal, 1/n when one takes everything. It returns NaN for no
// samples or nothing shared.
func Jain(xs []float64) float64 {
	var sum, squares float64
	for _, x := range xs {
		sum += x
		squares += x * x
	}
	if squares == 0 {
		return math.NaN()
	}
	return sum * sum / (float64(len(xs)) * squares)
}

// Results holds benchmark samples by benchmark name, without the
// -GOMAXPROCS suffix, and by unit, in the order they were read.
type Results map[string]map[string][]float64

// Samples returns the samples of one benchmark in one unit.
func (r Results) Samples(name, unit string) []float64 { return r[name][unit] }

// procsSuffix is the -GOMAXPROCS suffix go test appends to a benchmark name
// when GOMAXPROCS is not 1.
var procsSuffix = regexp.MustCompile(`-\d+$`)

// ErrNoResults is what ParseResults returns for input without a single
// benchmark result.
var ErrNoResults = errors.New("bench: no benchmark results in the input")

// ParseResults reads the output of go test -bench, any number of runs one
// after the other, and collects every value of every result line, custom
// metrics (b.ReportMetric) included. Other lines are skipped.
func ParseResults(r io.Reader) (Results, error) {
	res := Results{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || len(f)%2 != 0 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := procsSuffix.ReplaceAllString(f[0], "")
		for i := 2; i < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("bench: %s: value %q of %s: %w", name, f[i], f[i+1], err)
			}
			if res[name] == nil {
				res[name] = map[string][]float64{}
			}
			res[name][f[i+1]] = append(res[name][f[i+1]], v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(res) == 0 {
		return nil, ErrNoResults
	}
	return res, nil
}
