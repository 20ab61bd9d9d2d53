package sshknock

import "time"

// Budget is a token bucket's shape: one signature check per Every, with
// up to Burst saved up.
type Budget struct {
	Every time.Duration
	Burst int
}

// Default budgets. Verifying costs from about 50 µs (Ed25519) to about
// 1 ms (ECDSA P-521) here (see the benchmarks), so the overall budget
// caps forged-packet work at a fraction of one core, and one key's
// budget is a small share of it.
var (
	DefaultKeyBudget   = Budget{Every: 200 * time.Millisecond, Burst: 10} // 5/s per key
	DefaultTotalBudget = Budget{Every: 5 * time.Millisecond, Burst: 200}  // 200/s overall
)

func (b Budget) orDefault(d Budget) Budget {
	if b.Every <= 0 || b.Burst <= 0 {
		return d
	}
	return b
}

// bucket is a token bucket kept as the time it will be full again
// (GCRA): one int64, no floating point, time passed in.
type bucket struct {
	full int64 // unix nanoseconds at which the bucket is full
}

// canTake reports whether a token is there at now.
func (b *bucket) canTake(now int64, bud Budget) bool {
	full := max(b.full, now)
	return full-now <= int64(bud.Burst-1)*int64(bud.Every)
}

// take removes a token at now (call after canTake said yes).
func (b *bucket) take(now int64, bud Budget) {
	b.full = max(b.full, now) + int64(bud.Every)
}
