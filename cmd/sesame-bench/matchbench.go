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

// matchRow is one case of core/match's BenchmarkObserve.
type matchRow struct {
	Name        string  `json:"name"`
	NsPerOp     float64 `json:"ns_per_op"`
	Mpps        float64 `json:"mpkt_per_s"`
	BytesPerOp  float64 `json:"bytes_per_op"`
	AllocsPerOp float64 `json:"allocs_per_op"`
}

// matchBenchArgs is the go test command line the report quotes.
func matchBenchArgs(benchtime string) []string {
	return []string{"test", "-run", "^$", "-bench", "Observe", "-benchmem", "-cpu", "1", "-count", "1",
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

// parseMatchBench reads `go test -bench -benchmem` output: a name, an
// iteration count, then value/unit pairs.
func parseMatchBench(out string) ([]matchRow, error) {
	var rows []matchRow
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
			case "Mpkt/s":
				r.Mpps = v
			case "B/op":
				r.BytesPerOp = v
			case "allocs/op":
				r.AllocsPerOp = v
			}
		}
		if !seen["ns/op"] || !seen["allocs/op"] {
			return nil, fmt.Errorf("benchmark line %q: no ns/op or allocs/op (run with -benchmem)", sc.Text())
		}
		if !seen["Mpkt/s"] && r.NsPerOp > 0 {
			r.Mpps = 1e3 / r.NsPerOp
		}
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("no BenchmarkObserve results in:\n%s", tail(out, 2000))
	}
	return rows, nil
}
