package main

import (
	"bytes"
	"strings"
	"testing"
)

// A sample's exec time is its own source's first stamp after its last
// knock: earlier stamps and other sources' do not count.
func TestExecTimes(t *testing.T) {
	ss := []sample{{Src: "10.77.1.1", KnockNS: 1_000_000}, {Src: "10.77.1.2", KnockNS: 5_000_000}, {Src: "10.77.1.3", KnockNS: 9_000_000}}
	stamps := []line{
		{at: 4_000_000, text: "10.77.1.2"}, // before its knock
		{at: 4_500_000, text: "10.77.1.1"},
		{at: 8_000_000, text: "10.77.1.2"},
		{at: 9_500_000, text: "10.77.1.1"}, // a later one of .1
	}
	execTimes(ss, stamps)
	for i, want := range []float64{3.5, 3, 0} {
		if ss[i].ExecMS != want {
			t.Errorf("%s: exec %v ms, want %v", ss[i].Src, ss[i].ExecMS, want)
		}
	}
}

func execSamples(ms ...float64) []sample {
	ss := samplesMS(ms...)
	for i := range ss {
		ss[i].ExecMS = ms[i] / 2
	}
	return ss
}

func TestExecVerdict(t *testing.T) {
	tests := []struct {
		name  string
		exec  []float64 // sesamed's latencies; exec is half of each
		spawn []float64
		want  string
	}{
		{"within a ms at both", []float64{8, 8, 9}, []float64{3, 3, 3.6}, "met"},
		{"median over", []float64{10, 10, 10}, []float64{3, 3, 3}, "missed"},
		{"p99 over", []float64{8, 8, 14}, []float64{3, 3, 3.5}, "missed"},
		{"no spawn measured", []float64{8, 8, 8}, nil, "unknown"},
		{"no exec stamps", nil, []float64{3}, "unknown"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &results{Spawn: tc.spawn, Latency: []latencyRow{{Variant: sesameShell, Family: 4, Samples: samplesMS(8)}}}
			if tc.exec != nil {
				r.Latency[0].Samples = execSamples(tc.exec...)
			}
			v := r.execVerdict()
			got := "unknown"
			if v.Known {
				got = map[bool]string{true: "met", false: "missed"}[v.Met]
			}
			if got != tc.want {
				t.Errorf("%s (%s), want %s", got, v.Measured, tc.want)
			}
			if v.Known && !v.Met && v.Miss == "" {
				t.Errorf("missed without saying by how much")
			}
		})
	}
}

// The spawn's p99 is taken over as many samples as the row has: the
// mean over its consecutive runs of that many, the pooled one when it
// has fewer.
func TestSpawnP99(t *testing.T) {
	r := &results{Spawn: []float64{1, 2, 9, 1, 2, 5}}
	for _, tc := range []struct {
		n    int
		want float64
	}{{3, 7}, {2, 16.0 / 3}, {6, 9}, {7, 9}, {0, 9}} {
		if got := r.spawnP99(tc.n); got != tc.want {
			t.Errorf("runs of %d: %v, want %v", tc.n, got, tc.want)
		}
	}
	// Two runs of 3: the row's maximum 8 is under the mean of the runs'
	// maxima, though over the pooled second largest (5).
	r.Latency = []latencyRow{{Variant: sesameShell, Family: 4, Samples: execSamples(2, 2, 16)}}
	if v := r.execVerdict(); !v.Known || !strings.Contains(v.Measured, "p99 +1.00 ms (8.00 vs 7.00") {
		t.Errorf("verdict %+v", v)
	}
}

func TestExecReport(t *testing.T) {
	r := &results{Spawn: []float64{3, 3, 4}, SpawnIdle: []float64{2, 2, 3},
		Latency: []latencyRow{
			{Variant: knockdShell, Family: 4, Samples: execSamples(50, 60, 70)},
			{Variant: sesameShell, Family: 4, Samples: execSamples(8, 8, 10)},
			{Variant: sesameNFTables, Family: 4, Samples: samplesMS(1, 1, 1)},
		}}
	var b bytes.Buffer
	report(&b, r)
	md := b.String()
	for _, want := range []string{
		"## Last knock to start command running",
		"| `/bin/sh -c` spawn | — | 3 | — | 3.00 | 4.00 | — |",
		"| `/bin/sh -c` spawn without the probe (reference) | — | 3 | — | 2.00 | 3.00 | -1.00 / -1.00 |",
		"| knockd, shell `iptables -I` | IPv4 | 3 | 30.0 | 30.0 | 35.0 | +27.00 / +31.00 |",
		"| sesamed, shell `iptables -I` | IPv4 | 3 | 4.00 | 4.00 | 5.00 | +1.00 / +1.00 |",
		"median +1.00 ms (4.00 vs 3.00), p99 +1.00 ms (5.00 vs 4.00, the spawn's over runs of 3) | **met**",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(md, "| sesamed, native nftables | IPv4 | 3 |") {
		t.Error("a row without exec stamps is in the exec table")
	}
	if t.Failed() {
		t.Log(md)
	}
}
