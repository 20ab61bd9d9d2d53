package main

import (
	"fmt"
	"testing"
)

func TestParseSources(t *testing.T) {
	tests := []struct {
		in   string
		want string // fmt of the slice, or "error"
	}{
		{"10.77.1.1", "[10.77.1.1]"},
		{"10.77.1.254+3", "[10.77.1.254 10.77.1.255 10.77.2.0]"},
		{"fd77::1:ff+2,10.0.0.1", "[fd77::1:ff fd77::1:100 10.0.0.1]"},
		{"255.255.255.255+2", "error"},
		{"10.0.0.1+0", "error"},
		{"10.0.0.1+x", "error"},
		{"nope", "error"},
		{"", "error"},
	}
	for _, tc := range tests {
		got, err := parseSources(tc.in)
		s := fmt.Sprint(got)
		if err != nil {
			s = "error"
		}
		if s != tc.want {
			t.Errorf("parseSources(%q) = %s (%v), want %s", tc.in, s, err, tc.want)
		}
	}
}
