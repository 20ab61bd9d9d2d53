// Package loglimit is Sesame's one limiter for log lines a flood could
// multiply (a stage line per spoofed packet, an extension per repeat
// knock): keyed token buckets that take the time as a parameter, and a
// summary per key of what they held back. It decides whether a line is
// logged; it logs nothing itself and knows no sink.
package loglimit

import (
	"sort"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter is the one keyed limiter for log lines that a flood could
// multiply (an open per packet, an extension per repeat knock): each key
// (a door, or a door and a kind of line) may log Burst lines at once and
// Rate lines per second after that. Lines beyond are counted, and Report
// is called once per Every for each key that held lines back, so a flood
// costs one summary line per key per interval. Lines that must never be
// dropped (grants, revocations) do not go through a Limiter.
//
// Memory is bounded: at most MaxKeys keys are tracked (further keys
// share one overflow key, ""), and a key is forgotten once its bucket is
// full again and it has nothing to report.
type Limiter struct {
	opts Options

	mu    sync.Mutex // guards all following fields
	keys  map[string]*lineBucket
	timer interface{ Stop() bool } // the pending report, nil when none
	stop  bool
}

type lineBucket struct {
	lim  *rate.Limiter
	held uint64 // lines held back since the last report
	last time.Time
}

// Options configure a Limiter. Zero values take the defaults.
type Options struct {
	Rate    float64       // lines per second per key after the burst (default 1)
	Burst   int           // lines at once per key (default 10)
	Every   time.Duration // how often held-back lines are reported (default 10 s)
	MaxKeys int           // keys tracked at once, at least 2 (default 1024)
	// Report receives, per key, how many lines were held back over the
	// last interval. It is called from a timer goroutine, never with the
	// Limiter's lock held.
	Report func(key string, held uint64, every time.Duration)
	// AfterFunc schedules reports; nil means time.AfterFunc.
	AfterFunc func(d time.Duration, f func()) interface{ Stop() bool }
}

// New returns a Limiter.
func New(o Options) *Limiter {
	if o.Rate <= 0 {
		o.Rate = 1
	}
	if o.Burst <= 0 {
		o.Burst = 10
	}
	if o.Every <= 0 {
		o.Every = 10 * time.Second
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = 1024
	}
	o.MaxKeys = max(o.MaxKeys, 2)
	if o.AfterFunc == nil {
		o.AfterFunc = func(d time.Duration, f func()) interface{ Stop() bool } { return time.AfterFunc(d, f) }
	}
	return &Limiter{opts: o, keys: make(map[string]*lineBucket)}
}

// Allow reports whether a line for key may be logged at now; when it may
// not, the line is counted for the next report.
func (l *Limiter) Allow(key string, now time.Time) bool { return l.AllowN(key, 1, now) }

// AllowN is Allow for a line that stands for n things (n attempts
// evicted): when it is held back, n is added to the report's count.
func (l *Limiter) AllowN(key string, n uint64, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucketLocked(key, now)
	if b.lim.AllowN(now, 1) {
		return true
	}
	l.holdLocked(b, n)
	return false
}

// Count counts a line for key that is never logged one by one (it only
// shows in the report).
func (l *Limiter) Count(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.holdLocked(l.bucketLocked(key, now), 1)
}

func (l *Limiter) bucketLocked(key string, now time.Time) *lineBucket {
	b := l.keys[key]
	if b == nil {
		// One slot stays free for the overflow key.
		if len(l.keys) >= l.opts.MaxKeys-1 {
			l.pruneLocked(now)
		}
		if len(l.keys) >= l.opts.MaxKeys-1 {
			key = ""
			if b = l.keys[key]; b != nil {
				b.last = now
				return b
			}
		}
		b = &lineBucket{lim: rate.NewLimiter(rate.Limit(l.opts.Rate), l.opts.Burst)}
		l.keys[key] = b
	}
	b.last = now
	return b
}

// pruneLocked forgets keys with nothing to report whose bucket has
// refilled since they were last used.
func (l *Limiter) pruneLocked(now time.Time) {
	full := time.Duration(float64(l.opts.Burst) / l.opts.Rate * float64(time.Second))
	for k, b := range l.keys {
		if b.held == 0 && now.Sub(b.last) >= full {
			delete(l.keys, k)
		}
	}
}

func (l *Limiter) holdLocked(b *lineBucket, n uint64) {
	b.held += n
	if l.timer == nil && !l.stop {
		l.timer = l.opts.AfterFunc(l.opts.Every, l.report)
	}
}

// report hands the held-back counts to Report.
func (l *Limiter) report() {
	type item struct {
		key string
		n   uint64
	}
	l.mu.Lock()
	var items []item
	for k, b := range l.keys {
		if b.held > 0 {
			items = append(items, item{k, b.held})
			b.held = 0
		}
	}
	l.timer = nil
	l.mu.Unlock()
	sort.Slice(items, func(i, j int) bool { return items[i].key < items[j].key })
	if l.opts.Report != nil {
		for _, it := range items {
			l.opts.Report(it.key, it.n, l.opts.Every)
		}
	}
}

// Close reports what is held back now and stops further reports.
func (l *Limiter) Close() {
	l.mu.Lock()
	l.stop = true
	if l.timer != nil {
		l.timer.Stop()
	}
	l.mu.Unlock()
	l.report()
}

// Keys returns how many keys are tracked (for tests of the bound).
func (l *Limiter) Keys() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}
