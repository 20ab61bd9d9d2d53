package main

import (
	"math"
	"slices"
)

// quantile returns the nearest-rank q-quantile of xs (0 < q <= 1): the
// smallest value with at least q of the samples at or below it. With
// fewer than 100 samples p99 is the maximum. NaN for no samples.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	r := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(r, 0), len(s)-1)]
}

// median is the middle value (the mean of the two middle ones for an
// even count).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// latencies returns the successful samples' latencies and the count of
// successes.
func latencies(ss []sample) ([]float64, int) {
	var out []float64
	for _, s := range ss {
		if s.OK {
			out = append(out, s.LatencyMS)
		}
	}
	return out, len(out)
}
