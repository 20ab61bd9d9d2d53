package main

import (
	"math"
	"testing"
)

func TestQuantiles(t *testing.T) {
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(100 - i) // 100..1, unsorted
	}
	tests := []struct {
		name       string
		xs         []float64
		med, p99   float64
		wantNaNMed bool
	}{
		{"odd", []float64{3, 1, 2}, 2, 3, false},
		{"even", []float64{4, 1, 3, 2}, 2.5, 4, false},
		{"hundred", hundred, 50.5, 99, false},
		{"one", []float64{7}, 7, 7, false},
		{"none", nil, 0, 0, true},
	}
	for _, tc := range tests {
		m, p := median(tc.xs), quantile(tc.xs, 0.99)
		if tc.wantNaNMed {
			if !math.IsNaN(m) || !math.IsNaN(p) {
				t.Errorf("%s: median %v p99 %v, want NaN", tc.name, m, p)
			}
			continue
		}
		if m != tc.med || p != tc.p99 {
			t.Errorf("%s: median %v p99 %v, want %v %v", tc.name, m, p, tc.med, tc.p99)
		}
	}
}
