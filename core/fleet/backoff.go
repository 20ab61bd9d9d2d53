package fleet

import "time"

// backoffDelay is the wait before attempt (0-based) after failures:
// min doubled per attempt up to max, then jittered down by up to half
// with r in [0,1), so nodes cut off together do not come back in step.
func backoffDelay(attempt int, min, max time.Duration, r float64) time.Duration {
	d := max
	if attempt < 32 {
		if x := min << attempt; x > 0 && x < max {
			d = x
		}
	}
	return d/2 + time.Duration(r*float64(d/2))
}
