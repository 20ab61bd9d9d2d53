package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
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
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	line := goBin + " " + strings.Join(args, " ")
	if err := cmd.Run(); err != nil {
		return nil, line, fmt.Errorf("%s: %w\n%s", line, err, tail(out.String(), 2000))
	}
	rows, err := parseFilterBench(out.String())
	return rows, line, err
}

// parseFilterBench folds the runs of each BenchmarkEBPFFilter case from
// their kernel-ns/frame metric.
func parseFilterBench(out string) ([]filterRow, error) {
	var order []string
	runs := map[string][]float64{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "BenchmarkEBPFFilter/") {
			continue
		}
		name := strings.TrimPrefix(f[0], "BenchmarkEBPFFilter/")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		name = strings.ReplaceAll(name, "_", " ")
		v := -1.0
		for i := 2; i+1 < len(f); i += 2 {
			if f[i+1] == "kernel-ns/frame" {
				x, err := strconv.ParseFloat(f[i], 64)
				if err != nil {
					return nil, fmt.Errorf("benchmark line %q: %w", sc.Text(), err)
				}
				v = x
			}
		}
		if v < 0 {
			return nil, fmt.Errorf("benchmark line %q: no kernel-ns/frame", sc.Text())
		}
		if _, ok := runs[name]; !ok {
			order = append(order, name)
		}
		runs[name] = append(runs[name], v)
	}
	if len(order) == 0 {
		return nil, fmt.Errorf("no BenchmarkEBPFFilter results in:\n%s", tail(out, 2000))
	}
	var rows []filterRow
	for _, name := range order {
		xs := runs[name]
		row := filterRow{Name: name, NsPerFrame: median(xs), MinNs: xs[0], MaxNs: xs[0], Runs: len(xs)}
		for _, x := range xs {
			row.MinNs, row.MaxNs = min(row.MinNs, x), max(row.MaxNs, x)
		}
		rows = append(rows, row)
	}
	return rows, nil
}
