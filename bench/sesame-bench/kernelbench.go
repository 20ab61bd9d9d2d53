package main

import (
	"context"
	"fmt"
	"strings"
)

// filterRow is one case of core/capture's BenchmarkEBPFFilter: the eBPF
// filter's own time per frame, timed by the kernel (BPF_PROG_TEST_RUN).
type filterRow struct {
	Name       string  `json:"name"`
	NsPerFrame float64 `json:"ns_per_frame"` // median of the runs
	MinNs      float64 `json:"min_ns"`
	MaxNs      float64 `json:"max_ns"`
	Runs       int     `json:"runs"`
}

// filterBenchArgs is the go test command line the report quotes.
func filterBenchArgs() []string {
	return []string{"test", "-run", "^$", "-bench", "EBPFFilter", "-count", "5", "-benchtime", "1000000x", "./core/capture/"}
}

// runFilterBench runs the eBPF filter benchmark in the repository at dir
// (it needs root, as the bench does).
func runFilterBench(ctx context.Context, goBin, dir string) ([]filterRow, string, error) {
	args := filterBenchArgs()
	out, _, err := goBench(ctx, goBin, dir, args)
	line := goBin + " " + strings.Join(args, " ")
	if err != nil {
		return nil, line, fmt.Errorf("%s: %w\n%s", line, err, tail(out, 2000))
	}
	rows, err := parseFilterBench(out)
	return rows, line, err
}

// parseFilterBench folds the runs of each BenchmarkEBPFFilter case from
// their kernel-ns/frame metric.
func parseFilterBench(out string) ([]filterRow, error) {
	bo, err := parseGoBench(out, "BenchmarkEBPFFilter")
	if err != nil {
		return nil, err
	}
	var rows []filterRow
	for _, name := range bo.Order {
		var xs []float64
		for _, r := range bo.Runs[name] {
			v, ok := r.Metrics["kernel-ns/frame"]
			if !ok {
				return nil, fmt.Errorf("BenchmarkEBPFFilter/%s: no kernel-ns/frame", name)
			}
			xs = append(xs, v)
		}
		row := filterRow{Name: strings.ReplaceAll(name, "_", " "), NsPerFrame: median(xs), MinNs: xs[0], MaxNs: xs[0], Runs: len(xs)}
		for _, x := range xs {
			row.MinNs, row.MaxNs = min(row.MinNs, x), max(row.MaxNs, x)
		}
		rows = append(rows, row)
	}
	return rows, nil
}
