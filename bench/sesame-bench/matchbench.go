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
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	line := goBin + " " + strings.Join(args, " ")
	if err := cmd.Run(); err != nil {
		return nil, line, fmt.Errorf("%s: %w\n%s", line, err, tail(out.String(), 2000))
	}
	rows, err := parseMatchBench(out.String())
	return rows, line, err
}

// parseMatchBench reads `go test -bench -benchmem` output (a name, an
// iteration count, then value/unit pairs; -count repeats a name) and
// folds the runs of each case.
func parseMatchBench(out string) ([]matchRow, error) {
	var order []string
	runs := map[string][]matchRow{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "BenchmarkObserve/") {
			continue
		}
		name := strings.TrimPrefix(f[0], "BenchmarkObserve/")
		// -cpu N other than 1 appends "-N" to the name.
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		r := matchRow{Name: name}
		seen := map[string]bool{}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("benchmark line %q: %w", sc.Text(), err)
			}
			unit := f[i+1]
			seen[unit] = true
			switch unit {
			case "ns/op":
				r.NsPerOp = v
			case "B/op":
				r.BytesPerOp = v
			case "allocs/op":
				r.AllocsPerOp = v
			}
		}
		if !seen["ns/op"] || !seen["allocs/op"] || r.NsPerOp <= 0 {
			return nil, fmt.Errorf("benchmark line %q: no ns/op or allocs/op (run with -benchmem)", sc.Text())
		}
		if _, ok := runs[name]; !ok {
			order = append(order, name)
		}
		runs[name] = append(runs[name], r)
	}
	if len(order) == 0 {
		return nil, fmt.Errorf("no BenchmarkObserve results in:\n%s", tail(out, 2000))
	}
	var rows []matchRow
	for _, name := range order {
		rs := runs[name]
		var ns []float64
		row := matchRow{Name: name, Runs: len(rs), MinNs: rs[0].NsPerOp, MaxNs: rs[0].NsPerOp}
		for _, r := range rs {
			ns = append(ns, r.NsPerOp)
			row.MinNs, row.MaxNs = min(row.MinNs, r.NsPerOp), max(row.MaxNs, r.NsPerOp)
			row.AllocsPerOp, row.BytesPerOp = max(row.AllocsPerOp, r.AllocsPerOp), max(row.BytesPerOp, r.BytesPerOp)
		}
		row.NsPerOp = median(ns)
		row.Mpps = 1e3 / row.NsPerOp
		rows = append(rows, row)
	}
	return rows, nil
}
