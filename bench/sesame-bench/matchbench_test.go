package main

import (
	"reflect"
	"testing"
)

func TestParseMatchBench(t *testing.T) {
	out := `goos: linux
pkg: github.com/sesame-knock/sesame/core/match
BenchmarkObserve/sequences         	  933790	       250 ns/op	         4 Mpkt/s	       0 B/op	       0 allocs/op
BenchmarkObserve/flood-first-knocks-2   	  340311	       500 ns/op	       16 B/op	       1 allocs/op
BenchmarkObserve/sequences         	  933790	       200 ns/op	         5 Mpkt/s	       0 B/op	       0 allocs/op
BenchmarkObserve/sequences         	  933790	       400 ns/op	         2.5 Mpkt/s	       0 B/op	       2 allocs/op
PASS
`
	got, err := parseMatchBench(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []matchRow{
		{Name: "sequences", NsPerOp: 250, MinNs: 200, MaxNs: 400, Runs: 3, Mpps: 4, BytesPerOp: 0, AllocsPerOp: 2},
		{Name: "flood-first-knocks", NsPerOp: 500, MinNs: 500, MaxNs: 500, Runs: 1, Mpps: 2, BytesPerOp: 16, AllocsPerOp: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	for _, bad := range []string{
		"PASS\n",
		"BenchmarkObserve/x 10 12.5 ns/op\n",
		"BenchmarkObserve/x 10 abc ns/op 0 allocs/op\n",
	} {
		if _, err := parseMatchBench(bad); err == nil {
			t.Errorf("parseMatchBench(%q) succeeded", bad)
		}
	}
}
