package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// samplesMS builds successful samples with the given latencies.
func samplesMS(ms ...float64) []sample {
	var out []sample
	for i, v := range ms {
		out = append(out, sample{Src: fmt.Sprintf("10.77.1.%d", i+1), OK: true, LatencyMS: v, DetectMS: v / 2})
	}
	return out
}

func knockers(ok, total int) []sample {
	out := make([]sample, total)
	for i := range out {
		out[i] = sample{OK: i < ok, LatencyMS: 5}
	}
	return out
}

func TestVerdicts(t *testing.T) {
	base := func() *results {
		return &results{
			Latency: []latencyRow{
				{Variant: knockdShell, Family: 4, Samples: samplesMS(30, 30, 30)},
				{Variant: sesameShell, Family: 4, Samples: samplesMS(5, 6, 7)},
				{Variant: sesameNFTables, Family: 4, Samples: samplesMS(2, 2, 4)},
			},
			Flood: []floodRow{
				{Variant: sesameShell, Mode: modeFloodFirst, Family: 4, Rate: 10000, Knockers: knockers(100, 100), HWMKiB: 20 << 10},
				{Variant: sesameShell, Mode: modeFloodFirst, Family: 4, Rate: 100000, Knockers: knockers(99, 100), HWMKiB: 40 << 10,
					Gen: &genReport{PPS: 99000}},
			},
			Match: []matchRow{{Name: "sequences", Mpps: 4, AllocsPerOp: 0}, {Name: "flood-first-knocks", Mpps: 2.5, AllocsPerOp: 0}},
		}
	}
	tests := []struct {
		name string
		mod  func(*results)
		want []string // "met", "missed" or "unknown" per target, in order
	}{
		{"all met", func(*results) {}, []string{"met", "met", "unknown", "met", "met", "met", "met"}},
		{"shell ratio below 5", func(r *results) { r.Latency[1].Samples = samplesMS(7, 7, 7) },
			[]string{"met", "missed", "unknown", "met", "met", "met", "met"}},
		{"nft ratio below 10", func(r *results) { r.Latency[2].Samples = samplesMS(3.5) },
			[]string{"missed", "met", "unknown", "met", "met", "met", "met"}},
		{"no knockd row", func(r *results) { r.Latency = r.Latency[1:] },
			[]string{"unknown", "unknown", "unknown", "met", "met", "met", "met"}},
		{"98 in", func(r *results) { r.Flood[1].Knockers = knockers(98, 100) },
			[]string{"met", "met", "unknown", "missed", "met", "met", "met"}},
		{"quick run scales", func(r *results) { r.Flood[1].Knockers = knockers(20, 20) },
			[]string{"met", "met", "unknown", "met", "met", "met", "met"}},
		{"RSS over", func(r *results) { r.Flood[1].HWMKiB = 70 << 10 },
			[]string{"met", "met", "unknown", "met", "missed", "met", "met"}},
		{"top rate not run", func(r *results) { r.Flood = r.Flood[:1] },
			[]string{"met", "met", "unknown", "unknown", "unknown", "met", "met"}},
		{"failed flood row does not count", func(r *results) { r.Flood[1].Err = "boom" },
			[]string{"met", "met", "unknown", "unknown", "unknown", "met", "met"}},
		{"slow matcher", func(r *results) { r.Match[1].Mpps = 1.5 },
			[]string{"met", "met", "unknown", "met", "met", "missed", "met"}},
		{"allocating matcher", func(r *results) { r.Match[0].AllocsPerOp = 1 },
			[]string{"met", "met", "unknown", "met", "met", "met", "missed"}},
		{"native iptables-nft as fast as the shell", func(r *results) {
			r.Latency = append(r.Latency, latencyRow{Variant: sesameIPTNFT, Family: 4, Samples: samplesMS(5, 6, 6)})
		}, []string{"met", "met", "met", "met", "met", "met", "met"}},
		{"native iptables-nft slower than the shell", func(r *results) {
			r.Latency = append(r.Latency, latencyRow{Variant: sesameIPTNFT, Family: 4, Samples: samplesMS(6.5)})
		}, []string{"met", "met", "missed", "met", "met", "met", "met"}},
		{"native iptables-nft on IPv6 only", func(r *results) {
			r.Latency = append(r.Latency, latencyRow{Variant: sesameIPTNFT, Family: 6, Samples: samplesMS(1)})
		}, []string{"met", "met", "unknown", "met", "met", "met", "met"}},
		{"no matcher", func(r *results) { r.Match = nil },
			[]string{"met", "met", "unknown", "met", "met", "unknown", "unknown"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := base()
			tc.mod(r)
			vs := r.verdicts()
			if len(vs) != len(tc.want) {
				t.Fatalf("%d verdicts, want %d", len(vs), len(tc.want))
			}
			for i, v := range vs {
				got := "unknown"
				if v.Known {
					got = map[bool]string{true: "met", false: "missed"}[v.Met]
				}
				if got != tc.want[i] {
					t.Errorf("%s: %s (%s), want %s", v.Target, got, v.Measured, tc.want[i])
				}
				if v.Known && !v.Met && v.Miss == "" {
					t.Errorf("%s: missed without saying by how much", v.Target)
				}
			}
		})
	}
}

