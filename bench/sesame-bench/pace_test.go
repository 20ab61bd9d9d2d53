package main

import (
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	type step struct {
		at   time.Time
		max  int
		want int
	}
	tests := []struct {
		name  string
		rate  float64
		burst int
		steps []step
	}{
		{"first packet at once", 1000, 64, []step{{t0, 64, 1}, {t0, 64, 0}}},
		{"rate over time", 1000, 64, []step{{t0, 64, 1}, {ms(10), 64, 10}, {ms(20), 64, 10}, {ms(20), 64, 0}}},
		{"max caps a take, the rest stays", 1000, 64, []step{{t0, 64, 1}, {ms(30), 8, 8}, {ms(30), 64, 22}}},
		{"debt beyond a burst is dropped", 1000, 16, []step{{t0, 64, 1}, {ms(1000), 64, 16}, {ms(1000), 64, 0}, {ms(1005), 64, 5}}},
		{"unpaced", 0, 1, []step{{t0, 64, 64}, {t0, 7, 7}}},
		{"fractions accumulate", 100, 8, []step{{t0, 8, 1}, {ms(5), 8, 0}, {ms(10), 8, 1}, {ms(15), 8, 0}, {ms(20), 8, 1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBucket(tc.rate, tc.burst, t0)
			for i, s := range tc.steps {
				if got := b.take(s.at, s.max); got != s.want {
					t.Fatalf("step %d (at +%v, max %d): took %d, want %d", i, s.at.Sub(t0), s.max, got, s.want)
				}
			}
		})
	}
}

func TestBucketWait(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := newBucket(1000, 4, t0)
	if w := b.wait(t0); w != 0 {
		t.Fatalf("wait with a token in the bucket: %v", w)
	}
	b.take(t0, 1)
	if w := b.wait(t0); w != time.Millisecond {
		t.Fatalf("wait after spending the only token: %v, want 1ms", w)
	}
	if w := b.wait(t0.Add(400 * time.Microsecond)); w != 600*time.Microsecond {
		t.Fatalf("wait 0.4 ms later: %v, want 600µs", w)
	}
	if w := newBucket(0, 1, t0).wait(t0); w != 0 {
		t.Fatalf("unpaced wait: %v", w)
	}
}
