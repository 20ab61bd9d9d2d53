package supervisor

import (
	"sync"
	"sync/atomic"
	"time"
)

// Heartbeats is a registry of components that prove they are alive by
// beating at least once per maximum silence. Beat is meant for hot paths:
// it is one monotonic clock read and one atomic store, no lock and no
// allocation. Registration copies the registry under a mutex; readers
// (Healthy, Beat by name) load an immutable snapshot atomically.
type Heartbeats struct {
	// epoch is the monotonic reference; beats are stored as offsets from it
	// so that a wall clock step never makes a component look fresh or stale.
	epoch time.Time

	mu   sync.Mutex                  // serialises writers of snap
	snap atomic.Pointer[beatersSnap] // replaced wholesale under mu, read lock-free
}

type beatersSnap struct {
	order  []*Beater // registration order, for stable reports
	byName map[string]*Beater
}

// Beater is one component's heartbeat. Its methods are safe for concurrent
// use; Beat is normally called from the component's own goroutine.
type Beater struct {
	name       string
	epoch      time.Time
	maxSilence atomic.Int64 // time.Duration
	last       atomic.Int64 // nanoseconds since epoch of the latest beat
}

// NewHeartbeats returns an empty registry.
func NewHeartbeats() *Heartbeats {
	h := &Heartbeats{epoch: time.Now()}
	h.snap.Store(&beatersSnap{byName: map[string]*Beater{}})
	return h
}

// Register adds a component that must beat at least every maxSilence and
// counts it as having just beaten. Registering a name again returns the
// existing Beater with the new maxSilence and a fresh beat, so a restarted
// component keeps its identity.
func (h *Heartbeats) Register(name string, maxSilence time.Duration) *Beater {
	return h.register(name, maxSilence, time.Now())
}

func (h *Heartbeats) register(name string, maxSilence time.Duration, now time.Time) *Beater {
	h.mu.Lock()
	defer h.mu.Unlock()
	old := h.snap.Load()
	if b, ok := old.byName[name]; ok {
		b.maxSilence.Store(int64(maxSilence))
		b.beatAt(now)
		return b
	}
	b := &Beater{name: name, epoch: h.epoch}
	b.maxSilence.Store(int64(maxSilence))
	b.beatAt(now)
	next := &beatersSnap{
		order:  append(append([]*Beater(nil), old.order...), b),
		byName: make(map[string]*Beater, len(old.byName)+1),
	}
	for k, v := range old.byName {
		next.byName[k] = v
	}
	next.byName[name] = b
	h.snap.Store(next)
	return b
}

// Unregister removes a component; it no longer affects Healthy. Unknown
// names are ignored.
func (h *Heartbeats) Unregister(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	old := h.snap.Load()
	if _, ok := old.byName[name]; !ok {
		return
	}
	next := &beatersSnap{byName: make(map[string]*Beater, len(old.byName))}
	for _, b := range old.order {
		if b.name != name {
			next.order = append(next.order, b)
			next.byName[b.name] = b
		}
	}
	h.snap.Store(next)
}

// Beat records a beat for the named component and reports whether the name
// is registered. Prefer holding the *Beater from Register on hot paths: it
// skips the map lookup.
func (h *Heartbeats) Beat(name string) bool {
	b, ok := h.snap.Load().byName[name]
	if ok {
		b.Beat()
	}
	return ok
}

// Healthy reports whether every registered component has beaten within its
// maximum silence as of now, and the names of those that have not, in
// registration order. An empty registry is healthy.
func (h *Heartbeats) Healthy(now time.Time) (bool, []string) {
	var stale []string
	for _, b := range h.snap.Load().order {
		if b.Stale(now) {
			stale = append(stale, b.name)
		}
	}
	return len(stale) == 0, stale
}

// Beat records that the component is alive now. A nil Beater (a component
// supervised without a heartbeat) ignores it, so components can always beat.
func (b *Beater) Beat() {
	if b != nil {
		b.beatAt(time.Now())
	}
}

func (b *Beater) beatAt(now time.Time) { b.last.Store(int64(now.Sub(b.epoch))) }

// Name returns the component's registered name.
func (b *Beater) Name() string { return b.name }

// MaxSilence returns the longest the component may go without beating.
func (b *Beater) MaxSilence() time.Duration { return time.Duration(b.maxSilence.Load()) }

// Silence returns how long before now the component last beat.
func (b *Beater) Silence(now time.Time) time.Duration {
	return now.Sub(b.epoch) - time.Duration(b.last.Load())
}

// Stale reports whether the component has been silent for longer than its
// maximum silence as of now.
func (b *Beater) Stale(now time.Time) bool { return b.Silence(now) > b.MaxSilence() }
