package main

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// spaFloodOut is BenchmarkSPAFlood's output as go test prints it (lines
// from a run on this machine, -benchtime 3x), with a second run of one
// case, a failed case and another benchmark's line.
const spaFloodOut = `goos: linux
goarch: amd64
pkg: github.com/sesame-knock/sesame/e2e
BenchmarkSPAFlood/fwknop-quiet-2         	       3	  12759711 ns/op	         1.000 admitted/op	         0 flood-pps	        11.62 ms-open-p50	        14.88 ms-open-p99	        27.44 server-MB-peak-RSS	        76.79 server-cpu-%
BenchmarkSPAFlood/fwknop-garbage-20k-2            	       3	  13084668 ns/op	         1.000 admitted/op	     19351 flood-pps	        12.64 ms-open-p50	        14.41 ms-open-p99	        27.52 server-MB-peak-RSS	        25.20 server-cpu-%
BenchmarkSPAFlood/fwknop-garbage-100k-2           	       3	  10510269 ns/op	         0.6667 admitted/op	     53444 flood-pps	        10.30 ms-open-p50	        10.62 ms-open-p99	        27.25 server-MB-peak-RSS	        63.02 server-cpu-%
--- BENCH: BenchmarkSPAFlood/fwknop-garbage-100k-2
    spa_bench_test.go:93: packet 0 (for 10.79.0.0) did not open within 5 s
BenchmarkSPAFlood/fwknop-garbage-20k-2            	       2	  13084668 ns/op	         1.000 admitted/op	     20001 flood-pps	        20.00 ms-open-p50	        30.00 ms-open-p99	        25.00 server-MB-peak-RSS	        35.20 server-cpu-%
BenchmarkSPAFlood/fwknopd-garbage-20k-2           	       3	5033810710 ns/op	         0 admitted/op	     20001 flood-pps	         5.355 server-MB-peak-RSS	         1.987 server-cpu-%
--- FAIL: BenchmarkSPAFlood/fwknopd-quiet
    fwknoptest.go:55: fwknopd not installed
BenchmarkOther/x-2 	 3	 100 ns/op
FAIL
`

func TestParseSPAFlood(t *testing.T) {
	bo, err := parseGoBench(spaFloodOut, "BenchmarkSPAFlood")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"fwknopd-quiet"}; !reflect.DeepEqual(bo.Failed, want) {
		t.Errorf("failed %q, want %q", bo.Failed, want)
	}
	got := bo.spaFlood()
	want := []spaFloodRow{
		{Name: "fwknop-quiet", Runs: 1, Sent: 3, In: 3, OpenP50MS: 11.62, OpenP99MS: 14.88, FloodPPS: 0, CPUPct: 76.79, RSSMiB: 27.44},
		// Two runs: the medians (of two: their mean), the larger RSS.
		{Name: "fwknop-garbage-20k", Runs: 2, Sent: 5, In: 5, OpenP50MS: 16.32, OpenP99MS: 22.205, FloodPPS: 19676, CPUPct: 30.2, RSSMiB: 27.52},
		{Name: "fwknop-garbage-100k", Runs: 1, Sent: 3, In: 2, OpenP50MS: 10.30, OpenP99MS: 10.62, FloodPPS: 53444, CPUPct: 63.02, RSSMiB: 27.25},
		{Name: "fwknopd-garbage-20k", Runs: 1, Sent: 3, In: 0, FloodPPS: 20001, CPUPct: 1.987, RSSMiB: 5.355},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Name != w.Name || g.Runs != w.Runs || g.Sent != w.Sent || g.In != w.In || !near(g.OpenP50MS, w.OpenP50MS) ||
			!near(g.OpenP99MS, w.OpenP99MS) || !near(g.FloodPPS, w.FloodPPS) || !near(g.CPUPct, w.CPUPct) || !near(g.RSSMiB, w.RSSMiB) {
			t.Errorf("row %d: got %+v\nwant %+v", i, g, w)
		}
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func TestParseSPACosts(t *testing.T) {
	path := `pkg: github.com/sesame-knock/sesame/internal/daemon
BenchmarkSPAPath/fwknop-garbage         	  385310	      3077 ns/op	  71.50 MB/s	       0 B/op	       0 allocs/op
BenchmarkSPAPath/fwknop-garbage         	  385310	      2000 ns/op	  71.50 MB/s	       0 B/op	       0 allocs/op
BenchmarkSPAPath/fwknop-garbage         	  385310	      4000 ns/op	  71.50 MB/s	      16 B/op	       1 allocs/op
BenchmarkSPAPath/ssh-replay             	  600000	      1709 ns/op	 190.00 MB/s	       0 B/op	       0 allocs/op
PASS
`
	bo, err := parseGoBench(path, "BenchmarkSPAPath")
	if err != nil {
		t.Fatal(err)
	}
	want := []costRow{
		{Name: "fwknop-garbage", NsPerOp: 3077, MinNs: 2000, MaxNs: 4000, Runs: 3, AllocsPerOp: 1, BytesPerOp: 16},
		{Name: "ssh-replay", NsPerOp: 1709, MinNs: 1709, MaxNs: 1709, Runs: 1},
	}
	if got := bo.costs(); !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}

	verify := "BenchmarkVerify/ecdsa-nistp521-2 \t 200 \t 7320000 ns/op \t 31.5 MB/s \t 96.00 cost-units \t 5000 B/op \t 44 allocs/op\n"
	bo, err = parseGoBench(verify, "BenchmarkVerify")
	if err != nil {
		t.Fatal(err)
	}
	want = []costRow{{Name: "ecdsa-nistp521", NsPerOp: 7320000, MinNs: 7320000, MaxNs: 7320000, Runs: 1, AllocsPerOp: 44, BytesPerOp: 5000, CostUnits: 96}}
	if got := bo.costs(); !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}

	for _, bad := range []string{
		"PASS\n",
		"BenchmarkVerify/x 10 abc ns/op\n",
		"BenchmarkVerify/x ten 12 ns/op\n",
		"BenchmarkVerify/x 10 12 ns/op 5\n",
		"BenchmarkOther/x 10 12 ns/op\n",
	} {
		if _, err := parseGoBench(bad, "BenchmarkVerify"); err == nil {
			t.Errorf("parseGoBench(%q) succeeded", bad)
		}
	}
	// A benchmark that failed before any case ran is not an error of
	// the output: runSPA reports go test's.
	if bo, err := parseGoBench("--- FAIL: BenchmarkVerify/ssh-ed25519-2\nFAIL\n", "BenchmarkVerify"); err != nil || len(bo.Failed) != 1 {
		t.Errorf("a failed case: %+v, %v", bo, err)
	}
}

