package metrics

import (
	"sync"
	"time"
)

// Latency matches the grants a knock began with the moment they were
// applied, for sesame_grant_latency_seconds. The daemon calls Expect
// when a sequence's last knock made a grant, with the key of the step
// that ends its application (the native grant, or the start command),
// and Applied when a step with that key finished. Keys are the caller's;
// entries never applied (a journal failure refused the grant) are
// dropped after MaxPending or when they are older than maxAge.
type Latency struct {
	m      *Metrics
	maxAge time.Duration

	mu      sync.Mutex // guards pending
	pending map[string]time.Time
}

// MaxPending bounds the grants being applied that Latency tracks: grants
// are limited per door, so this is reached only by many doors at once.
const MaxPending = 4096

// NewLatency returns a Latency recording into m; a grant not applied
// within maxAge is forgotten.
func (m *Metrics) NewLatency(maxAge time.Duration) *Latency {
	return &Latency{m: m, maxAge: maxAge, pending: map[string]time.Time{}}
}

// Expect notes that the knock taken at knocked began a grant that is
// applied when the step key finishes.
func (l *Latency) Expect(key string, knocked time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) >= MaxPending {
		for k, t := range l.pending {
			if knocked.Sub(t) > l.maxAge {
				delete(l.pending, k)
			}
		}
		if len(l.pending) >= MaxPending {
			return
		}
	}
	l.pending[key] = knocked
}

// Applied records the latency of the grant waiting for key, if any.
func (l *Latency) Applied(key string, now time.Time) {
	l.mu.Lock()
	t, ok := l.pending[key]
	delete(l.pending, key)
	l.mu.Unlock()
	if ok {
		l.m.GrantLatency(now.Sub(t))
	}
}

// Pending returns how many grants are awaited (for tests of the bound).
func (l *Latency) Pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pending)
}
