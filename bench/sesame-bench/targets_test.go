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
				{Variant: sesameNFTables, Family: 4, Samples: samplesMS(1, 1, 2)},
			},
			Flood: []floodRow{
				{Variant: sesameShell, Mode: modeFloodFirst, Family: 4, Rate: 10000, Knockers: knockers(100, 100), HWMKiB: 20 << 10},
				{Variant: sesameShell, Mode: modeFloodFirst, Family: 4, Rate: 100000, Knockers: knockers(99, 100), HWMKiB: 40 << 10,
					Gen: &genReport{PPS: 99000}},
			},
			Match: []matchRow{{Name: "sequences", Mpps: 4, AllocsPerOp: 0}, {Name: "flood-first-knocks", Mpps: 2.5, AllocsPerOp: 0}},
			Capture: []captureRow{
				{Variant: captureEBPF, Ports: 10000, Addrs: 2000, Rate: 100000, loadSample: loadSample{Gen: &genReport{PPS: 99000}, Seconds: 5, DaemonCPU: 0.2, DaemonTicks: 1}},
				{Variant: captureEBPF, Ports: 10000, Addrs: 2000, Rate: 0, loadSample: loadSample{Gen: &genReport{PPS: 300000}, Seconds: 5, DaemonCPU: 0.4, DaemonTicks: 2}},
				{Variant: captureClassic, Ports: 10000, Addrs: 2000, Rate: 0, loadSample: loadSample{Gen: &genReport{PPS: 250000}, Seconds: 5, DaemonCPU: 60, DaemonTicks: 300}},
			},
			Sweep: []floodRow{
				{Variant: sesameShell, Rate: 100000, Knockers: knockers(100, 100), Gen: &genReport{PPS: 99000}},
				{Variant: sesameShell, Rate: 200000, Knockers: knockers(100, 100), Gen: &genReport{PPS: 199000}},
				{Variant: sesameShell, Rate: -1, Knockers: knockers(100, 100), Gen: &genReport{PPS: 300000}, SocketDrops: 10},
			},
		}
	}
	tests := []struct {
		name string
		mod  func(*results)
		want []string // "met", "missed" or "unknown" per target, in order
	}{
		{"all met", func(*results) {}, []string{"met", "met", "unknown", "met", "met", "unknown", "unknown", "met", "met", "met", "met", "unknown"}},
		{"shell ratio below 5", func(r *results) { r.Latency[1].Samples = samplesMS(7, 7, 7) },
			[]string{"met", "missed", "unknown", "met", "met", "unknown", "unknown", "met", "met", "met", "met", "unknown"}},
		{"nft ratio below 20", func(r *results) { r.Latency[2].Samples = samplesMS(3.5) },
			[]string{"missed", "met", "unknown", "met", "met", "unknown", "unknown", "met", "met", "met", "met", "unknown"}},
		{"no knockd row", func(r *results) { r.Latency = r.Latency[1:] },
			[]string{"unknown", "unknown", "unknown", "met", "met", "unknown", "unknown", "met", "met", "met", "met", "unknown"}},
		{"98 in", func(r *results) { r.Flood[1].Knockers = knockers(98, 100) },
			[]string{"met", "met", "unknown", "missed", "met", "unknown", "unknown", "met", "met", "met", "met", "unknown"}},
		{"quick run scales", func(r *results) { r.Flood[1].Knockers = knockers(20, 20) },
			[]string{"met", "met", "unknown", "met", "met", "unknown", "unknown", "met", "met", "met", "met", "unknown"}},
		{"RSS over", func(r *results) { r.Flood[1].HWMKiB = 70 << 10 },
			[]string{"met", "met", "unknown", "met", "missed", "unknown", "unknown", "met", "met", "met", "met", "unknown"}},
		{"top rate not run", func(r *results) { r.Flood = r.Flood[:1] },
			[]string{"met", "met", "unknown", "unknown", "unknown", "unknown", "unknown", "met", "met", "met", "met", "unknown"}},
		{"failed flood row does not count", func(r *results) { r.Flood[1].Err = "boom" },
			[]string{"met", "met", "unknown", "unknown", "unknown", "unknown", "unknown", "met", "met", "met", "met", "unknown"}},
		{"slow matcher", func(r *results) { r.Match[1].Mpps = 1.5 },
			[]string{"met", "met", "unknown", "met", "met", "unknown", "unknown", "missed", "met", "met", "met", "unknown"}},
		{"allocating matcher", func(r *results) { r.Match[0].AllocsPerOp = 1 },
			[]string{"met", "met", "unknown", "met", "met", "unknown", "unknown", "met", "missed", "met", "met", "unknown"}},
		{"replay flood", func(r *results) {
			r.Flood = append(r.Flood, floodRow{Variant: sesameShell, Mode: modeFloodReplay, Family: 4, Rate: 100000, Knockers: knockers(100, 100), HWMKiB: 30 << 10})
		}, []string{"met", "met", "unknown", "met", "met", "met", "met", "met", "met", "met", "met", "unknown"}},
		{"replay flood over RSS", func(r *results) {
			r.Flood = append(r.Flood, floodRow{Variant: sesameShell, Mode: modeFloodReplay, Family: 4, Rate: 100000, Knockers: knockers(90, 100), HWMKiB: 600 << 10})
		}, []string{"met", "met", "unknown", "met", "met", "missed", "missed", "met", "met", "met", "met", "unknown"}},
		{"no matcher", func(r *results) { r.Match = nil },
			[]string{"met", "met", "unknown", "met", "met", "unknown", "unknown", "unknown", "unknown", "met", "met", "unknown"}},
		{"eBPF capture costs sesamed CPU", func(r *results) { r.Capture[1].DaemonCPU = 5 },
			[]string{"met", "met", "unknown", "met", "met", "unknown", "unknown", "met", "met", "missed", "met", "unknown"}},
		{"loss below 100k", func(r *results) { r.Sweep[0].Knockers = knockers(99, 100) },
			[]string{"met", "met", "unknown", "met", "met", "unknown", "unknown", "met", "met", "met", "missed", "unknown"}},
		{"no capture or sweep rows", func(r *results) { r.Capture, r.Sweep = nil, nil },
			[]string{"met", "met", "unknown", "met", "met", "unknown", "unknown", "met", "met", "unknown", "unknown", "unknown"}},
		{"native iptables-nft as fast as the shell", func(r *results) {
			r.Latency = append(r.Latency, latencyRow{Variant: sesameIPTNFT, Family: 4, Samples: samplesMS(5, 6, 6)})
		}, []string{"met", "met", "met", "met", "met", "unknown", "unknown", "met", "met", "met", "met", "unknown"}},
		{"native iptables-nft slower than the shell", func(r *results) {
			r.Latency = append(r.Latency, latencyRow{Variant: sesameIPTNFT, Family: 4, Samples: samplesMS(6.5)})
		}, []string{"met", "met", "missed", "met", "met", "unknown", "unknown", "met", "met", "met", "met", "unknown"}},
		{"native iptables-nft on IPv6 only", func(r *results) {
			r.Latency = append(r.Latency, latencyRow{Variant: sesameIPTNFT, Family: 6, Samples: samplesMS(1)})
		}, []string{"met", "met", "unknown", "met", "met", "unknown", "unknown", "met", "met", "met", "met", "unknown"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := base()
			tc.mod(r)
			vs := r.verdicts()
			vs = vs[:len(vs)-len(r.spaVerdicts())-1] // the SPA rows (TestSPAVerdicts) and the fleet row (TestParseFleet)
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

// A missed shell ratio says what the command alone costs on the machine
// and the ratio that bounds every daemon running it.
func TestShellVerdictBoundsByTheCommand(t *testing.T) {
	r := &results{
		Latency: []latencyRow{
			{Variant: knockdShell, Family: 4, Samples: samplesMS(40, 40, 40)},
			{Variant: sesameShell, Family: 4, Samples: samplesMS(11, 11, 11)},
		},
		CmdCost: []float64{9, 10, 11},
	}
	for _, v := range r.verdicts() {
		if !strings.Contains(v.Target, "same `iptables -I`") {
			continue
		}
		if v.Met || !strings.Contains(v.Miss, "takes 10.00 ms median") || !strings.Contains(v.Miss, "at most 4.0×") {
			t.Fatalf("met %v, miss %q", v.Met, v.Miss)
		}
		return
	}
	t.Fatal("no shell ratio verdict")
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
		Capture: []captureRow{
			{Variant: captureEBPF, Ports: 10000, Addrs: 2000, Rate: 100000, Filter: "eBPF, exact", loadSample: loadSample{Gen: &genReport{PPS: 100000}, Seconds: 5}},
			{Variant: captureClassic, Ports: 10000, Addrs: 2000, Rate: 100000, Filter: "classic BPF (4095 instructions)",
				loadSample: loadSample{Gen: &genReport{PPS: 100000}, Seconds: 5, DaemonCPU: 30, DaemonTicks: 150, SocketDrops: 0}},
			{Variant: captureKnockd, Ports: 10000, Addrs: 2000, Rate: 100000, loadSample: loadSample{Err: "knockd exited (exit status 1) before listening on: pcap_compile: out of memory"}},
		},
		Filter:    []filterRow{{Name: "10000 ports on 2000 addresses/unrelated IPv4 TCP", NsPerFrame: 45, MinNs: 40, MaxNs: 50, Runs: 5}},
		FilterCmd: "go test -bench EBPFFilter ./core/capture/",
		Sweep: []floodRow{
			{Variant: sesameShell, Rate: 200000, Knockers: knockers(100, 100), Gen: &genReport{PPS: 198000}, CPUPct: 60},
			{Variant: sesameShell, Rate: -1, Knockers: knockers(95, 100), Gen: &genReport{PPS: 400000}, CPUPct: 100, SocketDrops: 5000},
		},
	}
	r.Flood = append(r.Flood, floodRow{Variant: sesameShell, Mode: modeFloodReplay, Family: 4, Rate: 100000, Knockers: knockers(100, 100),
		HWMKiB: 40 << 10, Gen: &genReport{PPS: 99000}, StderrLines: 1234, LogFileLines: 567, FloodSeconds: 8})
	var b bytes.Buffer
	report(&b, r)
	md := b.String()
	for _, want := range []string{
		"| Cores | 2 |\n| CPU | Test CPU |\n| Kernel | Linux 6.1 |",
		"knock-to-connect median, knockd ÷ sesamed nftables | ≥ 20×",
		"15.0× (30.00 ms vs 2.00 ms) | **missed**: 5.0× short",
		"| knockd, shell `iptables -I` | IPv4 | 3 / 3 | 30.0 | 40.0 |",
		"| sesamed, native iptables-legacy | IPv4 | error: iptables-legacy: boom",
		"| knockd, shell `iptables -I` | IPv4 | 500000 | 1 / 1 |",
		"| first, IPv4 | 100000 | 98000 | sesamed, shell `iptables -I` | 97 / 100 |",
		"| 1234 | 900000 |",
		"| flood-first-knocks | 600.0 | 500.0 – 700.0 | 1.67 |",
		"## Repeat knocks and one-port opens",
		"| replay, 50 sources | 100000 | 99000 | sesamed, shell `iptables -I` | 100 / 100 | 5.00 / 5.00 | 0.0% | 40.0 MiB | 1234 | 567 | 8.0 |",
		"97 of 100 | **missed**: 2 knockers short",
		"**Missed: flood.**",
		"block timeout 50 ms",
		"**Missed: matcher.**",
		"| 10000 ports, 2000 more addresses | sesamed, eBPF filter | 100000 | 100000 | 0.0% | 0.00% | 0 | — | 0% of a core |",
		// 150 ticks against less than one: a lower bound.
		"| 10000 ports, 2000 more addresses | sesamed without CAP_BPF, classic filter | 100000 | 100000 | 30.0% | 30.00% | 3000 | ≥ 150× | 300% of a core | 0 |",
		"| 10000 ports, 2000 more addresses | knockd | 100000 | | error: knockd exited (exit status 1) before listening on: pcap_compile: out of memory |",
		"**Why the classic filter costs more.** With 10,000 knock ports on 2,000 addresses",
		"**knockd and large configs.** knockd did not start on the 10000 ports, 2000 more addresses config",
		"**Drop point.** sesamed's capture first lost frames at 400000 packets/s, at 100% of a core (5000 socket drops, 95 of 100 knockers in); below that, none up to 198000 packets/s.",
		"- 10000 ports, 2000 more addresses, sesamed, eBPF filter: `eBPF, exact`",
		"| 10000 ports on 2000 addresses/unrelated IPv4 TCP | 45 | 40 – 50 | 4.5% of a core |",
		"| 200000 | 198000 | 100 / 100 |",
		"| max | 400000 | 95 / 100 |",
		"First loss at 400000 packets/s (achieved); none up to 198000 packets/s.",
		"no loss up to 198000 packets/s, loss at 400000 | **met**",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(md)
	}
}

// Without loss up to the generator's top rate, the notes say why the
// capture has no fanout; with loss, where it started.
func TestCaptureNotes(t *testing.T) {
	r := &results{Sweep: []floodRow{
		{Variant: sesameShell, Rate: 100000, Knockers: knockers(100, 100), Gen: &genReport{PPS: 99000}, CPUPct: 40},
		{Variant: sesameShell, Rate: -1, Knockers: knockers(100, 100), Gen: &genReport{PPS: 250000}, CPUPct: 70},
	}}
	notes := strings.Join(captureNotes(r), "\n")
	if !strings.Contains(notes, "**No AF_PACKET fanout.** Up to 250000 packets/s") || !strings.Contains(notes, "at 70% of a core") {
		t.Errorf("notes: %s", notes)
	}
	r.Sweep[1].SocketDrops = 3
	notes = strings.Join(captureNotes(r), "\n")
	if !strings.Contains(notes, "**Drop point.** sesamed's capture first lost frames at 250000 packets/s") ||
		!strings.Contains(notes, "it was not short of one") {
		t.Errorf("notes: %s", notes)
	}
	r.Sweep[1].CPUPct = 99
	notes = strings.Join(captureNotes(r), "\n")
	if !strings.Contains(notes, "one core is the limit") {
		t.Errorf("notes: %s", notes)
	}
}
