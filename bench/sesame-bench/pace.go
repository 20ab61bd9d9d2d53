package main

import "time"

// bucket is a token bucket that paces a sender to rate packets per
// second with bursts of at most burst packets. A sender that falls
// behind (descheduled, a slow syscall) loses the debt beyond one burst
// instead of catching up at full speed, so the rate stays the set rate
// over any window longer than a burst. Time is a parameter; the bucket
// is owned by the one goroutine that sends.
type bucket struct {
	rate   float64 // packets per second; 0 means unpaced
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rate float64, burst int, now time.Time) *bucket {
	if burst < 1 {
		burst = 1
	}
	// Start with one packet's worth so the first send is immediate and
	// the first second does not carry a burst on top of its rate.
	return &bucket{rate: rate, burst: float64(burst), tokens: 1, last: now}
}

// take returns how many of up to max packets may be sent at now and
// spends them.
func (b *bucket) take(now time.Time, max int) int {
	if b.rate <= 0 {
		return max
	}
	if el := now.Sub(b.last); el > 0 {
		b.tokens += el.Seconds() * b.rate
		if b.tokens > b.burst {
			b.tokens = b.burst
		}
		b.last = now
	}
	n := int(b.tokens)
	if n > max {
		n = max
	}
	b.tokens -= float64(n)
	return n
}

// wait is how long after now the next packet is due (0 when one is).
func (b *bucket) wait(now time.Time) time.Duration {
	if b.rate <= 0 {
		return 0
	}
	missing := 1 - (b.tokens + now.Sub(b.last).Seconds()*b.rate)
	if missing <= 0 {
		return 0
	}
	return time.Duration(missing / b.rate * float64(time.Second))
}