func TestSPAFloodArgs(t *testing.T) {
	for _, c := range []struct {
		o     spaOptions
		quick bool
		bench string
		left  string
	}{
		{spaOptions{SPAPackets: 20, SPAFwknopd: true}, false, "SPAFlood", ""},
		{spaOptions{SPAPackets: 20}, false, "SPAFlood/^fwknop-|^ssh-", "fwknopd"},
		{spaOptions{SPAPackets: 3}, true, "SPAFlood/" + spaQuickCases, "100k/s"},
		{spaOptions{SPAPackets: 3, SPAFwknopd: true}, true,
			"SPAFlood/^(fwknop-quiet|fwknop-quiet-iptables|fwknop-garbage-20k|ssh-forged-20k|fwknopd-quiet|fwknopd-garbage-20k)$", "100k/s"},
	} {
		args := spaFloodArgs(c.o, c.quick)
		if args[4] != c.bench || !strings.Contains(strings.Join(args, " "), fmt.Sprintf("-benchtime %dx", c.o.SPAPackets)) {
			t.Errorf("%+v quick=%v: %q", c.o, c.quick, args)
		}
		left := spaLeftOut(c.o, c.quick)
		if (c.left == "") != (left == "") || !strings.Contains(left, c.left) {
			t.Errorf("%+v quick=%v: left out %q, want it to mention %q", c.o, c.quick, left, c.left)
		}
		if !c.o.SPAFwknopd && !strings.Contains(left, "fwknopd") {
			t.Errorf("%+v quick=%v: left out %q does not say fwknopd", c.o, c.quick, left)
		}
	}
	if got, want := shellLine([]string{"go", "test", "-run", "^$", "-bench", "SPAFlood/^(a|b)$", "./e2e/"}),
		`go test -run '^$' -bench 'SPAFlood/^(a|b)$' ./e2e/`; got != want {
		t.Errorf("shellLine: %s, want %s", got, want)
	}
}

