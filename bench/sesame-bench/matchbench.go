package main

import (
	"context"
	"fmt"
	"strings"
)

// matchRow is one case of core/match's BenchmarkObserve: the median of
// its runs, with the fastest and slowest (this VM's memory-bound cases
// vary by half from run to run), and the most it allocated in any run.
type matchRow struct {
	Name        string  `json:"name"`
	NsPerOp     float64 `json:"ns_per_op"`
	MinNs       float64 `json:"min_ns_per_op"`
	MaxNs       float64 `json:"max_ns_per_op"`
	Runs        int     `json:"runs"`
	Mpps        float64 `json:"mpkt_per_s"` // from the median
	BytesPerOp  float64 `json:"bytes_per_op"`
	AllocsPerOp float64 `json:"allocs_per_op"`
}

// matchCount is how many times each case runs (go test -count).
const matchCount = 5

// matchBenchArgs is the go test command line the report quotes.
func matchBenchArgs(benchtime string) []string {
	return []string{"test", "-run", "^$", "-bench", "Observe", "-benchmem", "-cpu", "1", "-count", fmt.Sprint(matchCount),
		"-benchtime", benchtime, "./core/match/"}
}

// runMatchBench runs the matcher benchmark in the repository at dir.
func runMatchBench(ctx context.Context, goBin, dir, benchtime string) ([]matchRow, string, error) {
	args := matchBenchArgs(benchtime)
	out, _, err := goBench(ctx, goBin, dir, args)
	line := goBin + " " + strings.Join(args, " ")
	if err != nil {
		return nil, line, fmt.Errorf("%s: %w\n%s", line, err, tail(out, 2000))
	}
	rows, err := parseMatchBench(out)
	return rows, line, err
}

// parseMatchBench reads `go test -bench -benchmem` output and folds the
// runs of each case (-count repeats a name).
func parseMatchBench(out string) ([]matchRow, error) {
	bo, err := parseGoBench(out, "BenchmarkObserve")
	if err != nil {
		return nil, err
	}
	var rows []matchRow
	for _, name := range bo.Order {
		rs := bo.Runs[name]
		var ns []float64
		row := matchRow{Name: name, Runs: len(rs)}
		for i, r := range rs {
			v, okNs := r.Metrics["ns/op"]
			allocs, okA := r.Metrics["allocs/op"]
			if !okNs || !okA || v <= 0 {
				return nil, fmt.Errorf("BenchmarkObserve/%s: no ns/op or allocs/op (run with -benchmem)", name)
			}
			if i == 0 {
				row.MinNs, row.MaxNs = v, v
			}
			ns = append(ns, v)
			row.MinNs, row.MaxNs = min(row.MinNs, v), max(row.MaxNs, v)
			row.AllocsPerOp, row.BytesPerOp = max(row.AllocsPerOp, allocs), max(row.BytesPerOp, r.Metrics["B/op"])
		}
		row.NsPerOp = median(ns)
		row.Mpps = 1e3 / row.NsPerOp
		rows = append(rows, row)
	}
	return rows, nil
}
