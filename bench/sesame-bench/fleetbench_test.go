package main

import (
	"strings"
	"testing"
)

func TestParseFleet(t *testing.T) {
	out := `goos: linux
propagation, 1 grants, Publish on one node to FleetChanges on each watcher (3-member etcd 3.4 on loopback)
watcher         p50        p99        max
w1       12.6ms      12.6ms      12.6ms
all      12.6ms      12.6ms      12.6ms

propagation, 200 grants, Publish on one node to FleetChanges on each watcher (3-member etcd 3.4 on loopback)
watcher         p50        p99        max
w1       12.612345ms 162.9ms   168.4ms
w2       12.5ms      1.5s      1.6s
w3       812µs       163ms     168.5ms
all      12.5ms      1.5s      1.6s
BenchmarkPropagation-2   	     200	  15531370 ns/op	        12.50 p50-ms	      1500 p99-ms
PASS
`
	rows, err := parseFleet(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 || rows[0].Watcher != "w1" || rows[3].Watcher != "all" {
		t.Fatalf("rows %+v: want the last table's w1..w3 and all", rows)
	}
	if rows[0].P50MS != 12.612345 || rows[1].P99MS != 1500 || rows[2].P50MS != 0.812 {
		t.Errorf("values %+v", rows)
	}
	r := &results{Fleet: &fleetResults{Grants: 200, Rows: rows}}
	if vd := r.fleetVerdict(); !vd.Known || vd.Met || !strings.Contains(vd.Miss, "500 ms over") {
		t.Errorf("verdict %+v: want a miss by 500 ms", vd)
	}
	r.Fleet.Rows[3].P99MS = 163
	if vd := r.fleetVerdict(); !vd.Met {
		t.Errorf("verdict %+v: want met", vd)
	}
	for _, bad := range []string{"", "propagation, 1 grants\nwatcher p50 p99 max\nw1 1ms 2ms 3ms\n", "propagation, 1 grants\nall 1ms x 3ms\n"} {
		if _, err := parseFleet(bad); err == nil {
			t.Errorf("parseFleet(%q): no error", bad)
		}
	}
	if vd := (&results{}).fleetVerdict(); vd.Known {
		t.Error("a run without the fleet section measured its target")
	}
}