func TestSPAVerdicts(t *testing.T) {
	row := func(name string, in, sent int, p99 float64) spaFloodRow {
		return spaFloodRow{Name: name, Runs: 1, Sent: sent, In: in, OpenP50MS: p99 / 2, OpenP99MS: p99, FloodPPS: 20000}
	}
	for _, c := range []struct {
		name     string
		flood    []spaFloodRow
		known    [2]bool
		met      [2]bool
		measured string
	}{
		{"both ran", []spaFloodRow{row("fwknop-garbage-20k", 20, 20, 30), row("fwknopd-garbage-20k", 0, 20, 0)},
			[2]bool{true, true}, [2]bool{true, true}, "sesamed 20 of 20 (100%), fwknopd 0 of 20 (0%)"},
		{"one lost", []spaFloodRow{row("fwknop-garbage-20k", 19, 20, 30), row("fwknopd-garbage-20k", 0, 20, 0)},
			[2]bool{true, true}, [2]bool{false, true}, "sesamed 19 of 20"},
		{"fwknopd did better", []spaFloodRow{row("fwknop-garbage-20k", 99, 100, 30), row("fwknopd-garbage-20k", 10, 10, 200)},
			[2]bool{true, true}, [2]bool{false, true}, "fwknopd 10 of 10"},
		{"slow", []spaFloodRow{row("fwknop-garbage-20k", 20, 20, 1500), row("fwknopd-garbage-20k", 0, 20, 0)},
			[2]bool{true, true}, [2]bool{true, false}, ""},
		{"none opened", []spaFloodRow{row("fwknop-garbage-20k", 0, 20, 0), row("fwknopd-garbage-20k", 0, 20, 0)},
			[2]bool{true, true}, [2]bool{false, false}, ""},
		// Without fwknopd the comparison is not measured.
		{"no fwknopd", []spaFloodRow{row("fwknop-garbage-20k", 3, 3, 30)}, [2]bool{false, true}, [2]bool{false, true}, ""},
		{"no flood", nil, [2]bool{false, false}, [2]bool{false, false}, ""},
	} {
		r := &results{SPA: &spaResults{Flood: c.flood}}
		vs := r.spaVerdicts()
		if len(vs) != 2 {
			t.Fatalf("%s: %d verdicts", c.name, len(vs))
		}
		for i, v := range vs {
			if v.Known != c.known[i] || v.Met != c.met[i] {
				t.Errorf("%s: verdict %d %+v, want known %v met %v", c.name, i, v, c.known[i], c.met[i])
			}
		}
		if !strings.Contains(vs[0].Measured, c.measured) {
			t.Errorf("%s: measured %q, want %q in it", c.name, vs[0].Measured, c.measured)
		}
	}
	// A run without the section has both rows, not measured.
	if vs := (&results{}).spaVerdicts(); len(vs) != 2 || vs[0].Known || vs[1].Known {
		t.Errorf("no SPA section: %+v", vs)
	}
}

func TestSPAReport(t *testing.T) {
	bo, err := parseGoBench(spaFloodOut, "BenchmarkSPAFlood")
	if err != nil {
		t.Fatal(err)
	}
	r := &results{SPA: &spaResults{Flood: bo.spaFlood(), FloodCmd: "go test -bench SPAFlood ./e2e/", Fwknopd: "2.6.10-1",
		Left: "Debian's fwknopd (a quick run)", FloodErr: "go test: exit status 1: failed fwknopd-quiet",
		Path: []costRow{{Name: "fwknop-garbage", NsPerOp: 3077, MinNs: 2000, MaxNs: 4000, Runs: 3}}, PathCmd: "go test -bench SPAPath",
		Verify: []costRow{{Name: "ecdsa-nistp521", NsPerOp: 7.32e6, MinNs: 7e6, MaxNs: 8e6, Runs: 3, CostUnits: 96, AllocsPerOp: 44}},
		VerCmd: "go test -bench Verify"}}
	var b bytes.Buffer
	spaReport(&b, r)
	md := b.String()
	for _, want := range []string{
		"## SPA: real packets under a flood", "From `go test -bench SPAFlood ./e2e/`", "Debian's fwknopd 2.6.10-1 (iptables)",
		"This run left out: Debian's fwknopd (a quick run).", "Failed: go test: exit status 1: failed fwknopd-quiet",
		"| none | sesamed, nftables | — | 3 / 3 | 11.6 / 14.9 | — | 27.4 MiB |",
		"| fwknop garbage 20k/s | sesamed, nftables | 19676 | 5 / 5 | 16.3 / 22.2 | 30.2% | 27.5 MiB |",
		"| fwknop garbage 20k/s | **fwknopd** | 20001 | **0 / 3** | — | 2.0% | 5.4 MiB |",
		"At 20,000 garbage packets per second sesamed admitted 5 of 5 real packets (p99 22.2 ms to open); Debian's fwknopd, " +
			"under the same flood in the same run, 0 of 3",
		"At 100,000 per second (the sender kept 53444) sesamed admitted 2 of 3: the verifier, one HMAC per garbage packet,",
		"## SPA: what one flood packet costs sesamed", "From `go test -bench SPAPath`", "Each case ran 3 times",
		"| fwknop garbage (one HMAC) | 3077 | 2000 – 4000 | 0 |",
		"## SSH-signed knocks: verification cost per key type", "| ecdsa-sha2-nistp521 | 7320 | 7000 – 8000 | 96 | 44 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	// Nothing lost: no explanation of losses.
	b.Reset()
	r.SPA.Flood[2].In = r.SPA.Flood[2].Sent
	r.SPA.Path[0].Runs = 1
	spaReport(&b, r)
	if md := b.String(); !strings.Contains(md, "sesamed admitted 3 of 3. Each real packet") {
		t.Errorf("100k/s without a loss:\n%s", md)
	}
	// One run: no median to speak of.
	if md := b.String(); !strings.Contains(md, "a flood is made of. Each case ran once.") {
		t.Errorf("one run:\n%s", md)
	}
	b.Reset()
	spaReport(&b, &results{})
	if b.Len() != 0 {
		t.Errorf("a run without the section wrote %q", b.String())
	}
}
