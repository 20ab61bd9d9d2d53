package sshknock

import (
	"crypto/rsa"
	"time"

	"golang.org/x/crypto/ssh"
)

// Budget is a token bucket's shape, in units of one Ed25519 signature
// check: one unit is earned per Every, and up to Burst units are saved.
// A check costs its key type's CheckCost, so a budget bounds CPU time,
// not packets. Burst is raised to MaxCheckCost when smaller, so every key
// can be checked at all.
type Budget struct {
	Every time.Duration
	Burst int
}

// Default budgets. One unit is about 50 µs of one core here, so the
// total caps signature work at about 10% of a core however a flood is
// spread over keys, and a flood claiming one key's fingerprint gets
// 0.1% of a core: that key's owner is refused while it lasts, other keys
// are not (it takes a hundred keys flooded at once to spend the total).
var (
	DefaultKeyBudget   = Budget{Every: 50 * time.Millisecond, Burst: 200}   // 20 units/s per key
	DefaultTotalBudget = Budget{Every: 500 * time.Microsecond, Burst: 4000} // 2000 units/s overall
	// DefaultSourceBudget is counted in checks, not units: a source may
	// have 4 signatures checked at once and one more every 2 s, which a
	// person knocking never reaches, while a flood naming alice's key
	// from one address costs alice a few units (it takes some 40
	// addresses flooding at once to spend her budget).
	DefaultSourceBudget = Budget{Every: 2 * time.Second, Burst: 4}
)

// MaxCheckCost is the largest CheckCost (RSA keys cost more with size but
// are capped here; 16384-bit knocks do not fit in a packet anyway).
const MaxCheckCost = 128

// CheckCost is what verifying a signature by pub costs, in Ed25519
// checks, from BenchmarkVerify on amd64 with Go 1.26 (Ed25519 ~50 µs,
// P-256 ~65 µs, RSA-3072 ~200 µs, RSA-4096 ~300 µs, P-384 ~1.4 ms,
// P-521 ~4 ms), rounded up.
func CheckCost(pub ssh.PublicKey) int {
	switch pub.Type() {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoSKED25519:
		return 1
	case ssh.KeyAlgoECDSA256, ssh.KeyAlgoSKECDSA256:
		return 2
	case ssh.KeyAlgoECDSA384:
		return 32
	case ssh.KeyAlgoECDSA521:
		return 96
	case ssh.KeyAlgoRSA:
		// About 5 for 3072 bits, growing with the square of the size.
		if cpk, ok := pub.(ssh.CryptoPublicKey); ok {
			if k, ok := cpk.CryptoPublicKey().(*rsa.PublicKey); ok {
				q := (k.N.BitLen() + 1023) / 1024 // 3 for 3072 bits
				return min(MaxCheckCost, (5*q*q+8)/9)
			}
		}
	}
	return MaxCheckCost
}

func (b Budget) orDefault(d Budget) Budget {
	if b.Every <= 0 || b.Burst <= 0 {
		b = d
	}
	b.Burst = max(b.Burst, MaxCheckCost)
	return b
}

// bucket is a token bucket kept as the time it will be full again
// (GCRA): one int64, no floating point, time passed in.
type bucket struct {
	full int64 // unix nanoseconds at which the bucket is full
}

// canTake reports whether n units are there at now.
func (b *bucket) canTake(now int64, bud Budget, n int) bool {
	return max(b.full, now)+int64(n)*int64(bud.Every)-now <= int64(bud.Burst)*int64(bud.Every)
}

// take removes n units at now (call after canTake said yes).
func (b *bucket) take(now int64, bud Budget, n int) {
	b.full = max(b.full, now) + int64(n)*int64(bud.Every)
}
