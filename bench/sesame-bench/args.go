package main

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// parseSources reads a comma list of addresses and ranges; a range is
// FIRST+N, N consecutive addresses from FIRST.
func parseSources(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		first, count, isRange := strings.Cut(f, "+")
		a, err := netip.ParseAddr(first)
		if err != nil {
			return nil, fmt.Errorf("sources %q: %w", f, err)
		}
		n := 1
		if isRange {
			if n, err = strconv.Atoi(count); err != nil || n < 1 || n > 1<<16 {
				return nil, fmt.Errorf("sources %q: count must be 1-65536", f)
			}
		}
		for i := 0; i < n; i++ {
			if !a.IsValid() {
				return nil, fmt.Errorf("sources %q: runs past the end of the address space", f)
			}
			out = append(out, a)
			a = a.Next()
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("sources %q: no address", s)
	}
	return out, nil
}
