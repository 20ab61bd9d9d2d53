package main

import "testing"

func TestParseStatTicks(t *testing.T) {
	tests := []struct {
		stat string
		want uint64
		err  bool
	}{
		{"1234 (sesamed) S 1 1234 1234 0 -1 4194560 1520 0 0 0 250 37 0 0 20 0 9 0 100 1000 200", 287, false},
		{"99 (we ird) (name) R 1 2 3 4 5 6 7 8 9 10 7 8 0 0", 15, false},
		{"99 knockd S 1", 0, true},
		{"99 (knockd) S 1 2 3", 0, true},
	}
	for _, tc := range tests {
		got, err := parseStatTicks(tc.stat)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parseStatTicks(%q) = %d, %v; want %d (error %v)", tc.stat, got, err, tc.want, tc.err)
		}
	}
}

func TestParseStatusKiB(t *testing.T) {
	status := "Name:\tknockd\nVmPeak:\t   10000 kB\nVmHWM:\t    4242 kB\nVmRSS:\t    4000 kB\n"
	if v, err := parseStatusKiB(status, "VmHWM"); err != nil || v != 4242 {
		t.Fatalf("VmHWM = %d, %v", v, err)
	}
	if _, err := parseStatusKiB(status, "VmSwap"); err == nil {
		t.Fatal("missing key found")
	}
}