// The report carries every table, the targets and the notes, and says
// which rows failed.
func TestReport(t *testing.T) {
	r := &results{
		Machine: machineInfo{Cores: 2, CPU: "Test CPU", Kernel: "6.1"}, Command: "bench/run", Interval: "100µs",
		Latency: []latencyRow{
			{Variant: knockdShell, Family: 4, Samples: samplesMS(20, 30, 40), Capture: "TPACKET_V3 ring of 8 × 256 KiB, block timeout 50 ms"},
			{Variant: sesameNFTables, Family: 4, Samples: samplesMS(2, 2, 2)},
			{Variant: sesameIPTLeg, Family: 4, Err: "iptables-legacy: boom"},
		},
		Noise: []latencyRow{{Variant: knockdShell, Family: 4, Samples: samplesMS(30), Noise: &genReport{PPS: 500000}}},
		Flood: []floodRow{{Variant: sesameShell, Mode: modeFloodFirst, Family: 4, Rate: 100000, Knockers: knockers(97, 100),
			HWMKiB: 30 << 10, SocketDrops: 1234, Gen: &genReport{PPS: 98000, Sent: 1000000}, LogLines: 900000, CPUPct: 80}},
		Match: []matchRow{{Name: "flood-first-knocks", NsPerOp: 600, MinNs: 500, MaxNs: 700, Runs: 5, Mpps: 1.67}},
	}
	var b bytes.Buffer
	report(&b, r)
	md := b.String()
	for _, want := range []string{
		"| Cores | 2 |\n| CPU | Test CPU |\n| Kernel | Linux 6.1 |",
		"knock-to-connect median, knockd ÷ sesamed nftables | ≥ 10×",
		"15.0× (30.00 ms vs 2.00 ms) | **met**",
		"| knockd, shell `iptables -I` | IPv4 | 3 / 3 | 30.0 | 40.0 |",
		"| sesamed, native iptables-legacy | IPv4 | error: iptables-legacy: boom",
		"| knockd, shell `iptables -I` | IPv4 | 500000 | 1 / 1 |",
		"| first, IPv4 | 100000 | 98000 | sesamed, shell `iptables -I` | 97 / 100 |",
		"| 1234 | 900000 |",
		"| flood-first-knocks | 600.0 | 500.0 – 700.0 | 1.67 |",
		"97 of 100 | **missed**: 2 knockers short",
		"**Missed: flood.**",
		"block timeout 50 ms",
		"**Missed: matcher.**",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(md)
	}
}
