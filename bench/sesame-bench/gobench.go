package main

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
)

// go test -bench output, read for the SPA section (spabench.go) and
// folded over -count's runs.

// benchOutput is go test -bench output for one benchmark function: its
// cases in the order they first ran, each case's runs (-count repeats
// one), and the cases that failed.
type benchOutput struct {
	Order  []string
	Runs   map[string][]benchRun
	Failed []string
}

// benchRun is one result line: the iteration count and the value of
// each unit (ns/op, B/op, allocs/op and b.ReportMetric's).
type benchRun struct {
	N       int
	Metrics map[string]float64
}

// parseGoBench reads the result lines of bench's sub-benchmarks ("Name-P
// N value unit value unit ..."; the -P of GOMAXPROCS is dropped) and its
// "--- FAIL:" lines. It returns an error for a malformed result line, or
// when no case ran and none failed; the output so far is returned with
// it. out may hold other benchmarks' lines and test logs.
func parseGoBench(out, bench string) (*benchOutput, error) {
	bo := &benchOutput{Runs: map[string][]benchRun{}}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "--- FAIL: "+bench+"/"); ok {
			bo.Failed = append(bo.Failed, caseName(strings.Fields(name)[0]))
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], bench+"/") {
			continue
		}
		name := caseName(strings.TrimPrefix(f[0], bench+"/"))
		n, err := strconv.Atoi(f[1])
		if err != nil || n < 1 || len(f)%2 != 0 {
			return bo, fmt.Errorf("benchmark line %q: not \"name N value unit ...\"", line)
		}
		r := benchRun{N: n, Metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return bo, fmt.Errorf("benchmark line %q: %w", line, err)
			}
			r.Metrics[f[i+1]] = v
		}
		if _, ok := bo.Runs[name]; !ok {
			bo.Order = append(bo.Order, name)
		}
		bo.Runs[name] = append(bo.Runs[name], r)
	}
	if len(bo.Order) == 0 && len(bo.Failed) == 0 {
		return bo, fmt.Errorf("no %s results in:\n%s", bench, tail(out, 2000))
	}
	return bo, nil
}

// caseName drops the "-P" go test appends when GOMAXPROCS is not 1.
func caseName(name string) string {
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			return name[:i]
		}
	}
	return name
}

// spaFlood folds BenchmarkSPAFlood's runs; a run without admitted/op
// (not that benchmark's) is left out.
func (bo *benchOutput) spaFlood() []spaFloodRow {
	var rows []spaFloodRow
	for _, name := range bo.Order {
		row := spaFloodRow{Name: name}
		var p50, p99, pps, cpu []float64
		for _, r := range bo.Runs[name] {
			adm, ok := r.Metrics["admitted/op"]
			if !ok {
				continue
			}
			row.Runs++
			row.Sent += r.N
			row.In += int(adm*float64(r.N) + 0.5)
			if v, ok := r.Metrics["ms-open-p50"]; ok {
				p50 = append(p50, v)
				p99 = append(p99, r.Metrics["ms-open-p99"])
			}
			pps = append(pps, r.Metrics["flood-pps"])
			cpu = append(cpu, r.Metrics["server-cpu-%"])
			row.RSSMiB = max(row.RSSMiB, r.Metrics["server-MB-peak-RSS"])
		}
		if row.Runs == 0 {
			continue
		}
		if len(p50) > 0 {
			row.OpenP50MS, row.OpenP99MS = median(p50), median(p99)
		}
		row.FloodPPS, row.CPUPct = median(pps), median(cpu)
		rows = append(rows, row)
	}
	return rows
}

// costs folds per-operation runs; a run without ns/op is left out.
func (bo *benchOutput) costs() []costRow {
	var rows []costRow
	for _, name := range bo.Order {
		row := costRow{Name: name}
		var ns []float64
		for _, r := range bo.Runs[name] {
			v, ok := r.Metrics["ns/op"]
			if !ok {
				continue
			}
			if row.Runs == 0 {
				row.MinNs, row.MaxNs = v, v
			}
			row.Runs++
			ns = append(ns, v)
			row.MinNs, row.MaxNs = min(row.MinNs, v), max(row.MaxNs, v)
			row.AllocsPerOp = max(row.AllocsPerOp, r.Metrics["allocs/op"])
			row.BytesPerOp = max(row.BytesPerOp, r.Metrics["B/op"])
			row.CostUnits = max(row.CostUnits, r.Metrics["cost-units"])
		}
		if row.Runs == 0 {
			continue
		}
		row.NsPerOp = median(ns)
		rows = append(rows, row)
	}
	return rows
}
