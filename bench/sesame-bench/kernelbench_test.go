package main

import "testing"

func TestParseFilterBench(t *testing.T) {
	out := `goos: linux
BenchmarkEBPFFilter/3_ports/unrelated_IPv4_TCP-2         	 1000000	        45.39 ns/op	        40.00 kernel-ns/frame
BenchmarkEBPFFilter/3_ports/unrelated_IPv4_TCP-2         	 1000000	        45.39 ns/op	        44.00 kernel-ns/frame
BenchmarkEBPFFilter/3_ports/unrelated_IPv4_TCP-2         	 1000000	        45.39 ns/op	        38.00 kernel-ns/frame
BenchmarkEBPFFilter/10000_ports_on_2000_addresses/unrelated_IPv6_UDP-2         	 1000000	        59.15 ns/op	        42.00 kernel-ns/frame
PASS
`
	rows, err := parseFilterBench(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Name != "3 ports/unrelated IPv4 TCP" || rows[0].NsPerFrame != 40 || rows[0].MinNs != 38 ||
		rows[0].MaxNs != 44 || rows[0].Runs != 3 || rows[1].NsPerFrame != 42 {
		t.Errorf("rows %+v", rows)
	}
	if _, err := parseFilterBench("BenchmarkEBPFFilter/x-2 10 5 ns/op\n"); err == nil {
		t.Error("a line without kernel-ns/frame: no error")
	}
	if _, err := parseFilterBench("PASS\n"); err == nil {
		t.Error("no results: no error")
	}
}
